//! The built-in OCI registry at `/v2/` (the distribution spec's push and pull), where teams
//! `docker push` their images.
//!
//! - `path.rs`: what a `/v2/…` path asks for (pure).
//! - `auth.rs`: Basic credentials (e-mail + API token or password) and the team's role.
//! - `storage.rs`: the bytes on disk, content-addressed; uploads hashed while they stream.
//! - `blobs.rs`: blob reads and upload sessions; `manifests.rs`: manifests and tags;
//!   `listing.rs`: tag lists and the catalog; `repository.rs`: finding and creating them.
//!
//! Metadata (repositories, which blobs a repository may serve, manifests, tags, upload
//! sessions) is in Postgres. Repositories are `<team>/<name>`; another team's repository is
//! answered exactly as one that does not exist.

mod auth;
mod blobs;
pub mod error;
pub mod gc;
pub mod images;
mod listing;
mod manifests;
pub mod path;
pub mod pull_secret;
mod repository;
mod storage;
pub mod usage;

use std::path::PathBuf;

use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use serde::Deserialize;
use uuid::Uuid;

use self::error::{name_invalid, unsupported, RegistryError, RegistryResult};
use self::path::{PathError, Target};
use crate::state::AppState;

pub const API_VERSION_HEADER: &str = "docker-distribution-api-version";

/// The registry's part of the server state.
pub struct Registry {
    storage: storage::Storage,
    /// Uploads beyond this size are refused (413).
    max_blob_bytes: u64,
    /// What each team's blobs may take in all (`None`: no limit).
    team_quota_bytes: Option<u64>,
    /// Passwords verified lately (shared with the git remotes' Basic authentication).
    pub passwords: crate::auth::basic::PasswordCache,
    /// Checks the credentials agents pull with.
    pull_secrets: pull_secret::PullSecrets,
    /// Makes and checks the credentials agents push builds' images with.
    pub build_secrets: pull_secret::BuildSecrets,
}

impl Registry {
    pub fn team_quota_bytes(&self) -> Option<u64> {
        self.team_quota_bytes
    }

    pub fn new(
        dir: PathBuf,
        max_blob_bytes: u64,
        team_quota_bytes: Option<u64>,
        pull_secrets: pull_secret::PullSecrets,
        build_secrets: pull_secret::BuildSecrets,
    ) -> Self {
        Self {
            storage: storage::Storage::new(dir),
            max_blob_bytes,
            team_quota_bytes,
            passwords: Default::default(),
            pull_secrets,
            build_secrets,
        }
    }
}

/// `/v2/` and everything under it. Not part of the REST API's OpenAPI document: its clients
/// are docker and skopeo, which speak the distribution spec.
pub fn router() -> axum::Router<AppState> {
    axum::Router::new()
        .route("/v2", any(handle))
        .route("/v2/", any(handle))
        .route("/v2/{*rest}", any(handle))
}

/// The query parameters any endpoint may take.
#[derive(Debug, Default, Deserialize)]
pub struct Params {
    digest: Option<String>,
    mount: Option<String>,
    from: Option<String>,
    n: Option<String>,
    last: Option<String>,
}

async fn handle(
    State(state): State<AppState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let mut res = match dispatch(&state, &method, &uri, &headers, body).await {
        Ok(res) => res,
        Err(e) => e.into_response(),
    };
    res.headers_mut()
        .insert(API_VERSION_HEADER, HeaderValue::from_static("registry/2.0"));
    res
}

async fn dispatch(
    state: &AppState,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: Body,
) -> RegistryResult<Response> {
    let Query(params) = Query::<Params>::try_from_uri(uri).map_err(|e| {
        RegistryError::new(
            StatusCode::BAD_REQUEST,
            "UNSUPPORTED",
            format!("bad query: {e}"),
        )
    })?;
    let path = match uri.path() {
        "/v2" => "/v2/",
        p => p,
    };
    let target = match path::parse(path) {
        Ok(target) => target,
        Err(PathError::NotFound) => {
            return Err(RegistryError::new(
                StatusCode::NOT_FOUND,
                "NOT_FOUND",
                format!("{path} is not an endpoint of the distribution API"),
            ))
        }
        Err(PathError::NameInvalid(name)) => return Err(name_invalid(&name)),
        Err(PathError::DigestInvalid(d)) => {
            return Err(error::digest_invalid(format!(
                "{d:?} is not a digest this registry knows: use sha256:<64 hex digits>"
            )))
        }
        Err(PathError::ReferenceInvalid(r)) => {
            return Err(error::manifest_invalid(format!(
                "{r:?} is neither a tag ([A-Za-z0-9_][A-Za-z0-9._-]{{0,127}}) nor a sha256 digest"
            )))
        }
    };
    // Every endpoint, the version check included, needs credentials: that is how docker
    // learns to send them.
    let caller = auth::authenticate(state, headers).await?;
    let head = *method == Method::HEAD;
    match (method.clone(), target) {
        (Method::GET | Method::HEAD, Target::Base) => {
            Ok(axum::Json(serde_json::json!({})).into_response())
        }
        (Method::GET, Target::Catalog) => listing::catalog(state, caller, &params).await,
        (Method::GET, Target::Tags(repo)) => listing::tags(state, caller, &repo, &params).await,
        (Method::GET | Method::HEAD, Target::Manifest(repo, reference)) => {
            manifests::get(state, caller, &repo, &reference, head).await
        }
        (Method::PUT, Target::Manifest(repo, reference)) => {
            manifests::put(state, caller, &repo, &reference, headers, body).await
        }
        (Method::DELETE, Target::Manifest(repo, reference)) => {
            manifests::delete(state, caller, &repo, &reference).await
        }
        (Method::GET | Method::HEAD, Target::Blob(repo, digest)) => {
            blobs::get(state, caller, &repo, &digest, headers, head).await
        }
        (Method::DELETE, Target::Blob(..)) => Err(unsupported(
            "blobs are not deleted one by one: delete manifests, and garbage collection removes \
             the blobs no manifest uses",
        )),
        (Method::POST, Target::Uploads(repo)) => {
            blobs::start_upload(state, caller, &repo, &params, headers, body).await
        }
        (method, Target::Upload(repo, id)) => {
            let id = Uuid::parse_str(&id).map_err(|_| error::upload_unknown())?;
            match method {
                Method::GET => blobs::upload_status(state, caller, &repo, id).await,
                Method::PATCH => blobs::patch_upload(state, caller, &repo, id, headers, body).await,
                Method::PUT => blobs::finish_upload(state, caller, &repo, id, &params, body).await,
                Method::DELETE => blobs::cancel_upload(state, caller, &repo, id).await,
                _ => Err(method_not_allowed(&method)),
            }
        }
        (method, _) => Err(method_not_allowed(&method)),
    }
}

fn method_not_allowed(method: &Method) -> RegistryError {
    unsupported(format!("{method} is not supported on this endpoint"))
}

/// Registry header values are ASCII: digests, paths of checked names, the four manifest media
/// types, numbers.
fn header_value(s: &str) -> HeaderValue {
    HeaderValue::from_str(s).expect("registry header values are ASCII")
}
