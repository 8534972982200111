//! Login throttling per account (per e-mail, whether or not the account exists).
//!
//! After [`FREE_FAILURES`] failures within [`WINDOW`], every further attempt must wait: the first
//! lock lasts 1 s and each failure while throttled doubles it, up to [`MAX_LOCK`]. A correct
//! password once the lock has passed logs in and clears the record, so an attacker can slow an
//! account's owner down by at most `MAX_LOCK`, never lock them out.
//!
//! The decisions are pure functions of the stored record and the clock; [`attempt`] wraps them in
//! a transaction holding a per-e-mail advisory lock, so parallel guesses are counted one by one.

use std::time::Duration;

use sqlx::PgPool;
use time::OffsetDateTime;

/// Failures allowed before attempts are delayed.
pub const FREE_FAILURES: u32 = 10;
/// Failures older than this (since the last one) are forgotten.
pub const WINDOW: Duration = Duration::from_secs(15 * 60);
/// The longest delay between two attempts.
pub const MAX_LOCK: Duration = Duration::from_secs(10 * 60);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Record {
    pub failures: u32,
    pub last_failure: OffsetDateTime,
    pub locked_until: Option<OffsetDateTime>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Check the password.
    Allow,
    /// Refuse without checking; try again after this many seconds.
    Wait { retry_after_secs: u64 },
}

/// May an attempt be made now?
pub fn decide(record: Option<&Record>, now: OffsetDateTime) -> Decision {
    match record.and_then(|r| r.locked_until) {
        Some(until) if until > now => Decision::Wait {
            retry_after_secs: ((until - now).whole_milliseconds().max(1) as u64).div_ceil(1000),
        },
        _ => Decision::Allow,
    }
}

/// The record after one more failed attempt at `now`.
pub fn after_failure(record: Option<&Record>, now: OffsetDateTime) -> Record {
    let previous = record
        .filter(|r| now - r.last_failure < WINDOW)
        .map_or(0, |r| r.failures);
    let failures = previous + 1;
    let locked_until = (failures >= FREE_FAILURES).then(|| now + lock_for(failures));
    Record {
        failures,
        last_failure: now,
        locked_until,
    }
}

/// 1 s after the 10th failure, doubling with each further one, capped at `MAX_LOCK`.
fn lock_for(failures: u32) -> Duration {
    let doublings = failures.saturating_sub(FREE_FAILURES).min(20);
    Duration::from_secs(1u64 << doublings).min(MAX_LOCK)
}

/// Runs one login attempt for `email` under the throttle: `check` verifies the password and
/// returns whether it matched. Returns `Err(retry_after_secs)` when the attempt was refused.
pub async fn attempt<F, Fut>(
    db: &PgPool,
    email: &str,
    check: F,
) -> anyhow::Result<Result<bool, u64>>
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<bool>>,
{
    let mut tx = db.begin().await?;
    sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1, 7341))")
        .bind(email)
        .execute(&mut *tx)
        .await?;
    let record = sqlx::query_as::<_, (i32, OffsetDateTime, Option<OffsetDateTime>)>(
        "SELECT failures, last_failure, locked_until FROM login_throttle WHERE email = $1",
    )
    .bind(email)
    .fetch_optional(&mut *tx)
    .await?
    .map(|(failures, last_failure, locked_until)| Record {
        failures: failures.max(0) as u32,
        last_failure,
        locked_until,
    });

    let now = OffsetDateTime::now_utc();
    if let Decision::Wait { retry_after_secs } = decide(record.as_ref(), now) {
        tx.commit().await?;
        return Ok(Err(retry_after_secs));
    }
    let ok = check().await?;
    if ok {
        sqlx::query("DELETE FROM login_throttle WHERE email = $1")
            .bind(email)
            .execute(&mut *tx)
            .await?;
    } else {
        let next = after_failure(record.as_ref(), OffsetDateTime::now_utc());
        sqlx::query(
            "INSERT INTO login_throttle (email, failures, last_failure, locked_until)
             VALUES ($1, $2, $3, $4)
             ON CONFLICT (email) DO UPDATE
             SET failures = $2, last_failure = $3, locked_until = $4",
        )
        .bind(email)
        .bind(next.failures as i32)
        .bind(next.last_failure)
        .bind(next.locked_until)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok(Ok(ok))
}

