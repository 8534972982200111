use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::support::{TestApp, TestClient};

#[tokio::test]
async fn every_mutation_is_audited_without_secrets() {
    let app = TestApp::spawn().await;
    let alice = app.signup("alice@example.com").await;
    let bob = app.signup("bob@example.com").await;
    let team = alice.team.clone();
    alice.create_app(&team, "web").await;
    alice
        .patch(
            &format!("/api/v1/teams/{team}/apps/web"),
            json!({"replicas": 2}),
        )
        .await;
    alice
        .put(
            &format!("/api/v1/teams/{team}/apps/web/config"),
            json!({"vars": {"API_KEY": "hunter2-secret"}}),
        )
        .await;
    alice.add_member(&team, &bob, "member").await;
    alice
        .patch(
            &format!("/api/v1/teams/{team}/members/{}", bob.id),
            json!({"role": "viewer"}),
        )
        .await;
    let secret = alice.token(&team, "member").await;
    let tokens: Value = alice.get("/api/v1/tokens").await.json().await.unwrap();
    let token_id = tokens[0]["id"].as_str().unwrap().to_owned();
    // An action by the token is attributed to the token.
    let res = TestClient::new()
        .post(app.url(&format!("/api/v1/teams/{team}/apps")))
        .bearer_auth(&secret)
        .json(&json!({"name": "by-ci"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::CREATED);
    alice.delete(&format!("/api/v1/tokens/{token_id}")).await;
    alice
        .delete(&format!("/api/v1/teams/{team}/members/{}", bob.id))
        .await;
    alice
        .delete(&format!("/api/v1/teams/{team}/apps/web"))
        .await;

    let res = alice.get(&format!("/api/v1/teams/{team}/audit")).await;
    assert_eq!(res.status(), StatusCode::OK);
    let text = res.text().await.unwrap();
    assert!(
        !text.contains("hunter2-secret"),
        "config values must not be audited"
    );
    assert!(!text.contains(&secret), "token secrets must not be audited");
    let page: Value = serde_json::from_str(&text).unwrap();
    let events = page["events"].as_array().unwrap();
    let actions: Vec<&str> = events
        .iter()
        .rev()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        [
            "team.create",
            "app.create",
            "app.update",
            "config.update",
            "member.add",
            "member.update",
            "token.create",
            "app.create",
            "token.revoke",
            "member.remove",
            "app.delete",
        ]
    );
    let by_ci = &events[events.len() - 8];
    assert_eq!(by_ci["target"], "app:by-ci");
    assert_eq!(by_ci["actor_token_id"], token_id.as_str());
    assert!(by_ci["actor"].as_str().unwrap().contains("token"));
    let config = events
        .iter()
        .find(|e| e["action"] == "config.update")
        .unwrap();
    assert_eq!(config["details"]["set"], json!(["API_KEY"]));
    for e in events {
        assert_eq!(e["actor_user_id"], alice.id.to_string().as_str());
        assert!(e["at"].is_string());
    }
}

#[tokio::test]
async fn audit_log_pages_newest_first() {
    let app = TestApp::spawn().await;
    let alice = app.signup("alice@example.com").await;
    for i in 0..5 {
        alice.create_app(&alice.team, &format!("app{i}")).await;
    }
    let page: Value = alice
        .get(&format!("/api/v1/teams/{}/audit?limit=4", alice.team))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(page["events"].as_array().unwrap().len(), 4);
    assert_eq!(page["events"][0]["target"], "app:app4");
    let before = page["next_before"].as_i64().unwrap();
    let page: Value = alice
        .get(&format!(
            "/api/v1/teams/{}/audit?limit=4&before={before}",
            alice.team
        ))
        .await
        .json()
        .await
        .unwrap();
    let targets: Vec<&str> = page["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["target"].as_str().unwrap())
        .collect();
    assert_eq!(targets, ["app:app0", "team:alice"]);
    assert!(page["next_before"].is_null());
    let res = alice
        .get(&format!("/api/v1/teams/{}/audit?limit=0", alice.team))
        .await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    let res = alice
        .get(&format!("/api/v1/teams/{}/audit?limit=abc", alice.team))
        .await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
}
