//! Releases and rollouts through the API, with a hand-driven agent reporting its instances:
//! what makes a release (and what does not), the rolling update's steps, failures (crash loop,
//! progress deadline), rollback, strategies, routes and rollout progress.

use std::collections::HashSet;
use std::time::Duration;

use gantry_common::agent::DesiredInstance;
use gantry_common::cluster::InstanceState;
use reqwest::StatusCode;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::fake_agent::{deploy, error_message, release_until, FakeAgent, WAIT};
use crate::support::{error_code, TestApp, TestUser};

const SECRET: &str = "s3cret-value-never-shown";

/// GET `path` and its JSON body, asserting a 200.
pub(crate) async fn get_json(user: &TestUser, path: &str) -> Value {
    let res = user.get(path).await;
    assert_eq!(res.status(), StatusCode::OK, "GET {path}");
    res.json().await.unwrap()
}

async fn releases(user: &TestUser, app: &str) -> Vec<Value> {
    let res = user.get(&format!("{app}/releases")).await;
    assert_eq!(res.status(), StatusCode::OK);
    res.json().await.unwrap()
}

async fn create_app(user: &TestUser, body: Value) -> String {
    let res = user
        .post(&format!("/api/v1/teams/{}/apps", user.team), body.clone())
        .await;
    assert_eq!(res.status(), StatusCode::CREATED, "{body}");
    format!(
        "/api/v1/teams/{}/apps/{}",
        user.team,
        body["name"].as_str().unwrap()
    )
}

