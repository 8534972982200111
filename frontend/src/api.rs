//! The dashboard's one REST client: typed calls to `/api/v1`, with the same request and response
//! types as the server (`gantry_common`). Where a page shows only some fields of a large answer
//! (an app, an instance, a release, a rollout), a slim copy here deserializes just those: the
//! wasm has a size budget. It runs in the browser only; pages call it from local resources and
//! actions, which the server never runs while rendering.
//!
//! Writes carry the session's CSRF token, kept here after login/sign-up and fetched from
//! `GET /api/v1/auth/csrf` after a page reload.

use gantry_common::api::{
    AddMember, ApiToken, AppSettings, ConfigVars, CreateApp, CreateToken, CreatedToken,
    Credentials, Me, Member, PatchConfig, SessionInfo, UpdateMember,
};
use gantry_common::autoscaling::Autoscaling;
use gantry_common::builds::{BuildSettings, BuildStatus};
use gantry_common::cluster::Node;
use gantry_common::releases::{
    Analysis, AnalysisFigures, CanaryStep, ReleaseStatus, Rollback, Strategy,
};
use serde::de::DeserializeOwned;
use serde::Serialize;

/// What went wrong, in words a person can act on (the server's message when there is one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// HTTP status; 0 when the request never got an answer.
    pub status: u16,
    pub message: String,
}

impl ApiError {
    pub fn is_unauthorized(&self) -> bool {
        self.status == 401
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

pub type ApiResult<T> = Result<T, ApiError>;

#[derive(Clone, Copy)]
enum Method {
    Get,
    Post,
    Put,
    Patch,
    Delete,
}

#[cfg(feature = "hydrate")]
mod transport {
    use std::cell::RefCell;

    use gloo_net::http::{Request, RequestBuilder, Response};

    use super::{ApiError, ApiResult, Method};

    thread_local! {
        static CSRF: RefCell<Option<String>> = const { RefCell::new(None) };
    }

    pub fn set_csrf(token: Option<String>) {
        CSRF.with(|c| *c.borrow_mut() = token);
    }

    async fn csrf() -> ApiResult<String> {
        if let Some(token) = CSRF.with(|c| c.borrow().clone()) {
            return Ok(token);
        }
        let res = Request::get("/api/v1/auth/csrf")
            .send()
            .await
            .map_err(network)?;
        let body: gantry_common::api::CsrfToken = decode(res).await?;
        set_csrf(Some(body.csrf_token.clone()));
        Ok(body.csrf_token)
    }

    fn network(e: gloo_net::Error) -> ApiError {
        ApiError {
            status: 0,
            message: format!("could not reach the server: {e}"),
        }
    }

    pub async fn call(
        method: Method,
        path: &str,
        body: Option<String>,
        csrf_needed: bool,
    ) -> ApiResult<Option<String>> {
        let builder: RequestBuilder = match method {
            Method::Get => Request::get(path),
            Method::Post => Request::post(path),
            Method::Put => Request::put(path),
            Method::Patch => Request::patch(path),
            Method::Delete => Request::delete(path),
        };
        let builder = if csrf_needed && !matches!(method, Method::Get) {
            builder.header("x-csrf-token", &csrf().await?)
        } else {
            builder
        };
        let res = match body {
            Some(json) => {
                builder
                    .header("content-type", "application/json")
                    .body(json)
                    .map_err(network)?
                    .send()
                    .await
            }
            None => builder.send().await,
        }
        .map_err(network)?;
        if res.status() == 204 {
            return Ok(None);
        }
        let ok = res.ok();
        let status = res.status();
        let text = res.text().await.map_err(network)?;
        if ok {
            Ok(Some(text))
        } else {
            Err(error_from(status, &text))
        }
    }

    async fn decode<T: serde::de::DeserializeOwned>(res: Response) -> ApiResult<T> {
        let status = res.status();
        let text = res.text().await.map_err(network)?;
        if !(200..300).contains(&status) {
            return Err(error_from(status, &text));
        }
        serde_json::from_str(&text).map_err(|e| ApiError {
            status,
            message: format!("unexpected answer from the server: {e}"),
        })
    }

    fn error_from(status: u16, text: &str) -> ApiError {
        let message = serde_json::from_str::<gantry_common::ErrorBody>(text)
            .map(|b| b.error.message)
            .unwrap_or_else(|_| format!("the server answered {status}"));
        ApiError { status, message }
    }
}

#[cfg(not(feature = "hydrate"))]
mod transport {
    use super::{ApiError, ApiResult, Method};

    pub fn set_csrf(_token: Option<String>) {}

    /// The server renders pages without data; only the browser calls the API.
    pub async fn call(_: Method, _: &str, _: Option<String>, _: bool) -> ApiResult<Option<String>> {
        Err(ApiError {
            status: 0,
            message: "the API is called from the browser only".into(),
        })
    }
}

async fn request<T: DeserializeOwned>(
    method: Method,
    path: &str,
    body: Option<&impl Serialize>,
) -> ApiResult<T> {
    send(method, path, body, true).await
}

/// Like [`request`]; `csrf_needed` is false only for login and sign-up, which start a session.
async fn send<T: DeserializeOwned>(
    method: Method,
    path: &str,
    body: Option<&impl Serialize>,
    csrf_needed: bool,
) -> ApiResult<T> {
    let body = body.map(|b| serde_json::to_string(b).expect("request bodies serialize"));
    let text = transport::call(method, path, body, csrf_needed)
        .await?
        .unwrap_or_else(|| "null".into());
    serde_json::from_str(&text).map_err(|e| ApiError {
        status: 0,
        message: format!("unexpected answer from the server: {e}"),
    })
}

async fn get<T: DeserializeOwned>(path: &str) -> ApiResult<T> {
    request(Method::Get, path, None::<&()>).await
}

async fn empty(method: Method, path: &str) -> ApiResult<()> {
    transport::call(method, path, None, true).await.map(|_| ())
}

/// `/api/v1/teams/<team>/apps/<app>`, the prefix of everything about one app.
fn app_path(team: &str, app: &str) -> String {
    format!("/api/v1/teams/{}/apps/{}", seg(team), seg(app))
}

/// Path segments come from validated names or ids, but are encoded anyway.
fn seg(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            'a'..='z' | 'A'..='Z' | '0'..='9' | '-' | '_' | '.' => c.to_string(),
            other => other
                .to_string()
                .bytes()
                .map(|b| format!("%{b:02X}"))
                .collect(),
        })
        .collect()
}

