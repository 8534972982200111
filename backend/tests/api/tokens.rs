use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::support::{error_code, TestApp, TestClient, TokenClient};

#[tokio::test]
async fn create_use_list_and_revoke_a_token() {
    let app = TestApp::spawn().await;
    let alice = app.signup("alice@example.com").await;
    let res = alice
        .post(
            "/api/v1/tokens",
            json!({"name": "ci", "team": alice.team, "role": "member"}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let created: Value = res.json().await.unwrap();
    let secret = created["secret"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("gnt_"), "{secret}");
    let id = created["token"]["id"].as_str().unwrap().to_owned();
    assert!(secret.starts_with(created["token"]["prefix"].as_str().unwrap()));

    // Stored hashed: the secret is nowhere in the database.
    let stored: Vec<u8> = sqlx::query_scalar("SELECT secret_hash FROM api_tokens")
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert_eq!(stored.len(), 32);
    let dump: String = sqlx::query_scalar("SELECT string_agg(t::text, ' ') FROM api_tokens t")
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert!(!dump.contains(&secret[4..]), "secret stored in clear");

    let ci = TokenClient::new(&app, &secret);
    let apps = format!("/api/v1/teams/{}/apps", alice.team);
    let res = ci
        .send(Method::POST, &apps, Some(json!({"name": "web"})))
        .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let res = ci.send(Method::GET, &apps, None).await;
    assert_eq!(res.status(), StatusCode::OK);
    let me: Value = ci
        .send(Method::GET, "/api/v1/me", None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(me["user"]["email"], "alice@example.com");
    assert_eq!(me["teams"].as_array().unwrap().len(), 1);
    assert_eq!(me["teams"][0]["role"], "member");

    // The list shows it without the secret, with its last use.
    let list = alice.get("/api/v1/tokens").await.text().await.unwrap();
    assert!(list.contains(&id));
    assert!(!list.contains(&secret));
    let list: Value = serde_json::from_str(&list).unwrap();
    assert!(list[0]["last_used_at"].is_string() || list[0]["last_used_at"].is_null());

    // Revoked: stops working at once.
    let res = alice.delete(&format!("/api/v1/tokens/{id}")).await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    let res = ci.send(Method::GET, &apps, None).await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(error_code(res).await, "unauthorized");
    let list: Value = alice.get("/api/v1/tokens").await.json().await.unwrap();
    assert_eq!(list.as_array().unwrap().len(), 0);
    // Revoking twice, or someone else's token: 404.
    assert_eq!(
        alice.delete(&format!("/api/v1/tokens/{id}")).await.status(),
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn token_role_cannot_exceed_the_creators() {
    let app = TestApp::spawn().await;
    let alice = app.signup("alice@example.com").await;
    let bob = app.signup("bob@example.com").await;
    alice.add_member(&alice.team, &bob, "member").await;
    let before = app.snapshot().await;
    for role in ["owner", "admin"] {
        let res = bob
            .post(
                "/api/v1/tokens",
                json!({"name": "x", "team": alice.team, "role": role}),
            )
            .await;
        assert_eq!(res.status(), StatusCode::FORBIDDEN, "{role}");
    }
    assert_eq!(app.snapshot().await, before);
    for role in ["member", "viewer"] {
        let res = bob
            .post(
                "/api/v1/tokens",
                json!({"name": "x", "team": alice.team, "role": role}),
            )
            .await;
        assert_eq!(res.status(), StatusCode::CREATED, "{role}");
    }
}

#[tokio::test]
async fn tokens_cannot_mint_tokens_or_teams_and_only_see_their_team() {
    let app = TestApp::spawn().await;
    let alice = app.signup("alice@example.com").await;
    let res = alice.post("/api/v1/teams", json!({"slug": "acme"})).await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let secret = alice.token("acme", "owner").await;
    let ci = TokenClient::new(&app, &secret);
    let before = app.snapshot().await;
    let res = ci
        .send(
            Method::POST,
            "/api/v1/tokens",
            Some(json!({"name": "y", "team": "acme", "role": "viewer"})),
        )
        .await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    let res = ci
        .send(
            Method::POST,
            "/api/v1/teams",
            Some(json!({"slug": "other"})),
        )
        .await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    assert_eq!(app.snapshot().await, before);
    // Alice's personal team is invisible to the acme token.
    let res = ci
        .send(
            Method::GET,
            &format!("/api/v1/teams/{}/apps", alice.team),
            None,
        )
        .await;
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    let teams: Value = ci
        .send(Method::GET, "/api/v1/teams", None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(teams.as_array().unwrap().len(), 1);
    assert_eq!(teams[0]["slug"], "acme");
}

#[tokio::test]
async fn malformed_and_unknown_bearer_tokens_get_401() {
    let app = TestApp::spawn().await;
    let alice = app.signup("alice@example.com").await;
    let path = format!("/api/v1/teams/{}/apps", alice.team);
    let fake = format!("gnt_{}", "A".repeat(43));
    for header in [
        "Bearer nope",
        "Basic abc",
        "Bearer ",
        &format!("Bearer {fake}"),
    ] {
        let res = TestClient::new()
            .get(app.url(&path))
            .header("authorization", header)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED, "{header}");
        assert_eq!(error_code(res).await, "unauthorized");
    }
}

#[tokio::test]
async fn token_creation_validates_its_input() {
    let app = TestApp::spawn().await;
    let alice = app.signup("alice@example.com").await;
    let before = app.snapshot().await;
    let cases = [
        (
            json!({"name": "", "team": alice.team, "role": "member"}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            json!({"name": "x", "team": alice.team, "role": "root"}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            json!({"name": "x".repeat(101), "team": alice.team, "role": "member"}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            json!({"name": "x", "team": "no-such-team", "role": "member"}),
            StatusCode::NOT_FOUND,
        ),
    ];
    for (body, status) in cases {
        let res = alice.post("/api/v1/tokens", body.clone()).await;
        assert_eq!(res.status(), status, "{body}");
    }
    assert_eq!(app.snapshot().await, before);
}

#[tokio::test]
async fn a_token_can_revoke_itself_but_not_its_siblings() {
    let app = TestApp::spawn().await;
    let alice = app.signup("alice@example.com").await;
    let deploy = alice.token(&alice.team, "member").await;
    let leaked = alice.token(&alice.team, "viewer").await;
    let tokens: Value = alice.get("/api/v1/tokens").await.json().await.unwrap();
    let id_of = |prefix: &str| {
        tokens
            .as_array()
            .unwrap()
            .iter()
            .find(|t| prefix.starts_with(t["prefix"].as_str().unwrap()))
            .unwrap()["id"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let (deploy_id, leaked_id) = (id_of(&deploy), id_of(&leaked));
    let leaked_client = TokenClient::new(&app, &leaked);
    let before = app.snapshot().await;
    let res = leaked_client
        .send(Method::DELETE, &format!("/api/v1/tokens/{deploy_id}"), None)
        .await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    assert_eq!(app.snapshot().await, before);
    let apps = format!("/api/v1/teams/{}/apps", alice.team);
    let deploy_client = TokenClient::new(&app, &deploy);
    assert_eq!(
        deploy_client.send(Method::GET, &apps, None).await.status(),
        StatusCode::OK
    );
    // Revoking itself works, and ends it.
    let res = leaked_client
        .send(Method::DELETE, &format!("/api/v1/tokens/{leaked_id}"), None)
        .await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        leaked_client.send(Method::GET, &apps, None).await.status(),
        StatusCode::UNAUTHORIZED
    );
}
