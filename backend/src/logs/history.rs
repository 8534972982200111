//! Reading the log back: a page of the newest lines that match, oldest first, and a cursor to
//! the page before it (the way a log viewer scrolls up).

use gantry_common::logs::{LogItem, LogPage, LogStream};
use sqlx::{PgPool, Postgres, QueryBuilder};
use time::OffsetDateTime;
use uuid::Uuid;

use super::search;

/// What a page is filtered by.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Filter {
    pub since: Option<OffsetDateTime>,
    pub until: Option<OffsetDateTime>,
    pub instance: Option<Uuid>,
    pub release: Option<u32>,
    pub stream: Option<LogStream>,
    /// Only the lines of this build (by number).
    pub build: Option<u32>,
    /// Search text, matched by [`search::matches`]' rule.
    pub q: Option<String>,
    /// Only lines before this position (from [`LogPage::before`]).
    pub before: Option<Position>,
}

/// Where a line sits in the log: its time, then its row id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    pub ts: OffsetDateTime,
    pub id: i64,
}

impl Position {
    /// `<unix nanoseconds>.<id>`: opaque to clients.
    pub fn encode(self) -> String {
        format!("{}.{}", self.ts.unix_timestamp_nanos(), self.id)
    }

    pub fn decode(s: &str) -> Option<Self> {
        let (nanos, id) = s.split_once('.')?;
        let ts = OffsetDateTime::from_unix_timestamp_nanos(nanos.parse().ok()?).ok()?;
        Some(Position {
            ts,
            id: id.parse().ok()?,
        })
    }
}

#[derive(sqlx::FromRow)]
struct Found {
    id: i64,
    ts: OffsetDateTime,
    instance_id: Option<Uuid>,
    release: Option<i32>,
    stream: String,
    line: String,
    build: Option<i32>,
}

/// Up to `limit` of the newest lines of `app_id` that match, oldest first, with their ids.
pub async fn page(
    db: &PgPool,
    app_id: Uuid,
    filter: &Filter,
    limit: u32,
) -> sqlx::Result<(Vec<(i64, LogItem)>, Option<Position>)> {
    let wanted = limit as usize + 1;
    let words = filter.q.as_deref().and_then(search::chunk_query);
    let mut found = match words {
        Some(words) => searched(db, app_id, filter, &words, wanted).await?,
        None => lines(db, app_id, filter, None, wanted).await?,
    };
    let more = found.len() > limit as usize;
    found.truncate(limit as usize);
    let before = more
        .then(|| found.last().map(|f| Position { ts: f.ts, id: f.id }))
        .flatten();
    found.reverse();
    let items = found
        .into_iter()
        .map(|f| {
            let item = LogItem {
                ts: f.ts,
                instance: f.instance_id,
                release: f.release.and_then(|r| u32::try_from(r).ok()),
                stream: LogStream::parse(&f.stream).unwrap_or(LogStream::Event),
                line: f.line,
                build: f.build.and_then(|b| u32::try_from(b).ok()),
            };
            (f.id, item)
        })
        .collect();
    Ok((items, before))
}

/// The most chunks one round of a search reads: each round asks the words' index again, so
/// a search through every chunk (words found everywhere, the text nowhere) takes few rounds.
const MAX_ROUND_CHUNKS: i64 = 4096;

/// A chunk's ranges (see [`search::Chunk`]).
#[derive(sqlx::FromRow)]
struct Span {
    first_id: i64,
    last_id: i64,
    min_ts: OffsetDateTime,
    max_ts: OffsetDateTime,
}

/// The newest `wanted` matches of a `q` with words: the app's chunks that hold them, newest
/// first, a few at a time (8, then twice as many each round, up to [`MAX_ROUND_CHUNKS`]), and
/// their lines checked, until no chunk left can hold a line newer than the `wanted`-th found.
async fn searched(
    db: &PgPool,
    app_id: Uuid,
    filter: &Filter,
    words: &str,
    wanted: usize,
) -> sqlx::Result<Vec<Found>> {
    let mut found: Vec<Found> = Vec::new();
    let mut after: Option<(OffsetDateTime, i64)> = None;
    let mut take: i64 = 8;
    loop {
        let mut query = QueryBuilder::<Postgres>::new(
            "SELECT first_id, last_id, min_ts, max_ts FROM log_chunks WHERE app_id = ",
        );
        query.push_bind(app_id);
        query
            .push(" AND words @@ ")
            .push_bind(words)
            .push("::tsquery");
        if let Some(since) = filter.since {
            query.push(" AND max_ts >= ").push_bind(since);
        }
        if let Some(until) = filter.until {
            query.push(" AND min_ts < ").push_bind(until);
        }
        if let Some(before) = filter.before {
            query.push(" AND min_ts <= ").push_bind(before.ts);
        }
        if let Some((ts, id)) = after {
            query
                .push(" AND (max_ts, last_id) < (")
                .push_bind(ts)
                .push(", ")
                .push_bind(id)
                .push(")");
        }
        query
            .push(" ORDER BY max_ts DESC, last_id DESC LIMIT ")
            .push_bind(take);
        // Through the words' index, always: the planner does not count the cost of reading each
        // chunk's words out of line (TOAST), so for a rare word it would walk every chunk of
        // the app newest first instead (30–47 ms for a rare word among 20,000 chunks, not 3–4).
        let mut tx = db.begin().await?;
        sqlx::query(
            "SELECT set_config('enable_seqscan', 'off', true),
                    set_config('enable_indexscan', 'off', true)",
        )
        .execute(&mut *tx)
        .await?;
        let spans: Vec<Span> = query.build_query_as().fetch_all(&mut *tx).await?;
        tx.commit().await?;
        let Some(oldest) = spans.last().map(|s| (s.max_ts, s.last_id)) else {
            break;
        };
        found.extend(lines(db, app_id, filter, Some(&spans), wanted).await?);
        found.sort_by_key(|f| std::cmp::Reverse((f.ts, f.id)));
        // Chunks of one app may overlap (batches stored at once): a line found twice.
        found.dedup_by_key(|f| f.id);
        found.truncate(wanted);
        // The chunks not read yet hold no line newer than `oldest.0`.
        let enough = found.len() == wanted && found.last().is_some_and(|f| f.ts > oldest.0);
        if enough || (spans.len() as i64) < take {
            break;
        }
        after = Some(oldest);
        take = (take * 2).min(MAX_ROUND_CHUNKS);
    }
    Ok(found)
}

