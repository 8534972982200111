//! The Gantry dashboard: Leptos components rendered by the server (`ssr`) and hydrated in the
//! browser (`hydrate`). It holds no business rules: data comes from the REST API through
//! [`api`], with the request/response types and permission table of `gantry_common`.
//!
//! # Layout
//! - [`shell`]: the HTML document around the app (hydration scripts, stylesheet).
//! - [`App`]: the router; one page per route in `pages/`.
//! - [`session`]: the signed-in user and their teams, shared by every page.
//! - [`api`]: the typed REST client (browser only).
//! - [`live`]: websockets to the server's live streams (logs, metrics, nodes, rollouts).
//! - `components/`: the page frame (header, team switcher, nav), empty states, error boxes.
//!
//! Pages render a fixed-size loading state on the server and fill in after hydration, so the
//! server never needs the user's data and hydration never shifts the layout.

pub mod api;
pub mod components;
pub mod live;
pub mod pages;
pub mod session;

use leptos::prelude::*;
use leptos_meta::{provide_meta_context, MetaTags, Title};
use leptos_router::components::{Route, Router, Routes};
use leptos_router::path;

/// File names of the browser build under `/<site_pkg_dir>/`.
pub const OUTPUT_NAME: &str = "gantry";
pub const STYLESHEET: &str = "gantry.css";

/// The whole HTML document, rendered by the server for every dashboard URL.
pub fn shell(options: LeptosOptions) -> impl IntoView {
    let css = format!("/{}/{STYLESHEET}", options.site_pkg_dir);
    view! {
        <!DOCTYPE html>
        <html lang="en">
            <head>
                <meta charset="utf-8"/>
                <meta name="viewport" content="width=device-width, initial-scale=1"/>
                <link rel="stylesheet" href=css/>
                <HydrationScripts options/>
                <MetaTags/>
            </head>
            <body>
                <App/>
            </body>
        </html>
    }
}

#[component]
pub fn App() -> impl IntoView {
    provide_meta_context();
    session::provide();
    view! {
        <Title text="Gantry"/>
        <Router>
            <Routes fallback=pages::not_found::NotFound>
                <Route path=path!("/") view=pages::home::Home/>
                <Route path=path!("/login") view=pages::login::Login/>
                <Route path=path!("/signup") view=pages::signup::Signup/>
                <Route path=path!("/tokens") view=pages::tokens::Tokens/>
                <Route path=path!("/nodes") view=pages::nodes::Nodes/>
                <Route path=path!("/teams/:team/apps") view=pages::apps::Apps/>
                <Route path=path!("/teams/:team/apps/:app") view=pages::app_detail::AppDetail/>
                <Route path=path!("/teams/:team/apps/:app/logs") view=pages::app_logs::AppLogs/>
                <Route path=path!("/teams/:team/apps/:app/builds") view=pages::app_builds::AppBuilds/>
                <Route path=path!("/teams/:team/apps/:app/builds/:number") view=pages::app_build::AppBuild/>
                <Route path=path!("/teams/:team/members") view=pages::members::Members/>
            </Routes>
        </Router>
    }
}

/// Entry point of the browser build.
#[cfg(feature = "hydrate")]
#[wasm_bindgen::prelude::wasm_bindgen]
pub fn hydrate() {
    // No panic hook: the browser build aborts on panic without formatting a message
    // (scripts/build-dashboard), so there is nothing for a hook to print.
    leptos::mount::hydrate_body(App);
    // A marker for tests and the performance benchmark: the page is now interactive.
    if let Some(window) = web_sys::window() {
        if let Some(performance) = window.performance() {
            let _ = performance.mark("gantry-hydrated");
        }
        if let Some(body) = window.document().and_then(|d| d.body()) {
            let _ = body.set_attribute("data-hydrated", "true");
        }
    }
}
