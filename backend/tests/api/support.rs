//! Test harness: a real server on a random port against a fresh database of the test Postgres.
//!
//! `scripts/test` starts a private Postgres (with `gantry db start`, as `gantry up` does) and sets
//! `GANTRY_TEST_DATABASE_URL`; every test gets a database of its own, created from the same
//! migrations as production when the server starts.

use std::time::Duration;

use gantry_backend::config::{Config, SecretKey};
use gantry_backend::startup::Application;
use reqwest::{Client, Method, RequestBuilder, Response, StatusCode};
use secrecy::SecretString;
use serde_json::{json, Value};
use sqlx::{Connection, PgPool};
use uuid::Uuid;

pub const PASSWORD: &str = "correct horse battery";

pub struct TestApp {
    pub base: String,
    /// The test's own database, for assertions that nothing changed.
    pub db: PgPool,
}

fn server_url() -> String {
    std::env::var("GANTRY_TEST_DATABASE_URL").expect(
        "GANTRY_TEST_DATABASE_URL is not set: run the tests with scripts/test, which starts a private Postgres",
    )
}

/// `postgres://u@h:p/olddb?x` → `postgres://u@h:p/newdb?x`
fn with_database(url: &str, db: &str) -> String {
    let (head, query) = url
        .split_once('?')
        .map_or((url, None), |(h, q)| (h, Some(q)));
    let base = &head[..head.rfind('/').expect("database URL has a path")];
    match query {
        Some(q) => format!("{base}/{db}?{q}"),
        None => format!("{base}/{db}"),
    }
}

impl TestApp {
    pub async fn spawn() -> Self {
        Self::spawn_with(|_| {}).await
    }

    pub async fn spawn_with(tweak: impl FnOnce(&mut Config)) -> Self {
        let server = server_url();
        let name = format!("test_{}", Uuid::new_v4().simple());
        let mut conn = sqlx::PgConnection::connect(&server)
            .await
            .expect("connect to test Postgres");
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut conn)
            .await
            .expect("create test database");
        let url = with_database(&server, &name);
        let mut config = Config {
            listen: "127.0.0.1:0".parse().unwrap(),
            database_url: SecretString::from(url.clone()),
            public_url: None,
            secret_key: SecretKey::generate(),
            session_idle: Duration::from_secs(3600),
            session_max_age: Duration::from_secs(24 * 3600),
            // The API, the reconciler, the rollout controller and the route sync share it.
            db_max_connections: 8,
            node_timeout: Duration::from_secs(20),
            router_listen: "127.0.0.1:0".parse().unwrap(),
            apps_domain: "localhost".into(),
        };
        tweak(&mut config);
        let app = Application::build(config).await.expect("build application");
        let base = format!("http://127.0.0.1:{}", app.port());
        tokio::spawn(app.run_until_stopped(std::future::pending()));
        let db = PgPool::connect(&url)
            .await
            .expect("connect to test database");
        TestApp { base, db }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// A client with no credentials at all.
    pub fn anonymous(&self) -> Client {
        Client::builder().cookie_store(true).build().unwrap()
    }

    /// Signs up `email` and returns a logged-in browser-like client.
    pub async fn signup(&self, email: &str) -> TestUser {
        let client = self.anonymous();
        let res = client
            .post(self.url("/api/v1/auth/signup"))
            .json(&json!({"email": email, "password": PASSWORD}))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::CREATED, "signup of {email}");
        let body: Value = res.json().await.unwrap();
        let mut user = TestUser {
            base: self.base.clone(),
            client,
            csrf: body["csrf_token"].as_str().unwrap().to_owned(),
            id: body["user"]["id"].as_str().unwrap().parse().unwrap(),
            email: email.to_lowercase(),
            team: String::new(),
        };
        let me = user.get("/api/v1/me").await;
        let me: Value = me.json().await.unwrap();
        user.team = me["teams"][0]["slug"].as_str().unwrap().to_owned();
        user
    }

    /// Counts rows of `table`; used to show a refused request changed nothing.
    pub async fn count(&self, table: &str) -> i64 {
        sqlx::query_scalar(&format!("SELECT count(*) FROM {table}"))
            .fetch_one(&self.db)
            .await
            .unwrap()
    }

    /// A snapshot of every tenant table, to compare before and after a refused request.
    pub async fn snapshot(&self) -> Vec<(String, i64)> {
        let mut out = Vec::new();
        for t in [
            "users",
            "teams",
            "memberships",
            "api_tokens",
            "apps",
            "app_config_vars",
            "audit_events",
        ] {
            out.push((t.to_owned(), self.count(t).await));
        }
        let apps: String = sqlx::query_scalar(
            "SELECT coalesce(string_agg(name || port || replicas || cpu_millis || memory_mib || health_check_path, ',' ORDER BY id), '') FROM apps",
        )
        .fetch_one(&self.db)
        .await
        .unwrap();
        let roles: String = sqlx::query_scalar(
            "SELECT coalesce(string_agg(role, ',' ORDER BY team_id, user_id), '') FROM memberships",
        )
        .fetch_one(&self.db)
        .await
        .unwrap();
        out.push(("apps-content".into(), apps.len() as i64));
        out.push((format!("apps:{apps}"), 0));
        out.push((format!("roles:{roles}"), 0));
        out
    }
}

