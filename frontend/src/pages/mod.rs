//! One component per page.

pub mod app_autoscaling;
pub mod app_build;
pub mod app_builds;
pub mod app_detail;
pub mod app_logs;
pub mod app_metrics;
pub mod app_rollout;
pub mod app_strategy;
pub mod apps;
mod auth_form;
pub mod home;
pub mod login;
pub mod members;
pub mod nodes;
pub mod not_found;
pub mod signup;
pub mod tokens;

use leptos::prelude::*;
use leptos_router::hooks::use_params_map;

/// A named parameter of the current route, as a signal.
pub(crate) fn param(name: &'static str) -> Signal<String> {
    let params = use_params_map();
    Signal::derive(move || params.read().get(name).unwrap_or_default())
}
