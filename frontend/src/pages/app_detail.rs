//! `/teams/:team/apps/:app`: an app's URL, image and rollout, links to its logs and builds
//! (`app_logs`, `app_builds`: deploying with `git push`), the live rollout panel
//! (`app_rollout`), its instances, releases (with rollback), settings, rollout strategy
//! (`app_strategy`), autoscaling (`app_autoscaling`) and config vars. Viewers see settings and
//! strategy read-only, config names with masked values, and no rollback, rollout actions or
//! autoscaling form; the server enforces the same rules.
//!
//! The app's current state (rollout, releases, instances) reloads on "Refresh", after every
//! change made here, and every [`POLL`] while a rollout is under way; the page is quiet
//! otherwise.

use std::collections::BTreeMap;
use std::time::Duration;

use gantry_common::api::{AppSettings, ConfigVars, PatchConfig};
use gantry_common::{ConfigKey, Permission};
use leptos::prelude::*;
use leptos::task::spawn_local;
use leptos_router::hooks::use_navigate;
use leptos_router::NavigateOptions;

use super::param;
use crate::api::{self, ApiResult, App, ReleaseRow, RolloutView};
use crate::components::{
    rows_resource, size_text, text_table, Action, Empty, EmptyState, ErrorBox, Frame, Loading,
};
use crate::session::use_session;

/// How often the page reloads while a rollout is under way.
pub(super) const POLL: Duration = Duration::from_secs(2);

/// What the page shows of the app's releases, loaded together so that the parts agree: the
/// rollout first, then the releases (never older than that rollout), then the app (URL, image,
/// the version that serves).
#[derive(Clone)]
struct Live {
    app: App,
    rollout: Option<RolloutView>,
    releases: Vec<ReleaseRow>,
}

type LiveResource = LocalResource<ApiResult<Live>>;

#[component]
pub fn AppDetail() -> impl IntoView {
    let team = param("team");
    let name = param("app");
    // Bumped to reload the app's current state.
    let tick = RwSignal::new(0u32);
    // The sections below are built from this; it is fetched again after a rollback, which
    // restores an earlier release's settings and config vars.
    let app = LocalResource::new(move || {
        let (team, name) = (team.get(), name.get());
        async move { api::app(&team, &name).await }
    });
    let live: LiveResource = LocalResource::new(move || {
        tick.track();
        let (team, name) = (team.get(), name.get());
        async move {
            let rollout = api::rollout(&team, &name).await?;
            let releases = api::releases(&team, &name).await?;
            let app = api::app(&team, &name).await?;
            Ok(Live {
                app,
                rollout,
                releases,
            })
        }
    });
    poll_while_rolling_out(live, tick);
    let body = move || match app.get() {
        None => view! { <Loading/> }.into_any(),
        Some(Err(e)) => view! { <ErrorBox message=Some(e.message)/> }.into_any(),
        Some(Ok(a)) => view! {
            <Overview live/>
            <super::app_rollout::Rollout team name tick/>
            <super::app_metrics::Metrics team name/>
            <Instances team name tick/>
            <Releases team name live tick app/>
            <Images team name tick/>
            <Settings team app=a.clone() tick/>
            <super::app_autoscaling::Autoscaler team name tick/>
            <super::app_strategy::StrategyForm team name strategy=a.strategy.clone()/>
            <Config team name tick/>
            <Danger team app=a/>
        }
        .into_any(),
    };
    view! {
        <Frame team>
            <p class="crumbs"><a href=move || format!("/teams/{}/apps", team.get())>"Apps"</a> " / "</p>
            <div class="head">
                <h1>{move || name.get()}</h1>
                <a class="button" data-test="logs-link" href=move || format!("/teams/{}/apps/{}/logs", team.get(), name.get())>"Logs"</a>
                <a class="button" data-test="builds-link" href=move || format!("/teams/{}/apps/{}/builds", team.get(), name.get())>"Builds"</a>
                <button type="button" data-test="refresh" on:click=move |_| bump(tick)>"Refresh"</button>
            </div>
            {body}
        </Frame>
    }
}

pub(super) fn bump(tick: RwSignal<u32>) {
    tick.update(|t| *t = t.wrapping_add(1));
}

