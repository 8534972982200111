//! The log table's day partitions: created ahead of need, dropped past retention, so expiry
//! costs a `DROP TABLE` rather than deleting rows one by one. Teams that keep less than the
//! platform have their older rows deleted (an indexed range per app).

use std::time::Duration;

use sqlx::PgPool;
use time::{Date, OffsetDateTime};

use crate::state::AppState;

const PREFIX: &str = "log_lines_p";
/// Days created ahead of today, so lines stamped around midnight always have a home.
const DAYS_AHEAD: i64 = 2;
/// How often partitions are created and expired.
pub const EVERY: Duration = Duration::from_secs(3600);

/// What to create and drop. Pure.
#[derive(Debug, PartialEq, Eq)]
pub struct Plan {
    /// Days that need a partition.
    pub create: Vec<Date>,
    /// Partitions (by name) wholly older than the retention window.
    pub drop: Vec<String>,
}

fn name(day: Date) -> String {
    format!(
        "{PREFIX}{:04}{:02}{:02}",
        day.year(),
        u8::from(day.month()),
        day.day()
    )
}

fn day_of(name: &str) -> Option<Date> {
    let digits = name.strip_prefix(PREFIX)?;
    if digits.len() != 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let year: i32 = digits[0..4].parse().ok()?;
    let month: u8 = digits[4..6].parse().ok()?;
    let day: u8 = digits[6..8].parse().ok()?;
    Date::from_calendar_date(year, time::Month::try_from(month).ok()?, day).ok()
}

/// The first day kept: lines older than its start are past retention.
pub fn first_day_kept(today: Date, retention_days: u32) -> Date {
    today - time::Duration::days(i64::from(retention_days))
}

pub fn plan(today: Date, retention_days: u32, existing: &[String]) -> Plan {
    let first = first_day_kept(today, retention_days);
    let have: Vec<Date> = existing.iter().filter_map(|n| day_of(n)).collect();
    let mut create = Vec::new();
    let mut day = first;
    while day <= today + time::Duration::days(DAYS_AHEAD) {
        if !have.contains(&day) {
            create.push(day);
        }
        day = day.next_day().expect("a date in range");
    }
    let drop = existing
        .iter()
        .filter(|n| day_of(n).is_some_and(|d| d < first))
        .cloned()
        .collect();
    Plan { create, drop }
}

/// Creates the partitions lines may need and drops expired ones; deletes what teams that keep
/// less should no longer have.
pub async fn maintain(db: &PgPool, retention_days: u32) -> sqlx::Result<()> {
    let existing: Vec<String> = sqlx::query_scalar(
        "SELECT c.relname::text FROM pg_inherits i
         JOIN pg_class c ON c.oid = i.inhrelid
         JOIN pg_class p ON p.oid = i.inhparent
         WHERE p.relname = 'log_lines'",
    )
    .fetch_all(db)
    .await?;
    let today = OffsetDateTime::now_utc().date();
    let plan = plan(today, retention_days, &existing);
    for day in plan.create {
        let next = day.next_day().expect("a date in range");
        // Names and bounds are made here from dates, never from input.
        let ddl = format!(
            "CREATE TABLE IF NOT EXISTS {} PARTITION OF log_lines
             FOR VALUES FROM ('{day} 00:00:00+00') TO ('{next} 00:00:00+00')",
            name(day)
        );
        sqlx::query(&ddl).execute(db).await?;
    }
    for old in plan.drop {
        tracing::info!("dropping log partition {old}: past the {retention_days}-day retention");
        sqlx::query(&format!("DROP TABLE IF EXISTS {old}"))
            .execute(db)
            .await?;
    }
    sqlx::query(
        "DELETE FROM log_lines l USING teams t
         WHERE l.team_id = t.id AND t.log_retention_days IS NOT NULL
           AND t.log_retention_days < $1
           AND l.ts < now() - make_interval(days => t.log_retention_days)",
    )
    .bind(retention_days as i32)
    .execute(db)
    .await?;
    // The search chunks of lines gone (a chunk goes once its newest line has).
    sqlx::query(
        "DELETE FROM log_chunks c
         WHERE c.max_ts < $2
            OR c.max_ts < now() - make_interval(days => (
                   SELECT t.log_retention_days FROM teams t
                   WHERE t.id = c.team_id AND t.log_retention_days < $1))",
    )
    .bind(retention_days as i32)
    .bind(
        first_day_kept(today, retention_days)
            .midnight()
            .assume_utc(),
    )
    .execute(db)
    .await?;
    // Cursors of instances that are gone and have written nothing within retention.
    sqlx::query(
        "DELETE FROM log_cursors c
         WHERE c.ts < now() - make_interval(days => $1)
           AND NOT EXISTS (SELECT 1 FROM instances i WHERE i.id = c.instance_id)",
    )
    .bind(retention_days as i32)
    .execute(db)
    .await?;
    Ok(())
}

pub async fn run_hourly(state: AppState) {
    let mut tick = tokio::time::interval(EVERY);
    tick.tick().await; // the first maintenance ran at start
    loop {
        tick.tick().await;
        if let Err(e) = maintain(&state.db, state.logs.retention_days).await {
            tracing::warn!("log partition maintenance failed (retrying in an hour): {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::date;

    #[test]
    fn creates_the_retention_window_and_two_days_ahead() {
        let plan = plan(date!(2026 - 12 - 01), 2, &[]);
        assert_eq!(
            plan.create,
            [
                date!(2026 - 11 - 29),
                date!(2026 - 11 - 30),
                date!(2026 - 12 - 01),
                date!(2026 - 12 - 02),
                date!(2026 - 12 - 03)
            ]
        );
        assert!(plan.drop.is_empty());
    }

    #[test]
    fn drops_what_is_past_retention_and_keeps_the_rest() {
        let existing: Vec<String> = [
            "log_lines_p20261127",
            "log_lines_p20261128",
            "log_lines_p20261129",
            "log_lines_p20261201",
            "log_lines_p20261202",
            "log_lines_p20261203",
            "something_else",
        ]
        .map(String::from)
        .to_vec();
        let plan = plan(date!(2026 - 12 - 01), 2, &existing);
        assert_eq!(plan.drop, ["log_lines_p20261127", "log_lines_p20261128"]);
        assert_eq!(plan.create, [date!(2026 - 11 - 30)]);
    }

    #[test]
    fn names_round_trip_and_strangers_are_ignored() {
        let d = date!(2027 - 01 - 09);
        assert_eq!(name(d), "log_lines_p20270109");
        assert_eq!(day_of(&name(d)), Some(d));
        assert_eq!(day_of("log_lines_p2027010"), None);
        assert_eq!(day_of("log_lines_p20271340"), None);
        assert_eq!(day_of("log_lines"), None);
    }
}
