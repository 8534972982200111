//! Platform events in an app's log: a release created, instances changing state, scaling, a
//! node lost. They share the table, the history and the live stream with the containers'
//! lines, with `stream = "event"`.
//!
//! Recording an event never fails its caller: the change it describes has happened, so a
//! failure to write it is logged and the caller goes on.

use gantry_common::logs::{LogItem, LogStream};
use sqlx::PgPool;
use time::OffsetDateTime;
use uuid::Uuid;

use super::hub::LiveLine;
use super::{search, storable, LogHub};

/// One event of one app.
#[derive(Debug, Clone)]
pub struct Event {
    pub team_id: Uuid,
    pub app_id: Uuid,
    /// The release it concerns, if one.
    pub release: Option<i32>,
    /// The instance it concerns, if one.
    pub instance: Option<Uuid>,
    pub text: String,
}

/// Records events (stamped now) and shows them to live viewers.
pub async fn record(db: &PgPool, hub: &LogHub, events: Vec<Event>) {
    if events.is_empty() {
        return;
    }
    if let Err(e) = insert(db, hub, events).await {
        tracing::warn!("failed to record events: {e}");
    }
}

async fn insert(db: &PgPool, hub: &LogHub, events: Vec<Event>) -> sqlx::Result<()> {
    let lines = events
        .into_iter()
        .map(|e| PlatformLine {
            team_id: e.team_id,
            app_id: e.app_id,
            release: e.release,
            instance: e.instance,
            build: None,
            text: e.text,
        })
        .collect();
    insert_lines(db, hub, LogStream::Event, lines).await
}

/// Lines of a build's output: stored in the app's log (stream `build`, with the build's
/// number) and shown to live viewers, stamped now. Unlike events, a failure is the caller's.
pub async fn record_build_lines(
    db: &PgPool,
    hub: &LogHub,
    team_id: Uuid,
    app_id: Uuid,
    build: i32,
    lines: Vec<String>,
) -> sqlx::Result<()> {
    let lines = lines
        .into_iter()
        .map(|text| PlatformLine {
            team_id,
            app_id,
            release: None,
            instance: None,
            build: Some(build),
            text,
        })
        .collect();
    insert_lines(db, hub, LogStream::Build, lines).await
}

/// A line the platform writes (not a container).
struct PlatformLine {
    team_id: Uuid,
    app_id: Uuid,
    release: Option<i32>,
    instance: Option<Uuid>,
    build: Option<i32>,
    text: String,
}

async fn insert_lines(
    db: &PgPool,
    hub: &LogHub,
    stream: LogStream,
    lines: Vec<PlatformLine>,
) -> sqlx::Result<()> {
    if lines.is_empty() {
        return Ok(());
    }
    let now = OffsetDateTime::now_utc();
    let texts: Vec<String> = lines
        .iter()
        .map(|e| storable(&e.text).into_owned())
        .collect();
    let mut tx = db.begin().await?;
    let ids: Vec<i64> = sqlx::query_scalar(
        "INSERT INTO log_lines (team_id, app_id, ts, instance_id, release, stream, line, build)
         SELECT t, a, $3, i, r, $7, l, b
         FROM UNNEST($1::uuid[], $2::uuid[], $4::uuid[], $5::int[], $6::text[], $8::int[])
             AS x(t, a, i, r, l, b)
         RETURNING id",
    )
    .bind(lines.iter().map(|e| e.team_id).collect::<Vec<_>>())
    .bind(lines.iter().map(|e| e.app_id).collect::<Vec<_>>())
    .bind(now)
    .bind(lines.iter().map(|e| e.instance).collect::<Vec<_>>())
    .bind(lines.iter().map(|e| e.release).collect::<Vec<_>>())
    .bind(&texts)
    .bind(stream.as_str())
    .bind(lines.iter().map(|e| e.build).collect::<Vec<_>>())
    .fetch_all(&mut *tx)
    .await?;
    let chunks =
        search::chunks(
            lines
                .iter()
                .zip(&texts)
                .zip(&ids)
                .map(|((e, text), &id)| search::Stored {
                    team_id: e.team_id,
                    app_id: e.app_id,
                    id,
                    ts: now,
                    line: text,
                }),
        );
    search::insert(&mut tx, &chunks).await?;
    tx.commit().await?;
    for ((line, text), id) in lines.into_iter().zip(texts).zip(ids) {
        let item = LogItem {
            ts: now,
            instance: line.instance,
            release: line.release.and_then(|r| u32::try_from(r).ok()),
            stream,
            line: text,
            build: line.build.and_then(|b| u32::try_from(b).ok()),
        };
        hub.publish(line.app_id, [LiveLine::new(id, item)]);
    }
    Ok(())
}
