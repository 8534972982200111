//! Every route of the server, registered in one place.
//!
//! REST handlers live one per file under a folder per resource; each carries a
//! `#[utoipa::path]` so the OpenAPI document is generated from the same code that serves it.

pub mod apps;
pub mod audit;
pub mod auth;
pub mod config;
pub mod health;
pub mod members;
pub mod nodes;
pub mod releases;
pub mod teams;
pub mod tokens;
pub mod workloads;

use axum::routing::get;
use axum::Json;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::state::AppState;

#[derive(OpenApi)]
#[openapi(
    info(title = "Gantry API", description = "The REST API of Gantry, a self-hostable PaaS. \
        Authenticate with `Authorization: Bearer gnt_…` (API tokens), or with the session cookie \
        from /api/v1/auth/login plus the `x-csrf-token` header on writes."),
    modifiers(&Security),
    security(("token" = []), ("session" = [])),
    tags(
        (name = "auth", description = "Accounts and sessions"),
        (name = "teams"), (name = "members"), (name = "tokens"), (name = "apps"), (name = "config"),
        (name = "audit", description = "The teams' and the platform's audit logs"),
        (name = "workloads", description = "Deploys, scaling, strategies, instances, routes and rollouts"),
        (name = "releases", description = "An app's numbered releases, and rollback"),
        (name = "nodes", description = "Worker nodes of the embedded cluster (platform admins)"),
    )
)]
struct ApiDoc;

struct Security;

impl Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "token",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
        components.add_security_scheme(
            "session",
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::new(
                crate::startup::SESSION_COOKIE,
            ))),
        );
    }
}

/// The REST API with its OpenAPI document served at `/api/v1/openapi.json`.
pub fn api() -> axum::Router<AppState> {
    let (router, openapi) = OpenApiRouter::with_openapi(ApiDoc::openapi())
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
        .routes(routes!(workloads::rollout::get))
        .routes(routes!(releases::list::list))
        .routes(routes!(releases::get::get))
        .routes(routes!(releases::rollback::rollback))
        .routes(routes!(nodes::list::list))
        .routes(routes!(nodes::remove::remove))
        .routes(routes!(
            nodes::join_tokens::list,
            nodes::join_tokens::create
        ))
        .routes(routes!(nodes::join_tokens::revoke))
        .routes(routes!(nodes::maintenance::cordon))
        .routes(routes!(nodes::maintenance::uncordon))
        .routes(routes!(nodes::maintenance::drain))
        .split_for_parts();
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
}
