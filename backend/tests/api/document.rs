//! The OpenAPI document the server serves, as the tests read it: its operations with what each
//! declares (statuses, body, path parameters, security), and which operation a request path
//! goes to. Every response a test gets through the harness is checked against it
//! ([`Document::check`]), so a handler that can answer a status its operation does not document
//! fails the test that makes it do so.

use std::sync::OnceLock;

use reqwest::{Method, StatusCode};
use serde_json::{json, Map, Value};

/// Paths under `/api/` served outside the document on purpose: the document itself, and the
/// agents' websocket (its protocol is `gantry_common::agent`, not REST).
const OUTSIDE_THE_DOCUMENT: [&str; 2] = ["/api/v1/openapi.json", "/api/v1/agent/connect"];

static DOCUMENT: OnceLock<Document> = OnceLock::new();

/// The document of this build's server. Every `TestApp` serves the same one; the first to start
/// fetches it.
pub fn document() -> &'static Document {
    DOCUMENT
        .get()
        .expect("the OpenAPI document is fetched when the first TestApp starts")
}

pub fn remember(json: Value) {
    let _ = DOCUMENT.set(Document { json });
}

pub struct Document {
    pub json: Value,
}

/// Where the server's router sends a request, as the document describes it.
pub enum Route<'d> {
    Operation(Operation<'d>),
    /// The path is documented, but not with this method: the router answers 405.
    OtherMethod(&'d str),
    /// No documented path: the router answers 404 (or, outside `/api/`, a dashboard page).
    Unknown,
}

#[derive(Clone)]
pub struct Operation<'d> {
    pub method: Method,
    pub template: &'d str,
    pub json: &'d Value,
    doc: &'d Document,
}

/// A parameter of an operation (in its path or query), with its schema.
pub struct Param<'d> {
    pub name: &'d str,
    pub schema: &'d Value,
}

const METHODS: [(&str, Method); 5] = [
    ("get", Method::GET),
    ("post", Method::POST),
    ("put", Method::PUT),
    ("patch", Method::PATCH),
    ("delete", Method::DELETE),
];

impl Document {
    /// Every operation, by path and method.
    pub fn operations(&self) -> Vec<Operation<'_>> {
        let paths = self.json["paths"].as_object().expect("paths");
        let mut all = Vec::new();
        for (template, item) in paths {
            for (key, method) in METHODS {
                if let Some(json) = item.get(key) {
                    all.push(Operation {
                        method,
                        template,
                        json,
                        doc: self,
                    });
                }
            }
        }
        all
    }

    /// Follows `$ref`s (to schemas, responses, …) to what they name.
    pub fn resolve<'a>(&'a self, mut value: &'a Value) -> &'a Value {
        while let Some(target) = value.get("$ref").and_then(Value::as_str) {
            let pointer = target.strip_prefix('#').expect("a local $ref");
            value = self
                .json
                .pointer(pointer)
                .unwrap_or_else(|| panic!("$ref {target} points at nothing"));
        }
        value
    }

    /// The operation a request for `path` (query string allowed) reaches. Like the server's
    /// router, a literal segment wins over a parameter, and the method is looked at last.
    pub fn route(&self, method: &Method, path: &str) -> Route<'_> {
        let path = path.split('?').next().unwrap_or_default();
        let segments: Vec<&str> = path.split('/').collect();
        let paths = self.json["paths"].as_object().expect("paths");
        // Per segment, 1 for a literal and 0 for a parameter: the greatest key wins.
        let best = paths
            .keys()
            .filter_map(|template| {
                let parts: Vec<&str> = template.split('/').collect();
                if parts.len() != segments.len() {
                    return None;
                }
                let mut rank = Vec::with_capacity(parts.len());
                for (part, segment) in parts.iter().zip(&segments) {
                    if part.starts_with('{') && !segment.is_empty() {
                        rank.push(0);
                    } else if part == segment {
                        rank.push(1);
                    } else {
                        return None;
                    }
                }
                Some((rank, template))
            })
            .max();
        let Some((_, template)) = best else {
            return Route::Unknown;
        };
        self.operations()
            .into_iter()
            .find(|op| op.template == template && op.method == *method)
            .map_or(Route::OtherMethod(template), Route::Operation)
    }

    /// Fails the test when `status` is not what the document says `method path` can answer.
    pub fn check(&self, method: &Method, path: &str, status: StatusCode) {
        let path = path.split('?').next().unwrap_or_default();
        match self.route(method, path) {
            Route::Operation(op) => assert!(
                op.documents(status),
                "{method} {path} answered {status}, which the OpenAPI document does not list \
                 for {} (it lists {:?}): document it, or stop answering it",
                op.describe(),
                op.statuses(),
            ),
            Route::OtherMethod(template) => assert_eq!(
                status,
                StatusCode::METHOD_NOT_ALLOWED,
                "{method} {path}: the document has {template} without {method}"
            ),
            Route::Unknown => {
                if path.starts_with("/api/") && !OUTSIDE_THE_DOCUMENT.contains(&path) {
                    assert_eq!(
                        status,
                        StatusCode::NOT_FOUND,
                        "{method} {path} is served, but the OpenAPI document has no such path"
                    );
                }
            }
        }
    }
}

