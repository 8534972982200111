//! An app's logs: history (`GET …/logs`) and the live stream (`GET …/logs/stream`).

pub mod history;
pub mod retention;
pub mod stream;

use gantry_common::logs::LogStream;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::error::{bad_request, ApiResult};
use crate::logs::history::Filter;

/// The longest search text.
pub const MAX_Q_CHARS: usize = 256;

/// Filters shared by the history and the stream, as strings from the query, checked.
pub struct RawFilter<'a> {
    pub instance: Option<&'a str>,
    pub release: Option<u32>,
    pub stream: Option<&'a str>,
    pub q: Option<&'a str>,
    pub build: Option<u32>,
}

impl RawFilter<'_> {
    pub fn check(&self) -> ApiResult<Filter> {
        let instance = self
            .instance
            .map(|s| {
                Uuid::parse_str(s).map_err(|_| {
                    bad_request(format!("instance {s:?} is not an instance id (a UUID)"))
                })
            })
            .transpose()?;
        let stream = self
            .stream
            .map(|s| {
                LogStream::parse(s).ok_or_else(|| {
                    bad_request(format!(
                        "stream {s:?} is not one of stdout, stderr, event, build"
                    ))
                })
            })
            .transpose()?;
        if let Some(q) = self.q {
            if q.chars().count() > MAX_Q_CHARS || q.contains('\0') {
                return Err(bad_request(format!(
                    "q is a search text of at most {MAX_Q_CHARS} characters"
                )));
            }
        }
        Ok(Filter {
            instance,
            release: self.release,
            stream,
            build: self.build,
            q: self.q.filter(|q| !q.is_empty()).map(str::to_owned),
            ..Filter::default()
        })
    }
}

/// An RFC 3339 time from the query (`2026-12-01T10:00:00Z`).
pub fn parse_time(name: &str, value: Option<&str>) -> ApiResult<Option<OffsetDateTime>> {
    value
        .map(|v| {
            OffsetDateTime::parse(v, &Rfc3339).map_err(|_| {
                bad_request(format!(
                    "{name} {v:?} is not an RFC 3339 time such as 2026-12-01T10:00:00Z"
                ))
            })
        })
        .transpose()
}
