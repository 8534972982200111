//! Cookie-authenticated writes need the session's CSRF token and must not come from a foreign
//! Origin; refused requests change nothing. Bearer tokens need neither.

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::support::{error_code, TestApp, TokenClient};

#[tokio::test]
async fn cookie_writes_without_csrf_token_or_from_foreign_origin_are_refused_and_change_nothing() {
    let app = TestApp::spawn().await;
    let alice = app.signup("alice@example.com").await;
    alice.create_app(&alice.team, "web").await;
    let apps = format!("/api/v1/teams/{}/apps", alice.team);
    let web = format!("{apps}/web");
    let before = app.snapshot().await;

    // (method, path, body) of writes a forged page could try.
    let writes = [
        (Method::POST, apps.clone(), Some(json!({"name": "evil"}))),
        (Method::PATCH, web.clone(), Some(json!({"replicas": 9}))),
        (Method::DELETE, web.clone(), None),
        (
            Method::PUT,
            format!("{web}/config"),
            Some(json!({"vars": {"X": "1"}})),
        ),
        (
            Method::POST,
            "/api/v1/teams".into(),
            Some(json!({"slug": "evil"})),
        ),
        (
            Method::POST,
            "/api/v1/tokens".into(),
            Some(json!({"name": "t", "team": alice.team, "role": "owner"})),
        ),
        (Method::POST, "/api/v1/auth/logout".into(), None),
    ];
    // (csrf header, origin header, expected code)
    let variants: [(Option<&str>, Option<&str>); 4] = [
        (None, None),
        (Some("wrong-token"), None),
        (Some(alice.csrf.as_str()), Some("https://evil.example")),
        (None, Some("https://evil.example")),
    ];
    for (method, path, body) in &writes {
        for (csrf, origin) in variants {
            let mut req = alice.client.request(method.clone(), app.url(path));
            if let Some(t) = csrf {
                req = req.header("x-csrf-token", t);
            }
            if let Some(o) = origin {
                req = req.header("origin", o);
            }
            if let Some(b) = body {
                req = req.json(b);
            }
            let res = req.send().await.unwrap();
            assert_eq!(
                res.status(),
                StatusCode::FORBIDDEN,
                "{method} {path} csrf={csrf:?} origin={origin:?}"
            );
            assert_eq!(error_code(res).await, "forbidden");
        }
    }
    assert_eq!(
        app.snapshot().await,
        before,
        "refused writes changed nothing"
    );
    // And the session still works (logout was refused too).
    assert_eq!(alice.get("/api/v1/me").await.status(), StatusCode::OK);
}

#[tokio::test]
async fn cross_site_fetch_metadata_is_refused_even_for_login() {
    let app = TestApp::spawn().await;
    app.signup("alice@example.com").await;
    let res = app
        .anonymous()
        .post(app.url("/api/v1/auth/login"))
        .header("sec-fetch-site", "cross-site")
        .json(&json!({"email": "alice@example.com", "password": crate::support::PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn same_origin_writes_with_the_token_work() {
    let app = TestApp::spawn().await;
    let alice = app.signup("alice@example.com").await;
    let res = alice
        .request(Method::POST, &format!("/api/v1/teams/{}/apps", alice.team))
        .header("origin", &app.base)
        .json(&json!({"name": "web"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::CREATED);
    // The token from GET /auth/csrf is the session's.
    let body: serde_json::Value = alice.get("/api/v1/auth/csrf").await.json().await.unwrap();
    assert_eq!(body["csrf_token"], alice.csrf.as_str());
}

#[tokio::test]
async fn bearer_tokens_need_no_csrf_token_and_ignore_origin() {
    let app = TestApp::spawn().await;
    let alice = app.signup("alice@example.com").await;
    let secret = alice.token(&alice.team, "member").await;
    let ci = TokenClient::new(&app, &secret);
    let res = ci
        .client
        .post(app.url(&format!("/api/v1/teams/{}/apps", alice.team)))
        .bearer_auth(&secret)
        .header("origin", "https://ci.example")
        .json(&json!({"name": "web"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::CREATED);
}

#[tokio::test]
async fn reads_change_no_state() {
    let app = TestApp::spawn().await;
    let alice = app.signup("alice@example.com").await;
    alice.create_app(&alice.team, "web").await;
    let before = app.snapshot().await;
    for path in [
        "/api/v1/me".to_owned(),
        "/api/v1/teams".to_owned(),
        format!("/api/v1/teams/{}", alice.team),
        format!("/api/v1/teams/{}/apps", alice.team),
        format!("/api/v1/teams/{}/apps/web", alice.team),
        format!("/api/v1/teams/{}/apps/web/config", alice.team),
        format!("/api/v1/teams/{}/members", alice.team),
        format!("/api/v1/teams/{}/audit", alice.team),
        "/api/v1/tokens".to_owned(),
        "/api/v1/auth/csrf".to_owned(),
    ] {
        let res = alice.client.get(app.url(&path)).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::OK, "{path}");
    }
    assert_eq!(app.snapshot().await, before);
}