/// Reloads every [`POLL`] while the newest rollout is under way, and once more after it ended
/// so that every section shows the outcome.
fn poll_while_rolling_out(live: LiveResource, tick: RwSignal<u32>) {
    poll_while(
        move || matches!(live.get(), Some(Ok(Live { rollout: Some(r), .. })) if r.status.in_flight()),
        tick,
    );
}

/// Bumps `tick` every [`POLL`] while `active()` holds, and once more after it stopped so that
/// the page shows the outcome. One timer at a time: a reload that notifies twice does not
/// start a second one.
pub(super) fn poll_while(active: impl Fn() -> bool + 'static, tick: RwSignal<u32>) {
    let scheduled = StoredValue::new(false);
    Effect::new(move |was: Option<bool>| {
        let now = active();
        if (now || was == Some(true)) && !scheduled.get_value() {
            scheduled.set_value(true);
            set_timeout(
                move || {
                    // Both are no-ops once the page is gone.
                    scheduled.set_value(false);
                    bump(tick);
                },
                POLL,
            );
        }
        now
    });
}

/// `2026-11-28T10:31:02.123Z` as `2026-11-28 10:31:02`: the server's times are UTC, and
/// slicing costs the wasm nothing next to a date library.
pub(super) fn utc_time(rfc3339: &str) -> String {
    match (rfc3339.get(..10), rfc3339.get(11..19)) {
        (Some(date), Some(time)) => format!("{date} {time}"),
        _ => rfc3339.to_owned(),
    }
}

fn instances_word(n: u32) -> &'static str {
    if n == 1 {
        "instance"
    } else {
        "instances"
    }
}

/// The newest rollout in a sentence: its progress while under way, else how it ended.
fn rollout_text(r: &RolloutView) -> String {
    let v = r.release;
    if r.status.in_flight() {
        let mut text = format!("Rolling out v{v}");
        if let Some(from) = r.from {
            text.push_str(&format!(" (from v{from})"));
        }
        text.push_str(&format!(
            ": {} of {} new {} ready",
            r.ready,
            r.desired,
            instances_word(r.desired)
        ));
        if r.old > 0 {
            text.push_str(&format!(", {} old left", r.old));
        }
        if let Some(deadline) = &r.deadline_at {
            text.push_str(&format!(
                "; fails at {} UTC without progress",
                utc_time(deadline)
            ));
        }
        return text;
    }
    let status = r.status.as_str();
    match (&r.reason, &r.finished_at) {
        (Some(reason), _) => format!("v{v} {status}: {reason}"),
        (None, Some(at)) => format!("v{v} {status} since {} UTC", utc_time(at)),
        (None, None) => format!("v{v} {status}"),
    }
}

/// Where the app is reached, what it runs, and its rollout.
#[component]
fn Overview(live: LiveResource) -> impl IntoView {
    move || {
        // A failed load shows in the releases section.
        let (url, image, rollout) = match live.get() {
            Some(Ok(l)) => (
                Some(l.app.url),
                l.app.image.unwrap_or_else(|| "not deployed yet".into()),
                l.rollout
                    .as_ref()
                    .map_or_else(|| "none yet".into(), rollout_text),
            ),
            _ => (None, String::new(), String::new()),
        };
        let url = url.map(|url| match url {
            Some(url) => view! {
                <a href=url.clone() target="_blank" rel="noopener">{url.clone()}</a>
            }
            .into_any(),
            None => "none: a worker (no port) is not routed".into_any(),
        });
        view! {
            <dl class="facts">
                <dt>"URL"</dt><dd data-test="url">{url}</dd>
                <dt>"Image"</dt><dd data-test="image">{image}</dd>
                <dt>"Release"</dt><dd data-test="rollout">{rollout}</dd>
            </dl>
        }
    }
}

fn deploy_command(team: Signal<String>, name: Signal<String>) -> String {
    format!(
        "POST /api/v1/teams/{}/apps/{}/deploys {{\"image\": \"hello:1\"}}",
        team.get(),
        name.get()
    )
}

fn version(v: Option<u32>) -> String {
    v.map_or_else(|| "—".into(), |v| format!("v{v}"))
}

