//! The OpenAPI document tells the truth (CI users generate clients from it): every operation,
//! taken from the document itself, is sent the requests any client can get wrong, and each
//! answer must be in the error shape with a status its operation documents. The harness checks
//! every other response of the test suites the same way (`support::document`).

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use uuid::Uuid;

use crate::support::document::{document, Document, Operation, Param, Route};
use crate::support::{TestApp, TestClient, TestRequest, TestUser, TokenClient};

const FOREIGN_ORIGIN: &str = "https://evil.example";

/// Alice: the platform admin, owner of her team with app `web` (deployed twice, so release 1
/// exists). Bob: another tenant, with an owner token of his own team.
struct World {
    app: TestApp,
    alice: TestUser,
    bob_token: TokenClient,
    /// Bob's team: the one the platform admin's routes (`{slug}`) act on, so that alice's own
    /// quota stays as set here.
    bob_team: String,
}

async fn world() -> World {
    let app = TestApp::spawn().await;
    let alice = app.signup("alice@example.com").await;
    // Room for every documented value (100 replicas of the default size): alice, the first
    // account, is the platform admin.
    let res = alice
        .put(
            &format!("/api/v1/platform/teams/{}/quota", alice.team),
            json!({"apps": 100000, "instances": 100000, "cpu_millis": 100000000,
                   "memory_mib": 100000000}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    alice.create_app(&alice.team, "web").await;
    for image in ["gantry-hello:1", "gantry-hello:2"] {
        alice.deploy(&alice.team, "web", image).await;
    }
    let bob = app.signup("bob@example.com").await;
    let bob_token = TokenClient::new(&app, &bob.token(&bob.team, "owner").await);
    World {
        app,
        alice,
        bob_token,
        bob_team: bob.team.clone(),
    }
}

impl World {
    /// A value of path parameter `name` that exists in alice's world.
    fn known(&self, name: &str) -> String {
        match name {
            "team" => self.alice.team.clone(),
            "app" => "web".into(),
            "version" | "number" => "1".into(),
            "user_id" => self.alice.id.to_string(),
            "slug" => self.bob_team.clone(),
            // No token, join token or node needs to exist for the requests below.
            _ => Uuid::new_v4().to_string(),
        }
    }

    /// `op`'s path with every parameter known.
    fn path(&self, op: &Operation) -> String {
        op.path_with(|name| self.known(name))
    }
}

/// A well-formed value of `param` that names nothing.
fn unknown(param: &Param) -> String {
    match (
        param.schema["type"].as_str(),
        param.schema["format"].as_str(),
    ) {
        (_, Some("uuid")) => Uuid::new_v4().to_string(),
        (Some("integer"), _) => param.schema["maximum"]
            .as_u64()
            .unwrap_or(999_999)
            .to_string(),
        _ => format!("no-such-{}", param.name.replace('_', "-")),
    }
}

/// A value of `param` that does not parse as its type: a number or UUID that is not one, or a
/// string that is not UTF-8 once percent-decoded.
fn malformed(param: &Param) -> String {
    match (
        param.schema["type"].as_str(),
        param.schema["format"].as_str(),
    ) {
        (_, Some("uuid")) => "not-a-uuid".into(),
        (Some("integer"), _) => "v1".into(),
        _ => "%FF".into(),
    }
}

fn is_write(op: &Operation) -> bool {
    op.method != Method::GET
}

/// Sends `req`, asserts the answer is in the one error shape when it is an error, and returns
/// its status. (The harness has already checked that the status is documented.)
async fn answer(req: TestRequest, context: &str) -> StatusCode {
    let res = req.send().await.unwrap();
    let status = res.status();
    let text = res.text().await.unwrap();
    if status.is_client_error() || status.is_server_error() {
        let body: Value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{context}: {status}, not JSON ({e}): {text}"));
        let code = body["error"]["code"].as_str().unwrap_or_default();
        let message = body["error"]["message"].as_str().unwrap_or_default();
        assert!(
            !code.is_empty() && !message.is_empty(),
            "{context}: {status} is not in the error shape: {text}"
        );
    }
    status
}

/// Adds `op`'s sample body, when it takes one.
fn with_body(req: TestRequest, op: &Operation) -> TestRequest {
    match op.sample_body(&[]) {
        Some(body) => req.json(&body),
        None => req,
    }
}

#[tokio::test]
async fn every_operation_answers_the_requests_clients_get_wrong_with_documented_errors() {
    let w = world().await;
    // No cookie store: a login below must not sign the next request in.
    let anonymous = TestClient::new();
    let operations = document().operations();
    assert!(operations.len() > 40, "{} operations", operations.len());
    let held = w.app.hold_controllers().await;
    let before = w.app.snapshot().await;
    for op in &operations {
        let path = w.path(op);
        let url = w.app.url(&path);
        let what = op.describe();

        // No credentials at all.
        let status = answer(
            with_body(anonymous.request(op.method.clone(), &url), op),
            &format!("{what} without credentials"),
        )
        .await;
        if !op.is_public() {
            assert_eq!(
                status,
                StatusCode::UNAUTHORIZED,
                "{what} without credentials"
            );
        }

        // Another tenant's token: its team's routes are invisible, not forbidden.
        let status = answer(
            with_body(
                w.bob_token
                    .client
                    .request(op.method.clone(), &url)
                    .bearer_auth(&w.bob_token.secret),
                op,
            ),
            &format!("{what} with another tenant's token"),
        )
        .await;
        if op.template.contains("{team}") {
            assert_eq!(
                status,
                StatusCode::NOT_FOUND,
                "{what}, another tenant's token"
            );
        }

        // Every path parameter naming nothing, then not parsing, with the others known.
        for param in op.path_params() {
            for (value, expected) in [
                (unknown(&param), StatusCode::NOT_FOUND),
                (malformed(&param), StatusCode::BAD_REQUEST),
            ] {
                let path = op.path_with(|name| {
                    if name == param.name {
                        value.clone()
                    } else {
                        w.known(name)
                    }
                });
                let context = format!("{what} as {path}");
                let status = answer(
                    with_body(w.alice.request(op.method.clone(), &path), op),
                    &context,
                )
                .await;
                assert_eq!(status, expected, "{context}");
            }
        }

        if is_write(op) {
            // A cross-site write, and a cookie write without the CSRF token.
            let req = anonymous
                .request(op.method.clone(), &url)
                .header("origin", FOREIGN_ORIGIN);
            let status = answer(with_body(req, op), &format!("{what} cross-site")).await;
            assert_eq!(status, StatusCode::FORBIDDEN, "{what} cross-site");
            if !op.is_public() {
                let req = w.alice.client.request(op.method.clone(), &url);
                let status = answer(with_body(req, op), &format!("{what} without CSRF")).await;
                assert_eq!(status, StatusCode::FORBIDDEN, "{what} without CSRF token");
            }
        }

        if op.request_body().is_some() {
            // Bodies that are not JSON, not sent as JSON, of the wrong shape, and too large.
            let large = format!("{{\"x\": \"{}\"}}", "x".repeat(2 * 1024 * 1024));
            for (what_body, content_type, body, expected) in [
                (
                    "malformed JSON",
                    "application/json",
                    "{\"".to_owned(),
                    StatusCode::BAD_REQUEST,
                ),
                (
                    "text",
                    "text/plain",
                    "x".to_owned(),
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                ),
                (
                    "an unknown field",
                    "application/json",
                    "{\"no_such_field\": 1}".to_owned(),
                    StatusCode::UNPROCESSABLE_ENTITY,
                ),
                (
                    "2 MiB",
                    "application/json",
                    large,
                    StatusCode::PAYLOAD_TOO_LARGE,
                ),
            ] {
                let req = w
                    .alice
                    .request(op.method.clone(), &path)
                    .header("content-type", content_type)
                    .body(body);
                let context = format!("{what} with {what_body}");
                assert_eq!(answer(req, &context).await, expected, "{context}");
            }
        }
    }
    assert_eq!(
        w.app.snapshot().await,
        before,
        "a refused request changed something"
    );
    held.release().await;
}

#[tokio::test]
async fn exactly_the_public_operations_answer_without_credentials() {
    let w = world().await;
    let doc = document();
    assert_eq!(
        doc.json["security"],
        json!([{"token": []}, {"session": []}]),
        "the default: a token or a session"
    );
    let anonymous = TestClient::new();
    let own_token = TokenClient::new(&w.app, &w.alice.token(&w.alice.team, "owner").await);
    let mut public = Vec::new();
    for op in doc.operations() {
        let url = w.app.url(&w.path(&op));
        let what = op.describe();
        // Without a body: credentials are checked before the body is read, so a 401 here is
        // about credentials (a public login with a wrong password would be 401 too).
        let res = anonymous
            .request(op.method.clone(), &url)
            .send()
            .await
            .unwrap();
        if op.is_public() {
            assert_ne!(res.status(), StatusCode::UNAUTHORIZED, "{what} is public");
            public.push(what.clone());
        } else {
            assert_eq!(
                res.status(),
                StatusCode::UNAUTHORIZED,
                "{what} needs credentials"
            );
        }
        // Operations that name only the session scheme refuse API tokens.
        let schemes: Vec<&String> = op
            .security()
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|r| r.as_object().unwrap().keys())
            .collect();
        if schemes == ["session"] {
            let req = own_token
                .client
                .request(op.method.clone(), &url)
                .bearer_auth(&own_token.secret);
            let status = answer(with_body(req, &op), &format!("{what} with a token")).await;
            assert_eq!(status, StatusCode::FORBIDDEN, "{what} is for sessions only");
        }
    }
    // Signing up and logging in must work without credentials, and the probes too.
    for needed in [
        "POST /api/v1/auth/signup",
        "POST /api/v1/auth/login",
        "GET /healthz",
    ] {
        assert!(public.iter().any(|p| p == needed), "{needed}: {public:?}");
    }
}

/// Does `schema` allow JSON values of type `t` (`"type": "t"` or `"type": [.., "t", ..]`)?
fn has_type(schema: &Value, t: &str) -> bool {
    let types = &schema["type"];
    types == t || types.as_array().is_some_and(|ts| ts.contains(&json!(t)))
}

/// The schemas a request can carry: bodies, path and query parameters.
fn request_schemas<'d>(doc: &'d Document, op: &Operation<'d>) -> Vec<(String, &'d Value)> {
    let what = op.describe();
    let mut schemas: Vec<(String, &Value)> = op
        .path_params()
        .into_iter()
        .chain(op.query_params())
        .map(|p| (format!("{what} parameter {}", p.name), p.schema))
        .collect();
    if let Some(body) = op.request_body() {
        collect_leaves(doc, body, &format!("{what} body"), &mut schemas);
    }
    schemas
}

