use axum::extract::{Query, State};
use axum::Json;
use gantry_common::metrics::MetricSeries;
use serde::Deserialize;
use time::OffsetDateTime;

use crate::authz::AppAccess;
use crate::error::{bad_request, ApiResult};
use crate::metrics::sampler;
use crate::routes::answers;
use crate::routes::logs::parse_time;
use crate::state::AppState;

/// The most points one answer holds.
const MAX_POINTS: i64 = 10_000;

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct MetricsQuery {
    /// Start of the range (RFC 3339); default an hour before `to`.
    #[param(max_length = 64, format = DateTime)]
    from: Option<String>,
    /// End of the range (RFC 3339); default now.
    #[param(max_length = 64, format = DateTime)]
    to: Option<String>,
    /// 5 (full resolution, kept for an hour) or 60 (one-minute points, kept for a week);
    /// by default the finest the range has.
    #[param(minimum = 1, maximum = 86400)]
    step: Option<u32>,
}

/// The app's metrics per release: CPU, memory and network of its instances (from the agents),
/// requests/s, 5xx share and latency percentiles (from the router), oldest first.
#[utoipa::path(get, path = "/api/v1/teams/{team}/apps/{app}/metrics", tag = "metrics",
    params(("team" = inline(gantry_common::TeamSlug), Path, description = "Team name"), ("app" = inline(gantry_common::AppName), Path, description = "App name"), MetricsQuery),
    responses(
        (status = 200, body = MetricSeries),
        answers::Authenticated,
        (status = 400, description = "A bad range or step, or a malformed path", body = gantry_common::ErrorBody),
        (status = 404, description = "No such app", body = gantry_common::ErrorBody),
    ))]
pub async fn get(
    State(state): State<AppState>,
    AppAccess { app, .. }: AppAccess,
    query: Result<Query<MetricsQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Json<MetricSeries>> {
    let Query(query) = query.map_err(|e| bad_request(e.body_text()))?;
    let now = OffsetDateTime::now_utc();
    let to = parse_time("to", query.to.as_deref())?.unwrap_or(now);
    let from = parse_time("from", query.from.as_deref())?.unwrap_or(to - time::Duration::HOUR);
    if from > to {
        return Err(bad_request("from must not be after to"));
    }
    if let Some(step) = query.step {
        if step != 5 && step != 60 {
            return Err(bad_request(
                "step is 5 (seconds, the last hour) or 60 (a week)",
            ));
        }
    }
    let step = sampler::step_for(from, now, query.step);
    let series = sampler::series(&state.db, app.id, from, to, step, MAX_POINTS).await?;
    Ok(Json(series))
}
