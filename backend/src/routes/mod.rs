//! Every route of the server, registered in one place.
//!
//! REST handlers live one per file under a folder per resource; each carries a
//! `#[utoipa::path]` so the OpenAPI document is generated from the same code that serves it;
//! [`openapi`] holds what the document says beyond the handlers (security schemes, the answers
//! many operations share).

pub mod apps;
pub mod audit;
pub mod auth;
pub mod builds;
pub mod config;
pub mod health;
pub mod logs;
pub mod members;
pub mod metrics;
pub mod nodes;
pub mod openapi;
pub mod quotas;
pub mod registry;
pub mod releases;
pub mod teams;
pub mod tokens;
pub mod workloads;

use axum::routing::get;
use axum::Json;
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub use openapi::answers;
use openapi::{ApiDoc, MergeClosedAllOf};

use crate::state::AppState;

/// The REST API with its OpenAPI document served at `/api/v1/openapi.json`.
pub fn api() -> axum::Router<AppState> {
    let (router, mut openapi) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(auth::signup::signup))
        .routes(routes!(auth::login::login))
        .routes(routes!(auth::logout::logout))
        .routes(routes!(auth::csrf::csrf))
        .routes(routes!(auth::me::me))
        .routes(routes!(teams::list::list, teams::create::create))
        .routes(routes!(teams::get::get))
        .routes(routes!(members::list::list, members::add::add))
        .routes(routes!(members::update::update, members::remove::remove))
        .routes(routes!(tokens::list::list, tokens::create::create))
        .routes(routes!(tokens::revoke::revoke))
        .routes(routes!(apps::list::list, apps::create::create))
        .routes(routes!(
            apps::get::get,
            apps::update::update,
            apps::delete::delete
        ))
        .routes(routes!(
            config::get::get,
            config::update::replace,
            config::update::patch
        ))
        .routes(routes!(audit::list::list))
        .routes(routes!(audit::platform::list))
        .routes(routes!(workloads::deploy::create))
        .routes(routes!(workloads::scale::scale))
        .routes(routes!(workloads::strategy::put))
        .routes(routes!(workloads::instances::list))
        .routes(routes!(workloads::routes::get))
        .routes(routes!(
            workloads::autoscaling::get,
            workloads::autoscaling::put,
            workloads::autoscaling::delete
        ))
        .routes(routes!(quotas::get::get))
        .routes(routes!(quotas::set::put, quotas::set::delete))
        .routes(routes!(workloads::rollouts::current))
        .routes(routes!(workloads::rollout_stream::stream))
        .routes(routes!(workloads::rollouts::promote))
        .routes(routes!(workloads::rollouts::abort))
        .routes(routes!(workloads::rollouts::pause))
        .routes(routes!(workloads::rollouts::resume))
        .routes(routes!(builds::list::list))
        .routes(routes!(builds::get::get))
        .routes(routes!(builds::cancel::cancel))
        .routes(routes!(builds::settings::get, builds::settings::put))
        .routes(routes!(releases::list::list))
        .routes(routes!(releases::get::get))
        .routes(routes!(releases::rollback::rollback))
        .routes(routes!(nodes::list::list))
        .routes(routes!(nodes::stream::stream))
        .routes(routes!(nodes::remove::remove))
        .routes(routes!(
            nodes::join_tokens::list,
            nodes::join_tokens::create
        ))
        .routes(routes!(nodes::join_tokens::revoke))
        .routes(routes!(nodes::maintenance::cordon))
        .routes(routes!(nodes::maintenance::uncordon))
        .routes(routes!(nodes::maintenance::drain))
        .routes(routes!(registry::gc::collect))
        .routes(routes!(registry::usage::get))
        .routes(routes!(registry::images::list))
        .routes(routes!(logs::history::list))
        .routes(routes!(logs::stream::stream))
        .routes(routes!(logs::retention::get, logs::retention::put))
        .routes(routes!(metrics::history::get))
        .routes(routes!(metrics::stream::stream))
        .split_for_parts();
    answers::Shared.modify(&mut openapi);
    MergeClosedAllOf.modify(&mut openapi);
    router
        .route(
            "/api/v1/openapi.json",
            get(move || async move { Json(openapi) }),
        )
        // A websocket for `gantry agent`, outside the OpenAPI document (see common::agent).
        .route(
            "/api/v1/agent/connect",
            get(crate::cluster::agent_socket::connect),
        )
        // Where an agent downloads the context of a build it runs (with its node credential).
        .route(
            "/api/v1/agent/builds/{id}/context",
            get(crate::builds::context::download),
        )
}
