use reqwest::StatusCode;
use serde_json::Value;

use crate::support::{error_code, TestApp};

#[tokio::test]
async fn health_and_readiness() {
    let app = TestApp::spawn().await;
    let client = app.anonymous();
    let res = client.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let res = client.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.json::<Value>().await.unwrap()["status"], "ready");
}

#[tokio::test]
async fn unknown_routes_and_methods_use_the_error_shape() {
    let app = TestApp::spawn().await;
    let client = app.anonymous();
    let res = client.get(app.url("/api/v1/nope")).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    assert_eq!(error_code(res).await, "not_found");
    let res = client
        .delete(app.url("/api/v1/teams"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(error_code(res).await, "method_not_allowed");
    let res = client.get(app.url("/api/v1/me")).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(error_code(res).await, "unauthorized");
}

#[tokio::test]
async fn oversized_bodies_and_bad_path_ids_are_4xx() {
    let app = TestApp::spawn().await;
    let alice = app.signup("alice@example.com").await;
    let res = alice
        .request(
            reqwest::Method::PUT,
            &format!("/api/v1/teams/{}/apps/x/config", alice.team),
        )
        .header("content-type", "application/json")
        .body(format!(
            "{{\"vars\":{{\"A\":\"{}\"}}}}",
            "x".repeat(3 * 1024 * 1024)
        ))
        .send()
        .await
        .unwrap();
    assert!(res.status().is_client_error(), "{}", res.status());
    let res = alice.delete("/api/v1/tokens/not-a-uuid").await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    assert_eq!(error_code(res).await, "bad_request");
    let res = alice
        .get(&format!("/api/v1/teams/{}/apps/NOT_A_NAME", alice.team))
        .await;
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
}
