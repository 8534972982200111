//! Manifests (OCI image manifest and index, Docker schema 2 manifest and manifest list) and
//! the tags that name them.

use axum::body::Body;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use gantry_common::Permission;
use serde::Deserialize;
use sha2::{Digest as _, Sha256};

use super::auth::{existing_repo, repo_access, Who};
use super::error::{
    digest_invalid, manifest_invalid, manifest_unknown, RegistryError, RegistryResult,
};
use super::path::{Digest, Reference, RepoName};
use super::{header_value, repository};
use crate::state::AppState;

/// The spec lets a registry refuse manifests over 4 MiB.
const MAX_MANIFEST_BYTES: usize = 4 * 1024 * 1024;

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";

/// What a manifest refers to.
#[derive(Debug, PartialEq, Eq)]
pub struct Parsed {
    pub media_type: String,
    /// Config and layers: blobs that must be in the repository.
    pub blobs: Vec<Digest>,
    /// An index's manifests: they must be in the repository.
    pub children: Vec<Digest>,
    /// The sizes its descriptors declare, summed.
    pub declared_size: i64,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Wire {
    schema_version: Option<i64>,
    media_type: Option<String>,
    config: Option<Descriptor>,
    layers: Option<Vec<Descriptor>>,
    manifests: Option<Vec<Descriptor>>,
}

#[derive(Deserialize)]
struct Descriptor {
    digest: String,
    size: i64,
    #[serde(default)]
    urls: Vec<String>,
}

/// Reads a manifest's references. The media type is the body's `mediaType`, or else the
/// request's `Content-Type`; when both are given they must agree.
pub fn parse(content_type: Option<&str>, bytes: &[u8]) -> Result<Parsed, String> {
    let wire: Wire = serde_json::from_slice(bytes).map_err(|e| format!("not a manifest: {e}"))?;
    if wire.schema_version != Some(2) {
        return Err("only schemaVersion 2 manifests are accepted (Docker schema 1 is not)".into());
    }
    let content_type = content_type
        .map(|c| c.split(';').next().unwrap_or(c).trim())
        .filter(|c| !c.is_empty() && *c != "application/json");
    let media_type = match (wire.media_type.as_deref(), content_type) {
        (Some(body), Some(header)) if body != header => {
            return Err(format!(
                "the body says mediaType {body:?} but Content-Type is {header:?}"
            ))
        }
        (Some(t), _) | (None, Some(t)) => t.to_owned(),
        (None, None) if wire.manifests.is_some() => OCI_INDEX.to_owned(),
        (None, None) => OCI_MANIFEST.to_owned(),
    };
    let digest = |d: &Descriptor| {
        Digest::parse(&d.digest).ok_or_else(|| format!("{:?} is not a sha256 digest", d.digest))
    };
    let mut parsed = Parsed {
        media_type,
        blobs: Vec::new(),
        children: Vec::new(),
        declared_size: 0,
    };
    match parsed.media_type.as_str() {
        OCI_MANIFEST | DOCKER_MANIFEST => {
            let config = wire.config.ok_or("an image manifest needs a config")?;
            let layers = wire.layers.ok_or("an image manifest needs layers")?;
            for d in std::iter::once(&config).chain(&layers) {
                parsed.declared_size += d.size.max(0);
                // Foreign layers live elsewhere (their `urls`); they are not pushed here.
                if d.urls.is_empty() {
                    parsed.blobs.push(digest(d)?);
                }
            }
        }
        OCI_INDEX | DOCKER_LIST => {
            let manifests = wire.manifests.ok_or("an index needs manifests")?;
            for d in &manifests {
                parsed.declared_size += d.size.max(0);
                parsed.children.push(digest(d)?);
            }
        }
        other => return Err(format!("manifest media type {other:?} is not supported")),
    }
    Ok(parsed)
}

pub async fn put(
    state: &AppState,
    caller: Who,
    repo: &RepoName,
    reference: &Reference,
    headers: &HeaderMap,
    body: Body,
) -> RegistryResult<Response> {
    let access = repo_access(state, caller, repo, Permission::PushImages).await?;
    let bytes = axum::body::to_bytes(body, MAX_MANIFEST_BYTES)
        .await
        .map_err(|_| {
            RegistryError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "MANIFEST_INVALID",
                format!("a manifest may be at most {MAX_MANIFEST_BYTES} bytes"),
            )
        })?;
    let digest = Digest::from_sha256(&Sha256::digest(&bytes));
    if let Reference::Digest(named) = reference {
        if *named != digest {
            return Err(digest_invalid(format!(
                "the manifest's content has digest {digest}, not {named}"
            )));
        }
    }
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    let parsed = parse(content_type, &bytes).map_err(manifest_invalid)?;

