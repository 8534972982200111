//! Blob reads (with ranges) and upload sessions: monolithic, chunked (`Content-Range`),
//! resumable (status), cancelled, and cross-repository mounts within a team.

use axum::body::Body;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use gantry_common::Permission;
use sqlx::PgConnection;
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio::sync::OwnedMutexGuard;
use tokio_util::io::ReaderStream;
use uuid::Uuid;

use super::auth::{existing_repo, repo_access, Who};
use super::error::{
    blob_unknown, digest_invalid, range_invalid, too_large, upload_invalid, upload_unknown,
    RegistryError, RegistryResult,
};
use super::path::{Digest, RepoName};
use super::storage::{AppendError, Running};
use super::{header_value, repository, usage, Params};
use crate::state::AppState;

/// Blobs are read from disk in pieces this big.
const READ_CHUNK: usize = 256 * 1024;

pub async fn get(
    state: &AppState,
    caller: Who,
    repo: &RepoName,
    digest: &Digest,
    headers: &HeaderMap,
    head: bool,
) -> RegistryResult<Response> {
    let repo_id = existing_repo(state, caller, repo, Permission::Read).await?;
    let size: i64 = sqlx::query_scalar(
        "SELECT b.size FROM registry_repository_blobs rb JOIN registry_blobs b USING (digest)
         WHERE rb.repository_id = $1 AND rb.digest = $2",
    )
    .bind(repo_id)
    .bind(digest.as_str())
    .fetch_optional(&state.db)
    .await?
    .ok_or_else(|| blob_unknown(digest))?;
    let size = size as u64;
    let range = match headers.get(header::RANGE).and_then(|v| v.to_str().ok()) {
        None => None,
        Some(value) => match byte_range(value, size) {
            Ok(range) => range,
            Err(()) => {
                let mut res = range_invalid(format!(
                    "range {value:?} is not satisfiable: the blob has {size} bytes"
                ))
                .into_response();
                res.headers_mut().insert(
                    header::CONTENT_RANGE,
                    header_value(&format!("bytes */{size}")),
                );
                return Ok(res);
            }
        },
    };
    let (start, len) = match range {
        Some((start, end)) => (start, end - start + 1),
        None => (0, size),
    };
    let mut res = if head {
        Response::new(Body::empty())
    } else {
        let mut file = tokio::fs::File::open(state.registry.storage.blob_path(digest))
            .await
            .map_err(|e| {
                RegistryError::internal(format!("blob {digest} is missing on disk: {e}"))
            })?;
        if start > 0 {
            file.seek(std::io::SeekFrom::Start(start)).await?;
        }
        Response::new(Body::from_stream(ReaderStream::with_capacity(
            file.take(len),
            READ_CHUNK,
        )))
    };
    let h = res.headers_mut();
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    h.insert("docker-content-digest", header_value(digest.as_str()));
    h.insert(header::ETAG, header_value(&format!("\"{digest}\"")));
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("max-age=31536000"),
    );
    if let Some((start, end)) = range {
        *res.status_mut() = StatusCode::PARTIAL_CONTENT;
        res.headers_mut().insert(
            header::CONTENT_RANGE,
            header_value(&format!("bytes {start}-{end}/{size}")),
        );
    }
    Ok(res)
}

/// `POST …/blobs/uploads/`: a mount (`?mount=&from=`), a monolithic upload (`?digest=` with
/// the body), or a new session.
pub async fn start_upload(
    state: &AppState,
    caller: Who,
    repo: &RepoName,
    params: &Params,
    headers: &HeaderMap,
    body: Body,
) -> RegistryResult<Response> {
    let access = repo_access(state, caller, repo, Permission::PushImages).await?;
    let repo_id = repository::ensure(&state.db, access.team_id, repo).await?;

    if let (Some(mount), Some(from)) = (&params.mount, &params.from) {
        if let Some(digest) = mount_source(state, access.team_id, repo, mount, from).await? {
            let mut conn = state.db.acquire().await?;
            link(&mut conn, repo_id, &digest).await?;
            return Ok(blob_created(repo, &digest));
        }
        // Not mountable (another team's, unknown): a plain upload session, as the spec says,
        // which tells nothing about the other repository.
    }

    let id = Uuid::new_v4();
    state.registry.storage.start_upload(id).await?;
    sqlx::query("INSERT INTO registry_uploads (id, repository_id) VALUES ($1, $2)")
        .bind(id)
        .bind(repo_id)
        .execute(&state.db)
        .await?;
    if let Some(digest) = &params.digest {
        let expected = parse_digest(digest)?;
        let lock = state.registry.storage.session(id);
        let mut held = lock.lock().await;
        let running = state.registry.storage.running(id, &mut held, 0).await?;
        let running = append(state, access.team_id, id, running, headers, body).await?;
        return finish(state, repo, repo_id, id, &mut held, running, &expected).await;
    }
    Ok(upload_accepted(StatusCode::ACCEPTED, repo, id, 0))
}

