//! Storing the lines agents ship: skip what is already stored, write the rest in one
//! statement, move the instances' cursors, then acknowledge and show them live.

use std::collections::{BTreeMap, HashMap};

use gantry_common::agent::{cut_line, LogCursor, ShippedLine};
use gantry_common::logs::{LogItem, LogStream};
use sqlx::PgPool;
use time::OffsetDateTime;
use uuid::Uuid;

use super::events::{self, Event};
use super::hub::LiveLine;
use super::{partitions, search, storable};
use crate::state::App;

/// Where an instance's lines go, and what of it is already stored.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct Target {
    pub instance_id: Uuid,
    pub team_id: Uuid,
    pub app_id: Uuid,
    pub release: Option<i32>,
    /// The last line stored, if any.
    pub seq: Option<i64>,
    pub ts: Option<OffsetDateTime>,
}

/// A stamp as Postgres keeps it (to the microsecond) and the nanoseconds it loses.
fn split_nanos(ts: OffsetDateTime) -> (OffsetDateTime, i32) {
    let nanos = (ts.nanosecond() % 1000) as i32;
    (ts - time::Duration::nanoseconds(i64::from(nanos)), nanos)
}

/// A cursor's stamp from its two columns.
fn join_nanos(ts: OffsetDateTime, nanos: i32) -> OffsetDateTime {
    ts + time::Duration::nanoseconds(i64::from(nanos.clamp(0, 999)))
}

/// A line to insert.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub team_id: Uuid,
    pub app_id: Uuid,
    pub instance_id: Uuid,
    pub release: Option<i32>,
    pub ts: OffsetDateTime,
    pub stream: LogStream,
    pub line: String,
}

/// What to do with a batch. Pure.
#[derive(Debug, Default, PartialEq)]
pub struct Plan {
    pub rows: Vec<Row>,
    /// Per instance, its cursor once the batch is stored: what the agent is told.
    pub acks: BTreeMap<Uuid, LogCursor>,
    /// Lines not stored because their instance is not (or no longer) known on this node.
    pub unknown: usize,
    /// Lines not stored because they were stamped before the retention window.
    pub expired: usize,
}

/// Skips lines already stored (at or below the instance's cursor), unknown instances and
/// lines older than `oldest`; stamps lines from the future (a node's clock ahead) `now`.
pub fn plan(
    lines: &[ShippedLine],
    targets: &HashMap<Uuid, Target>,
    now: OffsetDateTime,
    oldest: OffsetDateTime,
) -> Plan {
    let mut plan = Plan::default();
    for line in lines {
        let ack = plan.acks.entry(line.instance).or_insert(LogCursor {
            seq: 0,
            ts: line.ts,
        });
        let Some(target) = targets.get(&line.instance) else {
            plan.unknown += 1;
            if line.seq > ack.seq {
                *ack = LogCursor {
                    seq: line.seq,
                    ts: line.ts,
                };
            }
            continue;
        };
        let stored = target.seq.map_or(0, |s| s.max(0) as u64);
        if ack.seq < stored {
            *ack = LogCursor {
                seq: stored,
                ts: target.ts.unwrap_or(line.ts),
            };
        }
        if line.seq <= ack.seq {
            continue; // a resend
        }
        let ts = line.ts.min(now);
        *ack = LogCursor { seq: line.seq, ts };
        if line.stream == LogStream::Event {
            continue; // agents speak for containers, not for the platform
        }
        if ts < oldest {
            plan.expired += 1;
            continue;
        }
        plan.rows.push(Row {
            team_id: target.team_id,
            app_id: target.app_id,
            instance_id: line.instance,
            release: target.release,
            ts,
            stream: line.stream,
            line: storable(&cut_line(line.line.clone())).into_owned(),
        });
    }
    plan
}

/// One connection at a time stores a node's lines. When an agent reconnects, its old
/// connection may still be storing a batch that the agent is about to send again; the new
/// connection reads the cursors (and dedups against them) only after the old one finished,
/// so a resent line is never stored twice.
#[derive(Default)]
pub struct Writers {
    nodes: std::sync::Mutex<HashMap<Uuid, std::sync::Arc<tokio::sync::Mutex<()>>>>,
}

