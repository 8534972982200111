//! Probes for process supervisors and load balancers (outside `/api/v1`, no authentication).
//!
//! They are served by `startup.rs` next to the API router, and described in the OpenAPI
//! document like the API's operations (with no security requirement).

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde_json::{json, Value};

use crate::state::AppState;

/// What a probe answers (built with `json!` below; this type only describes it).
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct Probe {
    /// `ok` (`/healthz`), `ready` or `unavailable` (`/readyz`).
    status: String,
    /// Why the server is not ready.
    reason: Option<String>,
}

/// The process is up and serving HTTP.
#[utoipa::path(get, path = "/healthz", tag = "health", security(()),
    responses((status = 200, description = "Up", body = Probe, example = json!({"status": "ok"}))))]
pub async fn healthz() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

/// The server can do useful work: its database answers. 503 otherwise.
#[utoipa::path(get, path = "/readyz", tag = "health", security(()),
    responses(
        (status = 200, description = "Ready", body = Probe, example = json!({"status": "ready"})),
        (status = 503, description = "The database does not answer (this body is the probe's, \
            not the API's error shape)", body = Probe,
            example = json!({"status": "unavailable", "reason": "database unreachable"})),
    ))]
pub async fn readyz(State(state): State<AppState>) -> (StatusCode, Json<Value>) {
    let probe = tokio::time::timeout(
        std::time::Duration::from_secs(2),
        sqlx::query("SELECT 1").execute(&state.db),
    )
    .await;
    match probe {
        Ok(Ok(_)) => (StatusCode::OK, Json(json!({"status": "ready"}))),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "readiness: database unreachable");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(json!({"status": "unavailable", "reason": "database unreachable"})),
            )
        }
        Err(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "unavailable", "reason": "database did not answer within 2 s"})),
        ),
    }
}
