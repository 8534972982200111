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
    let now = OffsetDateTime::now_utc();
    let texts: Vec<String> = events
        .iter()
        .map(|e| storable(&e.text).into_owned())
        .collect();
    let mut tx = db.begin().await?;
    let ids: Vec<i64> = sqlx::query_scalar(
        "INSERT INTO log_lines (team_id, app_id, ts, instance_id, release, stream, line)
         SELECT t, a, $3, i, r, 'event', l
         FROM UNNEST($1::uuid[], $2::uuid[], $4::uuid[], $5::int[], $6::text[]) AS x(t, a, i, r, l)
         RETURNING id",
    )
    .bind(events.iter().map(|e| e.team_id).collect::<Vec<_>>())
    .bind(events.iter().map(|e| e.app_id).collect::<Vec<_>>())
    .bind(now)
    .bind(events.iter().map(|e| e.instance).collect::<Vec<_>>())
    .bind(events.iter().map(|e| e.release).collect::<Vec<_>>())
    .bind(&texts)
    .fetch_all(&mut *tx)
    .await?;
    let chunks = search::chunks(events.iter().zip(&texts).zip(&ids).map(|((e, text), &id)| {
        search::Stored {
            team_id: e.team_id,
            app_id: e.app_id,
            id,
            ts: now,
            line: text,
        }
    }));
    search::insert(&mut tx, &chunks).await?;
    tx.commit().await?;
    for ((event, text), id) in events.into_iter().zip(texts).zip(ids) {
        let item = LogItem {
            ts: now,
            instance: event.instance,
            release: event.release.and_then(|r| u32::try_from(r).ok()),
            stream: LogStream::Event,
            line: text,
        };
        hub.publish(event.app_id, [LiveLine::new(id, item)]);
    }
    Ok(())
}