impl Writers {
    /// Waits (up to `patience`) for the node's previous connection to finish storing.
    pub async fn acquire(
        &self,
        node_id: Uuid,
        patience: std::time::Duration,
    ) -> Option<tokio::sync::OwnedMutexGuard<()>> {
        let lock = self
            .nodes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(node_id)
            .or_default()
            .clone();
        tokio::time::timeout(patience, lock.lock_owned()).await.ok()
    }
}

/// The last line stored of each instance on a node: sent to its agent after `welcome`.
pub async fn cursors_of_node(
    db: &PgPool,
    node_id: Uuid,
) -> sqlx::Result<BTreeMap<Uuid, LogCursor>> {
    let rows: Vec<(Uuid, i64, OffsetDateTime, i32)> =
        sqlx::query_as("SELECT instance_id, seq, ts, ts_nanos FROM log_cursors WHERE node_id = $1")
            .bind(node_id)
            .fetch_all(db)
            .await?;
    Ok(rows
        .into_iter()
        .map(|(id, seq, ts, nanos)| {
            (
                id,
                LogCursor {
                    seq: seq.max(0) as u64,
                    ts: join_nanos(ts, nanos),
                },
            )
        })
        .collect())
}

/// A target as read, its cursor's stamp still in two columns.
#[derive(sqlx::FromRow)]
struct TargetRow {
    #[sqlx(flatten)]
    target: Target,
    ts_nanos: Option<i32>,
}

async fn targets(db: &PgPool, node_id: Uuid, ids: &[Uuid]) -> sqlx::Result<HashMap<Uuid, Target>> {
    // The instance's row while it exists; its cursor (which remembers the app and release)
    // after it is gone.
    let rows: Vec<TargetRow> = sqlx::query_as(
        "SELECT i.id AS instance_id, i.team_id, i.app_id, rs.version AS release, c.seq, c.ts,
                c.ts_nanos
         FROM instances i
         LEFT JOIN release_sets rs ON rs.release_id = i.release_id
         LEFT JOIN log_cursors c ON c.instance_id = i.id
         WHERE i.id = ANY($1) AND i.node_id = $2
         UNION ALL
         SELECT c.instance_id, c.team_id, c.app_id, c.release, c.seq, c.ts, c.ts_nanos
         FROM log_cursors c
         WHERE c.instance_id = ANY($1) AND c.node_id = $2
           AND NOT EXISTS (SELECT 1 FROM instances i WHERE i.id = c.instance_id AND i.node_id = $2)",
    )
    .bind(ids)
    .bind(node_id)
    .fetch_all(db)
    .await?;
    Ok(rows
        .into_iter()
        .map(
            |TargetRow {
                 mut target,
                 ts_nanos,
             }| {
                target.ts = target.ts.map(|ts| join_nanos(ts, ts_nanos.unwrap_or(0)));
                (target.instance_id, target)
            },
        )
        .collect())
}

/// Stores a batch from the agent of `node_id`; answers the cursors to acknowledge.
pub async fn store_batch(
    state: &App,
    node_id: Uuid,
    lines: Vec<ShippedLine>,
    dropped: BTreeMap<Uuid, u64>,
) -> anyhow::Result<BTreeMap<Uuid, LogCursor>> {
    let mut ids: Vec<Uuid> = lines.iter().map(|l| l.instance).collect();
    ids.extend(dropped.keys());
    ids.sort_unstable();
    ids.dedup();
    let now = OffsetDateTime::now_utc();
    let oldest = partitions::first_day_kept(now.date(), state.logs.retention_days)
        .midnight()
        .assume_utc();
    // (An app deleted meanwhile does not fail the insert: the log tables have no foreign
    // key to apps. What is stored for it stays behind, invisible, until it expires.)
    let targets = targets(&state.db, node_id, &ids).await?;
    let plan = plan(&lines, &targets, now, oldest);
    let ids = insert(&state.db, node_id, &plan, &targets).await?;
    if plan.unknown > 0 || plan.expired > 0 {
        tracing::debug!(
            node.id = %node_id,
            "skipped {} log lines of unknown instances and {} past retention",
            plan.unknown,
            plan.expired
        );
    }
    state
        .metrics
        .log_lines_stored
        .fetch_add(ids.len() as u64, std::sync::atomic::Ordering::Relaxed);
    let mut by_app: HashMap<Uuid, Vec<LiveLine>> = HashMap::new();
    for (row, id) in plan.rows.into_iter().zip(ids) {
        let item = LogItem {
            ts: row.ts,
            instance: Some(row.instance_id),
            release: row.release.and_then(|r| u32::try_from(r).ok()),
            stream: row.stream,
            line: row.line,
            build: None,
        };
        by_app
            .entry(row.app_id)
            .or_default()
            .push(LiveLine::new(id, item));
    }
    for (app, lines) in by_app {
        state.logs.hub.publish(app, lines);
    }
    let dropped_events = dropped
        .into_iter()
        .filter_map(|(instance, count)| {
            let t = targets.get(&instance)?;
            Some(Event {
                team_id: t.team_id,
                app_id: t.app_id,
                release: t.release,
                instance: Some(instance),
                text: format!(
                    "{count} log lines of instance {instance} were dropped by its node's agent (its buffer was full while the server was unreachable)"
                ),
            })
        })
        .collect();
    events::record(&state.db, &state.logs.hub, dropped_events).await;
    Ok(plan.acks)
}