// ---- accounts ----

pub async fn me() -> ApiResult<Me> {
    get("/api/v1/me").await
}

pub async fn login(credentials: &Credentials) -> ApiResult<SessionInfo> {
    let info: SessionInfo =
        send(Method::Post, "/api/v1/auth/login", Some(credentials), false).await?;
    transport::set_csrf(Some(info.csrf_token.clone()));
    Ok(info)
}

pub async fn signup(credentials: &Credentials) -> ApiResult<SessionInfo> {
    let info: SessionInfo = send(
        Method::Post,
        "/api/v1/auth/signup",
        Some(credentials),
        false,
    )
    .await?;
    transport::set_csrf(Some(info.csrf_token.clone()));
    Ok(info)
}

pub async fn logout() -> ApiResult<()> {
    let result = empty(Method::Post, "/api/v1/auth/logout").await;
    transport::set_csrf(None);
    result
}

// ---- apps ----

/// What the dashboard shows of an app. `gantry_common::api::App` also has its id and times;
/// deserializing only these keeps the wasm smaller (and the strategy as a [`StrategyView`]:
/// the shared internally tagged enum costs the most).
#[derive(Debug, Clone, serde::Deserialize)]
pub struct App {
    pub name: String,
    pub team: String,
    /// `None` for a worker.
    pub port: Option<u16>,
    pub replicas: u32,
    pub cpu_millis: u32,
    pub memory_mib: u32,
    pub health_check_path: String,
    pub stop_grace_seconds: u32,
    pub progress_deadline_seconds: u32,
    /// The version that serves.
    pub release: Option<u32>,
    pub image: Option<String>,
    /// Where the router serves it; `None` for a worker.
    pub url: Option<String>,
    /// How its next release rolls out.
    pub strategy: StrategyView,
}

/// A rollout strategy as one flat struct: `gantry_common::releases::Strategy` is an internally
/// tagged enum, whose deserializer buffers the whole object first and costs the wasm several KB
/// per place it is read. Fields of the other kinds are `None` (or empty). Writes send the shared
/// `Strategy`, whose serializer is small.
#[derive(Debug, Clone, Default, PartialEq, serde::Deserialize)]
pub struct StrategyView {
    /// `rolling`, `canary` or `blue_green`.
    pub kind: String,
    pub max_surge: Option<u32>,
    pub max_unavailable: Option<u32>,
    #[serde(default)]
    pub steps: Vec<CanaryStep>,
    pub analysis: Option<Analysis>,
    #[serde(default)]
    pub sticky: bool,
    pub auto_promote_seconds: Option<u32>,
    pub scale_down_delay_seconds: Option<u32>,
}

