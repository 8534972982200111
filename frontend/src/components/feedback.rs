//! Loading states, error messages and empty states.

use leptos::prelude::*;

/// A fixed-height placeholder, the same on the server and in the browser, so that hydration
/// replaces it without moving the page.
#[component]
pub fn Loading() -> impl IntoView {
    view! { <p class="loading" aria-busy="true">"Loading…"</p> }
}

/// Shows the message when there is one, announced to screen readers.
#[component]
pub fn ErrorBox(#[prop(into)] message: Signal<Option<String>>) -> impl IntoView {
    move || {
        message
            .get()
            .map(|m| view! { <p class="error" role="alert">{m}</p> })
    }
}

/// What a newcomer sees on an empty list: what this is, and what to do next.
#[component]
pub fn EmptyState(#[prop(into)] title: String, children: Children) -> impl IntoView {
    view! {
        <div class="empty">
            <h3>{title}</h3>
            {children()}
        </div>
    }
}
