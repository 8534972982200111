//! Build settings, the builds API and the git remote's gate (who may fetch or push). The
//! builds themselves — a real `git push` built on a real engine — are in the e2e suite.

use base64::Engine;
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::support::{error_code, TestApp, TestClient};

fn basic(user: &str, secret: &str) -> String {
    let pair = format!("{user}:{secret}");
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(pair)
    )
}

#[tokio::test]
async fn build_settings_are_checked_and_bad_ones_change_nothing() {
    let app = TestApp::spawn().await;
    let alice = app.signup("alice@example.com").await;
    let team = alice.team.clone();
    alice.create_app(&team, "web").await;
    let path = format!("/api/v1/teams/{team}/apps/web/build-settings");

    let res = alice.get(&path).await;
    assert_eq!(res.status(), StatusCode::OK);
    let defaults: Value = res.json().await.unwrap();
    assert_eq!(
        defaults,
        json!({
            "remote_url": app.url(&format!("/git/{team}/web.git")),
            "deploy_branch": "main",
            "dockerfile": "Dockerfile",
            "build_arg_names": [],
        })
    );

    // (body, what the message names)
    let bad = [
        (json!({"deploy_branch": "a..b"}), "branch name"),
        (json!({"deploy_branch": "has space"}), "branch name"),
        (json!({"deploy_branch": "-x"}), "branch name"),
        (json!({"deploy_branch": ""}), "branch"),
        (json!({"dockerfile": "/etc/passwd"}), "Dockerfile path"),
        (json!({"dockerfile": "../Dockerfile"}), "Dockerfile path"),
        (json!({"build_args": {"1X": "v"}}), "build arg"),
        (json!({"build_args": {"X": "a".repeat(5000)}}), "build arg"),
        (json!({"dockerfile_path": "Dockerfile"}), "unknown field"),
    ];
    let before = app.snapshot().await;
    for (body, names) in bad {
        let res = alice.put(&path, body.clone()).await;
        assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        let error: Value = res.json().await.unwrap();
        let message = error["error"]["message"].as_str().unwrap();
        assert!(message.contains(names), "{body}: {message}");
    }
    assert_eq!(
        app.snapshot().await,
        before,
        "refused settings changed nothing"
    );

    // Shell metacharacters are fine in a branch name git accepts: they only ever reach git as
    // data. Build args' values are write-only.
    let res = alice
        .put(
            &path,
            json!({"deploy_branch": "x$(touch${IFS}/tmp/x)", "dockerfile": "docker/web.Dockerfile",
                   "build_args": {"NPM_TOKEN": "s3cret-build-arg"}}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let set: Value = res.json().await.unwrap();
    assert_eq!(set["deploy_branch"], "x$(touch${IFS}/tmp/x)");
    assert_eq!(set["dockerfile"], "docker/web.Dockerfile");
    assert_eq!(set["build_arg_names"], json!(["NPM_TOKEN"]));
    // An absent field keeps its value; `{}` removes the build args.
    let res = alice.put(&path, json!({"build_args": {}})).await;
    let kept: Value = res.json().await.unwrap();
    assert_eq!(kept["dockerfile"], "docker/web.Dockerfile");
    assert_eq!(kept["build_arg_names"], json!([]));
    let audit: Value = alice
        .get(&format!("/api/v1/teams/{team}/audit"))
        .await
        .json()
        .await
        .unwrap();
    assert!(!audit.to_string().contains("s3cret-build-arg"), "{audit}");
}

#[tokio::test]
async fn an_app_without_pushes_has_no_builds() {
    let app = TestApp::spawn().await;
    let alice = app.signup("alice@example.com").await;
    let team = alice.team.clone();
    alice.create_app(&team, "web").await;
    let builds = format!("/api/v1/teams/{team}/apps/web/builds");
    let res = alice.get(&builds).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.json::<Value>().await.unwrap(), json!([]));
    for res in [
        alice.get(&format!("{builds}/1")).await,
        alice.post(&format!("{builds}/1/cancel"), json!({})).await,
    ] {
        assert_eq!(res.status(), StatusCode::NOT_FOUND);
        assert_eq!(error_code(res).await, "not_found");
    }
    let res = alice.get(&format!("{builds}/first")).await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn the_git_remote_asks_for_credentials_and_hides_other_teams() {
    let app = TestApp::spawn().await;
    let alice = app.signup("alice@example.com").await;
    let bob = app.signup("bob@example.com").await;
    let vera = app.signup("vera@example.com").await;
    let team = alice.team.clone();
    alice.create_app(&team, "web").await;
    alice.add_member(&team, &vera, "viewer").await;
    let alice_token = alice.token(&team, "member").await;
    let bob_token = bob.token(&bob.team, "owner").await;
    let vera_token = vera.token(&team, "viewer").await;
    let http = TestClient::new();
    let refs = |service: &str| app.url(&format!("/git/{team}/web.git/info/refs?service={service}"));

    // Anonymous: a challenge, which makes git send the remote's credentials.
    let res = http.get(refs("git-upload-pack")).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(res.headers()["www-authenticate"], "Basic realm=\"Gantry\"");
    // Wrong secrets, or a token with another account's e-mail: challenged again.
    for (user, secret) in [
        ("alice@example.com", "wrong password!"),
        ("bob@example.com", alice_token.as_str()),
    ] {
        let res = http
            .get(refs("git-upload-pack"))
            .header("authorization", basic(user, secret))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED, "{user}");
    }

    // (who, secret, service, status)
    let cases = [
        (
            "alice@example.com",
            alice_token.as_str(),
            "git-upload-pack",
            StatusCode::OK,
        ),
        (
            "alice@example.com",
            alice_token.as_str(),
            "git-receive-pack",
            StatusCode::OK,
        ),
        (
            "alice@example.com",
            "correct horse battery",
            "git-receive-pack",
            StatusCode::OK,
        ),
        (
            "vera@example.com",
            vera_token.as_str(),
            "git-upload-pack",
            StatusCode::OK,
        ),
        (
            "vera@example.com",
            vera_token.as_str(),
            "git-receive-pack",
            StatusCode::FORBIDDEN,
        ),
        (
            "bob@example.com",
            bob_token.as_str(),
            "git-upload-pack",
            StatusCode::NOT_FOUND,
        ),
        (
            "bob@example.com",
            bob_token.as_str(),
            "git-receive-pack",
            StatusCode::NOT_FOUND,
        ),
    ];
    for (user, secret, service, status) in cases {
        let res = http
            .get(refs(service))
            .header("authorization", basic(user, secret))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), status, "{user} {service}");
        if status == StatusCode::OK {
            assert_eq!(
                res.headers()["content-type"],
                format!("application/x-{service}-advertisement").as_str()
            );
        }
    }
    // Another team's missing app and a missing app of one's own look alike.
    let auth = basic("alice@example.com", &alice_token);
    for path in [
        format!("/git/{team}/nope.git/info/refs?service=git-upload-pack"),
        format!(
            "/git/{}/web.git/info/refs?service=git-upload-pack",
            bob.team
        ),
        format!("/git/{team}/web/info/refs?service=git-upload-pack"),
        // The dumb protocol is not served.
        format!("/git/{team}/web.git/HEAD"),
        format!("/git/{team}/web.git/info/refs"),
    ] {
        let res = http
            .get(app.url(&path))
            .header("authorization", &auth)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::NOT_FOUND, "{path}");
    }
    // The hooks' endpoint knows only pushes in progress, with their secret.
    let res = http
        .post(app.url(&format!(
            "/git/-/hooks/{}?commit={}&old={}",
            uuid::Uuid::new_v4(),
            "a".repeat(40),
            "0".repeat(40)
        )))
        .bearer_auth("guess")
        .body("tar")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
}
