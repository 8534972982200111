//! The audit logs: `/api/v1/teams/{team}/audit` (a team's, for its admins and owners) and
//! `/api/v1/audit` (the platform's: nodes and join tokens, for platform admins).

pub mod list;
pub mod platform;

use gantry_common::api::{AuditEvent, AuditPage};
use serde::Deserialize;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::error::{bad_request, ApiResult};

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    /// Return events older than this id (from `next_before`).
    #[param(minimum = 1, maximum = 9223372036854775807_i64)]
    before: Option<i64>,
    /// Page size, 1–200 (default 50).
    #[param(minimum = 1, maximum = 200)]
    limit: Option<u32>,
}

impl AuditQuery {
    /// The page size, checked.
    fn limit(&self) -> ApiResult<u32> {
        let limit = self.limit.unwrap_or(50);
        if !(1..=200).contains(&limit) {
            return Err(bad_request("limit must be between 1 and 200"));
        }
        Ok(limit)
    }
}

#[derive(sqlx::FromRow)]
struct Row {
    id: i64,
    created_at: OffsetDateTime,
    actor: String,
    actor_user_id: Option<Uuid>,
    actor_token_id: Option<Uuid>,
    action: String,
    target: String,
    details: serde_json::Value,
}

/// One page from rows fetched with `limit + 1` (the extra row says there is a next page).
fn page(rows: Vec<Row>, limit: u32) -> AuditPage {
    let more = rows.len() > limit as usize;
    let events: Vec<AuditEvent> = rows
        .into_iter()
        .take(limit as usize)
        .map(|r| AuditEvent {
            id: r.id,
            at: r.created_at,
            actor: r.actor,
            actor_user_id: r.actor_user_id,
            actor_token_id: r.actor_token_id,
            action: r.action,
            target: r.target,
            details: r.details,
        })
        .collect();
    let next_before = more.then(|| events.last().map(|e| e.id)).flatten();
    AuditPage {
        events,
        next_before,
    }
}