    let mut tx = state.db.begin().await?;
    let repo_id = repository::ensure(&mut *tx, access.team_id, repo).await?;
    let blobs: Vec<&str> = parsed.blobs.iter().map(Digest::as_str).collect();
    let found: Vec<(String, i64)> = sqlx::query_as(
        "SELECT rb.digest, b.size FROM registry_repository_blobs rb JOIN registry_blobs b USING (digest)
         WHERE rb.repository_id = $1 AND rb.digest = ANY($2)",
    )
    .bind(repo_id)
    .bind(&blobs)
    .fetch_all(&mut *tx)
    .await?;
    if let Some(missing) = blobs.iter().find(|d| !found.iter().any(|(f, _)| f == *d)) {
        return Err(RegistryError::new(
            StatusCode::BAD_REQUEST,
            "MANIFEST_BLOB_UNKNOWN",
            format!("the manifest refers to blob {missing}, which is not in {repo}: push it first"),
        ));
    }
    let children: Vec<&str> = parsed.children.iter().map(Digest::as_str).collect();
    let known: Vec<String> = sqlx::query_scalar(
        "SELECT digest FROM registry_manifests WHERE repository_id = $1 AND digest = ANY($2)",
    )
    .bind(repo_id)
    .bind(&children)
    .fetch_all(&mut *tx)
    .await?;
    if let Some(missing) = children.iter().find(|d| !known.iter().any(|k| k == *d)) {
        return Err(RegistryError::new(
            StatusCode::BAD_REQUEST,
            "MANIFEST_BLOB_UNKNOWN",
            format!("the index lists manifest {missing}, which is not in {repo}: push it first"),
        ));
    }
    let blob_size: i64 = found.iter().map(|(_, size)| size).sum();
    sqlx::query(
        "INSERT INTO registry_manifests
             (repository_id, digest, media_type, content, blobs, children, total_size)
         VALUES ($1, $2, $3, $4, $5, $6, $7)
         ON CONFLICT (repository_id, digest) DO NOTHING",
    )
    .bind(repo_id)
    .bind(digest.as_str())
    .bind(&parsed.media_type)
    .bind(bytes.as_ref())
    .bind(&blobs)
    .bind(&children)
    .bind(bytes.len() as i64 + blob_size.max(parsed.declared_size))
    .execute(&mut *tx)
    .await?;
    if let Reference::Tag(tag) = reference {
        sqlx::query(
            "INSERT INTO registry_tags (repository_id, tag, digest) VALUES ($1, $2, $3)
             ON CONFLICT (repository_id, tag) DO UPDATE SET digest = EXCLUDED.digest, updated_at = now()",
        )
        .bind(repo_id)
        .bind(tag)
        .bind(digest.as_str())
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    tracing::info!(repository = %repo, reference = %reference, digest = %digest, "registry: manifest stored");
    if let Reference::Tag(tag) = reference {
        if let Some(user) = &access.user {
            crate::releases::deploy::on_push(state, user, &repo.name, tag, digest.as_str()).await;
        }
    }

    let mut res = StatusCode::CREATED.into_response();
    let h = res.headers_mut();
    h.insert(
        header::LOCATION,
        header_value(&format!("/v2/{repo}/manifests/{digest}")),
    );
    h.insert("docker-content-digest", header_value(digest.as_str()));
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(0));
    Ok(res)
}