/// The scalar schemas inside `schema` (object properties, map keys and values, variants).
fn collect_leaves<'d>(
    doc: &'d Document,
    schema: &'d Value,
    at: &str,
    out: &mut Vec<(String, &'d Value)>,
) {
    let schema = doc.resolve(schema);
    if let Some(variants) = schema.get("oneOf").and_then(Value::as_array) {
        for (i, v) in variants.iter().enumerate() {
            collect_leaves(doc, v, &format!("{at} (variant {i})"), out);
        }
        return;
    }
    if has_type(schema, "object") {
        for (name, property) in schema["properties"].as_object().into_iter().flatten() {
            collect_leaves(doc, property, &format!("{at}.{name}"), out);
        }
        if let Some(names) = schema.get("propertyNames") {
            collect_leaves(doc, names, &format!("{at} (keys)"), out);
        }
        if let Some(values) = schema.get("additionalProperties").filter(|v| v.is_object()) {
            collect_leaves(doc, values, &format!("{at} (values)"), out);
        }
    } else if has_type(schema, "array") {
        // The array itself (its length) and what it holds.
        out.push((at.to_owned(), schema));
        if let Some(items) = schema.get("items") {
            collect_leaves(doc, items, &format!("{at}[]"), out);
        }
    } else if schema["type"] != "null" {
        out.push((at.to_owned(), schema));
    }
}