fn instance_cells(i: api::InstanceRow) -> Vec<String> {
    let dash = || "—".to_string();
    vec![
        i.state,
        version(i.release),
        i.node.unwrap_or_else(dash),
        i.endpoint.unwrap_or_else(dash),
        i.restarts.to_string(),
        i.last_exit_code.map_or_else(dash, |c| c.to_string()),
        i.started_at.as_deref().map_or_else(dash, utc_time),
        i.reason.unwrap_or_default(),
    ]
}

/// The instances running the app, like `kubectl get pods`.
#[component]
fn Instances(team: Signal<String>, name: Signal<String>, tick: RwSignal<u32>) -> impl IntoView {
    let data = rows_resource(Box::new(move || {
        tick.track();
        let (team, name) = (team.get(), name.get());
        Box::pin(async move {
            let list = api::instances(&team, &name).await?;
            Ok(list.into_iter().map(instance_cells).collect())
        })
    }));
    let heads = &[
        "State",
        "Release",
        "Node",
        "Endpoint",
        "Restarts",
        "Last exit",
        "Started (UTC)",
        "Reason",
    ];
    let list = move || {
        let empty = Empty {
            title: "No instances",
            text: "Deploy an image through the API; instances show here as the nodes start them:",
            code: deploy_command(team, name),
        };
        text_table(data.get(), "instances-table", heads, 0, empty, None)
    };
    view! {
        <section aria-labelledby="instances-title">
            <h2 id="instances-title">"Instances"</h2>
            {list}
        </section>
    }
}

fn release_cells(r: ReleaseRow) -> Vec<String> {
    // The image id's first 12 hex digits, as `docker images` shows it.
    let id = r
        .image_digest
        .as_deref()
        .map(|d| d.rsplit(':').next().unwrap_or(d));
    let image = match id.and_then(|hex| hex.get(..12)) {
        Some(digest) => format!("{} ({digest})", r.image),
        None => r.image,
    };
    vec![
        version(Some(r.version)),
        image,
        r.cause,
        r.created_by,
        utc_time(&r.created_at),
        r.status.as_str().into(),
        r.reason.unwrap_or_default(),
    ]
}

fn push_commands(images: &api::AppImagesView) -> String {
    format!(
        "docker login {} -u <your e-mail>   # password: an API token\n\
         docker tag <your image> {repo}:latest\n\
         docker push {repo}:latest",
        images.registry,
        repo = images.repository
    )
}

fn image_cells(t: api::ImageTagRow) -> Vec<String> {
    let hex = t.digest.rsplit(':').next().unwrap_or(&t.digest);
    vec![
        t.tag,
        format!("sha256:{}", hex.get(..12).unwrap_or(hex)),
        size_text(t.size_bytes),
        utc_time(&t.pushed_at),
    ]
}

/// The app's repository in the built-in registry: how to push to it, and its tags.
#[component]
fn Images(team: Signal<String>, name: Signal<String>, tick: RwSignal<u32>) -> impl IntoView {
    let images = LocalResource::new(move || {
        tick.track();
        let (team, name) = (team.get(), name.get());
        async move { api::images(&team, &name).await }
    });
    let heads = &["Tag", "Digest", "Size", "Pushed (UTC)"];
    let body = move || {
        let loaded = images.get();
        let (commands, deploys) = match &loaded {
            Some(Ok(i)) => (
                push_commands(i),
                match &i.deploy_on_push {
                    Some(tag) => format!("A push of the tag {tag} deploys the app."),
                    None => "Pushes do not deploy this app (deploy on push is off).".to_owned(),
                },
            ),
            _ => (String::new(), String::new()),
        };
        let first_push = match &loaded {
            Some(Ok(i)) => format!("docker push {}:latest", i.repository),
            _ => String::new(),
        };
        let rows = loaded.map(|r| r.map(|i| i.tags.into_iter().map(image_cells).collect()));
        let empty = Empty {
            title: "No images pushed",
            text: "Log in and push an image to this app's repository, as above:",
            code: first_push,
        };
        view! {
            <pre data-test="push-commands">{commands}</pre>
            <p data-test="deploy-on-push">{deploys}</p>
            {text_table(rows, "images-table", heads, usize::MAX, empty, None)}
        }
    };
    view! {
        <section aria-labelledby="images-title">
            <h2 id="images-title">"Images"</h2>
            {body}
        </section>
    }
}