/// The digest to mount into `repo`, when `from` is a repository of the same team that has it.
async fn mount_source(
    state: &AppState,
    team_id: Uuid,
    repo: &RepoName,
    mount: &str,
    from: &str,
) -> RegistryResult<Option<Digest>> {
    let (Some(digest), Some(from)) = (Digest::parse(mount), RepoName::parse(from)) else {
        return Ok(None);
    };
    if from.team != repo.team {
        return Ok(None);
    }
    let found: Option<i32> = sqlx::query_scalar(
        "SELECT 1 FROM registry_repository_blobs rb
         JOIN registry_repositories r ON r.id = rb.repository_id
         WHERE r.team_id = $1 AND r.name = $2 AND rb.digest = $3",
    )
    .bind(team_id)
    .bind(&from.name)
    .bind(digest.as_str())
    .fetch_optional(&state.db)
    .await?;
    Ok(found.map(|_| digest))
}

pub async fn upload_status(
    state: &AppState,
    caller: Who,
    repo: &RepoName,
    id: Uuid,
) -> RegistryResult<Response> {
    let repo_id = existing_repo(state, caller, repo, Permission::PushImages).await?;
    let size = upload_size(&state.db, repo_id, id).await?;
    Ok(upload_accepted(StatusCode::NO_CONTENT, repo, id, size))
}

/// `PATCH`: the next chunk. With `Content-Range`, it must start where the upload ends.
pub async fn patch_upload(
    state: &AppState,
    caller: Who,
    repo: &RepoName,
    id: Uuid,
    headers: &HeaderMap,
    body: Body,
) -> RegistryResult<Response> {
    let Locked {
        team_id,
        mut held,
        size,
        ..
    } = lock_upload(state, caller, repo, id).await?;
    let chunk = match headers.get(header::CONTENT_RANGE) {
        None => None,
        Some(value) => {
            let text = value.to_str().unwrap_or_default();
            let Some((start, end)) = content_range(text) else {
                return Err(upload_invalid(format!(
                    "Content-Range {text:?} is not <start>-<end>"
                )));
            };
            if start != size {
                let mut res = range_invalid(format!(
                    "this chunk starts at byte {start}, but the upload has {size} bytes: send \
                     the chunk that starts at {size}"
                ))
                .into_response();
                res.headers_mut()
                    .insert(header::RANGE, header_value(&range_header(size)));
                res.headers_mut()
                    .insert(header::LOCATION, header_value(&upload_location(repo, id)));
                return Ok(res);
            }
            Some(end + 1 - start)
        }
    };
    let running = state.registry.storage.running(id, &mut held, size).await?;
    let before = running.size;
    let running = append(state, team_id, id, running, headers, body).await?;
    if let Some(expected) = chunk {
        if running.size - before != expected {
            // Cut back to the acknowledged size: the next request rebuilds from there.
            *held = None;
            return Err(RegistryError::new(
                StatusCode::BAD_REQUEST,
                "SIZE_INVALID",
                format!(
                    "Content-Range announced {expected} bytes but the body had {}",
                    running.size - before
                ),
            ));
        }
    }
    record_size(state, id, running.size).await?;
    let size = running.size;
    *held = Some(running);
    Ok(upload_accepted(StatusCode::ACCEPTED, repo, id, size))
}

/// `PUT ?digest=`: the last chunk (optional), then the check against the digest.
pub async fn finish_upload(
    state: &AppState,
    caller: Who,
    repo: &RepoName,
    id: Uuid,
    params: &Params,
    body: Body,
) -> RegistryResult<Response> {
    let Locked {
        team_id,
        repo_id,
        mut held,
        size,
    } = lock_upload(state, caller, repo, id).await?;
    let expected = parse_digest(params.digest.as_deref().ok_or_else(|| {
        digest_invalid("finish an upload with ?digest=sha256:<hex> of the whole blob")
    })?)?;
    let running = state.registry.storage.running(id, &mut held, size).await?;
    let running = append(state, team_id, id, running, &HeaderMap::new(), body).await?;
    finish(state, repo, repo_id, id, &mut held, running, &expected).await
}