/// The newest `wanted` lines that match, newest first: of the whole log, or of these chunks.
async fn lines(
    db: &PgPool,
    app_id: Uuid,
    filter: &Filter,
    within: Option<&[Span]>,
    wanted: usize,
) -> sqlx::Result<Vec<Found>> {
    const COLUMNS: &str = "id, ts, instance_id, release, stream, line, build";
    let mut query = QueryBuilder::<Postgres>::new("");
    if let Some(spans) = within {
        // One index range scan per chunk (OFFSET 0 keeps the planner from flattening the
        // subquery into a join, which it would run as a scan of all the app's lines).
        query
            .push(format!(
                "SELECT DISTINCT ON (ts, id) {COLUMNS} FROM UNNEST("
            ))
            .push_bind(spans.iter().map(|s| s.first_id).collect::<Vec<_>>())
            .push("::bigint[], ")
            .push_bind(spans.iter().map(|s| s.last_id).collect::<Vec<_>>())
            .push("::bigint[], ")
            .push_bind(spans.iter().map(|s| s.min_ts).collect::<Vec<_>>())
            .push("::timestamptz[], ")
            .push_bind(spans.iter().map(|s| s.max_ts).collect::<Vec<_>>())
            .push(format!(
                "::timestamptz[]) AS c(lo, hi, t0, t1) CROSS JOIN LATERAL (SELECT {COLUMNS} \
                 FROM log_lines WHERE app_id = "
            ))
            .push_bind(app_id)
            .push(" AND ts BETWEEN c.t0 AND c.t1 AND id BETWEEN c.lo AND c.hi");
        push_conditions(&mut query, filter);
        query.push(" OFFSET 0) AS l");
    } else {
        query.push(format!("SELECT {COLUMNS} FROM log_lines WHERE app_id = "));
        query.push_bind(app_id);
        push_conditions(&mut query, filter);
    }
    query
        .push(" ORDER BY ts DESC, id DESC LIMIT ")
        .push_bind(wanted as i64);
    query.build_query_as().fetch_all(db).await
}

/// `AND …` for each part of the filter.
fn push_conditions(query: &mut QueryBuilder<'_, Postgres>, filter: &Filter) {
    if let Some(since) = filter.since {
        query.push(" AND ts >= ").push_bind(since);
    }
    if let Some(until) = filter.until {
        query.push(" AND ts < ").push_bind(until);
    }
    if let Some(instance) = filter.instance {
        query.push(" AND instance_id = ").push_bind(instance);
    }
    if let Some(build) = filter.build {
        query.push(" AND build = ").push_bind(build as i32);
    }
    if let Some(release) = filter.release {
        query.push(" AND release = ").push_bind(release as i32);
    }
    if let Some(stream) = filter.stream {
        query.push(" AND stream = ").push_bind(stream.as_str());
    }
    if let Some(q) = filter.q.as_deref().filter(|q| !q.is_empty()) {
        query
            .push(" AND line ILIKE ")
            .push_bind(search::like_pattern(q));
        if let Some(pattern) = search::word_start_pattern(q) {
            // Only lines that passed the cheaper ILIKE get here.
            query.push(" AND line ~* ").push_bind(pattern);
        }
    }
    if let Some(before) = filter.before {
        query
            .push(" AND (ts, id) < (")
            .push_bind(before.ts)
            .push(", ")
            .push_bind(before.id)
            .push(")");
    }
}

/// The page as the API answers it.
pub fn to_api(items: Vec<(i64, LogItem)>, before: Option<Position>) -> LogPage {
    LogPage {
        items: items.into_iter().map(|(_, item)| item).collect(),
        before: before.map(Position::encode),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_round_trip_and_garbage_is_refused() {
        let p = Position {
            ts: OffsetDateTime::from_unix_timestamp_nanos(1_764_633_600_123_456_789).unwrap(),
            id: 42,
        };
        assert_eq!(Position::decode(&p.encode()), Some(p));
        for bad in [
            "",
            "1",
            "x.1",
            "1.x",
            "1.2.3",
            "99999999999999999999999999999.1",
        ] {
            assert_eq!(Position::decode(bad), None, "{bad}");
        }
    }
}