/// The app's releases, newest first, with "Roll back" on the earlier ones for those who may.
#[component]
fn Releases(
    team: Signal<String>,
    name: Signal<String>,
    live: LiveResource,
    tick: RwSignal<u32>,
    app: LocalResource<ApiResult<App>>,
) -> impl IntoView {
    let session = use_session();
    let may_roll_back = move || session.can(&team.get(), Permission::WriteApps);
    // The version whose "Roll back" was clicked, awaiting "Confirm".
    let confirming = RwSignal::new(None::<u32>);
    let busy = RwSignal::new(false);
    let error = RwSignal::new(None::<String>);
    let roll_back = move |version: u32| {
        busy.set(true);
        error.set(None);
        let (team, name) = (team.get_untracked(), name.get_untracked());
        spawn_local(async move {
            let result = api::rollback(&team, &name, version).await;
            busy.set(false);
            match result {
                Ok(_) => {
                    confirming.set(None);
                    bump(tick);
                    // The app's settings and config vars are now the old release's.
                    app.refetch();
                }
                Err(e) => error.set(Some(e.message)),
            }
        });
    };
    let control = move |version: u32| {
        move || {
            if confirming.get() == Some(version) {
                view! {
                    <span>"Roll back to v" {version} "?"</span>
                    <button type="button" class="primary" disabled=move || busy.get()
                        on:click=move |_| roll_back(version)>"Confirm"</button>
                    <button type="button" class="link" on:click=move |_| confirming.set(None)>"Cancel"</button>
                }
                .into_any()
            } else {
                view! {
                    <button type="button" class="link" on:click=move |_| {
                        error.set(None);
                        confirming.set(Some(version));
                    }>"Roll back"</button>
                }
                .into_any()
            }
        }
    };
    let heads = &[
        "Version",
        "Image",
        "Cause",
        "By",
        "Created (UTC)",
        "Status",
        "Reason",
    ];
    let table = move || {
        let (rows, versions, serving) = match live.get() {
            None => (None, Vec::new(), None),
            Some(Err(e)) => (Some(Err(e)), Vec::new(), None),
            Some(Ok(l)) => (
                Some(Ok(l.releases.iter().cloned().map(release_cells).collect())),
                l.releases.iter().map(|r| r.version).collect::<Vec<_>>(),
                l.app.release,
            ),
        };
        // Going back means to a release older than the one that serves; whether that one may
        // be restored is the server's call (it answers 409 when not).
        let action = move |row: usize| {
            let v = versions[row];
            serving
                .is_some_and(|s| v < s)
                .then(|| control(v).into_any())
        };
        let empty = Empty {
            title: "No releases yet",
            text: "Each deploy, config or settings change and rollback makes a numbered release. \
                   Deploy an image:",
            code: deploy_command(team, name),
        };
        let action: Option<Action> = may_roll_back().then_some(&action);
        text_table(rows, "releases-table", heads, 5, empty, action)
    };
    view! {
        <section aria-labelledby="releases-title">
            <h2 id="releases-title">"Releases"</h2>
            {table}
            <ErrorBox message=error/>
        </section>
    }
}

/// A number field of the settings form.
fn number_field(
    id: &'static str,
    label: &'static str,
    unit: &'static str,
    value: RwSignal<String>,
    editable: Signal<bool>,
) -> impl IntoView {
    view! {
        <div class="field">
            <label for=id>{label}</label>
            <input
                id=id
                type="number"
                inputmode="numeric"
                prop:value=move || value.get()
                on:input=move |ev| value.set(event_target_value(&ev))
                readonly=move || !editable.get()
            />
            <span class="unit">{unit}</span>
        </div>
    }
}