pub async fn cancel_upload(
    state: &AppState,
    caller: Who,
    repo: &RepoName,
    id: Uuid,
) -> RegistryResult<Response> {
    let _locked = lock_upload(state, caller, repo, id).await?;
    discard(state, id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// An upload session of the repository, locked for one request, and its acknowledged size.
struct Locked {
    team_id: Uuid,
    repo_id: Uuid,
    held: OwnedMutexGuard<Option<Running>>,
    size: u64,
}

async fn lock_upload(
    state: &AppState,
    caller: Who,
    repo: &RepoName,
    id: Uuid,
) -> RegistryResult<Locked> {
    let team_id = repo_access(state, caller, repo, Permission::PushImages)
        .await?
        .team_id;
    let repo_id = repository::find(&state.db, team_id, repo).await?;
    let held = state.registry.storage.session(id).lock_owned().await;
    let size = upload_size(&state.db, repo_id, id).await?;
    Ok(Locked {
        team_id,
        repo_id,
        held,
        size,
    })
}

/// Checks the whole upload against `expected`; a match becomes a blob of the repository, a
/// mismatch is thrown away.
async fn finish(
    state: &AppState,
    repo: &RepoName,
    repo_id: Uuid,
    id: Uuid,
    held: &mut Option<Running>,
    running: Running,
    expected: &Digest,
) -> RegistryResult<Response> {
    let actual = running.digest();
    *held = None;
    if &actual != expected {
        discard(state, id).await?;
        return Err(digest_invalid(format!(
            "the uploaded content has digest {actual}, not {expected}; the upload was discarded"
        )));
    }
    let _shared = state.registry.storage.committing().await;
    state.registry.storage.commit(id, &actual).await?;
    let mut tx = state.db.begin().await?;
    sqlx::query(
        "INSERT INTO registry_blobs (digest, size) VALUES ($1, $2) ON CONFLICT (digest) DO NOTHING",
    )
    .bind(actual.as_str())
    .bind(running.size as i64)
    .execute(&mut *tx)
    .await?;
    link(&mut tx, repo_id, &actual).await?;
    sqlx::query("DELETE FROM registry_uploads WHERE id = $1")
        .bind(id)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    tracing::info!(repository = %repo, digest = %actual, size = running.size, "registry: blob stored");
    Ok(blob_created(repo, &actual))
}

async fn append(
    state: &AppState,
    team_id: Uuid,
    id: Uuid,
    running: Running,
    headers: &HeaderMap,
    body: Body,
) -> RegistryResult<Running> {
    let blob_limit = state.registry.max_blob_bytes;
    let quota_limit = usage::left(state, team_id)
        .await?
        .map(|left| running.size.saturating_add(left));
    let limit = quota_limit.map_or(blob_limit, |q| q.min(blob_limit));
    // Over the team's quota rather than over the size of a blob.
    let refusal = |state: &AppState| {
        if quota_limit.is_some_and(|q| q < blob_limit) {
            usage::quota_exceeded(state)
        } else {
            too_large(blob_limit)
        }
    };
    // A declared length over the limit is refused before a byte is written.
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| running.size + len > limit) {
        discard(state, id).await?;
        return Err(refusal(state));
    }
    match state
        .registry
        .storage
        .append(id, running, body, limit)
        .await
    {
        Ok(running) => Ok(running),
        Err(AppendError::TooLarge) => {
            discard(state, id).await?;
            Err(refusal(state))
        }
        Err(AppendError::Body(e)) => Err(upload_invalid(format!("the upload broke off: {e}"))),
        Err(AppendError::Io(e)) => Err(RegistryError::internal(e)),
    }
}

async fn discard(state: &AppState, id: Uuid) -> RegistryResult<()> {
    sqlx::query("DELETE FROM registry_uploads WHERE id = $1")
        .bind(id)
        .execute(&state.db)
        .await?;
    state.registry.storage.discard(id).await?;
    Ok(())
}

async fn record_size(state: &AppState, id: Uuid, size: u64) -> RegistryResult<()> {
    sqlx::query("UPDATE registry_uploads SET size = $2, updated_at = now() WHERE id = $1")
        .bind(id)
        .bind(size as i64)
        .execute(&state.db)
        .await?;
    Ok(())
}

async fn upload_size(db: &sqlx::PgPool, repo_id: Uuid, id: Uuid) -> RegistryResult<u64> {
    let size: i64 = sqlx::query_scalar(
        "SELECT size FROM registry_uploads WHERE id = $1 AND repository_id = $2",
    )
    .bind(id)
    .bind(repo_id)
    .fetch_optional(db)
    .await?
    .ok_or_else(upload_unknown)?;
    Ok(size as u64)
}

/// Lets `repo_id` serve a stored blob.
async fn link(conn: &mut PgConnection, repo_id: Uuid, digest: &Digest) -> RegistryResult<()> {
    sqlx::query(
        "INSERT INTO registry_repository_blobs (repository_id, digest) VALUES ($1, $2)
         ON CONFLICT DO NOTHING",
    )
    .bind(repo_id)
    .bind(digest.as_str())
    .execute(conn)
    .await?;
    Ok(())
}

fn parse_digest(s: &str) -> RegistryResult<Digest> {
    Digest::parse(s).ok_or_else(|| {
        digest_invalid(format!(
            "{s:?} is not a digest this registry accepts: use sha256:<64 hex digits>"
        ))
    })
}

fn blob_created(repo: &RepoName, digest: &Digest) -> Response {
    let mut res = StatusCode::CREATED.into_response();
    let h = res.headers_mut();
    h.insert(
        header::LOCATION,
        header_value(&format!("/v2/{repo}/blobs/{digest}")),
    );
    h.insert("docker-content-digest", header_value(digest.as_str()));
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(0));
    res
}