/// A signed-in user: a cookie-holding client that sends its CSRF token on writes.
pub struct TestUser {
    pub base: String,
    pub client: Client,
    pub csrf: String,
    pub id: Uuid,
    pub email: String,
    /// Slug of the personal team.
    pub team: String,
}

impl TestUser {
    pub fn request(&self, method: Method, path: &str) -> RequestBuilder {
        self.client
            .request(method, format!("{}{path}", self.base))
            .header("x-csrf-token", &self.csrf)
    }

    pub async fn get(&self, path: &str) -> Response {
        self.request(Method::GET, path).send().await.unwrap()
    }

    pub async fn post(&self, path: &str, body: Value) -> Response {
        self.request(Method::POST, path)
            .json(&body)
            .send()
            .await
            .unwrap()
    }

    pub async fn put(&self, path: &str, body: Value) -> Response {
        self.request(Method::PUT, path)
            .json(&body)
            .send()
            .await
            .unwrap()
    }

    pub async fn patch(&self, path: &str, body: Value) -> Response {
        self.request(Method::PATCH, path)
            .json(&body)
            .send()
            .await
            .unwrap()
    }

    pub async fn delete(&self, path: &str) -> Response {
        self.request(Method::DELETE, path).send().await.unwrap()
    }

    /// Creates an API token and returns its secret.
    pub async fn token(&self, team: &str, role: &str) -> String {
        let res = self
            .post(
                "/api/v1/tokens",
                json!({"name": "test", "team": team, "role": role}),
            )
            .await;
        assert_eq!(res.status(), StatusCode::CREATED);
        let body: Value = res.json().await.unwrap();
        body["secret"].as_str().unwrap().to_owned()
    }

    /// Creates an app in `team` and asserts it worked.
    pub async fn create_app(&self, team: &str, name: &str) -> Value {
        let res = self
            .post(&format!("/api/v1/teams/{team}/apps"), json!({"name": name}))
            .await;
        assert_eq!(
            res.status(),
            StatusCode::CREATED,
            "create app {name} in {team}"
        );
        res.json().await.unwrap()
    }

    /// Adds `other` to `team` with `role`.
    pub async fn add_member(&self, team: &str, other: &TestUser, role: &str) {
        let res = self
            .post(
                &format!("/api/v1/teams/{team}/members"),
                json!({"email": other.email, "role": role}),
            )
            .await;
        assert_eq!(
            res.status(),
            StatusCode::CREATED,
            "add {} as {role}",
            other.email
        );
    }
}

/// An API-token client (no cookies, no CSRF token).
pub struct TokenClient {
    pub base: String,
    pub secret: String,
    pub client: Client,
}

impl TokenClient {
    pub fn new(app: &TestApp, secret: &str) -> Self {
        Self {
            base: app.base.clone(),
            secret: secret.to_owned(),
            client: Client::new(),
        }
    }

    pub async fn send(&self, method: Method, path: &str, body: Option<Value>) -> Response {
        let mut req = self
            .client
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.secret);
        if let Some(b) = body {
            req = req.json(&b);
        }
        req.send().await.unwrap()
    }
}

/// The `code` of an error response, asserting the one error shape.
pub async fn error_code(res: Response) -> String {
    let body: Value = res.json().await.expect("error bodies are JSON");
    let message = body["error"]["message"].as_str().expect("error.message");
    assert!(!message.is_empty());
    body["error"]["code"]
        .as_str()
        .expect("error.code")
        .to_owned()
}