#[tokio::test]
async fn deploys_config_and_settings_changes_are_releases_and_scaling_is_not() {
    let app = TestApp::spawn().await;
    let alice = app.signup("alice@example.com").await;
    let web = create_app(&alice, json!({"name": "web"})).await;

    // Before the first deploy there is nothing to run: config is only recorded.
    let res = alice
        .patch(
            &format!("{web}/config"),
            json!({"vars": {"GREETING": SECRET}}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(releases(&alice, &web).await, Vec::<Value>::new());

    let v1 = deploy(&alice, &web, "gantry-hello:1").await;
    assert_eq!(v1["version"], 1);
    assert_eq!(v1["config_keys"], json!(["GREETING"]));
    assert_eq!(v1["port"], 8080);

    let res = alice
        .patch(
            &format!("{web}/config"),
            json!({"vars": {"OTHER": "x", "GREETING": null}}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let res = alice
        .patch(&web, json!({"port": 8888, "health_check_path": "/healthz"}))
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    // Scaling, the stop grace and the deadline change no release.
    let res = alice
        .patch(
            &web,
            json!({"replicas": 3, "stop_grace_seconds": 5, "progress_deadline_seconds": 60}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let res = alice
        .post(&format!("{web}/scale"), json!({"replicas": 2}))
        .await;
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    // A setting given its current value changes nothing either.
    let res = alice.patch(&web, json!({"port": 8888})).await;
    assert_eq!(res.status(), StatusCode::OK);

    let list = releases(&alice, &web).await;
    let summary: Vec<(u64, &str)> = list
        .iter()
        .map(|r| (r["version"].as_u64().unwrap(), r["cause"].as_str().unwrap()))
        .collect();
    assert_eq!(
        summary,
        [
            (3, "Change port, health_check_path"),
            (2, "Set OTHER; Remove GREETING"),
            (1, "Deploy gantry-hello:1"),
        ]
    );
    // Each built on the one before: same image, config and settings as the app had then.
    assert_eq!(list[0]["image"], "gantry-hello:1");
    assert_eq!(list[0]["port"], 8888);
    assert_eq!(list[0]["config_keys"], json!(["OTHER"]));
    assert_eq!(list[1]["port"], 8080);
    // Only the newest may still roll out; the others were superseded before they finished.
    assert_eq!(list[1]["status"], "superseded");
    assert_eq!(list[2]["status"], "superseded");
    for r in &list {
        assert_eq!(r["created_by"], "alice@example.com");
    }

    // Values never appear outside the config endpoint: not in releases, the app, the audit log.
    for path in [
        format!("{web}/releases"),
        format!("{web}/releases/1"),
        web.clone(),
        format!("/api/v1/teams/{}/audit", alice.team),
    ] {
        let body = alice.get(&path).await.text().await.unwrap();
        assert!(
            !body.contains(SECRET),
            "{path} shows a config value: {body}"
        );
    }
    let v1: Value = get_json(&alice, &format!("{web}/releases/1")).await;
    assert_eq!(v1["cause"], "Deploy gantry-hello:1");
    let res = alice.get(&format!("{web}/releases/9")).await;
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    let res = alice.get(&format!("{web}/releases/v1")).await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    // Pages, newest first.
    let page = get_json(&alice, &format!("{web}/releases?limit=1&before=3")).await;
    let page = page.as_array().unwrap();
    assert_eq!(page.len(), 1);
    assert_eq!(page[0]["version"], 2);
    let res = alice.get(&format!("{web}/releases?limit=0")).await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn the_platform_sets_port_and_gantry_vars_and_refuses_them_in_config() {
    let app = TestApp::spawn().await;
    let alice = app.signup("alice@example.com").await;
    let web = create_app(&alice, json!({"name": "web"})).await;
    for key in ["PORT", "GANTRY_RELEASE", "gantry_app"] {
        let res = alice
            .patch(&format!("{web}/config"), json!({"vars": {key: "1"}}))
            .await;
        assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY, "{key}");
        let message = error_message(res).await;
        assert!(message.contains("reserved"), "{key}: {message}");
    }
    assert_eq!(app.count("app_config_vars").await, 0);
}

/// Node `n1` with a web app of `replicas` whose v1 is active and ready; returns the agent, the
/// app's path and v1's instances.
pub(crate) async fn serving_v1(
    app: &TestApp,
    admin: &TestUser,
    replicas: u32,
) -> (FakeAgent, String, Vec<DesiredInstance>) {
    let mut agent = FakeAgent::joined(app, admin, "n1").await;
    let web = create_app(
        admin,
        json!({"name": "web", "port": 8888, "replicas": replicas, "cpu_millis": 100,
               "memory_mib": 32}),
    )
    .await;
    let res = admin
        .patch(
            &format!("{web}/config"),
            json!({"vars": {"GREETING": SECRET}}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    deploy(admin, &web, "gantry-hello:1").await;
    let (generation, desired) = agent
        .desired_until("v1's instances", |d| d.len() == replicas as usize)
        .await;
    for d in &desired {
        assert_eq!(d.release, 1);
        assert_eq!(d.env.0["GREETING"], SECRET);
        assert_eq!(d.env.0["PORT"], "8888");
        assert_eq!(d.env.0["GANTRY_APP"], "web");
        assert_eq!(d.env.0["GANTRY_RELEASE"], "v1");
        assert_eq!(d.port, Some(8888));
    }
    agent
        .report(generation, &desired, InstanceState::Ready)
        .await;
    release_until(admin, &web, 1, "active", WAIT).await;
    (agent, web, desired)
}

#[tokio::test]
async fn a_rolling_deploy_surges_one_takes_old_ones_out_of_the_route_before_stopping_them() {
    let app = TestApp::spawn().await;
    let admin = app.signup("admin@example.com").await;
    let (mut agent, web, v1) = serving_v1(&app, &admin, 3).await;
    let v1_ids: HashSet<Uuid> = v1.iter().map(|d| d.id).collect();

    let v2 = deploy(&admin, &web, "gantry-hello:2").await;
    assert_eq!(v2["version"], 2);
    let mut ready: HashSet<Uuid> = v1_ids.clone();
    let mut gone: HashSet<Uuid> = HashSet::new();
    let deadline = tokio::time::Instant::now() + WAIT * 2;
    loop {
        let (generation, desired) = agent.desired_until("a change", |_| true).await;
        let running: Vec<&DesiredInstance> = desired.iter().filter(|d| !d.stop).collect();
        let new: Vec<&DesiredInstance> =
            running.iter().copied().filter(|d| d.release == 2).collect();
        // Instances being taken out (draining) still run until told to stop; of those wanted,
        // never more than replicas + max_surge, and never fewer than replicas ready.
        let (wanted, wanted_ready): (i64, i64) = sqlx::query_as(
            "SELECT count(*), count(*) FILTER (WHERE state = 'ready') FROM instances
             WHERE desired = 'run'",
        )
        .fetch_one(&app.db)
        .await
        .unwrap();
        assert!(wanted <= 4, "surge is 1: {wanted} instances wanted");
        assert!(
            wanted_ready >= 3,
            "only {wanted_ready} ready: one was taken out too early"
        );
        for d in &new {
            assert_eq!(d.image, "gantry-hello:2");
            assert_eq!(d.env.0["GANTRY_RELEASE"], "v2");
            assert_eq!(d.env.0["GREETING"], SECRET);
        }
        for d in desired.iter().filter(|d| d.stop) {
            assert!(v1_ids.contains(&d.id), "only old instances are stopped");
            gone.insert(d.id);
        }
        // The agent makes the new ones ready, and removes the containers it was told to stop.
        ready.extend(new.iter().map(|d| d.id));
        agent
            .report_with(generation, &desired, |d| {
                (!d.stop).then(|| {
                    if ready.contains(&d.id) {
                        InstanceState::Ready
                    } else {
                        InstanceState::Running
                    }
                })
            })
            .await;
        let v2: Value = get_json(&admin, &format!("{web}/releases/2")).await;
        if v2["status"] == "active" && gone.len() == 3 && running.len() == 3 && desired.len() == 3 {
            assert!(running.iter().all(|d| d.release == 2));
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the rollout did not finish: {v2:#}"
        );
    }
    let v1: Value = get_json(&admin, &format!("{web}/releases/1")).await;
    assert_eq!(v1["status"], "superseded");
    assert_eq!(v1["reason"], "superseded by v2");
    let rollout: Value = get_json(&admin, &format!("{web}/rollouts/current")).await;
    assert_eq!(rollout["release"], 2);
    assert_eq!(rollout["from"], 1);
    assert_eq!(rollout["status"], "active");
    assert_eq!(rollout["desired"], 3);
    assert_eq!(rollout["ready"], 3);
    assert_eq!(rollout["old"], 0);
    let app_view: Value = admin.get(&web).await.json().await.unwrap();
    assert_eq!(app_view["release"], 2);
    assert_eq!(app_view["image"], "gantry-hello:2");
}

#[tokio::test]
async fn a_crash_looping_release_fails_at_once_and_the_previous_keeps_serving() {
    let app = TestApp::spawn().await;
    let admin = app.signup("admin@example.com").await;
    let (mut agent, web, v1) = serving_v1(&app, &admin, 2).await;
    deploy(&admin, &web, "gantry-hello:broken").await;
    let (generation, desired) = agent
        .desired_until("v2's instance", |d| d.iter().any(|d| d.release == 2))
        .await;
    agent
        .report_with(generation, &desired, |d| {
            Some(if d.release == 2 {
                InstanceState::CrashLoop
            } else {
                InstanceState::Ready
            })
        })
        .await;
    let failed = release_until(&admin, &web, 2, "failed", WAIT).await;
    let reason = failed["reason"].as_str().unwrap();
    assert!(
        reason.contains("crash_loop") && reason.contains("exited with code 1"),
        "{reason}"
    );
    // v2's instance is told to stop; v1's keep running.
    let (_, desired) = agent
        .desired_until("v2 stopped", |d| {
            d.iter().filter(|d| d.release == 2).all(|d| d.stop)
        })
        .await;
    let running: HashSet<Uuid> = desired.iter().filter(|d| !d.stop).map(|d| d.id).collect();
    assert_eq!(running, v1.iter().map(|d| d.id).collect());
    let v1_now: Value = get_json(&admin, &format!("{web}/releases/1")).await;
    assert_eq!(v1_now["status"], "active");
}

#[tokio::test]
async fn a_release_that_never_becomes_ready_fails_at_the_progress_deadline_with_why() {
    let app = TestApp::spawn().await;
    let admin = app.signup("admin@example.com").await;
    let (mut agent, web, _) = serving_v1(&app, &admin, 1).await;
    let res = admin
        .patch(&web, json!({"progress_deadline_seconds": 5}))
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    // A health check the app does not answer: v2 runs but never becomes ready.
    let res = admin
        .patch(&web, json!({"health_check_path": "/nope"}))
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let (generation, desired) = agent
        .desired_until("v2's instance", |d| d.iter().any(|d| d.release == 2))
        .await;
    assert_eq!(
        desired
            .iter()
            .find(|d| d.release == 2)
            .unwrap()
            .ready_timeout_seconds,
        5
    );
    agent
        .report_with(generation, &desired, |d| {
            Some(if d.release == 2 {
                InstanceState::Running
            } else {
                InstanceState::Ready
            })
        })
        .await;
    let rollout: Value = get_json(&admin, &format!("{web}/rollouts/current")).await;
    assert_eq!(rollout["status"], "rolling_out", "{rollout:#}");
    assert!(rollout["deadline_at"].is_string(), "{rollout:#}");
    let failed = release_until(&admin, &web, 2, "failed", Duration::from_secs(20)).await;
    let reason = failed["reason"].as_str().unwrap();
    assert!(
        reason.contains("progress deadline (5 s)") && reason.contains("0 of 1"),
        "{reason}"
    );
}

#[tokio::test]
async fn rollback_makes_a_release_from_an_old_one_and_restores_its_config() {
    let app = TestApp::spawn().await;
    let admin = app.signup("admin@example.com").await;
    let (mut agent, web, _) = serving_v1(&app, &admin, 1).await;

    // Nothing before v1 ever served.
    let res = admin.post(&format!("{web}/rollback"), json!({})).await;
    assert_eq!(res.status(), StatusCode::CONFLICT);
    assert_eq!(error_code(res).await, "conflict");

    // v2 changes the config and the port; it serves too.
    let res = admin
        .put(&format!("{web}/config"), json!({"vars": {"NEW": "2"}}))
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let (generation, desired) = agent
        .desired_until("v2", |d| d.iter().any(|d| d.release == 2))
        .await;
    agent
        .report_with(generation, &desired, |d| {
            (!d.stop).then_some(InstanceState::Ready)
        })
        .await;
    release_until(&admin, &web, 2, "active", WAIT).await;

    let res = admin.post(&format!("{web}/rollback"), json!({})).await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let v3: Value = res.json().await.unwrap();
    assert_eq!(v3["version"], 3);
    assert_eq!(v3["rollback_of"], 1);
    assert_eq!(v3["cause"], "Rollback to v1");
    assert_eq!(v3["config_keys"], json!(["GREETING"]));
    assert_eq!(v3["image"], "gantry-hello:1");
    // The app's config is v1's again (values included), and the rollback is audited without them.
    let config: Value = get_json(&admin, &format!("{web}/config")).await;
    assert_eq!(
        config["vars"],
        json!([{"key": "GREETING", "value": SECRET}])
    );
    let audit = admin
        .get(&format!("/api/v1/teams/{}/audit", admin.team))
        .await
        .text()
        .await
        .unwrap();
    assert!(
        audit.contains("app.rollback") && !audit.contains(SECRET),
        "{audit}"
    );
    let (_, desired) = agent
        .desired_until("v3", |d| d.iter().any(|d| d.release == 3))
        .await;
    let v3_instance = desired.iter().find(|d| d.release == 3).unwrap();
    assert_eq!(v3_instance.env.0["GREETING"], SECRET);
    assert!(!v3_instance.env.0.contains_key("NEW"));

    // Explicit versions: an unknown one is a 404, a bad body a 422.
    let res = admin
        .post(&format!("{web}/rollback"), json!({"version": 2}))
        .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let v4: Value = res.json().await.unwrap();
    assert_eq!(v4["rollback_of"], 2);
    assert_eq!(v4["config_keys"], json!(["NEW"]));
    let v3_now: Value = get_json(&admin, &format!("{web}/releases/3")).await;
    assert_eq!(v3_now["status"], "superseded", "v4 replaced v3 mid-rollout");
    let before = app.count("releases").await;
    let res = admin
        .post(&format!("{web}/rollback"), json!({"version": 42}))
        .await;
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    for bad in [
        json!({"version": "one"}),
        json!({"to": 1}),
        json!({"version": -1}),
    ] {
        let res = admin.post(&format!("{web}/rollback"), bad.clone()).await;
        assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY, "{bad}");
    }
    assert_eq!(app.count("releases").await, before);

    // Viewers cannot roll back.
    let viewer = app.signup("viewer@example.com").await;
    admin.add_member(&admin.team, &viewer, "viewer").await;
    let res = viewer.post(&format!("{web}/rollback"), json!({})).await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    assert_eq!(app.count("releases").await, before);
}

#[tokio::test]
async fn strategies_are_checked_and_shown() {
    let app = TestApp::spawn().await;
    let alice = app.signup("alice@example.com").await;
    let web = create_app(&alice, json!({"name": "web"})).await;
    let got: Value = alice.get(&web).await.json().await.unwrap();
    assert_eq!(
        got["strategy"],
        json!({"kind": "rolling", "max_surge": 1, "max_unavailable": 0})
    );
    let res = alice
        .put(
            &format!("{web}/strategy"),
            json!({"kind": "rolling", "max_surge": 2, "max_unavailable": 1}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    for bad in [
        json!({"kind": "rolling", "max_surge": 0, "max_unavailable": 0}),
        json!({"kind": "rolling", "max_surge": 101}),
        json!({"kind": "teleport"}),
        json!({"kind": "rolling", "surge": 1}),
        json!({}),
    ] {
        let res = alice.put(&format!("{web}/strategy"), bad.clone()).await;
        assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY, "{bad}");
    }
    let got: Value = alice.get(&web).await.json().await.unwrap();
    assert_eq!(
        got["strategy"],
        json!({"kind": "rolling", "max_surge": 2, "max_unavailable": 1})
    );
}

#[tokio::test]
async fn the_route_table_shows_sets_weights_and_endpoints_and_workers_have_none() {
    let app = TestApp::spawn().await;
    let admin = app.signup("admin@example.com").await;
    let (_agent, web, v1) = serving_v1(&app, &admin, 2).await;
    let deadline = tokio::time::Instant::now() + WAIT;
    let routes = loop {
        let routes: Value = get_json(&admin, &format!("{web}/routes")).await;
        if routes["sets"][0]["endpoints"].as_array().map(Vec::len) == Some(2) {
            break routes;
        }
        assert!(tokio::time::Instant::now() < deadline, "{routes:#}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(routes["host"], format!("web.{}.localhost", admin.team));
    assert!(routes["url"]
        .as_str()
        .unwrap()
        .starts_with(&format!("http://web.{}.localhost:", admin.team)));
    assert_eq!(routes["sets"][0]["release"], 1);
    assert_eq!(routes["sets"][0]["weight"], 100);
    let endpoints: HashSet<&str> = routes["sets"][0]["endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["instance"].as_str().unwrap())
        .collect();
    let ids: Vec<String> = v1.iter().map(|d| d.id.to_string()).collect();
    assert_eq!(endpoints, ids.iter().map(String::as_str).collect());
    assert_eq!(routes["stats"]["requests"], 0);

    let worker = create_app(&admin, json!({"name": "worker", "port": null})).await;
    let got: Value = admin.get(&worker).await.json().await.unwrap();
    assert_eq!(got["port"], Value::Null);
    assert_eq!(got["url"], Value::Null);
    let res = admin.get(&format!("{worker}/routes")).await;
    assert_eq!(res.status(), StatusCode::CONFLICT);
    assert!(error_message(res).await.contains("worker"));
    let res = admin.get(&format!("{worker}/rollouts/current")).await;
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
}
