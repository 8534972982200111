//! `/teams/:team/apps`: the team's apps, and a form to create one (name checked as you type).

use gantry_common::api::{AppSettings, CreateApp};
use gantry_common::{AppName, Permission};
use leptos::prelude::*;
use leptos::task::spawn_local;
use leptos_router::components::A;

use super::param;
use crate::api;
use crate::components::{size_text, EmptyState, ErrorBox, Frame, Loading};
use crate::session::use_session;

#[component]
pub fn Apps() -> impl IntoView {
    let team = param("team");
    let session = use_session();
    let apps = LocalResource::new(move || {
        let team = team.get();
        async move { api::apps(&team).await }
    });
    let can_write = move || session.can(&team.get(), Permission::WriteApps);
    let usage = LocalResource::new(move || {
        let team = team.get();
        async move { api::registry_usage(&team).await }
    });
    // What the team's images take in the built-in registry (nothing while it loads or fails).
    let storage = move || {
        usage.get().and_then(Result::ok).map(|u| {
            let quota = u
                .quota_bytes
                .map_or_else(String::new, |q| format!(" of {}", size_text(q)));
            format!("Registry storage: {} used{quota}", size_text(u.used_bytes))
        })
    };

    let list = move || {
        match apps.get() {
        None => view! { <Loading/> }.into_any(),
        Some(Err(e)) => view! { <ErrorBox message=Some(e.message)/> }.into_any(),
        Some(Ok(list)) if list.is_empty() => view! {
            <EmptyState title="No apps yet">
                <p>
                    "An app is a container image Gantry keeps running. "
                    {move || if can_write() {
                        "Create your first one with the form above, then deploy an image to it."
                    } else {
                        "Ask an admin or member of this team to create one."
                    }}
                </p>
            </EmptyState>
        }
        .into_any(),
        Some(Ok(list)) => view! {
            <table class="list" data-test="apps-table">
                <thead>
                    <tr>
                        <th scope="col">"Name"</th>
                        <th scope="col">"Replicas"</th>
                        <th scope="col">"CPU"</th>
                        <th scope="col">"Memory"</th>
                        <th scope="col">"Port"</th>
                    </tr>
                </thead>
                <tbody>
                    {list
                        .into_iter()
                        .map(|app| {
                            let href = format!("/teams/{}/apps/{}", app.team, app.name);
                            view! {
                                <tr>
                                    <td><A href=href>{app.name.to_string()}</A></td>
                                    <td>{app.replicas}</td>
                                    <td>{format!("{} m", app.cpu_millis)}</td>
                                    <td>{format!("{} MiB", app.memory_mib)}</td>
                                    <td>{app.port.map_or_else(|| "worker".to_string(), |p| p.to_string())}</td>
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

    view! {
        <Frame team>
            <h1>"Apps"</h1>
            <Show when=can_write>
                <CreateAppForm team on_created=move || apps.refetch()/>
            </Show>
            {list}
            <p class="muted" data-test="registry-usage">{storage}</p>
        </Frame>
    }
}

#[component]
fn CreateAppForm(team: Signal<String>, on_created: impl Fn() + Copy + 'static) -> impl IntoView {
    let name = RwSignal::new(String::new());
    let error = RwSignal::new(None::<String>);
    let busy = RwSignal::new(false);
    // Validated as you type with the server's own rule; empty is not an error yet.
    let name_problem = move || {
        let n = name.get();
        (!n.is_empty())
            .then(|| AppName::parse(&n).err().map(|e| e.0))
            .flatten()
    };
    let submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let parsed = match AppName::parse(&name.get_untracked()) {
            Ok(n) => n,
            Err(e) => return error.set(Some(e.0)),
        };
        busy.set(true);
        error.set(None);
        spawn_local(async move {
            let body = CreateApp {
                name: parsed,
                settings: AppSettings::default(),
            };
            let result = api::create_app(&team.get_untracked(), &body).await;
            busy.set(false);
            match result {
                Ok(_) => {
                    name.set(String::new());
                    on_created();
                }
                Err(e) => error.set(Some(e.message)),
            }
        });
    };
    view! {
        <form class="inline" on:submit=submit data-test="create-app">
            <label for="app-name">"New app"</label>
            <input
                id="app-name"
                name="name"
                placeholder="hello"
                autocomplete="off"
                aria-describedby="app-name-help"
                aria-invalid=move || name_problem().is_some().to_string()
                prop:value=move || name.get()
                on:input=move |ev| name.set(event_target_value(&ev))
            />
            <button type="submit" class="primary" disabled=move || busy.get() || name_problem().is_some()>
                "Create app"
            </button>
            <p id="app-name-help" class="hint" class:invalid=move || name_problem().is_some()>
                {move || name_problem().unwrap_or_else(|| "Lowercase letters, digits and '-'; it becomes <app>.<team>.<domain>.".into())}
            </p>
            <ErrorBox message=error/>
        </form>
    }
}