impl StrategyView {
    pub fn is_canary(&self) -> bool {
        self.kind == "canary"
    }

    pub fn is_blue_green(&self) -> bool {
        self.kind == "blue_green"
    }
}

/// Sets how the app's next releases roll out; the server refuses bad values with 422.
pub async fn set_strategy(team: &str, app: &str, body: &Strategy) -> ApiResult<StrategyView> {
    let path = format!("{}/strategy", app_path(team, app));
    request(Method::Put, &path, Some(body)).await
}

pub async fn apps(team: &str) -> ApiResult<Vec<App>> {
    get(&format!("/api/v1/teams/{}/apps", seg(team))).await
}

pub async fn create_app(team: &str, body: &CreateApp) -> ApiResult<App> {
    request(
        Method::Post,
        &format!("/api/v1/teams/{}/apps", seg(team)),
        Some(body),
    )
    .await
}

pub async fn app(team: &str, app: &str) -> ApiResult<App> {
    get(&format!("/api/v1/teams/{}/apps/{}", seg(team), seg(app))).await
}

pub async fn update_app(team: &str, app: &str, body: &AppSettings) -> ApiResult<App> {
    let path = format!("/api/v1/teams/{}/apps/{}", seg(team), seg(app));
    request(Method::Patch, &path, Some(body)).await
}

pub async fn delete_app(team: &str, app: &str) -> ApiResult<()> {
    empty(
        Method::Delete,
        &format!("/api/v1/teams/{}/apps/{}", seg(team), seg(app)),
    )
    .await
}

pub async fn config(team: &str, app: &str) -> ApiResult<ConfigVars> {
    get(&format!(
        "/api/v1/teams/{}/apps/{}/config",
        seg(team),
        seg(app)
    ))
    .await
}

pub async fn patch_config(team: &str, app: &str, body: &PatchConfig) -> ApiResult<ConfigVars> {
    let path = format!("/api/v1/teams/{}/apps/{}/config", seg(team), seg(app));
    request(Method::Patch, &path, Some(body)).await
}

// ---- cluster ----

/// The columns the dashboard shows of an instance (`gantry_common::cluster::Instance` has more):
/// deserializing only these keeps the wasm smaller.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct InstanceRow {
    pub state: String,
    /// The version it runs (none for an instance from before releases).
    pub release: Option<u32>,
    pub node: Option<String>,
    pub endpoint: Option<String>,
    pub restarts: u32,
    pub last_exit_code: Option<i64>,
    /// RFC 3339, in UTC.
    pub started_at: Option<String>,
    pub reason: Option<String>,
}

pub async fn instances(team: &str, app: &str) -> ApiResult<Vec<InstanceRow>> {
    let path = format!("/api/v1/teams/{}/apps/{}/instances", seg(team), seg(app));
    get(&path).await
}

// ---- images ----

/// An app's repository in the built-in registry and its tags (`gantry_common::registry::AppImages`,
/// with times as text).
#[derive(Debug, Clone, serde::Deserialize)]
pub struct AppImagesView {
    pub registry: String,
    pub repository: String,
    pub deploy_on_push: Option<String>,
    pub tags: Vec<ImageTagRow>,
}

#[derive(Debug, Clone, serde::Deserialize)]
pub struct ImageTagRow {
    pub tag: String,
    pub digest: String,
    pub size_bytes: u64,
    /// RFC 3339, in UTC.
    pub pushed_at: String,
}

/// What the team's images take (`gantry_common::registry::TeamRegistryUsage` without the
/// repositories).
#[derive(Debug, Clone, serde::Deserialize)]
pub struct RegistryUsage {
    pub used_bytes: u64,
    pub quota_bytes: Option<u64>,
}

pub async fn registry_usage(team: &str) -> ApiResult<RegistryUsage> {
    get(&format!("/api/v1/teams/{}/registry", seg(team))).await
}

pub async fn images(team: &str, app: &str) -> ApiResult<AppImagesView> {
    let path = format!("/api/v1/teams/{}/apps/{}/images", seg(team), seg(app));
    get(&path).await
}

// ---- logs ----