impl<'d> Operation<'d> {
    /// `POST /api/v1/teams/{team}/apps`
    pub fn describe(&self) -> String {
        format!("{} {}", self.method, self.template)
    }

    pub fn statuses(&self) -> Vec<u16> {
        self.json["responses"]
            .as_object()
            .expect("responses")
            .keys()
            .map(|s| s.parse().expect("a numeric status"))
            .collect()
    }

    pub fn documents(&self, status: StatusCode) -> bool {
        self.statuses().contains(&status.as_u16())
    }

    /// The schema of the JSON request body, if the operation takes one.
    pub fn request_body(&self) -> Option<&'d Value> {
        let body = self.doc.resolve(self.json.get("requestBody")?);
        Some(
            self.doc
                .resolve(&body["content"]["application/json"]["schema"]),
        )
    }

    pub fn path_params(&self) -> Vec<Param<'d>> {
        self.parameters("path")
    }

    pub fn query_params(&self) -> Vec<Param<'d>> {
        self.parameters("query")
    }

    fn parameters(&self, place: &str) -> Vec<Param<'d>> {
        let Some(params) = self.json.get("parameters").and_then(Value::as_array) else {
            return Vec::new();
        };
        params
            .iter()
            .map(|p| self.doc.resolve(p))
            .filter(|p| p["in"] == place)
            .map(|p| Param {
                name: p["name"].as_str().expect("parameter name"),
                schema: self.doc.resolve(&p["schema"]),
            })
            .collect()
    }

    /// The security requirements that apply: the operation's own, else the document's.
    pub fn security(&self) -> &'d Value {
        self.json
            .get("security")
            .unwrap_or(&self.doc.json["security"])
    }

    /// No credentials needed: no requirement, or an empty one (`security: [{}]`).
    pub fn is_public(&self) -> bool {
        let requirements = self.security().as_array().expect("security is a list");
        requirements.is_empty()
            || requirements
                .iter()
                .any(|r| r.as_object().is_some_and(Map::is_empty))
    }

    /// The concrete path, with each parameter replaced by `value(name)`.
    pub fn path_with(&self, mut value: impl FnMut(&str) -> String) -> String {
        self.template
            .split('/')
            .map(
                |part| match part.strip_prefix('{').and_then(|p| p.strip_suffix('}')) {
                    Some(name) => value(name),
                    None => part.to_owned(),
                },
            )
            .collect::<Vec<_>>()
            .join("/")
    }

    /// A body its schema accepts, built from the schema alone: every property given, nullable
    /// ones as `null`, numbers at their minimum, the first of an enum (the most powerful role),
    /// strings from their example — so a write is as forceful as the document allows (it scales
    /// to zero, makes a worker, removes config, grants owner). `overrides` sets properties by
    /// name (e.g. an e-mail address that has an account).
    pub fn sample_body(&self, overrides: &[(&str, Value)]) -> Option<Value> {
        let schema = self.request_body()?;
        Some(self.doc.sample(schema, overrides, &self.describe()))
    }
}

impl Document {
    fn sample(&self, schema: &Value, overrides: &[(&str, Value)], at: &str) -> Value {
        let schema = self.resolve(schema);
        let types: Vec<&str> = match &schema["type"] {
            Value::String(t) => vec![t.as_str()],
            Value::Array(ts) => ts.iter().filter_map(Value::as_str).collect(),
            _ => Vec::new(),
        };
        let choices = schema.get("oneOf").and_then(Value::as_array);
        let null_choice =
            choices.is_some_and(|cs| cs.iter().any(|c| self.resolve(c)["type"] == "null"));
        if types.contains(&"null") || null_choice {
            return Value::Null;
        }
        if let Some(example) = schema.get("example") {
            return example.clone();
        }
        if let Some(example) = schema["examples"].get(0) {
            return example.clone();
        }
        if let Some(choices) = choices {
            return self.sample(&choices[0], overrides, at);
        }
        if let Some(first) = schema["enum"].get(0) {
            return first.clone();
        }
        match types.first().copied() {
            Some("object") => {
                let mut object = Map::new();
                if let Some(properties) = schema["properties"].as_object() {
                    for (name, property) in properties {
                        let value = match overrides.iter().find(|(n, _)| n == name) {
                            Some((_, value)) => value.clone(),
                            None => self.sample(property, overrides, &format!("{at}: {name}")),
                        };
                        object.insert(name.clone(), value);
                    }
                }
                if let Some(names) = schema.get("propertyNames") {
                    let key = self.sample(names, overrides, &format!("{at}: a key"));
                    let value = self.sample(
                        &schema["additionalProperties"],
                        overrides,
                        &format!("{at}: a value"),
                    );
                    object.insert(key.as_str().expect("a string key").to_owned(), value);
                }
                Value::Object(object)
            }
            Some("integer" | "number") => schema.get("minimum").cloned().unwrap_or(json!(0)),
            Some("boolean") => json!(true),
            Some("array") => json!([]),
            _ => {
                panic!("{at}: give this schema an example, so a valid value can be made: {schema}")
            }
        }
    }
}