#[component]
fn Settings(team: Signal<String>, app: App, tick: RwSignal<u32>) -> impl IntoView {
    let session = use_session();
    let editable = Signal::derive(move || session.can(&team.get(), Permission::WriteApps));
    let port_text = |port: Option<u16>| port.map(|p| p.to_string()).unwrap_or_default();
    let port = RwSignal::new(port_text(app.port));
    let replicas = RwSignal::new(app.replicas.to_string());
    let cpu = RwSignal::new(app.cpu_millis.to_string());
    let memory = RwSignal::new(app.memory_mib.to_string());
    let health = RwSignal::new(app.health_check_path.clone());
    let grace = RwSignal::new(app.stop_grace_seconds.to_string());
    let deadline = RwSignal::new(app.progress_deadline_seconds.to_string());
    let error = RwSignal::new(None::<String>);
    let saved = RwSignal::new(false);
    let app_name = app.name.to_string();

    let submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let number = |what: &str, s: String| {
            s.trim()
                .parse::<u32>()
                .map_err(|_| format!("{what} must be a whole number"))
        };
        let settings = (|| -> Result<AppSettings, String> {
            // An empty port makes the app a worker (not routed).
            let port = match port.get_untracked().trim() {
                "" => None,
                p => Some(
                    u16::try_from(number("port", p.to_owned())?)
                        .map_err(|_| "port must be between 1 and 65535".to_string())?,
                ),
            };
            let settings = AppSettings {
                port: Some(port),
                replicas: Some(number("replicas", replicas.get_untracked())?),
                cpu_millis: Some(number("CPU", cpu.get_untracked())?),
                memory_mib: Some(number("memory", memory.get_untracked())?),
                health_check_path: Some(health.get_untracked()),
                stop_grace_seconds: Some(number("stop grace", grace.get_untracked())?),
                progress_deadline_seconds: Some(number(
                    "progress deadline",
                    deadline.get_untracked(),
                )?),
                // Not shown on this form: kept as it is.
                deploy_on_push: None,
            };
            settings.validate()?;
            Ok(settings)
        })();
        let settings = match settings {
            Ok(s) => s,
            Err(e) => return error.set(Some(e)),
        };
        error.set(None);
        saved.set(false);
        let app_name = app_name.clone();
        spawn_local(async move {
            match api::update_app(&team.get_untracked(), &app_name, &settings).await {
                // Show what the server stored (it is the source of truth).
                Ok(app) => {
                    port.set(port_text(app.port));
                    replicas.set(app.replicas.to_string());
                    cpu.set(app.cpu_millis.to_string());
                    memory.set(app.memory_mib.to_string());
                    health.set(app.health_check_path);
                    grace.set(app.stop_grace_seconds.to_string());
                    deadline.set(app.progress_deadline_seconds.to_string());
                    saved.set(true);
                    // A change of port, resources or health check makes a release.
                    bump(tick);
                }
                Err(e) => error.set(Some(e.message)),
            }
        });
    };

    view! {
        <section aria-labelledby="settings-title">
            <h2 id="settings-title">"Settings"</h2>
            <form class="grid" on:submit=submit data-test="settings">
                {number_field("port", "Port", "empty: a worker, not routed", port, editable)}
                {number_field("replicas", "Replicas", "", replicas, editable)}
                {number_field("cpu", "CPU", "millicores", cpu, editable)}
                {number_field("memory", "Memory", "MiB", memory, editable)}
                {number_field("stop-grace", "Stop grace", "seconds from SIGTERM to SIGKILL", grace, editable)}
                {number_field("progress-deadline", "Progress deadline", "seconds a rollout may go without progress", deadline, editable)}
                <div class="field wide">
                    <label for="health">"Health check path"</label>
                    <input
                        id="health"
                        prop:value=move || health.get()
                        on:input=move |ev| health.set(event_target_value(&ev))
                        readonly=move || !editable.get()
                    />
                </div>
                <Show when=move || editable.get()>
                    <div class="actions">
                        <button type="submit" class="primary">"Save settings"</button>
                        <Show when=move || saved.get()>
                            <span class="ok" role="status">"Saved"</span>
                        </Show>
                    </div>
                </Show>
                <ErrorBox message=error/>
            </form>
        </section>
    }
}

