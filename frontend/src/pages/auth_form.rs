//! The e-mail and password form shared by login and sign-up.

use gantry_common::api::{Credentials, SessionInfo};
use gantry_common::{Email, Password};
use leptos::prelude::*;
use leptos::task::spawn_local;
use leptos_router::hooks::use_navigate;
use leptos_router::NavigateOptions;

use crate::api::ApiResult;
use crate::components::ErrorBox;
use crate::session::use_session;

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Login,
    Signup,
}

#[component]
pub fn AuthForm(kind: Kind) -> impl IntoView {
    let session = use_session();
    let navigate = use_navigate();
    let email = RwSignal::new(String::new());
    let password = RwSignal::new(String::new());
    let error = RwSignal::new(None::<String>);
    let busy = RwSignal::new(false);

    let submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        // The same checks as the server, so most mistakes are shown without a round trip.
        let credentials = Email::parse(&email.get_untracked()).and_then(|email| {
            Ok(Credentials {
                email,
                password: Password::parse(&password.get_untracked())?,
            })
        });
        let credentials = match credentials {
            Ok(c) => c,
            Err(e) => return error.set(Some(e.0)),
        };
        busy.set(true);
        error.set(None);
        let navigate = navigate.clone();
        spawn_local(async move {
            let result: ApiResult<SessionInfo> = match kind {
                Kind::Login => crate::api::login(&credentials).await,
                Kind::Signup => crate::api::signup(&credentials).await,
            };
            // Store who we are now, then go to the first team: no page sees the old state.
            let me = match result {
                Ok(_) => crate::api::me().await,
                Err(e) => Err(e),
            };
            busy.set(false);
            match me {
                Ok(me) => {
                    let to = me.teams.first().map_or_else(
                        || "/tokens".to_owned(),
                        |t| format!("/teams/{}/apps", t.team.slug),
                    );
                    session.set(Ok(me));
                    navigate(&to, NavigateOptions::default());
                }
                Err(e) => error.set(Some(e.message)),
            }
        });
    };

    let (title, action, other_text, other_link, other_label, autocomplete) = match kind {
        Kind::Login => (
            "Log in to Gantry",
            "Log in",
            "No account yet?",
            "/signup",
            "Sign up",
            "current-password",
        ),
        Kind::Signup => (
            "Create your Gantry account",
            "Sign up",
            "Have an account?",
            "/login",
            "Log in",
            "new-password",
        ),
    };
    view! {
        <main class="auth">
            <h1>{title}</h1>
            <form on:submit=submit novalidate>
                <label for="email">"E-mail"</label>
                <input
                    id="email"
                    name="email"
                    type="email"
                    autocomplete="email"
                    required
                    prop:value=move || email.get()
                    on:input=move |ev| email.set(event_target_value(&ev))
                />
                <label for="password">"Password"</label>
                <input
                    id="password"
                    name="password"
                    type="password"
                    autocomplete=autocomplete
                    required
                    minlength="8"
                    maxlength="128"
                    prop:value=move || password.get()
                    on:input=move |ev| password.set(event_target_value(&ev))
                />
                {(kind == Kind::Signup).then(|| view! { <p class="hint">"At least 8 characters."</p> })}
                <ErrorBox message=error/>
                <button type="submit" class="primary" disabled=move || busy.get()>{action}</button>
            </form>
            <p class="switch">{other_text} " " <a href=other_link>{other_label}</a></p>
        </main>
    }
}