/// A line of an app's log (`gantry_common::logs::LogItem`, with the time as text).
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
pub struct LogLine {
    pub ts: String,
    pub instance: Option<String>,
    pub release: Option<u32>,
    /// `stdout`, `stderr`, `event` or `build`.
    pub stream: String,
    pub line: String,
    /// The build (its number) a `build` line belongs to.
    #[serde(default)]
    pub build: Option<u32>,
}

/// A page of history (`gantry_common::logs::LogPage`).
#[derive(Debug, Clone, serde::Deserialize)]
pub struct LogPage {
    pub items: Vec<LogLine>,
    pub before: Option<String>,
}

/// A frame of the live stream (`gantry_common::logs::LogFrame`).
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum LogFrame {
    Lines { items: Vec<LogLine> },
    Live,
    Dropped { count: u64 },
}

/// What the log view filters by; empty means no filter.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogFilter {
    pub instance: String,
    pub release: String,
    pub q: String,
}

impl LogFilter {
    /// The filter as query parameters (`&instance=…&q=…`), each value escaped.
    pub fn query(&self) -> String {
        let mut query = String::new();
        for (name, value) in [
            ("instance", &self.instance),
            ("release", &self.release),
            ("q", &self.q),
        ] {
            let value = value.trim();
            if !value.is_empty() {
                query.push_str(&format!("&{name}={}", seg(value)));
            }
        }
        query
    }
}

/// The path of an app's log stream with a filter (the page adds `ws://host`).
pub fn log_stream_path(team: &str, app: &str, filter: &LogFilter, tail: u32) -> String {
    format!(
        "/api/v1/teams/{}/apps/{}/logs/stream?tail={tail}{}",
        seg(team),
        seg(app),
        filter.query()
    )
}

/// The newest lines of the history that match, oldest first; `before` pages back.
pub async fn log_history(
    team: &str,
    app: &str,
    filter: &LogFilter,
    before: Option<&str>,
) -> ApiResult<LogPage> {
    let mut path = format!(
        "/api/v1/teams/{}/apps/{}/logs?limit=200{}",
        seg(team),
        seg(app),
        filter.query()
    );
    if let Some(before) = before {
        path.push_str(&format!("&before={}", seg(before)));
    }
    get(&path).await
}

// ---- builds ----

/// A build as the dashboard shows it (`gantry_common::builds::Build`, with times as text): one
/// copy for the list and the detail page, one deserializer in the wasm.
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
pub struct BuildView {
    pub number: u32,
    pub status: BuildStatus,
    /// The full commit id.
    pub commit: String,
    pub branch: String,
    pub dockerfile: String,
    pub image: Option<String>,
    pub release: Option<u32>,
    pub message: Option<String>,
    pub node: Option<String>,
    pub created_by: String,
    /// RFC 3339, in UTC.
    pub created_at: String,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    pub duration_seconds: Option<f64>,
}

/// `gantry_common::builds::BuildDetail` with times as text.
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
pub struct BuildDetailView {
    pub build: BuildView,
    /// Oldest first.
    pub log: Vec<BuildLineView>,
    /// Older lines were left out.
    pub truncated: bool,
}

/// A line of a build's log (`gantry_common::builds::BuildLine`, time as text).
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
pub struct BuildLineView {
    pub ts: String,
    pub line: String,
}

pub async fn build_settings(team: &str, app: &str) -> ApiResult<BuildSettings> {
    get(&format!("{}/build-settings", app_path(team, app))).await
}

/// `gantry_common::builds::SetBuildSettings` with plain strings: the server checks them (422 with
/// the reason), which leaves the shared validation code out of the wasm.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct SetBuildSettingsBody {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deploy_branch: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dockerfile: Option<String>,
    /// Replaces all build args (`{}` removes them).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub build_args: Option<std::collections::BTreeMap<String, String>>,
}

/// Changes the deploy branch, Dockerfile path or build args (an absent field keeps its value);
/// 403 for viewers, 422 with the reason for a bad value.
pub async fn set_build_settings(
    team: &str,
    app: &str,
    body: &SetBuildSettingsBody,
) -> ApiResult<BuildSettings> {
    let path = format!("{}/build-settings", app_path(team, app));
    request(Method::Put, &path, Some(body)).await
}

/// The newest builds first (at most 50).
pub async fn builds(team: &str, app: &str) -> ApiResult<Vec<BuildView>> {
    get(&format!("{}/builds", app_path(team, app))).await
}

pub async fn build(team: &str, app: &str, number: u32) -> ApiResult<BuildDetailView> {
    get(&format!("{}/builds/{number}", app_path(team, app))).await
}