#[tokio::test]
async fn every_name_and_number_a_request_carries_is_bounded_in_the_document() {
    let _app = TestApp::spawn().await;
    let doc = document();
    let mut unbounded = Vec::new();
    let mut seen = 0;
    for op in doc.operations() {
        for (at, schema) in request_schemas(doc, &op) {
            seen += 1;
            let bounded =
                if schema.get("enum").is_some() || schema.get("format") == Some(&json!("uuid")) {
                    true
                } else if has_type(schema, "integer") || has_type(schema, "number") {
                    let above = schema.get("minimum").or(schema.get("exclusiveMinimum"));
                    above.is_some() && schema.get("maximum").is_some()
                } else if has_type(schema, "array") {
                    schema.get("maxItems").is_some()
                } else if has_type(schema, "string") {
                    schema.get("maxLength").is_some()
                } else {
                    has_type(schema, "boolean")
                };
            if !bounded {
                unbounded.push(format!("{at}: {schema}"));
            }
        }
    }
    assert!(seen > 50, "{seen} request values");
    assert!(
        unbounded.is_empty(),
        "unbounded in the document:\n{}",
        unbounded.join("\n")
    );

    // Names are DNS labels, and say so where the server parses them.
    let dns_label = "^[a-z]([a-z0-9-]{0,61}[a-z0-9])?$";
    let names = &doc.json["components"]["schemas"];
    for name in ["TeamSlug", "AppName"] {
        assert_eq!(names[name]["pattern"], dns_label, "{name}");
        assert_eq!(names[name]["maxLength"], 63, "{name}");
    }
    for name in ["Email", "ConfigKey"] {
        assert!(
            names[name]["pattern"].is_string(),
            "{name}: {}",
            names[name]
        );
    }
    for op in doc.operations() {
        for param in op.path_params() {
            if param.name == "team" || param.name == "app" {
                assert_eq!(
                    param.schema["pattern"],
                    dns_label,
                    "{} {}",
                    op.describe(),
                    param.name
                );
            }
        }
    }
}