fn upload_accepted(status: StatusCode, repo: &RepoName, id: Uuid, size: u64) -> Response {
    let mut res = status.into_response();
    let h = res.headers_mut();
    h.insert(header::LOCATION, header_value(&upload_location(repo, id)));
    h.insert(header::RANGE, header_value(&range_header(size)));
    h.insert("docker-upload-uuid", header_value(&id.to_string()));
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(0));
    res
}

fn upload_location(repo: &RepoName, id: Uuid) -> String {
    format!("/v2/{repo}/blobs/uploads/{id}")
}

/// `0-<last byte>`; an empty upload is `0-0`, as the reference registry says it.
fn range_header(size: u64) -> String {
    format!("0-{}", size.saturating_sub(1))
}

/// `Content-Range` of a chunk: `<start>-<end>`, inclusive (`bytes ` and `/<total>` tolerated).
fn content_range(value: &str) -> Option<(u64, u64)> {
    let value = value.trim();
    let value = value.strip_prefix("bytes ").unwrap_or(value);
    let value = value.split_once('/').map_or(value, |(range, _)| range);
    let (start, end) = value.split_once('-')?;
    let (start, end) = (start.trim().parse().ok()?, end.trim().parse().ok()?);
    (start <= end).then_some((start, end))
}

/// A request's `Range: bytes=…` against a blob of `size` bytes: the inclusive byte span, `None`
/// for a header this answers with the whole blob (several ranges, another unit), `Err` when
/// nothing of it is in the blob (416).
fn byte_range(value: &str, size: u64) -> Result<Option<(u64, u64)>, ()> {
    let Some(spec) = value.trim().strip_prefix("bytes=") else {
        return Ok(None);
    };
    if spec.contains(',') {
        return Ok(None);
    }
    let Some((start, end)) = spec.split_once('-') else {
        return Ok(None);
    };
    let (start, end) = (start.trim(), end.trim());
    let span = match (start.parse::<u64>(), end.parse::<u64>()) {
        // bytes=a-b
        (Ok(a), Ok(b)) if a <= b => (a, b.min(size.saturating_sub(1))),
        (Ok(_), Ok(_)) => return Ok(None),
        // bytes=a-
        (Ok(a), Err(_)) if end.is_empty() => (a, size.saturating_sub(1)),
        // bytes=-n: the last n bytes
        (Err(_), Ok(n)) if start.is_empty() => {
            if n == 0 || size == 0 {
                return Err(());
            }
            (size.saturating_sub(n), size - 1)
        }
        _ => return Ok(None),
    };
    if span.0 >= size {
        return Err(());
    }
    Ok(Some(span))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_ranges_against_a_blob_of_100_bytes() {
        let cases = [
            ("bytes=0-9", Ok(Some((0, 9)))),
            ("bytes=90-200", Ok(Some((90, 99)))),
            ("bytes=50-", Ok(Some((50, 99)))),
            ("bytes=-10", Ok(Some((90, 99)))),
            ("bytes=-500", Ok(Some((0, 99)))),
            ("bytes=100-", Err(())),
            ("bytes=150-160", Err(())),
            ("bytes=-0", Err(())),
            ("bytes=9-1", Ok(None)),
            ("bytes=0-1,5-6", Ok(None)),
            ("items=0-1", Ok(None)),
        ];
        for (header, want) in cases {
            assert_eq!(byte_range(header, 100), want, "{header}");
        }
    }

    #[test]
    fn chunk_ranges() {
        assert_eq!(content_range("0-99"), Some((0, 99)));
        assert_eq!(content_range("bytes 100-199/*"), Some((100, 199)));
        assert_eq!(content_range("9-1"), None);
        assert_eq!(content_range("abc"), None);
        assert_eq!(range_header(0), "0-0");
        assert_eq!(range_header(10), "0-9");
    }
}
