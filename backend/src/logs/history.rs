//! Reading the log back: a page of the newest lines that match, oldest first, and a cursor to
//! the page before it (the way a log viewer scrolls up).

use gantry_common::logs::{LogItem, LogPage, LogStream};
use sqlx::{PgPool, Postgres, QueryBuilder};
use time::OffsetDateTime;
use uuid::Uuid;

/// What a page is filtered by.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Filter {
    pub since: Option<OffsetDateTime>,
    pub until: Option<OffsetDateTime>,
    pub instance: Option<Uuid>,
    pub release: Option<u32>,
    pub stream: Option<LogStream>,
    /// A substring, matched without regard to case.
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

/// `q` as an `ILIKE` pattern that matches it literally.
pub fn like_pattern(q: &str) -> String {
    let mut p = String::with_capacity(q.len() + 2);
    p.push('%');
    for c in q.chars() {
        if matches!(c, '\\' | '%' | '_') {
            p.push('\\');
        }
        p.push(c);
    }
    p.push('%');
    p
}

#[derive(sqlx::FromRow)]
struct Found {
    id: i64,
    ts: OffsetDateTime,
    instance_id: Option<Uuid>,
    release: Option<i32>,
    stream: String,
    line: String,
}

/// Up to `limit` of the newest lines of `app_id` that match, oldest first, with their ids.
pub async fn page(
    db: &PgPool,
    app_id: Uuid,
    filter: &Filter,
    limit: u32,
) -> sqlx::Result<(Vec<(i64, LogItem)>, Option<Position>)> {
    let mut query = QueryBuilder::<Postgres>::new(
        "SELECT id, ts, instance_id, release, stream, line FROM log_lines WHERE app_id = ",
    );
    query.push_bind(app_id);
    if let Some(since) = filter.since {
        query.push(" AND ts >= ").push_bind(since);
    }
    if let Some(until) = filter.until {
        query.push(" AND ts < ").push_bind(until);
    }
    if let Some(instance) = filter.instance {
        query.push(" AND instance_id = ").push_bind(instance);
    }
    if let Some(release) = filter.release {
        query.push(" AND release = ").push_bind(release as i32);
    }
    if let Some(stream) = filter.stream {
        query.push(" AND stream = ").push_bind(stream.as_str());
    }
    if let Some(q) = filter.q.as_deref().filter(|q| !q.is_empty()) {
        query.push(" AND line ILIKE ").push_bind(like_pattern(q));
    }
    if let Some(before) = filter.before {
        query
            .push(" AND (ts, id) < (")
            .push_bind(before.ts)
            .push(", ")
            .push_bind(before.id)
            .push(")");
    }
    query
        .push(" ORDER BY ts DESC, id DESC LIMIT ")
        .push_bind(i64::from(limit) + 1);
    let mut found: Vec<Found> = query.build_query_as().fetch_all(db).await?;
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
            };
            (f.id, item)
        })
        .collect();
    Ok((items, before))
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

    #[test]
    fn search_text_is_matched_literally() {
        assert_eq!(like_pattern("a%b_c\\d"), "%a\\%b\\_c\\\\d%");
        assert_eq!(like_pattern("line 42"), "%line 42%");
    }
}