/// A documented bound the server must enforce: `value` is a body property (the rest of the
/// body is `base`) or, without a base, a query parameter.
struct Bound {
    method: Method,
    template: &'static str,
    value: &'static str,
    base: Option<Value>,
    /// How a string of `n` characters is made; `None` for a number.
    text: Option<fn(usize) -> String>,
}

fn number(method: Method, template: &'static str, base: Value, value: &'static str) -> Bound {
    Bound {
        method,
        template,
        value,
        base: Some(base),
        text: None,
    }
}

fn text(
    method: Method,
    template: &'static str,
    base: Value,
    value: &'static str,
    text: fn(usize) -> String,
) -> Bound {
    Bound {
        method,
        template,
        value,
        base: Some(base),
        text: Some(text),
    }
}

fn query(method: Method, template: &'static str, value: &'static str) -> Bound {
    Bound {
        method,
        template,
        value,
        base: None,
        text: None,
    }
}

/// The schema of `property` in a body schema (or in the first variant of a tagged enum).
fn property<'d>(body: &'d Value, property: &str) -> Option<&'d Value> {
    body["properties"]
        .get(property)
        .or_else(|| body["oneOf"][0]["properties"].get(property))
}

#[tokio::test]
async fn values_just_outside_a_documented_bound_are_refused_and_just_inside_accepted() {
    let w = world().await;
    let doc = document();
    let anonymous = TestClient::new();
    let app = "/api/v1/teams/{team}/apps/{app}";
    let strategy = "/api/v1/teams/{team}/apps/{app}/strategy";
    let token = json!({"team": w.alice.team, "role": "viewer"});
    let table = [
        number(Method::PATCH, app, json!({}), "replicas"),
        number(Method::PATCH, app, json!({}), "cpu_millis"),
        number(Method::PATCH, app, json!({}), "memory_mib"),
        number(Method::PATCH, app, json!({}), "port"),
        number(Method::PATCH, app, json!({}), "stop_grace_seconds"),
        number(Method::PATCH, app, json!({}), "progress_deadline_seconds"),
        text(Method::PATCH, app, json!({}), "health_check_path", |n| {
            "/h".chars().chain(std::iter::repeat('h')).take(n).collect()
        }),
        number(
            Method::POST,
            "/api/v1/teams/{team}/apps/{app}/scale",
            json!({}),
            "replicas",
        ),
        number(
            Method::PUT,
            strategy,
            json!({"kind": "rolling", "max_unavailable": 1}),
            "max_surge",
        ),
        number(
            Method::PUT,
            strategy,
            json!({"kind": "rolling", "max_surge": 1}),
            "max_unavailable",
        ),
        number(
            Method::POST,
            "/api/v1/nodes/join-tokens",
            json!({}),
            "ttl_seconds",
        ),
        text(
            Method::POST,
            "/api/v1/teams/{team}/apps",
            json!({}),
            "name",
            |n| "a".repeat(n),
        ),
        text(Method::POST, "/api/v1/teams", json!({}), "slug", |n| {
            "b".repeat(n)
        }),
        text(Method::POST, "/api/v1/tokens", token, "name", |n| {
            "t".repeat(n)
        }),
        text(
            Method::POST,
            "/api/v1/auth/signup",
            json!({}),
            "password",
            |n| "p".repeat(n),
        ),
        query(Method::GET, "/api/v1/teams/{team}/audit", "limit"),
        query(
            Method::GET,
            "/api/v1/teams/{team}/apps/{app}/releases",
            "limit",
        ),
    ];
    let mut signups = 0;
    for bound in table {
        let op = doc
            .operations()
            .into_iter()
            .find(|op| op.method == bound.method && op.template == bound.template)
            .unwrap_or_else(|| {
                panic!("{} {} is not in the document", bound.method, bound.template)
            });
        let path = w.path(&op);
        let name = bound.value;
        let (schema, refused) = match &bound.base {
            Some(_) => (
                property(op.request_body().unwrap(), name),
                StatusCode::UNPROCESSABLE_ENTITY,
            ),
            None => (
                op.query_params()
                    .into_iter()
                    .find(|p| p.name == name)
                    .map(|p| p.schema),
                StatusCode::BAD_REQUEST,
            ),
        };
        let schema = doc.resolve(schema.unwrap_or_else(|| panic!("{}: no {name}", op.describe())));
        let limit = |key: &str| {
            schema[key]
                .as_i64()
                .unwrap_or_else(|| panic!("{} {name}: no {key} in {schema}", op.describe()))
        };
        let (min, max) = match bound.text {
            Some(_) => (limit("minLength"), limit("maxLength")),
            None => (limit("minimum"), limit("maximum")),
        };
        for (n, inside) in [(min - 1, false), (min, true), (max, true), (max + 1, false)] {
            let value = match bound.text {
                Some(_) if n < 0 => continue,
                Some(text) => json!(text(n as usize)),
                None => json!(n),
            };
            let context = format!(
                "{} with {name} at {n} (documented {min}–{max})",
                op.describe()
            );
            // Public operations (sign-up) go without alice's cookie, which they would replace.
            let client = if op.is_public() {
                &anonymous
            } else {
                &w.alice.client
            };
            let req = match &bound.base {
                Some(base) => {
                    let mut body = base.clone();
                    body[name] = value;
                    if op.is_public() {
                        signups += 1;
                        body["email"] = json!(format!("new{signups}@example.com"));
                    }
                    client
                        .request(op.method.clone(), w.app.url(&path))
                        .json(&body)
                }
                None => client.request(op.method.clone(), w.app.url(&format!("{path}?{name}={n}"))),
            };
            let req = req.header("x-csrf-token", &w.alice.csrf);
            let res = req.send().await.unwrap();
            let status = res.status();
            let text = res.text().await.unwrap();
            if inside {
                assert!(status.is_success(), "{context}: {status} {text}");
            } else {
                assert_eq!(status, refused, "{context}: {text}");
            }
        }
    }
}

