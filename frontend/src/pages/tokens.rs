//! `/tokens`: API tokens for CI and scripts. The secret is shown once, with a copy button.

use gantry_common::api::{ApiToken, CreateToken};
use gantry_common::{Label, Role, TeamSlug};
use leptos::prelude::*;
use leptos::task::spawn_local;

use crate::api;
use crate::components::{EmptyState, ErrorBox, Frame, Loading};
use crate::session::use_session;

#[component]
pub fn Tokens() -> impl IntoView {
    let tokens = LocalResource::new(api::tokens);
    let error = RwSignal::new(None::<String>);
    let revoke = move |id: String| {
        spawn_local(async move {
            match api::revoke_token(&id).await {
                Ok(()) => tokens.refetch(),
                Err(e) => error.set(Some(e.message)),
            }
        });
    };
    let row = move |t: ApiToken| {
        let id = t.id.to_string();
        let used = t
            .last_used_at
            .map(|d| d.date().to_string())
            .unwrap_or_else(|| "never".into());
        view! {
            <tr>
                <td>{t.name.clone()}</td>
                <td>{t.team.to_string()}</td>
                <td>{t.role.as_str()}</td>
                <td><code>{format!("{}…", t.prefix)}</code></td>
                <td>{used}</td>
                <td>
                    <button type="button" class="link danger" aria-label=format!("Revoke {}", t.name)
                        on:click=move |_| revoke(id.clone())>"Revoke"</button>
                </td>
            </tr>
        }
    };
    let list = move || {
        match tokens.get() {
        None => view! { <Loading/> }.into_any(),
        Some(Err(e)) => view! { <ErrorBox message=Some(e.message)/> }.into_any(),
        Some(Ok(list)) if list.is_empty() => view! {
            <EmptyState title="No API tokens">
                <p>"Create one for CI: it acts for one team, with a role no higher than yours, sent as "
                   <code>"Authorization: Bearer gnt_…"</code> "."</p>
            </EmptyState>
        }
        .into_any(),
        Some(Ok(list)) => view! {
            <table class="list" data-test="tokens-table">
                <thead><tr>
                    <th scope="col">"Name"</th><th scope="col">"Team"</th><th scope="col">"Role"</th>
                    <th scope="col">"Token"</th><th scope="col">"Last used"</th>
                    <th scope="col"><span class="visually-hidden">"Actions"</span></th>
                </tr></thead>
                <tbody>{list.into_iter().map(row).collect_view()}</tbody>
            </table>
        }
        .into_any(),
    }
    };
    view! {
        <Frame team=String::new()>
            <h1>"API tokens"</h1>
            <CreateTokenForm on_created=move || tokens.refetch()/>
            <ErrorBox message=error/>
            {list}
        </Frame>
    }
}

#[component]
fn CreateTokenForm(on_created: impl Fn() + Copy + 'static) -> impl IntoView {
    let session = use_session();
    let name = RwSignal::new(String::new());
    let team = RwSignal::new(String::new());
    let role = RwSignal::new(Role::Member);
    let error = RwSignal::new(None::<String>);
    let secret = RwSignal::new(None::<String>);
    let copied = RwSignal::new(false);
    let teams = move || match session.get() {
        Some(Ok(me)) => me.teams,
        _ => Vec::new(),
    };
    // Roles up to the caller's own in the chosen team (the server checks it too).
    let roles = move || {
        let selected = team.get();
        let mine = teams()
            .into_iter()
            .find(|t| t.team.slug.as_str() == selected)
            .or_else(|| teams().into_iter().next())
            .map(|t| t.role);
        Role::ALL
            .into_iter()
            .filter(|r| mine.is_some_and(|m| r.rank() <= m.rank()))
            .collect::<Vec<_>>()
    };
    let submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let chosen = match team.get_untracked() {
            t if t.is_empty() => teams()
                .first()
                .map(|t| t.team.slug.to_string())
                .unwrap_or_default(),
            t => t,
        };
        let body = Label::parse(&name.get_untracked()).and_then(|name| {
            Ok(CreateToken {
                name,
                team: TeamSlug::parse(&chosen)?,
                role: role.get_untracked(),
            })
        });
        let body = match body {
            Ok(b) => b,
            Err(e) => return error.set(Some(e.0)),
        };
        error.set(None);
        copied.set(false);
        spawn_local(async move {
            match api::create_token(&body).await {
                Ok(created) => {
                    secret.set(Some(created.secret));
                    name.set(String::new());
                    on_created();
                }
                Err(e) => error.set(Some(e.message)),
            }
        });
    };
    let copy = move |_| {
        #[cfg(feature = "hydrate")]
        if let (Some(text), Some(window)) = (secret.get_untracked(), web_sys::window()) {
            let promise = window.navigator().clipboard().write_text(&text);
            spawn_local(async move {
                if wasm_bindgen_futures::JsFuture::from(promise).await.is_ok() {
                    copied.set(true);
                }
            });
        }
    };
    view! {
        <form class="inline" on:submit=submit data-test="create-token">
            <label for="token-name">"Name"</label>
            <input id="token-name" placeholder="ci" autocomplete="off"
                prop:value=move || name.get() on:input=move |ev| name.set(event_target_value(&ev))/>
            <label for="token-team">"Team"</label>
            <select id="token-team" on:change=move |ev| team.set(event_target_value(&ev))>
                {move || teams().into_iter().map(|t| {
                    let slug = t.team.slug.to_string();
                    view! { <option value=slug.clone()>{slug.clone()}</option> }
                }).collect_view()}
            </select>
            <label for="token-role">"Role"</label>
            <select id="token-role" on:change=move |ev| {
                if let Ok(r) = event_target_value(&ev).parse::<Role>() { role.set(r) }
            }>
                {move || roles().into_iter().map(|r| view! {
                    <option value=r.as_str() selected=move || role.get() == r>{r.as_str()}</option>
                }).collect_view()}
            </select>
            <button type="submit" class="primary">"Create token"</button>
            <ErrorBox message=error/>
        </form>
        {move || secret.get().map(|s| view! {
            <div class="secret" role="status" data-test="token-secret">
                <p>"Copy this token now: it will not be shown again."</p>
                <code>{s}</code>
                <button type="button" on:click=copy>{move || if copied.get() { "Copied" } else { "Copy" }}</button>
            </div>
        })}
    }
}
