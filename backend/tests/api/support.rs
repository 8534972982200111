//! Test harness: a real server on a random port against a fresh database of the test Postgres.
//!
//! `scripts/test` starts a private Postgres (with `gantry db start`, as `gantry up` does) and sets
//! `GANTRY_TEST_DATABASE_URL`; every test gets a database of its own, created from the same
//! migrations as production when the server starts.
//!
//! Every request goes through [`TestClient`], which checks each answer against the server's
//! OpenAPI document ([`document`]): a status the document does not list for the operation fails
//! the test.

#[path = "document.rs"]
pub mod document;

use std::fmt::Display;
use std::sync::Arc;
use std::time::Duration;

use gantry_backend::config::{Config, SecretKey};
use gantry_backend::startup::Application;
use reqwest::{Client, Method, RequestBuilder, Response, StatusCode};
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;
use serde_json::{json, Value};
use sqlx::{Connection, PgPool, Postgres, Transaction};
use tempfile::TempDir;
use uuid::Uuid;

pub use document::document;

pub const PASSWORD: &str = "correct horse battery";

pub struct TestApp {
    pub base: String,
    /// The test's own database, for assertions that nothing changed.
    pub db: PgPool,
    /// The server's configuration, for [`TestApp::another_server`].
    config: Config,
    /// The registry's blobs, removed with the last server of the test.
    registry_dir: Arc<TempDir>,
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
        let registry_dir = Arc::new(tempfile::tempdir().expect("registry temp dir"));
        let mut config = Config {
            listen: "127.0.0.1:0".parse().unwrap(),
            database_url: SecretString::from(url),
            public_url: None,
            secret_key: SecretKey::generate(),
            session_idle: Duration::from_secs(3600),
            session_max_age: Duration::from_secs(24 * 3600),
            // The API, the reconciler, the rollout controller and the route sync share it.
            db_max_connections: 8,
            node_timeout: Duration::from_secs(20),
            router_listen: "127.0.0.1:0".parse().unwrap(),
            apps_domain: "localhost".into(),
            registry_dir: registry_dir.path().to_path_buf(),
            registry_max_blob_bytes: 1 << 30,
            registry_team_quota_bytes: None,
            log_retention_days: 7,
            streams_per_user: 16,
            team_quota: gantry_common::quotas::QuotaLimits::DEFAULT,
            metrics_token: None,
            git_dir: registry_dir.path().join("git"),
            git_max_push_bytes: 1 << 30,
            builds: gantry_backend::config::BuildLimits {
                timeout_seconds: 900,
                cpu_millis: 2000,
                memory_mib: 1536,
            },
        };
        tweak(&mut config);
        Self::start(config, registry_dir).await
    }

    /// Another server on this test's database, with the same settings changed by `tweak`: how
    /// the same sessions and data look to a server configured otherwise (e.g. with a session
    /// lifetime that has passed).
    pub async fn another_server(&self, tweak: impl FnOnce(&mut Config)) -> Self {
        let mut config = self.config.clone();
        tweak(&mut config);
        Self::start(config, self.registry_dir.clone()).await
    }

    async fn start(config: Config, registry_dir: Arc<TempDir>) -> Self {
        let app = Application::build(config.clone())
            .await
            .expect("build application");
        let base = format!("http://127.0.0.1:{}", app.port());
        tokio::spawn(app.run_until_stopped(std::future::pending()));
        let db = PgPool::connect(config.database_url.expose_secret())
            .await
            .expect("connect to test database");
        let openapi: Value = Client::new()
            .get(format!("{base}/api/v1/openapi.json"))
            .send()
            .await
            .and_then(Response::error_for_status)
            .expect("fetch the OpenAPI document")
            .json()
            .await
            .expect("the OpenAPI document is JSON");
        document::remember(openapi);
        TestApp {
            base,
            db,
            config,
            registry_dir,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// A client with no credentials at all (it keeps the cookies it is given, like a browser).
    pub fn anonymous(&self) -> TestClient {
        TestClient(Client::builder().cookie_store(true).build().unwrap())
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
    ///
    /// Releases, release sets and instances also change by themselves, as the controllers
    /// carry out earlier requests: compare snapshots of a world with releases inside
    /// [`TestApp::hold_controllers`].
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
            "releases",
            "release_sets",
            "instances",
        ] {
            out.push((t.to_owned(), self.count(t).await));
        }
        // concat_ws skips NULLs (a worker's port) instead of nulling the whole row.
        for (what, query) in [
            (
                "apps",
                "SELECT concat_ws(' ', name, port, replicas, cpu_millis, memory_mib, \
                 health_check_path, stop_grace_seconds, progress_deadline_seconds, strategy::text) \
                 FROM apps ORDER BY id",
            ),
            (
                "roles",
                "SELECT role FROM memberships ORDER BY team_id, user_id",
            ),
            (
                "config",
                "SELECT concat_ws(' ', app_id, key, encode(sealed, 'hex')) \
                 FROM app_config_vars ORDER BY app_id, key",
            ),
            (
                "releases",
                "SELECT concat_ws(' ', app_id, version, status, image, cause) \
                 FROM releases ORDER BY app_id, version",
            ),
            (
                "release_sets",
                "SELECT concat_ws(' ', release_id, replicas, removed) \
                 FROM release_sets ORDER BY release_id",
            ),
            (
                "instances",
                "SELECT concat_ws(' ', release_id, desired, state) \
                 FROM instances ORDER BY id",
            ),
        ] {
            let rows: Vec<String> = sqlx::query_scalar(query).fetch_all(&self.db).await.unwrap();
            out.push((format!("{what}:{}", rows.join(",")), 0));
        }
        out
    }

    /// Holds the rollout controller and the reconciler between two of their passes (by taking
    /// the advisory locks each pass takes) until [`Held::release`]: while held, only requests
    /// change the database, so a snapshot before and after a request shows what that request
    /// did.
    pub async fn hold_controllers(&self) -> Held {
        let mut tx = self.db.begin().await.unwrap();
        for lock in [
            gantry_backend::rollouts::ADVISORY_LOCK,
            gantry_backend::cluster::reconciler::ADVISORY_LOCK,
        ] {
            sqlx::query("SELECT pg_advisory_xact_lock($1)")
                .bind(lock)
                .execute(&mut *tx)
                .await
                .unwrap();
        }
        Held(tx)
    }
}

