use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::support::{error_code, TestApp};

#[tokio::test]
async fn create_list_get_update_delete_an_app() {
    let app = TestApp::spawn().await;
    let alice = app.signup("alice@example.com").await;
    let apps = format!("/api/v1/teams/{}/apps", alice.team);

    let empty: Value = alice.get(&apps).await.json().await.unwrap();
    assert_eq!(empty, json!([]));

    let res = alice.post(&apps, json!({"name": "hello"})).await;
    assert_eq!(res.status(), StatusCode::CREATED);
    assert_eq!(res.headers()["location"], format!("{apps}/hello").as_str());
    let created: Value = res.json().await.unwrap();
    assert_eq!(created["port"], 8080);
    assert_eq!(created["replicas"], 1);
    assert_eq!(created["cpu_millis"], 500);
    assert_eq!(created["memory_mib"], 256);
    assert_eq!(created["health_check_path"], "/");
    assert_eq!(created["team"], alice.team.as_str());

    let res = alice
        .post(&apps, json!({"name": "api", "port": 3000, "replicas": 3, "cpu_millis": 250, "memory_mib": 512, "health_check_path": "/healthz"}))
        .await;
    assert_eq!(res.status(), StatusCode::CREATED);

    let list: Value = alice.get(&apps).await.json().await.unwrap();
    let names: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["api", "hello"]);

    let res = alice
        .patch(
            &format!("{apps}/hello"),
            json!({"replicas": 4, "port": 9000}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let got: Value = alice
        .get(&format!("{apps}/hello"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(got["replicas"], 4);
    assert_eq!(got["port"], 9000);
    assert_eq!(got["memory_mib"], 256, "unchanged fields keep their value");

    let res = alice.delete(&format!("{apps}/hello")).await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    let res = alice.get(&format!("{apps}/hello")).await;
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    assert_eq!(error_code(res).await, "not_found");
}

#[tokio::test]
async fn bad_app_input_is_a_clear_4xx_and_changes_nothing() {
    let app = TestApp::spawn().await;
    let alice = app.signup("alice@example.com").await;
    let apps = format!("/api/v1/teams/{}/apps", alice.team);
    alice.create_app(&alice.team, "taken").await;
    let before = app.snapshot().await;
    let cases = [
        (json!({"name": "Hello"}), 422, "lowercase"),
        (json!({"name": "hello_world"}), 422, "'_' is not allowed"),
        (json!({"name": "-x"}), 422, "start with a lowercase letter"),
        (json!({"name": "x".repeat(64)}), 422, "63"),
        (json!({"name": ""}), 422, "empty"),
        (json!({"name": "ok", "port": 0}), 422, "port"),
        (json!({"name": "ok", "port": 70000}), 422, "u16"),
        (json!({"name": "ok", "port": "80"}), 422, "invalid type"),
        (json!({"name": "ok", "replicas": -1}), 422, "invalid value"),
        (json!({"name": "ok", "replicas": 1000}), 422, "replicas"),
        (json!({"name": "ok", "cpu_millis": 1}), 422, "cpu_millis"),
        (json!({"name": "ok", "memory_mib": 1}), 422, "memory_mib"),
        (
            json!({"name": "ok", "health_check_path": "health"}),
            422,
            "health_check_path",
        ),
        (
            json!({"name": "ok", "replica": 2}),
            422,
            "unknown field `replica`",
        ),
        (json!({"name": "taken"}), 409, "already exists"),
        (json!(["name"]), 422, "invalid type"),
    ];
    for (body, status, needle) in cases {
        let res = alice.post(&apps, body.clone()).await;
        assert_eq!(res.status().as_u16(), status, "{body}");
        let err: Value = res.json().await.unwrap();
        let message = err["error"]["message"].as_str().unwrap();
        assert!(message.contains(needle), "{body}: {message}");
    }
    // Malformed JSON and wrong content type.
    let res = alice
        .request(reqwest::Method::POST, &apps)
        .header("content-type", "application/json")
        .body("{\"name\": ")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    assert!(error_code(res).await == "bad_request");
    let res = alice
        .request(reqwest::Method::POST, &apps)
        .header("content-type", "text/plain")
        .body("name=x")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    // Renaming through PATCH is an unknown field, not a silent no-op.
    let res = alice
        .patch(&format!("{apps}/taken"), json!({"name": "renamed"}))
        .await;
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(app.snapshot().await, before);
}

#[tokio::test]
async fn config_vars_are_encrypted_at_rest_and_replaced_or_patched() {
    let app = TestApp::spawn().await;
    let alice = app.signup("alice@example.com").await;
    alice.create_app(&alice.team, "web").await;
    let config = format!("/api/v1/teams/{}/apps/web/config", alice.team);

    let res = alice
        .put(
            &config,
            json!({"vars": {"DATABASE_URL": "postgres://very-secret-value", "MODE": "prod"}}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["values_visible"], true);
    assert_eq!(
        body["vars"],
        json!([{"key": "DATABASE_URL", "value": "postgres://very-secret-value"}, {"key": "MODE", "value": "prod"}])
    );

    // Nothing in the database holds the value in clear.
    let dump: String =
        sqlx::query_scalar("SELECT string_agg(encode(sealed, 'escape'), ' ') FROM app_config_vars")
            .fetch_one(&app.db)
            .await
            .unwrap();
    assert!(!dump.contains("very-secret-value"));
    assert!(!dump.contains("prod"));

    // PATCH sets and unsets.
    let res = alice
        .patch(&config, json!({"vars": {"MODE": null, "WORKERS": "4"}}))
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let body: Value = alice.get(&config).await.json().await.unwrap();
    assert_eq!(
        body["vars"],
        json!([{"key": "DATABASE_URL", "value": "postgres://very-secret-value"}, {"key": "WORKERS", "value": "4"}])
    );

    // PUT replaces the whole set.
    alice.put(&config, json!({"vars": {"ONLY": "1"}})).await;
    let body: Value = alice.get(&config).await.json().await.unwrap();
    assert_eq!(body["vars"], json!([{"key": "ONLY", "value": "1"}]));
}

#[tokio::test]
async fn bad_config_input_is_refused_and_changes_nothing() {
    let app = TestApp::spawn().await;
    let alice = app.signup("alice@example.com").await;
    alice.create_app(&alice.team, "web").await;
    let config = format!("/api/v1/teams/{}/apps/web/config", alice.team);
    alice.put(&config, json!({"vars": {"KEEP": "me"}})).await;
    let before = app.snapshot().await;
    let too_many: serde_json::Map<String, Value> =
        (0..501).map(|i| (format!("K{i}"), json!("v"))).collect();
    let cases = [
        json!({"vars": {"1BAD": "x"}}),
        json!({"vars": {"BAD-KEY": "x"}}),
        json!({"vars": {"GANTRY_PORT": "x"}}),
        json!({"vars": {"BIG": "x".repeat(32 * 1024 + 1)}}),
        json!({"vars": {"NUL": "a\u{0}b"}}),
        json!({"vars": {"N": 5}}),
        json!({"vars": too_many}),
        json!({"values": {}}),
    ];
    for body in cases {
        let res = alice.put(&config, body.clone()).await;
        assert_eq!(
            res.status(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "{}",
            &body.to_string()[..60.min(body.to_string().len())]
        );
        error_code(res).await;
    }
    assert_eq!(app.snapshot().await, before);
    let body: Value = alice.get(&config).await.json().await.unwrap();
    assert_eq!(body["vars"], json!([{"key": "KEEP", "value": "me"}]));
}

#[tokio::test]
async fn deploy_on_push_defaults_to_latest_and_can_be_another_tag_or_off() {
    let app = TestApp::spawn().await;
    let alice = app.signup("alice@example.com").await;
    let hello = format!("/api/v1/teams/{}/apps/hello", alice.team);
    let created: Value = alice
        .post(
            &format!("/api/v1/teams/{}/apps", alice.team),
            json!({"name": "hello"}),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(created["deploy_on_push"], "latest");

    let res = alice.patch(&hello, json!({"deploy_on_push": "main"})).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.json::<Value>().await.unwrap()["deploy_on_push"], "main");
    // Other settings leave it alone.
    let res = alice.patch(&hello, json!({"replicas": 2})).await;
    assert_eq!(res.json::<Value>().await.unwrap()["deploy_on_push"], "main");

    let before = app.snapshot().await;
    for bad in [
        json!("-x"),
        json!(""),
        json!("a/b"),
        json!("x".repeat(129)),
        json!(3),
    ] {
        let res = alice.patch(&hello, json!({"deploy_on_push": bad})).await;
        assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY, "{bad}");
    }
    assert_eq!(app.snapshot().await, before);

    let res = alice.patch(&hello, json!({"deploy_on_push": null})).await;
    assert_eq!(
        res.json::<Value>().await.unwrap()["deploy_on_push"],
        Value::Null
    );
}

#[tokio::test]
async fn local_image_ids_and_unpushed_images_of_this_registry_are_refused() {
    let app = TestApp::spawn().await;
    let alice = app.signup("alice@example.com").await;
    let apps = format!("/api/v1/teams/{}/apps", alice.team);
    alice.post(&apps, json!({"name": "hello"})).await;
    let port = app.base.rsplit(':').next().unwrap().to_owned();
    let before = app.snapshot().await;
    for image in [
        "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef".to_owned(),
        "0123456789ab".to_owned(),
        // This server's registry: not pushed, or another team's repository.
        format!("127.0.0.1:{port}/{}/hello:latest", alice.team),
        format!("localhost:{port}/someone-else/hello:latest"),
    ] {
        let res = alice
            .post(&format!("{apps}/hello/deploys"), json!({"image": image}))
            .await;
        assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY, "{image}");
        assert_eq!(error_code(res).await, "invalid");
    }
    assert_eq!(app.snapshot().await, before);
    // An image from elsewhere is deployed as it is, marked as such.
    let res = alice
        .post(
            &format!("{apps}/hello/deploys"),
            json!({"image": "ghcr.io/acme/hello:1"}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    let release: Value = res.json().await.unwrap();
    assert_eq!(release["image"], "ghcr.io/acme/hello:1");
    assert_eq!(release["image_source"], "external");
}
