//! The frame around every signed-in page: header with the team switcher, navigation, the user
//! and log-out. Sends the visitor to the login page when the session is gone.

use leptos::prelude::*;
use leptos::task::spawn_local;
use leptos_router::components::A;
use leptos_router::hooks::use_navigate;
use leptos_router::NavigateOptions;

use crate::api;
use crate::session::use_session;

#[component]
pub fn Frame(
    /// The team the page is about (empty for account pages such as tokens).
    #[prop(into)]
    team: Signal<String>,
    children: Children,
) -> impl IntoView {
    let session = use_session();
    let navigate = use_navigate();
    {
        let navigate = navigate.clone();
        Effect::new(move |_| {
            if let Some(Err(e)) = session.get() {
                if e.is_unauthorized() {
                    navigate("/login", NavigateOptions::default());
                }
            }
        });
    }
    // The team the nav links point at: the page's, else the first one.
    let current = move || {
        let team = team.get();
        if !team.is_empty() {
            return team;
        }
        match session.get() {
            Some(Ok(me)) => me
                .teams
                .first()
                .map(|t| t.team.slug.to_string())
                .unwrap_or_default(),
            _ => String::new(),
        }
    };
    let email = move || match session.get() {
        Some(Ok(me)) => me.user.email.to_string(),
        _ => String::new(),
    };
    let logout = {
        let navigate = navigate.clone();
        move |_| {
            let navigate = navigate.clone();
            spawn_local(async move {
                let result = api::logout().await;
                session.set(Err(result.err().unwrap_or(api::ApiError {
                    status: 401,
                    message: "signed out".into(),
                })));
                navigate("/login", NavigateOptions::default());
            });
        }
    };
    let switch = move |ev: leptos::ev::Event| {
        let slug = event_target_value(&ev);
        navigate(&format!("/teams/{slug}/apps"), NavigateOptions::default());
    };
    let admin = move || matches!(session.get(), Some(Ok(me)) if me.user.is_platform_admin);
    let teams = move || match session.get() {
        Some(Ok(me)) => me.teams,
        _ => Vec::new(),
    };

    view! {
        <header class="top">
            <a class="brand" href="/">"Gantry"</a>
            <label class="switcher">
                <span class="visually-hidden">"Team"</span>
                <select on:change=switch aria-label="Team" data-test="team-switcher">
                    {move || {
                        let selected = current();
                        teams()
                            .into_iter()
                            .map(|t| {
                                let slug = t.team.slug.to_string();
                                let is_selected = slug == selected;
                                view! {
                                    <option value=slug.clone() selected=is_selected>
                                        {slug.clone()}
                                    </option>
                                }
                            })
                            .collect_view()
                    }}
                </select>
            </label>
            <nav aria-label="Main">
                <A href=move || format!("/teams/{}/apps", current())>"Apps"</A>
                <A href=move || format!("/teams/{}/members", current())>"Team"</A>
                <A href="/tokens">"API tokens"</A>
                {move || admin().then(|| view! { <A href="/nodes">"Nodes"</A> })}
            </nav>
            <div class="user">
                <span class="email" data-test="user-email">{email}</span>
                <button type="button" class="link" on:click=logout>"Log out"</button>
            </div>
        </header>
        <main class="page">{children()}</main>
    }
}
