//! `/teams/:team/apps/:app`: an app's instances, settings and config vars. Viewers see settings
//! read-only and config names with masked values; the server enforces the same rules.

use std::collections::BTreeMap;

use gantry_common::api::{App, AppSettings, ConfigVars, PatchConfig};
use gantry_common::{ConfigKey, Permission};
use leptos::prelude::*;
use leptos::task::spawn_local;
use leptos_router::hooks::use_navigate;
use leptos_router::NavigateOptions;

use super::param;
use crate::api;
use crate::components::{rows_resource, text_table, Empty, EmptyState, ErrorBox, Frame, Loading};
use crate::session::use_session;

#[component]
pub fn AppDetail() -> impl IntoView {
    let team = param("team");
    let name = param("app");
    let app = LocalResource::new(move || {
        let (team, name) = (team.get(), name.get());
        async move { api::app(&team, &name).await }
    });
    let body = move || match app.get() {
        None => view! { <Loading/> }.into_any(),
        Some(Err(e)) => view! { <ErrorBox message=Some(e.message)/> }.into_any(),
        Some(Ok(a)) => view! {
            <Instances team name/>
            <Settings team app=a.clone()/>
            <Config team name/>
            <Danger team app=a/>
        }
        .into_any(),
    };
    view! {
        <Frame team>
            <p class="crumbs"><a href=move || format!("/teams/{}/apps", team.get())>"Apps"</a> " / "</p>
            <h1>{move || name.get()}</h1>
            {body}
        </Frame>
    }
}

fn instance_cells(i: api::InstanceRow) -> Vec<String> {
    let dash = || "—".to_string();
    vec![
        i.state,
        i.node.unwrap_or_else(dash),
        i.endpoint.unwrap_or_else(dash),
        i.restarts.to_string(),
        i.last_exit_code.map_or_else(dash, |c| c.to_string()),
        i.started_at.as_deref().map_or_else(dash, utc_time),
        i.reason.unwrap_or_default(),
    ]
}

/// `2026-11-28T10:31:02.123Z` as `2026-11-28 10:31:02`: the server's times are UTC, and
/// slicing costs the wasm nothing next to a date library.
fn utc_time(rfc3339: &str) -> String {
    match (rfc3339.get(..10), rfc3339.get(11..19)) {
        (Some(date), Some(time)) => format!("{date} {time}"),
        _ => rfc3339.to_owned(),
    }
}

/// The deployed image and the instances running it, like `kubectl get pods`. Loaded with the
/// page and on "Refresh" (no polling: the page stays quiet while open).
#[component]
fn Instances(team: Signal<String>, name: Signal<String>) -> impl IntoView {
    let image = RwSignal::new(String::new());
    let data = rows_resource(Box::new(move || {
        let (team, name) = (team.get(), name.get());
        Box::pin(async move {
            // The app again, so that a refresh also shows a newer deploy's image.
            let app = api::app(&team, &name).await?;
            image.set(app.image.unwrap_or_else(|| "not deployed yet".into()));
            let list = api::instances(&team, &name).await?;
            Ok(list.into_iter().map(instance_cells).collect())
        })
    }));
    let heads = &[
        "State",
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
            code: format!(
                "POST /api/v1/teams/{}/apps/{}/deploys {{\"image\": \"hello:1\"}}",
                team.get(),
                name.get()
            ),
        };
        text_table(data.get(), "instances-table", heads, 0, empty)
    };
    view! {
        <section aria-labelledby="instances-title">
            <div class="head">
                <h2 id="instances-title">"Instances"</h2>
                <button type="button" on:click=move |_| data.refetch()>"Refresh"</button>
            </div>
            <p data-test="image">"Image: " {image}</p>
            {list}
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
fn Settings(team: Signal<String>, app: App) -> impl IntoView {
    let session = use_session();
    let editable = Signal::derive(move || session.can(&team.get(), Permission::WriteApps));
    let port_text = |port: Option<u16>| port.map(|p| p.to_string()).unwrap_or_default();
    let port = RwSignal::new(port_text(app.port));
    let replicas = RwSignal::new(app.replicas.to_string());
    let cpu = RwSignal::new(app.cpu_millis.to_string());
    let memory = RwSignal::new(app.memory_mib.to_string());
    let health = RwSignal::new(app.health_check_path.clone());
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
                ..AppSettings::default()
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
                    saved.set(true);
                }
                Err(e) => error.set(Some(e.message)),
            }
        });
    };

    view! {
        <section aria-labelledby="settings-title">
            <h2 id="settings-title">"Settings"</h2>
            <form class="grid" on:submit=submit data-test="settings">
                {number_field("port", "Port", "", port, editable)}
                {number_field("replicas", "Replicas", "", replicas, editable)}
                {number_field("cpu", "CPU", "millicores", cpu, editable)}
                {number_field("memory", "Memory", "MiB", memory, editable)}
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
fn Config(team: Signal<String>, name: Signal<String>) -> impl IntoView {
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
                Ok(_) => vars.refetch(),
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
