use axum::extract::{Query, State};
use axum::Json;
use gantry_common::logs::LogPage;
use serde::Deserialize;

use super::{parse_time, RawFilter};
use crate::authz::AppAccess;
use crate::error::{bad_request, ApiResult};
use crate::logs::history::{self, Position};
use crate::routes::answers;
use crate::state::AppState;

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct HistoryQuery {
    /// Lines at or after this time (RFC 3339).
    #[param(max_length = 64, format = DateTime)]
    since: Option<String>,
    /// Lines before this time (RFC 3339).
    #[param(max_length = 64, format = DateTime)]
    until: Option<String>,
    /// Only this instance's lines (its id).
    #[param(max_length = 36, format = Uuid)]
    instance: Option<String>,
    /// Only lines of this release version.
    #[param(minimum = 1, maximum = 2147483647)]
    release: Option<u32>,
    /// Only the log of this build (its number): `stream=build` lines.
    #[param(minimum = 1, maximum = 2147483647)]
    build: Option<u32>,
    /// Only `stdout`, `stderr`, `event` or `build` lines.
    #[param(max_length = 6)]
    stream: Option<String>,
    /// Lines that contain this text, whatever its case; when it begins with a letter or digit,
    /// the match begins a word (`err` finds `ERROR:`, `rror` does not).
    #[param(max_length = 256)]
    q: Option<String>,
    /// The page before this one: the `before` of the page you have.
    #[param(max_length = 64)]
    before: Option<String>,
    /// Page size, 1–5000 (default 500).
    #[param(minimum = 1, maximum = 5000)]
    limit: Option<u32>,
}

/// The app's log and platform events: the newest lines that match, oldest first, like
/// `heroku logs`; `before` pages further back. Events (a release created, an instance that
/// changed state, scaling…) have `"stream": "event"`.
#[utoipa::path(get, path = "/api/v1/teams/{team}/apps/{app}/logs", tag = "logs",
    params(("team" = inline(gantry_common::TeamSlug), Path, description = "Team name"), ("app" = inline(gantry_common::AppName), Path, description = "App name"), HistoryQuery),
    responses(
        (status = 200, body = LogPage),
        answers::Authenticated,
        (status = 400, description = "A bad filter or page parameter, or a malformed path", body = gantry_common::ErrorBody),
        (status = 404, description = "No such app", body = gantry_common::ErrorBody),
    ))]
pub async fn list(
    State(state): State<AppState>,
    AppAccess { app, .. }: AppAccess,
    query: Result<Query<HistoryQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Json<LogPage>> {
    let Query(query) = query.map_err(|e| bad_request(e.body_text()))?;
    let limit = query.limit.unwrap_or(500);
    if !(1..=5000).contains(&limit) {
        return Err(bad_request("limit must be between 1 and 5000"));
    }
    let mut filter = RawFilter {
        instance: query.instance.as_deref(),
        release: query.release,
        build: query.build,
        stream: query.stream.as_deref(),
        q: query.q.as_deref(),
    }
    .check()?;
    filter.since = parse_time("since", query.since.as_deref())?;
    filter.until = parse_time("until", query.until.as_deref())?;
    filter.before = query
        .before
        .as_deref()
        .map(|b| {
            Position::decode(b).ok_or_else(|| {
                bad_request("before must be the `before` of a page this API answered")
            })
        })
        .transpose()?;
    let (items, before) = history::page(&state.db, app.id, &filter, limit).await?;
    Ok(Json(history::to_api(items, before)))
}