#[component]
fn Config(team: Signal<String>, name: Signal<String>, tick: RwSignal<u32>) -> impl IntoView {
    let session = use_session();
    let editable = move || session.can(&team.get(), Permission::WriteApps);
    let vars = LocalResource::new(move || {
        let (team, name) = (team.get(), name.get());
        async move { api::config(&team, &name).await }
    });
    let error = RwSignal::new(None::<String>);
    let patch = move |changes: BTreeMap<ConfigKey, Option<String>>| {
        error.set(None);
        spawn_local(async move {
            let body = PatchConfig { vars: changes };
            match api::patch_config(&team.get_untracked(), &name.get_untracked(), &body).await {
                Ok(_) => {
                    vars.refetch();
                    // A config change makes a release (once the app has been deployed).
                    bump(tick);
                }
                Err(e) => error.set(Some(e.message)),
            }
        });
    };

    let table = move || {
        match vars.get() {
        None => view! { <Loading/> }.into_any(),
        Some(Err(e)) => view! { <ErrorBox message=Some(e.message)/> }.into_any(),
        Some(Ok(ConfigVars { vars, .. })) if vars.is_empty() => view! {
            <EmptyState title="No config vars">
                <p>"Config vars reach the app as environment variables; values are encrypted at rest."</p>
            </EmptyState>
        }
        .into_any(),
        Some(Ok(ConfigVars { vars, values_visible })) => view! {
            <table class="list" data-test="config-table">
                <thead>
                    <tr><th scope="col">"Name"</th><th scope="col">"Value"</th><th scope="col"><span class="visually-hidden">"Actions"</span></th></tr>
                </thead>
                <tbody>
                    {vars
                        .into_iter()
                        .map(|v| {
                            let key = v.key.clone();
                            let shown = match v.value {
                                Some(value) if values_visible => value,
                                _ => "••••••••".to_string(),
                            };
                            view! {
                                <tr>
                                    <td><code>{v.key.to_string()}</code></td>
                                    <td class="value" class:masked=!values_visible><code>{shown}</code></td>
                                    <td>
                                        <Show when=editable>
                                            <button
                                                type="button"
                                                class="link danger"
                                                aria-label=format!("Remove {key}")
                                                on:click={
                                                    let key = key.clone();
                                                    move |_| patch(BTreeMap::from([(key.clone(), None)]))
                                                }
                                            >
                                                "Remove"
                                            </button>
                                        </Show>
                                    </td>
                                </tr>
                            }
                        })
                        .collect_view()}
                </tbody>
            </table>
        }
        .into_any(),
    }
    };

    let new_key = RwSignal::new(String::new());
    let new_value = RwSignal::new(String::new());
    let add = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        match ConfigKey::parse(new_key.get_untracked().trim()) {
            Ok(key) => {
                patch(BTreeMap::from([(key, Some(new_value.get_untracked()))]));
                new_key.set(String::new());
                new_value.set(String::new());
            }
            Err(e) => error.set(Some(e.0)),
        }
    };

    view! {
        <section aria-labelledby="config-title">
            <h2 id="config-title">"Config vars"</h2>
            {table}
            <Show when=editable>
                <form class="inline" on:submit=add data-test="add-config">
                    <label for="config-key">"Name"</label>
                    <input id="config-key" placeholder="DATABASE_URL" autocomplete="off"
                        prop:value=move || new_key.get() on:input=move |ev| new_key.set(event_target_value(&ev))/>
                    <label for="config-value">"Value"</label>
                    <input id="config-value" autocomplete="off"
                        prop:value=move || new_value.get() on:input=move |ev| new_value.set(event_target_value(&ev))/>
                    <button type="submit" class="primary">"Set"</button>
                </form>
            </Show>
            <ErrorBox message=error/>
        </section>
    }
}

