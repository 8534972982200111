//! Builds' rows: made when a push arrives, moved through their states by the build's task.

use gantry_common::builds::{Build, BuildStatus};
use sqlx::{PgConnection, PgPool};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::audit::Actor;

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct BuildRow {
    pub id: Uuid,
    pub team_id: Uuid,
    pub app_id: Uuid,
    pub number: i32,
    pub status: String,
    pub commit_id: String,
    pub branch: String,
    pub dockerfile: String,
    pub image: Option<String>,
    pub release: Option<i32>,
    pub message: Option<String>,
    pub node: Option<String>,
    pub actor: String,
    pub created_at: OffsetDateTime,
    pub started_at: Option<OffsetDateTime>,
    pub finished_at: Option<OffsetDateTime>,
}

/// The columns of [`BuildRow`] from `builds b LEFT JOIN nodes n`.
const COLUMNS: &str = "b.id, b.team_id, b.app_id, b.number, b.status, b.commit_id, b.branch,
    b.dockerfile, b.image, b.release, b.message, n.name AS node, b.actor, b.created_at,
    b.started_at, b.finished_at";

impl BuildRow {
    pub fn status(&self) -> BuildStatus {
        BuildStatus::parse(&self.status).unwrap_or(BuildStatus::Failed)
    }

    pub fn to_api(&self) -> Build {
        let end = self
            .finished_at
            .or_else(|| (self.status() == BuildStatus::Running).then(OffsetDateTime::now_utc));
        let duration_seconds = match (self.started_at, end) {
            (Some(start), Some(end)) => {
                Some(((end - start).as_seconds_f64() * 10.0).round() / 10.0)
            }
            _ => None,
        };
        Build {
            number: self.number as u32,
            status: self.status(),
            commit: self.commit_id.clone(),
            branch: self.branch.clone(),
            dockerfile: self.dockerfile.clone(),
            image: self.image.clone(),
            release: self.release.and_then(|r| u32::try_from(r).ok()),
            message: self.message.clone(),
            node: self.node.clone(),
            created_by: self.actor.clone(),
            created_at: self.created_at,
            started_at: self.started_at,
            finished_at: self.finished_at,
            duration_seconds,
        }
    }
}

/// What a new build is made of.
pub struct NewBuild<'a> {
    pub team_id: Uuid,
    pub app_id: Uuid,
    pub commit: &'a str,
    pub branch: &'a str,
    pub dockerfile: &'a str,
    pub actor: &'a Actor,
}

/// Makes the app's next build, queued. Numbers are 1, 2, 3… per app: the app row is locked
/// while the number is chosen.
pub async fn insert(tx: &mut PgConnection, new: NewBuild<'_>) -> sqlx::Result<BuildRow> {
    sqlx::query("SELECT 1 FROM apps WHERE id = $1 FOR UPDATE")
        .bind(new.app_id)
        .execute(&mut *tx)
        .await?;
    let id: Uuid = sqlx::query_scalar(
        "INSERT INTO builds (team_id, app_id, number, status, commit_id, branch, dockerfile,
             actor, actor_user_id)
         SELECT $1, $2, coalesce(max(number), 0) + 1, 'queued', $3, $4, $5, $6, $7
         FROM builds WHERE app_id = $2
         RETURNING id",
    )
    .bind(new.team_id)
    .bind(new.app_id)
    .bind(new.commit)
    .bind(new.branch)
    .bind(new.dockerfile)
    .bind(&new.actor.label)
    .bind(new.actor.user_id)
    .fetch_one(&mut *tx)
    .await?;
    by_id(&mut *tx, id).await
}

pub async fn by_id(db: &mut PgConnection, id: Uuid) -> sqlx::Result<BuildRow> {
    sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM builds b LEFT JOIN nodes n ON n.id = b.node_id WHERE b.id = $1"
    ))
    .bind(id)
    .fetch_one(db)
    .await
}

/// Build `number` of an app.
pub async fn by_number(db: &PgPool, app_id: Uuid, number: u32) -> sqlx::Result<Option<BuildRow>> {
    sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM builds b LEFT JOIN nodes n ON n.id = b.node_id
         WHERE b.app_id = $1 AND b.number = $2"
    ))
    .bind(app_id)
    .bind(number as i32)
    .fetch_optional(db)
    .await
}

/// An app's newest builds, newest first.
pub async fn list(db: &PgPool, app_id: Uuid, limit: i64) -> sqlx::Result<Vec<BuildRow>> {
    sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM builds b LEFT JOIN nodes n ON n.id = b.node_id
         WHERE b.app_id = $1 ORDER BY b.number DESC LIMIT $2"
    ))
    .bind(app_id)
    .bind(limit)
    .fetch_all(db)
    .await
}

/// A queued build starts on `node`; false when it is no longer queued (cancelled meanwhile).
pub async fn start(db: &PgPool, id: Uuid, node: Uuid, image: &str) -> sqlx::Result<bool> {
    let done = sqlx::query(
        "UPDATE builds SET status = 'running', node_id = $2, image = $3, started_at = now()
         WHERE id = $1 AND status = 'queued'",
    )
    .bind(id)
    .bind(node)
    .bind(image)
    .execute(db)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Ends a build that has not ended yet: its final status, why (for a failure or a
/// cancellation), and the release it made. False when it had ended already.
pub async fn finish(
    db: &PgPool,
    id: Uuid,
    status: BuildStatus,
    message: Option<&str>,
    release: Option<i32>,
) -> sqlx::Result<bool> {
    let done = sqlx::query(
        "UPDATE builds SET status = $2, message = $3, release = $4, finished_at = now()
         WHERE id = $1 AND status IN ('queued', 'running')",
    )
    .bind(id)
    .bind(status.as_str())
    .bind(message)
    .bind(release)
    .execute(db)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// At start: builds a previous run of the server left queued or running are failed (their
/// pushes were cut off with it); returns how many.
pub async fn fail_interrupted(db: &PgPool) -> sqlx::Result<u64> {
    let done = sqlx::query(
        "UPDATE builds SET status = 'failed', finished_at = now(),
             message = 'the server restarted during the build; push again'
         WHERE status IN ('queued', 'running')",
    )
    .execute(db)
    .await?;
    Ok(done.rows_affected())
}

/// A build's log: its last `limit` lines, oldest first, and whether older ones were left out.
pub async fn log(
    db: &PgPool,
    app_id: Uuid,
    number: u32,
    limit: usize,
) -> sqlx::Result<(Vec<(OffsetDateTime, String)>, bool)> {
    let mut lines: Vec<(OffsetDateTime, String)> = sqlx::query_as(
        "SELECT ts, line FROM log_lines WHERE app_id = $1 AND build = $2 AND stream = 'build'
         ORDER BY ts DESC, id DESC LIMIT $3",
    )
    .bind(app_id)
    .bind(number as i32)
    .bind(limit as i64 + 1)
    .fetch_all(db)
    .await?;
    let truncated = lines.len() > limit;
    lines.truncate(limit);
    lines.reverse();
    Ok((lines, truncated))
}