/// Cancels a queued or running build; 409 once it has finished, 403 for viewers.
pub async fn cancel_build(team: &str, app: &str, number: u32) -> ApiResult<BuildView> {
    let path = format!("{}/builds/{number}/cancel", app_path(team, app));
    request(Method::Post, &path, None::<&()>).await
}

/// The live log of build `number`: its last `tail` lines, then new ones (`LogFrame`s).
pub fn build_log_stream_path(team: &str, app: &str, number: u32, tail: u32) -> String {
    format!(
        "{}/logs/stream?build={number}&tail={tail}",
        app_path(team, app)
    )
}

/// The app's build lines from now on, whichever build: the builds page reloads its list when
/// one it does not know as running writes.
pub fn builds_stream_path(team: &str, app: &str) -> String {
    format!("{}/logs/stream?stream=build&tail=0", app_path(team, app))
}

// ---- metrics ----

/// What the charts show of a point (`gantry_common::metrics::MetricPoint`, time as text).
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
pub struct MetricPointView {
    pub ts: String,
    pub release: u32,
    pub cpu_millis: Option<u32>,
    pub memory_bytes: Option<u64>,
    pub requests_per_second: f64,
    pub error_percent: Option<f64>,
    pub p99_ms: Option<f64>,
}

/// A frame of the live metrics stream (`gantry_common::metrics::MetricFrame`).
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum MetricFrame {
    Points { points: Vec<MetricPointView> },
    Live,
    Dropped { count: u64 },
}

pub fn metrics_stream_path(team: &str, app: &str) -> String {
    format!(
        "/api/v1/teams/{}/apps/{}/metrics/stream",
        seg(team),
        seg(app)
    )
}

// ---- releases ----

/// The columns the dashboard shows of a release (`gantry_common::releases::Release` has more).
#[derive(Debug, Clone, serde::Deserialize)]
pub struct ReleaseRow {
    pub version: u32,
    pub status: ReleaseStatus,
    pub reason: Option<String>,
    pub image: String,
    pub image_digest: Option<String>,
    pub cause: String,
    pub created_by: String,
    /// RFC 3339, in UTC.
    pub created_at: String,
}

/// The newest rollout, as `GET …/rollouts/current` and its stream send it
/// (`gantry_common::releases::Rollout` with times as text and the strategy flat).
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
pub struct RolloutView {
    pub release: u32,
    pub status: ReleaseStatus,
    pub reason: Option<String>,
    pub from: Option<u32>,
    pub strategy: StrategyView,
    /// The app's replica count.
    pub desired: u32,
    /// New instances asked for (a canary's are sized by its weight), and ready.
    pub updated: u32,
    pub ready: u32,
    pub old: u32,
    /// Canary: the step under way (from 0; the number of steps once all are done).
    /// Blue-green: 0 coming up, 1 ready (waiting for promote), 2 promoted.
    pub step: u32,
    /// Percent of the traffic the new release gets.
    pub weight: u32,
    pub paused: bool,
    pub waiting: Option<String>,
    pub analysis: Option<AnalysisFigures>,
    pub preview_url: Option<String>,
    /// RFC 3339, in UTC.
    pub deadline_at: Option<String>,
    pub finished_at: Option<String>,
    /// Oldest first.
    pub history: Vec<TransitionView>,
}

/// One step of a rollout's history (`gantry_common::releases::RolloutTransition`).
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
pub struct TransitionView {
    /// RFC 3339, in UTC.
    pub at: String,
    pub text: String,
}

/// A frame of the rollout stream: `{"type":"rollout","rollout":{…}}` or `{"type":"none"}`.
/// Read as a struct that ignores `type` rather than as the shared tagged enum: that would
/// buffer every frame and add a second deserializer of the whole rollout.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct RolloutFrameView {
    /// `None` before the app's first release.
    pub rollout: Option<RolloutView>,
}

pub fn rollout_stream_path(team: &str, app: &str) -> String {
    format!("{}/rollouts/current/stream", app_path(team, app))
}

/// Acts on rollout `version`: `action` is `promote`, `promote?full=true`, `pause`, `resume` or
/// `abort`. The server answers with the rollout as it is now, or 409 when the action does not
/// apply (403 for viewers).
pub async fn rollout_action(
    team: &str,
    app: &str,
    version: u32,
    action: &str,
) -> ApiResult<RolloutView> {
    let path = format!("{}/rollouts/{version}/{action}", app_path(team, app));
    request(Method::Post, &path, None::<&()>).await
}