pub async fn get(
    state: &AppState,
    caller: Who,
    repo: &RepoName,
    reference: &Reference,
    head: bool,
) -> RegistryResult<Response> {
    let repo_id = existing_repo(state, caller, repo, Permission::Read).await?;
    let found: Option<(String, String, Vec<u8>)> = match reference {
        Reference::Digest(d) => {
            sqlx::query_as(
                "SELECT digest, media_type, content FROM registry_manifests
                 WHERE repository_id = $1 AND digest = $2",
            )
            .bind(repo_id)
            .bind(d.as_str())
            .fetch_optional(&state.db)
            .await?
        }
        Reference::Tag(tag) => {
            sqlx::query_as(
                "SELECT m.digest, m.media_type, m.content FROM registry_tags t
                 JOIN registry_manifests m ON m.repository_id = t.repository_id AND m.digest = t.digest
                 WHERE t.repository_id = $1 AND t.tag = $2",
            )
            .bind(repo_id)
            .bind(tag)
            .fetch_optional(&state.db)
            .await?
        }
    };
    let (digest, media_type, content) = found.ok_or_else(|| manifest_unknown(reference))?;
    let len = content.len();
    let mut res = if head {
        Response::new(Body::empty())
    } else {
        Response::new(Body::from(content))
    };
    let h = res.headers_mut();
    h.insert(header::CONTENT_TYPE, header_value(&media_type));
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    h.insert("docker-content-digest", header_value(&digest));
    h.insert(header::ETAG, header_value(&format!("\"{digest}\"")));
    Ok(res)
}

/// By digest: the manifest and every tag naming it. By tag: the tag only.
pub async fn delete(
    state: &AppState,
    caller: Who,
    repo: &RepoName,
    reference: &Reference,
) -> RegistryResult<Response> {
    let repo_id = existing_repo(state, caller, repo, Permission::PushImages).await?;
    let deleted = match reference {
        // Tags go with it (ON DELETE CASCADE).
        Reference::Digest(d) => {
            sqlx::query("DELETE FROM registry_manifests WHERE repository_id = $1 AND digest = $2")
                .bind(repo_id)
                .bind(d.as_str())
        }
        Reference::Tag(tag) => {
            sqlx::query("DELETE FROM registry_tags WHERE repository_id = $1 AND tag = $2")
                .bind(repo_id)
                .bind(tag)
        }
    }
    .execute(&state.db)
    .await?
    .rows_affected();
    if deleted == 0 {
        return Err(manifest_unknown(reference));
    }
    tracing::info!(repository = %repo, reference = %reference, "registry: manifest deleted");
    Ok(StatusCode::ACCEPTED.into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(c: char) -> String {
        format!("sha256:{}", c.to_string().repeat(64))
    }

    #[test]
    fn image_manifests_name_their_config_and_layers_but_not_foreign_layers() {
        let body = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": DOCKER_MANIFEST,
            "config": {"mediaType": "x", "digest": d('a'), "size": 10},
            "layers": [
                {"mediaType": "x", "digest": d('b'), "size": 100},
                {"mediaType": "foreign", "digest": d('c'), "size": 5, "urls": ["https://x"]},
            ],
        });
        let parsed = parse(Some(DOCKER_MANIFEST), body.to_string().as_bytes()).unwrap();
        assert_eq!(parsed.media_type, DOCKER_MANIFEST);
        assert_eq!(
            parsed.blobs,
            vec![
                Digest::parse(&d('a')).unwrap(),
                Digest::parse(&d('b')).unwrap()
            ]
        );
        assert_eq!(parsed.declared_size, 115);
    }

    #[test]
    fn an_index_names_its_manifests_and_the_media_type_comes_from_body_or_header() {
        let body = serde_json::json!({
            "schemaVersion": 2,
            "manifests": [{"mediaType": OCI_MANIFEST, "digest": d('e'), "size": 7}],
        });
        let bytes = body.to_string();
        let parsed = parse(Some(OCI_INDEX), bytes.as_bytes()).unwrap();
        assert_eq!(parsed.children, vec![Digest::parse(&d('e')).unwrap()]);
        assert!(parsed.blobs.is_empty());
        // No media type anywhere: an index by its shape.
        assert_eq!(parse(None, bytes.as_bytes()).unwrap().media_type, OCI_INDEX);
    }

    #[test]
    fn refused_manifests() {
        let cases = [
            ("not json", None),
            (r#"{"schemaVersion": 1, "fsLayers": []}"#, None),
            (r#"{"schemaVersion": 2, "mediaType": "text/plain"}"#, None),
            (
                r#"{"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json"}"#,
                None,
            ),
            (
                r#"{"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": []}"#,
                Some(OCI_MANIFEST),
            ),
            (
                r#"{"schemaVersion": 2, "config": {"digest": "sha256:xyz", "size": 1}, "layers": []}"#,
                Some(OCI_MANIFEST),
            ),
        ];
        for (body, content_type) in cases {
            assert!(parse(content_type, body.as_bytes()).is_err(), "{body}");
        }
    }
}
