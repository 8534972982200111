//! Every [`STEP_SECONDS`]: the router's counters and the agents' usage become points, which
//! are stored, shown to live viewers, and every minute summed up as history.

use std::time::Duration;

use gantry_common::metrics::{MetricPoint, MetricSeries};
use gantry_orchestrator::router::Router;
use sqlx::PgPool;
use time::OffsetDateTime;
use uuid::Uuid;

use super::points::{self, Counters, Snapshot, MINUTE_SECONDS, STEP_SECONDS};
use crate::state::AppState;

/// How long points of each step are kept.
const KEEP_STEPS: Duration = Duration::from_secs(3600);
const KEEP_MINUTES: Duration = Duration::from_secs(7 * 24 * 3600);

fn snapshot(router: &Router) -> Snapshot {
    router
        .stats()
        .into_iter()
        .flat_map(|app| {
            app.sets
                .into_iter()
                .map(move |(version, stats)| ((app.app_id, version), Counters::of(&stats)))
        })
        .collect()
}

pub async fn run_forever(state: AppState) {
    let mut tick = tokio::time::interval(Duration::from_secs(u64::from(STEP_SECONDS)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut before = snapshot(&state.router);
    let mut minute_before = before.clone();
    let per_minute = MINUTE_SECONDS / STEP_SECONDS;
    let mut ticks: u32 = 0;
    tick.tick().await;
    loop {
        tick.tick().await;
        ticks = ticks.wrapping_add(1);
        let now = snapshot(&state.router);
        let usage = state.metrics.usage.current();
        let ts = OffsetDateTime::now_utc();
        let mut batch = points::points(ts, STEP_SECONDS, &before, &now, &usage);
        before = now;
        let recent = batch.clone();
        if ticks.is_multiple_of(per_minute) {
            batch.extend(points::points(
                ts,
                MINUTE_SECONDS,
                &minute_before,
                &before,
                &usage,
            ));
            minute_before = before.clone();
        }
        if let Err(e) = store(&state.db, &batch).await {
            tracing::warn!("failed to store metric points: {e}");
        }
        let mut by_app: std::collections::HashMap<Uuid, Vec<MetricPoint>> = Default::default();
        for (app, point) in recent {
            by_app.entry(app).or_default().push(point);
        }
        for (app, points) in by_app {
            state.metrics.hub.publish(app, points);
        }
        if ticks.is_multiple_of(3600 / STEP_SECONDS) {
            if let Err(e) = expire(&state.db).await {
                tracing::warn!("failed to expire metric points: {e}");
            }
        }
    }
}

async fn store(db: &PgPool, batch: &[(Uuid, MetricPoint)]) -> sqlx::Result<()> {
    if batch.is_empty() {
        return Ok(());
    }
    let col =
        |f: fn(&MetricPoint) -> Option<i64>| batch.iter().map(|(_, p)| f(p)).collect::<Vec<_>>();
    let float =
        |f: fn(&MetricPoint) -> Option<f64>| batch.iter().map(|(_, p)| f(p)).collect::<Vec<_>>();
    sqlx::query(
        "INSERT INTO metric_points (app_id, step_seconds, ts, release, instances, cpu_millis,
             memory_bytes, rx_bytes_per_second, tx_bytes_per_second, requests_per_second,
             error_percent, p50_ms, p99_ms)
         SELECT p.* FROM UNNEST($1::uuid[], $2::int[], $3::timestamptz[], $4::int[], $5::int[],
                                $6::int[], $7::bigint[], $8::bigint[], $9::bigint[],
                                $10::float8[], $11::float8[], $12::float8[], $13::float8[])
                         AS p(app_id, step_seconds, ts, release, instances, cpu_millis,
                              memory_bytes, rx, tx, requests, errors, p50, p99)
         -- An app deleted since the router counted it has no points (one such row would fail
         -- the whole tick's insert on the foreign key).
         WHERE EXISTS (SELECT 1 FROM apps a WHERE a.id = p.app_id)
         ON CONFLICT DO NOTHING",
    )
    .bind(batch.iter().map(|(app, _)| *app).collect::<Vec<_>>())
    .bind(
        batch
            .iter()
            .map(|(_, p)| p.step_seconds as i32)
            .collect::<Vec<_>>(),
    )
    .bind(batch.iter().map(|(_, p)| p.ts).collect::<Vec<_>>())
    .bind(
        batch
            .iter()
            .map(|(_, p)| p.release as i32)
            .collect::<Vec<_>>(),
    )
    .bind(
        batch
            .iter()
            .map(|(_, p)| p.instances as i32)
            .collect::<Vec<_>>(),
    )
    .bind(
        batch
            .iter()
            .map(|(_, p)| p.cpu_millis.map(|c| c as i32))
            .collect::<Vec<_>>(),
    )
    .bind(col(|p| p.memory_bytes.map(|v| v as i64)))
    .bind(col(|p| p.rx_bytes_per_second.map(|v| v as i64)))
    .bind(col(|p| p.tx_bytes_per_second.map(|v| v as i64)))
    .bind(
        batch
            .iter()
            .map(|(_, p)| p.requests_per_second)
            .collect::<Vec<_>>(),
    )
    .bind(float(|p| p.error_percent))
    .bind(float(|p| p.p50_ms))
    .bind(float(|p| p.p99_ms))
    .execute(db)
    .await?;
    Ok(())
}

async fn expire(db: &PgPool) -> sqlx::Result<()> {
    sqlx::query(
        "DELETE FROM metric_points
         WHERE (step_seconds = $1 AND ts < now() - make_interval(secs => $2))
            OR (step_seconds = $3 AND ts < now() - make_interval(secs => $4))",
    )
    .bind(STEP_SECONDS as i32)
    .bind(KEEP_STEPS.as_secs_f64())
    .bind(MINUTE_SECONDS as i32)
    .bind(KEEP_MINUTES.as_secs_f64())
    .execute(db)
    .await?;
    Ok(())
}

#[derive(sqlx::FromRow)]
struct Row {
    ts: OffsetDateTime,
    release: i32,
    step_seconds: i32,
    instances: i32,
    cpu_millis: Option<i32>,
    memory_bytes: Option<i64>,
    rx_bytes_per_second: Option<i64>,
    tx_bytes_per_second: Option<i64>,
    requests_per_second: f64,
    error_percent: Option<f64>,
    p50_ms: Option<f64>,
    p99_ms: Option<f64>,
}

/// The step a range is read at: full resolution while it lies within the last hour and the
/// asked step is finer than a minute, one-minute points otherwise.
pub fn step_for(from: OffsetDateTime, now: OffsetDateTime, asked: Option<u32>) -> u32 {
    let recent = now - from <= time::Duration::try_from(KEEP_STEPS).unwrap_or(time::Duration::HOUR);
    match asked {
        Some(step) if step >= MINUTE_SECONDS => MINUTE_SECONDS,
        _ if recent => STEP_SECONDS,
        _ => MINUTE_SECONDS,
    }
}

/// The app's points from `from` to `to` at `step_seconds`, oldest first (at most `limit`).
pub async fn series(
    db: &PgPool,
    app_id: Uuid,
    from: OffsetDateTime,
    to: OffsetDateTime,
    step_seconds: u32,
    limit: i64,
) -> sqlx::Result<MetricSeries> {
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT ts, release, step_seconds, instances, cpu_millis, memory_bytes,
                rx_bytes_per_second, tx_bytes_per_second, requests_per_second, error_percent,
                p50_ms, p99_ms
         FROM metric_points
         WHERE app_id = $1 AND step_seconds = $2 AND ts >= $3 AND ts <= $4
         ORDER BY ts, release LIMIT $5",
    )
    .bind(app_id)
    .bind(step_seconds as i32)
    .bind(from)
    .bind(to)
    .bind(limit)
    .fetch_all(db)
    .await?;
    let points = rows
        .into_iter()
        .map(|r| MetricPoint {
            ts: r.ts,
            release: r.release.max(0) as u32,
            step_seconds: r.step_seconds.max(0) as u32,
            instances: r.instances.max(0) as u32,
            cpu_millis: r.cpu_millis.map(|v| v.max(0) as u32),
            memory_bytes: r.memory_bytes.map(|v| v.max(0) as u64),
            rx_bytes_per_second: r.rx_bytes_per_second.map(|v| v.max(0) as u64),
            tx_bytes_per_second: r.tx_bytes_per_second.map(|v| v.max(0) as u64),
            requests_per_second: r.requests_per_second,
            error_percent: r.error_percent,
            p50_ms: r.p50_ms,
            p99_ms: r.p99_ms,
        })
        .collect();
    Ok(MetricSeries {
        step_seconds,
        points,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recent_ranges_are_read_at_full_resolution_unless_a_minute_is_asked() {
        let now = OffsetDateTime::UNIX_EPOCH + time::Duration::days(100);
        let ten_minutes = now - time::Duration::minutes(10);
        let a_day = now - time::Duration::days(1);
        assert_eq!(step_for(ten_minutes, now, None), 5);
        assert_eq!(step_for(ten_minutes, now, Some(5)), 5);
        assert_eq!(step_for(ten_minutes, now, Some(60)), 60);
        assert_eq!(step_for(a_day, now, None), 60);
        assert_eq!(step_for(a_day, now, Some(5)), 60);
    }
}
