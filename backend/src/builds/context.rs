//! `GET /api/v1/agent/builds/{id}/context`: the agent building a build downloads its context
//! (a tar of the pushed commit) here, with its node credential. Outside the OpenAPI document,
//! like the agents' websocket.

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap};
use axum::response::Response;
use gantry_common::agent::NODE_CREDENTIAL_PREFIX;
use tokio_util::io::ReaderStream;
use uuid::Uuid;

use crate::auth::tokens;
use crate::error::{not_found, unauthorized, ApiResult};
use crate::state::AppState;

/// The path of build `id`'s context, relative to the server's URL.
pub fn path(id: Uuid) -> String {
    format!("/api/v1/agent/builds/{id}/context")
}

/// The context of a build that runs on the caller's node; another node's, or a build that is
/// not running, is a 404.
pub async fn download(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let credential = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .filter(|c| tokens::looks_valid_with_prefix(c, NODE_CREDENTIAL_PREFIX))
        .ok_or_else(|| {
            unauthorized("a node's agent downloads build contexts with its node credential")
        })?;
    let node: Option<Uuid> = sqlx::query_scalar("SELECT id FROM nodes WHERE credential_hash = $1")
        .bind(tokens::hash(credential))
        .fetch_optional(&state.db)
        .await?;
    let node = node.ok_or_else(|| unauthorized("this node credential is unknown"))?;
    let id = Uuid::parse_str(&id).map_err(|_| not_found("build"))?;
    let running: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM builds WHERE id = $1 AND node_id = $2 AND status = 'running')",
    )
    .bind(id)
    .bind(node)
    .fetch_one(&state.db)
    .await?;
    if !running {
        return Err(not_found("build"));
    }
    let file = tokio::fs::File::open(state.builds.context_path(id))
        .await
        .map_err(|_| not_found("build context"))?;
    let length = file.metadata().await.map(|m| m.len()).ok();
    let mut response = Response::new(Body::from_stream(ReaderStream::with_capacity(
        file,
        256 * 1024,
    )));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/x-tar"),
    );
    if let Some(length) = length {
        response
            .headers_mut()
            .insert(header::CONTENT_LENGTH, header::HeaderValue::from(length));
    }
    Ok(response)
}