/// The controllers, held (see [`TestApp::hold_controllers`]).
pub struct Held(Transaction<'static, Postgres>);

impl Held {
    pub async fn release(self) {
        self.0.rollback().await.unwrap();
    }
}

/// A reqwest client whose every answer is checked against the OpenAPI document.
#[derive(Clone)]
pub struct TestClient(Client);

impl TestClient {
    /// A client without a cookie store (what a script with a token uses).
    pub fn new() -> Self {
        TestClient(Client::new())
    }

    pub fn request(&self, method: Method, url: impl AsRef<str>) -> TestRequest {
        TestRequest(self.0.request(method, url.as_ref()))
    }

    pub fn get(&self, url: impl AsRef<str>) -> TestRequest {
        self.request(Method::GET, url)
    }

    pub fn post(&self, url: impl AsRef<str>) -> TestRequest {
        self.request(Method::POST, url)
    }

    pub fn delete(&self, url: impl AsRef<str>) -> TestRequest {
        self.request(Method::DELETE, url)
    }
}

/// A request of a [`TestClient`]; `send` checks the answer against the OpenAPI document.
pub struct TestRequest(RequestBuilder);

impl TestRequest {
    pub fn header(self, name: impl AsRef<str>, value: impl AsRef<str>) -> Self {
        TestRequest(self.0.header(name.as_ref(), value.as_ref()))
    }

    pub fn bearer_auth(self, token: impl Display) -> Self {
        TestRequest(self.0.bearer_auth(token))
    }

    pub fn json<T: Serialize + ?Sized>(self, body: &T) -> Self {
        TestRequest(self.0.json(body))
    }

    pub fn body(self, body: impl Into<reqwest::Body>) -> Self {
        TestRequest(self.0.body(body))
    }

    pub async fn send(self) -> reqwest::Result<Response> {
        let (client, request) = self.0.build_split();
        let request = request?;
        let (method, path) = (request.method().clone(), request.url().path().to_owned());
        let res = client.execute(request).await?;
        document().check(&method, &path, res.status());
        Ok(res)
    }
}

/// A signed-in user: a cookie-holding client that sends its CSRF token on writes.
pub struct TestUser {
    pub base: String,
    pub client: TestClient,
    pub csrf: String,
    pub id: Uuid,
    pub email: String,
    /// Slug of the personal team.
    pub team: String,
}

impl TestUser {
    pub fn request(&self, method: Method, path: &str) -> TestRequest {
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

    /// Deploys `image` to app `app` of `team` (a new release) and asserts it was accepted.
    pub async fn deploy(&self, team: &str, app: &str, image: &str) -> Value {
        let res = self
            .post(
                &format!("/api/v1/teams/{team}/apps/{app}/deploys"),
                json!({ "image": image }),
            )
            .await;
        assert_eq!(
            res.status(),
            StatusCode::ACCEPTED,
            "deploy {image} to {app} in {team}"
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
    pub client: TestClient,
}

impl TokenClient {
    pub fn new(app: &TestApp, secret: &str) -> Self {
        Self {
            base: app.base.clone(),
            secret: secret.to_owned(),
            client: TestClient::new(),
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