/// Inserts the rows, their search chunks and moves the cursors in one transaction; answers the
/// rows' ids in order.
async fn insert(
    db: &PgPool,
    node_id: Uuid,
    plan: &Plan,
    targets: &HashMap<Uuid, Target>,
) -> sqlx::Result<Vec<i64>> {
    let mut tx = db.begin().await?;
    let rows = &plan.rows;
    let ids: Vec<i64> = if rows.is_empty() {
        Vec::new()
    } else {
        sqlx::query_scalar(
            "INSERT INTO log_lines (team_id, app_id, ts, instance_id, release, stream, line)
             SELECT * FROM UNNEST($1::uuid[], $2::uuid[], $3::timestamptz[], $4::uuid[],
                                  $5::int[], $6::text[], $7::text[])
             RETURNING id",
        )
        .bind(rows.iter().map(|r| r.team_id).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.app_id).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.ts).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.instance_id).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.release).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.stream.as_str()).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.line.as_str()).collect::<Vec<_>>())
        .fetch_all(&mut *tx)
        .await?
    };
    let chunks = search::chunks(rows.iter().zip(&ids).map(|(r, &id)| search::Stored {
        team_id: r.team_id,
        app_id: r.app_id,
        id,
        ts: r.ts,
        line: &r.line,
    }));
    search::insert(&mut tx, &chunks).await?;
    // Cursors of known instances only: an unknown one has nowhere to point.
    let moved: Vec<(&Uuid, &LogCursor, &Target)> = plan
        .acks
        .iter()
        .filter_map(|(id, c)| Some((id, c, targets.get(id)?)))
        .filter(|(_, c, t)| t.seq.is_none_or(|s| (c.seq as i64) > s))
        .collect();
    if !moved.is_empty() {
        let (micros, nanos): (Vec<OffsetDateTime>, Vec<i32>) =
            moved.iter().map(|(_, c, _)| split_nanos(c.ts)).unzip();
        sqlx::query(
            "INSERT INTO log_cursors (instance_id, node_id, team_id, app_id, release, seq, ts,
                                      ts_nanos)
             SELECT i, $1, t, a, r, s, ts, n
             FROM UNNEST($2::uuid[], $3::uuid[], $4::uuid[], $5::int[], $6::bigint[],
                         $7::timestamptz[], $8::int[]) AS x(i, t, a, r, s, ts, n)
             ON CONFLICT (instance_id) DO UPDATE
                 SET seq = GREATEST(log_cursors.seq, EXCLUDED.seq),
                     ts = CASE WHEN (EXCLUDED.ts, EXCLUDED.ts_nanos)
                                    > (log_cursors.ts, log_cursors.ts_nanos)
                               THEN EXCLUDED.ts ELSE log_cursors.ts END,
                     ts_nanos = CASE WHEN (EXCLUDED.ts, EXCLUDED.ts_nanos)
                                          > (log_cursors.ts, log_cursors.ts_nanos)
                                     THEN EXCLUDED.ts_nanos ELSE log_cursors.ts_nanos END",
        )
        .bind(node_id)
        .bind(moved.iter().map(|(id, _, _)| **id).collect::<Vec<_>>())
        .bind(moved.iter().map(|(_, _, t)| t.team_id).collect::<Vec<_>>())
        .bind(moved.iter().map(|(_, _, t)| t.app_id).collect::<Vec<_>>())
        .bind(moved.iter().map(|(_, _, t)| t.release).collect::<Vec<_>>())
        .bind(
            moved
                .iter()
                .map(|(_, c, _)| c.seq as i64)
                .collect::<Vec<_>>(),
        )
        .bind(micros)
        .bind(nanos)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok(ids)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: i64) -> OffsetDateTime {
        OffsetDateTime::UNIX_EPOCH + time::Duration::seconds(s)
    }

    fn line(instance: Uuid, seq: u64, ts: i64) -> ShippedLine {
        ShippedLine {
            instance,
            seq,
            ts: at(ts),
            stream: LogStream::Stdout,
            line: format!("line {seq}\0"),
        }
    }

    fn target(instance: Uuid, seq: Option<i64>) -> Target {
        Target {
            instance_id: instance,
            team_id: Uuid::from_u128(10),
            app_id: Uuid::from_u128(20),
            release: Some(3),
            seq,
            ts: seq.map(at),
        }
    }

    #[test]
    fn resends_are_skipped_and_the_cursor_moves_to_the_last_line() {
        let a = Uuid::from_u128(1);
        let targets = HashMap::from([(a, target(a, Some(2)))]);
        let lines: Vec<_> = (1..=4).map(|s| line(a, s, s as i64)).collect();
        let plan = plan(&lines, &targets, at(1000), at(0));
        assert_eq!(
            plan.rows
                .iter()
                .map(|r| r.line.as_str())
                .collect::<Vec<_>>(),
            ["line 3\u{FFFD}", "line 4\u{FFFD}"]
        );
        assert_eq!(plan.acks[&a], LogCursor { seq: 4, ts: at(4) });
        assert_eq!(plan.rows[0].release, Some(3));
    }

    #[test]
    fn a_batch_of_resends_only_acknowledges_what_is_stored() {
        let a = Uuid::from_u128(1);
        let targets = HashMap::from([(a, target(a, Some(9)))]);
        let plan = plan(&[line(a, 5, 5)], &targets, at(1000), at(0));
        assert!(plan.rows.is_empty());
        assert_eq!(plan.acks[&a], LogCursor { seq: 9, ts: at(9) });
    }

    #[test]
    fn unknown_instances_are_acknowledged_but_not_stored() {
        let stranger = Uuid::from_u128(7);
        let plan = plan(
            &[line(stranger, 1, 1), line(stranger, 2, 2)],
            &HashMap::new(),
            at(10),
            at(0),
        );
        assert!(plan.rows.is_empty());
        assert_eq!(plan.unknown, 2);
        assert_eq!(plan.acks[&stranger].seq, 2);
    }

    #[test]
    fn future_stamps_become_now_and_expired_lines_are_skipped() {
        let a = Uuid::from_u128(1);
        let targets = HashMap::from([(a, target(a, None))]);
        let plan = plan(
            &[line(a, 1, 5), line(a, 2, 50), line(a, 3, 5000)],
            &targets,
            at(100),
            at(10),
        );
        assert_eq!(plan.expired, 1);
        assert_eq!(
            plan.rows.iter().map(|r| r.ts).collect::<Vec<_>>(),
            [at(50), at(100)]
        );
        assert_eq!(
            plan.acks[&a],
            LogCursor {
                seq: 3,
                ts: at(100)
            }
        );
    }

    #[test]
    fn a_stamp_splits_into_microseconds_and_the_nanoseconds_postgres_drops() {
        let ts = at(100) + time::Duration::nanoseconds(123_456_789);
        let (micros, nanos) = split_nanos(ts);
        assert_eq!(nanos, 789);
        assert_eq!(micros.nanosecond() % 1000, 0);
        assert_eq!(join_nanos(micros, nanos), ts);
    }

    #[test]
    fn agents_cannot_write_events() {
        let a = Uuid::from_u128(1);
        let targets = HashMap::from([(a, target(a, None))]);
        let mut forged = line(a, 1, 1);
        forged.stream = LogStream::Event;
        let plan = plan(&[forged], &targets, at(10), at(0));
        assert!(plan.rows.is_empty());
        assert_eq!(plan.acks[&a].seq, 1);
    }
}