/// Forgets records that no longer throttle anyone, so guesses at random e-mails do not pile up.
pub async fn prune(db: &PgPool) -> sqlx::Result<u64> {
    let done = sqlx::query(
        "DELETE FROM login_throttle
         WHERE last_failure < now() - make_interval(secs => $1)
           AND (locked_until IS NULL OR locked_until < now())",
    )
    .bind(WINDOW.as_secs_f64())
    .execute(db)
    .await?;
    Ok(done.rows_affected())
}

/// Runs [`prune`] every few minutes for the life of the server.
pub async fn prune_periodically(db: PgPool) {
    let mut every = tokio::time::interval(Duration::from_secs(300));
    loop {
        every.tick().await;
        if let Err(e) = prune(&db).await {
            tracing::warn!(error = %e, "failed to prune the login throttle");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    const T0: OffsetDateTime = datetime!(2026-11-27 12:00 UTC);

    fn fail_n(n: u32, every: Duration) -> (Option<Record>, OffsetDateTime) {
        let mut rec = None;
        let mut now = T0;
        for _ in 0..n {
            rec = Some(after_failure(rec.as_ref(), now));
            now += every;
        }
        (rec, now)
    }

    #[test]
    fn nine_failures_do_not_lock() {
        let (rec, now) = fail_n(9, Duration::from_secs(1));
        assert_eq!(rec.unwrap().failures, 9);
        assert_eq!(rec.unwrap().locked_until, None);
        assert_eq!(decide(rec.as_ref(), now), Decision::Allow);
    }

    #[test]
    fn tenth_failure_locks_and_lock_grows() {
        let (rec, _) = fail_n(10, Duration::ZERO);
        let rec = rec.unwrap();
        assert_eq!(rec.locked_until, Some(T0 + Duration::from_secs(1)));
        assert_eq!(
            decide(Some(&rec), T0),
            Decision::Wait {
                retry_after_secs: 1
            }
        );
        // Each failure after the lock passes doubles it: 2 s, 4 s, 8 s, ...
        let mut rec = rec;
        let mut now = T0;
        for expected in [2, 4, 8, 16] {
            now = rec.locked_until.unwrap();
            assert_eq!(decide(Some(&rec), now), Decision::Allow);
            rec = after_failure(Some(&rec), now);
            assert_eq!(
                decide(Some(&rec), now),
                Decision::Wait {
                    retry_after_secs: expected
                }
            );
        }
        assert!(now > T0);
    }

    #[test]
    fn lock_is_capped_so_owner_is_never_locked_out_forever() {
        let (rec, _) = fail_n(200, Duration::ZERO);
        let rec = rec.unwrap();
        assert_eq!(rec.locked_until, Some(T0 + MAX_LOCK));
        assert_eq!(decide(Some(&rec), T0 + MAX_LOCK), Decision::Allow);
    }

    #[test]
    fn failures_are_forgotten_after_the_window() {
        let (rec, _) = fail_n(9, Duration::ZERO);
        let later = T0 + WINDOW;
        let rec = after_failure(rec.as_ref(), later);
        assert_eq!(rec.failures, 1);
        assert_eq!(rec.locked_until, None);
    }

    #[test]
    fn retry_after_rounds_up() {
        let rec = Record {
            failures: 12,
            last_failure: T0,
            locked_until: Some(T0 + Duration::from_millis(2500)),
        };
        assert_eq!(
            decide(Some(&rec), T0),
            Decision::Wait {
                retry_after_secs: 3
            }
        );
    }
}