/// The newest releases first (one page: the 20 newest).
pub async fn releases(team: &str, app: &str) -> ApiResult<Vec<ReleaseRow>> {
    let path = format!(
        "/api/v1/teams/{}/apps/{}/releases?limit=20",
        seg(team),
        seg(app)
    );
    get(&path).await
}

/// The newest rollout; `None` while the app has no release (the server's 404).
pub async fn rollout(team: &str, app: &str) -> ApiResult<Option<RolloutView>> {
    let path = format!(
        "/api/v1/teams/{}/apps/{}/rollouts/current",
        seg(team),
        seg(app)
    );
    match get(&path).await {
        Ok(r) => Ok(Some(r)),
        Err(e) if e.status == 404 => Ok(None),
        Err(e) => Err(e),
    }
}

/// A new release made from `version`; the server refuses with 403 (viewers) or 409.
pub async fn rollback(team: &str, app: &str, version: u32) -> ApiResult<ReleaseRow> {
    let path = format!("/api/v1/teams/{}/apps/{}/rollback", seg(team), seg(app));
    let body = Rollback {
        version: Some(version),
    };
    request(Method::Post, &path, Some(&body)).await
}

// ---- autoscaling ----

/// `gantry_common::autoscaling::AutoscalingStatus` with the decisions' times as text.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct AutoscalingView {
    /// `None`: off.
    pub policy: Option<Autoscaling>,
    pub replicas: u32,
    /// Newest first.
    pub decisions: Vec<DecisionView>,
}

#[derive(Debug, Clone, serde::Deserialize)]
pub struct DecisionView {
    /// RFC 3339, in UTC.
    pub at: String,
    pub from: u32,
    pub to: u32,
    pub reason: String,
}

pub async fn autoscaling(team: &str, app: &str) -> ApiResult<AutoscalingView> {
    get(&format!("{}/autoscaling", app_path(team, app))).await
}

/// Turns the autoscaler on with `policy` (or changes it); 422 with the reason when refused.
pub async fn set_autoscaling(
    team: &str,
    app: &str,
    policy: &Autoscaling,
) -> ApiResult<AutoscalingView> {
    let path = format!("{}/autoscaling", app_path(team, app));
    request(Method::Put, &path, Some(policy)).await
}

pub async fn autoscaling_off(team: &str, app: &str) -> ApiResult<()> {
    empty(
        Method::Delete,
        &format!("{}/autoscaling", app_path(team, app)),
    )
    .await
}

/// Platform admins only; others get the server's 403.
pub async fn nodes() -> ApiResult<Vec<Node>> {
    get("/api/v1/nodes").await
}

/// The nodes, live: `NodeFrame`s.
pub const NODES_STREAM_PATH: &str = "/api/v1/nodes/stream";

// ---- members ----

pub async fn members(team: &str) -> ApiResult<Vec<Member>> {
    get(&format!("/api/v1/teams/{}/members", seg(team))).await
}

pub async fn add_member(team: &str, body: &AddMember) -> ApiResult<Member> {
    request(
        Method::Post,
        &format!("/api/v1/teams/{}/members", seg(team)),
        Some(body),
    )
    .await
}

pub async fn update_member(team: &str, user_id: &str, body: &UpdateMember) -> ApiResult<Member> {
    let path = format!("/api/v1/teams/{}/members/{}", seg(team), seg(user_id));
    request(Method::Patch, &path, Some(body)).await
}

pub async fn remove_member(team: &str, user_id: &str) -> ApiResult<()> {
    let path = format!("/api/v1/teams/{}/members/{}", seg(team), seg(user_id));
    empty(Method::Delete, &path).await
}

// ---- tokens ----

pub async fn tokens() -> ApiResult<Vec<ApiToken>> {
    get("/api/v1/tokens").await
}

pub async fn create_token(body: &CreateToken) -> ApiResult<CreatedToken> {
    request(Method::Post, "/api/v1/tokens", Some(body)).await
}

pub async fn revoke_token(id: &str) -> ApiResult<()> {
    empty(Method::Delete, &format!("/api/v1/tokens/{}", seg(id))).await
}

#[cfg(test)]
mod tests {
    #[test]
    fn path_segments_are_encoded() {
        assert_eq!(super::seg("hello-1"), "hello-1");
        assert_eq!(super::seg("a/b c"), "a%2Fb%20c");
        assert_eq!(super::seg("é"), "%C3%A9");
    }
}
