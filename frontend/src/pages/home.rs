//! `/`: sends a signed-in user to their first team's apps, anyone else to the login page.

use leptos::prelude::*;
use leptos_router::hooks::use_navigate;
use leptos_router::NavigateOptions;

use crate::components::{ErrorBox, Loading};
use crate::session::use_session;

#[component]
pub fn Home() -> impl IntoView {
    let session = use_session();
    let navigate = use_navigate();
    let error = RwSignal::new(None::<String>);
    Effect::new(move |_| match session.get() {
        Some(Ok(me)) => match me.teams.first() {
            Some(t) => navigate(
                &format!("/teams/{}/apps", t.team.slug),
                NavigateOptions::default(),
            ),
            None => navigate("/tokens", NavigateOptions::default()),
        },
        Some(Err(e)) if e.is_unauthorized() => navigate("/login", NavigateOptions::default()),
        Some(Err(e)) => error.set(Some(e.message)),
        None => {}
    });
    view! {
        <main class="page">
            <Loading/>
            <ErrorBox message=error/>
        </main>
    }
}
