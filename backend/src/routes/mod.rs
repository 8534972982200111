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
        from /api/v1/auth/login plus the `x-csrf-token` header on writes. Every error has the \
        body `{\"error\": {\"code\": …, \"message\": …}}`."),
    modifiers(&Security),
    security(("token" = []), ("session" = [])),
    // Served outside `/api/v1` (see startup.rs), described here all the same.
    paths(health::healthz, health::readyz),
    tags(
        (name = "health", description = "Probes for supervisors and load balancers"),
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

/// Answers many operations share, described once under `components/responses` and named in each
/// operation's `responses(...)` by the sets below (they come from the shared extractors: `Caller`,
/// `ApiJson`, `ApiPath`). `Shared` also gives every operation the 500. The 403 of the origin
/// guard and the CSRF check is in each write's own 403, with the refusals of its handler.
pub mod answers {
    use std::collections::BTreeMap;

    use utoipa::openapi::response::{Response, ResponseBuilder};
    use utoipa::openapi::{ContentBuilder, Ref, RefOr};
    use utoipa::{IntoResponses, Modify};

    /// Name under `components/responses`, status, description.
    const SHARED: &[(&str, &str, &str)] = &[
        (
            "BadRequest",
            "400",
            "Malformed: the body is not JSON, or a path parameter is not of its type \
             (e.g. not a UUID, not a number, not UTF-8)",
        ),
        (
            "Unauthorized",
            "401",
            "Not signed in: no session cookie or an expired one, or a missing, invalid or \
             revoked API token",
        ),
        ("PayloadTooLarge", "413", "The body is larger than 2 MiB"),
        (
            "UnsupportedMediaType",
            "415",
            "The body is not sent with `Content-Type: application/json`",
        ),
        (
            "Invalid",
            "422",
            "The JSON has the wrong shape: a missing or unknown field, a value of the wrong \
             type, or a name or number outside its constraints",
        ),
        (
            "Internal",
            "500",
            "Something went wrong on the server; it has been logged, and the message says \
             nothing more",
        ),
    ];

    fn refs(names: &[&str]) -> BTreeMap<String, RefOr<Response>> {
        names
            .iter()
            .map(|name| {
                let (_, status, _) = SHARED
                    .iter()
                    .find(|(n, _, _)| n == name)
                    .expect("a shared answer");
                (
                    (*status).to_owned(),
                    RefOr::Ref(Ref::from_response_name(*name)),
                )
            })
            .collect()
    }

    /// Every operation with a security requirement (`Caller`): 401.
    pub struct Authenticated;

    impl IntoResponses for Authenticated {
        fn responses() -> BTreeMap<String, RefOr<Response>> {
            refs(&["Unauthorized"])
        }
    }

    /// Every operation with a JSON body (`ApiJson`): 400, 413, 415, 422.
    pub struct JsonBody;

    impl IntoResponses for JsonBody {
        fn responses() -> BTreeMap<String, RefOr<Response>> {
            refs(&[
                "BadRequest",
                "PayloadTooLarge",
                "UnsupportedMediaType",
                "Invalid",
            ])
        }
    }

    /// Every operation with path parameters (`ApiPath`): 400 for one that does not parse.
    pub struct PathParams;

    impl IntoResponses for PathParams {
        fn responses() -> BTreeMap<String, RefOr<Response>> {
            refs(&["BadRequest"])
        }
    }

    /// Puts the shared answers under `components/responses`, and the 500 in every operation;
    /// applied to the whole document, once every route is in it.
    pub struct Shared;

    impl Modify for Shared {
        fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
            let components = openapi.components.get_or_insert_with(Default::default);
            for (name, _, description) in SHARED {
                let body = ContentBuilder::new()
                    .schema(Some(Ref::from_schema_name("ErrorBody")))
                    .build();
                let response = ResponseBuilder::new()
                    .description(*description)
                    .content("application/json", body)
                    .build();
                components
                    .responses
                    .insert((*name).to_owned(), response.into());
            }
            for item in openapi.paths.paths.values_mut() {
                let operations = [
                    &mut item.get,
                    &mut item.put,
                    &mut item.post,
                    &mut item.delete,
                    &mut item.options,
                    &mut item.head,
                    &mut item.patch,
                    &mut item.trace,
                ];
                for operation in operations.into_iter().flatten() {
                    operation
                        .responses
                        .responses
                        .entry("500".to_owned())
                        .or_insert_with(|| RefOr::Ref(Ref::from_response_name("Internal")));
                }
            }
        }
    }
}

/// A body with a `#[serde(flatten)]` struct that denies unknown fields (`CreateApp` holds
/// `AppSettings`) comes out of the derive as `allOf: [AppSettings, {name}]`, where `AppSettings`
/// forbids `name`: no body would validate. This merges such an `allOf` into one closed object
/// with every property, which is what the server accepts.
struct MergeClosedAllOf;

impl Modify for MergeClosedAllOf {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::schema::{AdditionalProperties, Object, ObjectBuilder, Schema};
        use utoipa::openapi::RefOr;

        let Some(components) = openapi.components.as_mut() else {
            return;
        };
        let named = components.schemas.clone();
        let object = |part: &RefOr<Schema>| -> Option<Object> {
            let part = match part {
                RefOr::Ref(r) => {
                    named.get(r.ref_location.trim_start_matches("#/components/schemas/"))?
                }
                inline => inline,
            };
            match part {
                RefOr::T(Schema::Object(o)) => Some(o.clone()),
                _ => None,
            }
        };
        for schema in components.schemas.values_mut() {
            let RefOr::T(Schema::AllOf(all)) = schema else {
                continue;
            };
            let Some(parts) = all.items.iter().map(object).collect::<Option<Vec<_>>>() else {
                continue;
            };
            let closed = parts.iter().any(|o| {
                matches!(
                    o.additional_properties.as_deref(),
                    Some(AdditionalProperties::FreeForm(false))
                )
            });
            if !closed {
                continue;
            }
            let mut merged = ObjectBuilder::new()
                .description(all.description.clone())
                .additional_properties(Some(AdditionalProperties::<Schema>::FreeForm(false)));
            for part in parts {
                for (name, property) in part.properties {
                    merged = merged.property(name, property);
                }
                for name in part.required {
                    merged = merged.required(name);
                }
            }
            *schema = RefOr::T(Schema::Object(merged.build()));
        }
    }
}

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
}