#[tokio::test]
async fn the_document_is_whole_and_every_error_has_the_error_shape() {
    let app = TestApp::spawn().await;
    // The harness fetched this document; the server serves it to anyone.
    let served: Value = app
        .anonymous()
        .get(app.url("/api/v1/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let doc = document();
    assert_eq!(served, doc.json);
    assert!(doc.json["openapi"].as_str().unwrap().starts_with("3."));
    for scheme in ["token", "session"] {
        assert!(
            doc.json["components"]["securitySchemes"][scheme].is_object(),
            "{scheme}"
        );
    }
    // Every `$ref` names something.
    fn refs<'a>(value: &'a Value, out: &mut Vec<&'a Value>) {
        match value {
            Value::Object(map) if map.contains_key("$ref") => out.push(value),
            Value::Object(map) => map.values().for_each(|v| refs(v, out)),
            Value::Array(items) => items.iter().for_each(|v| refs(v, out)),
            _ => {}
        }
    }
    let mut all = Vec::new();
    refs(&doc.json, &mut all);
    assert!(all.len() > 100, "{} refs", all.len());
    for r in all {
        doc.resolve(r);
    }
    // Every error an API operation documents has the one error body; and every operation can
    // fail unexpectedly.
    for op in doc.operations() {
        let responses = &op.json["responses"];
        assert!(responses.get("500").is_some(), "{}: no 500", op.describe());
        if !op.template.starts_with("/api/") {
            continue;
        }
        for status in op.statuses().into_iter().filter(|s| *s >= 400) {
            let response = doc.resolve(&responses[status.to_string()]);
            assert_eq!(
                response["content"]["application/json"]["schema"]["$ref"],
                "#/components/schemas/ErrorBody",
                "{} {status}",
                op.describe()
            );
        }
    }
}

#[tokio::test]
#[should_panic(expected = "does not list")]
async fn the_harness_fails_a_test_that_gets_an_undocumented_status() {
    let _app = TestApp::spawn().await;
    // GET /api/v1/me documents 200, 401 and 500: a 418 would make the document a liar.
    document().check(&Method::GET, "/api/v1/me", StatusCode::IM_A_TEAPOT);
}

#[tokio::test]
async fn requests_are_matched_to_operations_as_the_router_matches_them() {
    let _app = TestApp::spawn().await;
    let doc = document();
    let route = |method: Method, path: &str| match doc.route(&method, path) {
        Route::Operation(op) => op.describe(),
        Route::OtherMethod(t) => format!("405 {t}"),
        Route::Unknown => "404".into(),
    };
    assert_eq!(
        route(Method::GET, "/api/v1/teams/acme/apps/web?x=1"),
        "GET /api/v1/teams/{team}/apps/{app}"
    );
    // A literal segment wins over a parameter, and the method is looked at last (as in axum).
    assert_eq!(
        route(Method::GET, "/api/v1/nodes/join-tokens"),
        "GET /api/v1/nodes/join-tokens"
    );
    assert_eq!(
        route(Method::DELETE, "/api/v1/nodes/join-tokens"),
        "405 /api/v1/nodes/join-tokens"
    );
    assert_eq!(
        route(Method::DELETE, "/api/v1/nodes/n1"),
        "DELETE /api/v1/nodes/{node}"
    );
    assert_eq!(route(Method::GET, "/api/v1/nope"), "404");
}
