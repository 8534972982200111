//! What the OpenAPI document says beyond each handler's `#[utoipa::path]`: its title and
//! security schemes, the probes served outside `/api/v1`, the answers many operations share
//! ([`answers`]), and a fix-up of schemas the derive gets wrong ([`MergeClosedAllOf`]).

use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::health;

#[derive(OpenApi)]
#[openapi(
    info(title = "Gantry API", description = "The REST API of Gantry, a self-hostable PaaS. \
        Authenticate with `Authorization: Bearer gnt_…` (API tokens), or with the session cookie \
        from /api/v1/auth/login plus the `x-csrf-token` header on writes. Every error has the \
        body `{\"error\": {\"code\": …, \"message\": …}}`."),
    modifiers(&Security),
    security(("token" = []), ("session" = [])),
    // Served outside `/api/v1` (see startup.rs), described here all the same.
    paths(health::healthz, health::readyz, crate::metrics::prometheus::metrics),
    tags(
        (name = "health", description = "Probes for supervisors and load balancers"),
        (name = "auth", description = "Accounts and sessions"),
        (name = "teams"), (name = "members"), (name = "tokens"), (name = "apps"), (name = "config"),
        (name = "audit", description = "The teams' and the platform's audit logs"),
        (name = "workloads", description = "Deploys, scaling, strategies, instances, routes and rollouts"),
        (name = "releases", description = "An app's numbered releases, and rollback"),
        (name = "builds", description = "Builds of `git push` to an app's remote (`<server>/git/<team>/<app>.git`, git's smart HTTP with your e-mail and an API token): their logs, cancelling, and build settings"),
        (name = "nodes", description = "Worker nodes of the embedded cluster (platform admins)"),
        (name = "metrics", description = "Apps' metrics per release: history and live streams (websockets); the Prometheus exposition is GET /metrics"),
        (name = "logs", description = "Apps' logs and platform events: history with search, and live streams (websockets)"),
        (name = "registry", description = "The built-in registry's views and housekeeping (the registry itself is the OCI distribution API at /v2/)"),
    )
)]
pub struct ApiDoc;

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
            "TooManyStreams",
            "429",
            "Too many live streams open for this user (`GANTRY_STREAMS_PER_USER`): close one \
             first",
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

    /// Every websocket stream (`live.rs`): the switch, and 429 beyond the per-user cap.
    pub struct Stream;

    impl IntoResponses for Stream {
        fn responses() -> BTreeMap<String, RefOr<Response>> {
            let mut answers = refs(&["TooManyStreams"]);
            let switched = ResponseBuilder::new()
                .description("Switched to the websocket: JSON text frames as described above")
                .build();
            answers.insert("101".to_owned(), RefOr::T(switched));
            answers
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
pub struct MergeClosedAllOf;

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