#[component]
fn Danger(team: Signal<String>, app: App) -> impl IntoView {
    let session = use_session();
    let navigate = use_navigate();
    let error = RwSignal::new(None::<String>);
    let confirming = RwSignal::new(false);
    let name = app.name.to_string();
    let delete = move |_| {
        if !confirming.get_untracked() {
            return confirming.set(true);
        }
        let (name, navigate) = (name.clone(), navigate.clone());
        spawn_local(async move {
            match api::delete_app(&team.get_untracked(), &name).await {
                Ok(()) => navigate(
                    &format!("/teams/{}/apps", team.get_untracked()),
                    NavigateOptions::default(),
                ),
                Err(e) => error.set(Some(e.message)),
            }
        });
    };
    view! {
        <Show when=move || session.can(&team.get(), Permission::DeleteApps)>
            <section class="danger-zone" aria-labelledby="danger-title">
                <h2 id="danger-title">"Delete app"</h2>
                <p>"Deleting an app removes its settings and config vars."</p>
                <button type="button" class="danger" on:click=delete.clone()>
                    {move || if confirming.get() { "Click again to delete" } else { "Delete app" }}
                </button>
                <ErrorBox message=error/>
            </section>
        </Show>
    }
}

#[cfg(test)]
mod tests {
    use gantry_common::releases::ReleaseStatus;

    use super::*;

    use crate::pages::app_rollout::tests::rollout;

    #[test]
    fn a_rollout_under_way_shows_its_progress_and_deadline() {
        assert_eq!(
            rollout_text(&rollout(ReleaseStatus::RollingOut)),
            "Rolling out v3 (from v2): 2 of 3 new instances ready, 1 old left; \
             fails at 2026-11-28 10:36:02 UTC without progress"
        );
        let first = RolloutView {
            from: None,
            desired: 1,
            ready: 0,
            old: 0,
            deadline_at: None,
            ..rollout(ReleaseStatus::Pending)
        };
        assert_eq!(
            rollout_text(&first),
            "Rolling out v3: 0 of 1 new instance ready"
        );
    }

    #[test]
    fn a_finished_rollout_shows_its_outcome() {
        let active = RolloutView {
            finished_at: Some("2026-11-28T10:31:02Z".into()),
            ..rollout(ReleaseStatus::Active)
        };
        assert_eq!(
            rollout_text(&active),
            "v3 active since 2026-11-28 10:31:02 UTC"
        );
        let failed = RolloutView {
            reason: Some("image gantry-hello:9 could not be pulled".into()),
            ..active
        };
        let failed = RolloutView {
            status: ReleaseStatus::Failed,
            ..failed
        };
        assert_eq!(
            rollout_text(&failed),
            "v3 failed: image gantry-hello:9 could not be pulled"
        );
    }

    #[test]
    fn image_rows_show_a_short_digest_a_size_and_utc_time() {
        let row = api::ImageTagRow {
            tag: "latest".into(),
            digest: format!("sha256:{}", "ab".repeat(32)),
            size_bytes: 1_300_000,
            pushed_at: "2026-12-01T10:20:30.123Z".into(),
        };
        let cells = image_cells(row);
        assert_eq!(cells[0], "latest");
        assert_eq!(cells[1], "sha256:abababababab");
        assert_eq!(cells[2], "1.3 MB");
        assert_eq!(size_text(999), "999 B");
        assert_eq!(size_text(104_857_600), "104.9 MB");
        let images = api::AppImagesView {
            registry: "127.0.0.1:8080".into(),
            repository: "127.0.0.1:8080/acme/web".into(),
            deploy_on_push: Some("latest".into()),
            tags: vec![],
        };
        let commands = push_commands(&images);
        assert!(commands.starts_with("docker login 127.0.0.1:8080 -u"));
        assert!(commands.ends_with("docker push 127.0.0.1:8080/acme/web:latest"));
        assert_eq!(commands.lines().count(), 3);
    }

    #[test]
    fn release_rows_show_a_short_digest_and_utc_time() {
        let row = ReleaseRow {
            version: 1,
            status: ReleaseStatus::Superseded,
            reason: None,
            image: "gantry-hello:latest".into(),
            image_digest: Some(format!("sha256:{}", "ab12".repeat(16))),
            cause: "Deploy gantry-hello:latest".into(),
            created_by: "alice@example.com".into(),
            created_at: "2026-11-28T10:31:02.123456Z".into(),
        };
        assert_eq!(
            release_cells(row),
            [
                "v1",
                "gantry-hello:latest (ab12ab12ab12)",
                "Deploy gantry-hello:latest",
                "alice@example.com",
                "2026-11-28 10:31:02",
                "superseded",
                "",
            ]
        );
    }
}
