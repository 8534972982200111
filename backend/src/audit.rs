//! The audit logs: every mutating action records who did what to what, and when — in a team's
//! log, or (nodes, join tokens) in the platform's. Written in the same transaction as the change
//! it describes, so neither exists without the other.

use serde_json::Value;
use sqlx::PgConnection;
use uuid::Uuid;

use crate::auth::Caller;

/// Who acted: kept as ids and a readable label. No user for what Gantry does itself.
pub struct Actor {
    pub user_id: Option<Uuid>,
    pub token_id: Option<Uuid>,
    pub label: String,
}

impl From<&Caller> for Actor {
    fn from(caller: &Caller) -> Self {
        Actor {
            user_id: Some(caller.user.id),
            token_id: caller.token().map(|t| t.id),
            label: caller.label(),
        }
    }
}

pub struct Event {
    pub team_id: Uuid,
    /// Dotted verb: `app.create`, `member.remove`, …
    pub action: &'static str,
    /// `app:hello`, `member:bob@example.com`, …
    pub target: String,
    /// Facts worth keeping; never a secret or a config value.
    pub details: Value,
    pub actor: Actor,
}

pub async fn record(conn: &mut PgConnection, event: Event) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO audit_events (team_id, actor_user_id, actor_token_id, actor, action, target, details)
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(event.team_id)
    .bind(event.actor.user_id)
    .bind(event.actor.token_id)
    .bind(event.actor.label)
    .bind(event.action)
    .bind(event.target)
    .bind(event.details)
    .execute(conn)
    .await?;
    Ok(())
}

/// A platform-wide action (nodes, join tokens), in the log platform admins read.
pub struct PlatformEvent {
    /// `node.join`, `node.remove`, `join_token.create`, …
    pub action: &'static str,
    /// `node:n1`, `join_token:<id>`, …
    pub target: String,
    /// Never a secret.
    pub details: Value,
    pub actor: Actor,
}

pub async fn record_platform(conn: &mut PgConnection, event: PlatformEvent) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO platform_audit_events (actor_user_id, actor, action, target, details)
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(event.actor.user_id)
    .bind(event.actor.label)
    .bind(event.action)
    .bind(event.target)
    .bind(event.details)
    .execute(conn)
    .await?;
    Ok(())
}
