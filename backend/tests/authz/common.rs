//! Helpers shared by the authz tests: one way to call the API as a session or as a token, and
//! one way to check an error response.

use reqwest::{Method, Response, StatusCode};
use serde_json::Value;

use crate::support::{TestApp, TestUser, TokenClient};

/// Who sends a request: a signed-in browser session or an API token.
pub enum Caller<'a> {
    Session(&'a TestUser),
    Token(TokenClient),
}

impl Caller<'_> {
    pub fn token(app: &TestApp, secret: &str) -> Caller<'static> {
        Caller::Token(TokenClient::new(app, secret))
    }

    pub async fn send(&self, method: Method, path: &str, body: Option<Value>) -> Response {
        match self {
            Caller::Session(user) => {
                let mut req = user.request(method, path);
                if let Some(body) = body {
                    req = req.json(&body);
                }
                req.send().await.unwrap()
            }
            Caller::Token(token) => token.send(method, path, body).await,
        }
    }

    pub async fn get(&self, path: &str) -> Response {
        self.send(Method::GET, path, None).await
    }

    pub fn describe(&self) -> String {
        match self {
            Caller::Session(user) => format!("session of {}", user.email),
            Caller::Token(_) => "API token".to_owned(),
        }
    }
}

/// Asserts `res` is an error with `status` and `code` in the one JSON error shape; returns the
/// message.
pub async fn assert_error(res: Response, status: StatusCode, code: &str, context: &str) -> String {
    assert_eq!(res.status(), status, "{context}");
    let body: Value = res
        .json()
        .await
        .unwrap_or_else(|e| panic!("{context}: error body is not JSON: {e}"));
    assert_eq!(body["error"]["code"], code, "{context}: {body}");
    let message = body["error"]["message"]
        .as_str()
        .unwrap_or_else(|| panic!("{context}: no error.message in {body}"));
    assert!(!message.is_empty(), "{context}: empty error.message");
    message.to_owned()
}

/// The JSON body of a successful response, asserting its status.
pub async fn json_ok(res: Response, status: StatusCode, context: &str) -> Value {
    let got = res.status();
    let text = res.text().await.unwrap();
    assert_eq!(got, status, "{context}: {text}");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{context}: not JSON ({e}): {text}"))
}

/// Team slugs listed in a `/api/v1/teams` array or the `teams` of `/api/v1/me`.
pub fn slugs(teams: &Value) -> Vec<String> {
    teams
        .as_array()
        .expect("a JSON array of teams")
        .iter()
        .map(|t| t["slug"].as_str().expect("team slug").to_owned())
        .collect()
}

/// Creates a team owned by `user` and returns its slug.
pub async fn create_team(user: &TestUser, slug: &str) -> String {
    let res = user
        .post("/api/v1/teams", serde_json::json!({ "slug": slug }))
        .await;
    assert_eq!(res.status(), StatusCode::CREATED, "create team {slug}");
    slug.to_owned()
}
