//! The autoscaler's API (`GET`, `PUT`, `DELETE …/autoscaling`) and the autoscaler itself, fed
//! by a hand-driven agent's usage reports: a policy round trip, bad policies refused with what is
//! wrong and nothing changed, viewers refused, and high (then low) CPU scaling an app out (then
//! in) with each decision recorded with its inputs and in the app's events.
//!
//! The autoscaler decides every 5 s (and at once after a `PUT`), so a test that waits for a
//! decision allows three periods.

use std::time::Duration;

use gantry_common::agent::{AgentMessage, DesiredInstance, InstanceUsage};
use gantry_common::cluster::InstanceState;
use reqwest::StatusCode;
use serde_json::{json, Value};
use tokio::time::Instant;
use uuid::Uuid;

use crate::fake_agent::{deploy, FakeAgent};
use crate::releases::{get_json, serving_v1};
use crate::support::{error_code, TestApp, TestUser};

/// Three autoscaler periods.
const DECIDE: Duration = Duration::from_secs(15);

async fn put_policy(user: &TestUser, app: &str, policy: Value) -> reqwest::Response {
    user.put(&format!("{app}/autoscaling"), policy).await
}

async fn status(user: &TestUser, app: &str) -> Value {
    get_json(user, &format!("{app}/autoscaling")).await
}

async fn audit_actions(user: &TestUser) -> Vec<(String, Value)> {
    let page = get_json(user, &format!("/api/v1/teams/{}/audit", user.team)).await;
    page["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["action"].as_str().unwrap().to_owned(),
                e["details"].clone(),
            )
        })
        .collect()
}

/// Reports what each instance uses (thousandths of a core), with a heartbeat.
async fn report_usage(agent: &mut FakeAgent, cpu: &[(Uuid, u32)]) {
    agent.send(&AgentMessage::Heartbeat).await;
    agent
        .send(&AgentMessage::Usage {
            instances: cpu
                .iter()
                .map(|&(instance, cpu_millis)| InstanceUsage {
                    instance,
                    cpu_millis,
                    memory_bytes: 16 << 20,
                    rx_bytes_per_second: 0,
                    tx_bytes_per_second: 0,
                })
                .collect(),
        })
        .await;
}

/// Polls `GET …/autoscaling` until `done` holds, reporting `cpu` again every 2 s so that it
/// stays fresh; fails after [`DECIDE`].
async fn status_until(
    user: &TestUser,
    app: &str,
    agent: &mut FakeAgent,
    cpu: &[(Uuid, u32)],
    what: &str,
    done: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + DECIDE;
    let mut reported = Instant::now() - Duration::from_secs(60);
    loop {
        if reported.elapsed() >= Duration::from_secs(2) {
            report_usage(agent, cpu).await;
            reported = Instant::now();
        }
        let now = status(user, app).await;
        if done(&now) {
            return now;
        }
        assert!(
            Instant::now() < deadline,
            "waited {DECIDE:?} for {what}: {now:#}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn decisions(status: &Value) -> Vec<Value> {
    status["decisions"].as_array().unwrap().clone()
}

/// The app's event lines that mention the autoscaler.
async fn autoscaler_events(user: &TestUser, app: &str) -> Vec<String> {
    let page = get_json(user, &format!("{app}/logs?stream=event&q=autoscaler")).await;
    page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["line"].as_str().unwrap().to_owned())
        .collect()
}

fn running(desired: &[DesiredInstance]) -> Vec<&DesiredInstance> {
    desired.iter().filter(|d| !d.stop).collect()
}

#[tokio::test]
async fn a_policy_round_trips_through_put_get_and_delete_and_is_audited() {
    let app = TestApp::spawn().await;
    let alice = app.signup("alice@example.com").await;
    alice.create_app(&alice.team, "web").await;
    let web = format!("/api/v1/teams/{}/apps/web", alice.team);

    let off = status(&alice, &web).await;
    assert_eq!(
        off,
        json!({"policy": null, "replicas": 1, "decisions": []}),
        "off by default"
    );

    let res = put_policy(
        &alice,
        &web,
        json!({"min": 1, "max": 3, "target_cpu_percent": 50,
               "scale_down_stabilization_seconds": 15}),
    )
    .await;
    assert_eq!(res.status(), StatusCode::OK);
    let on: Value = res.json().await.unwrap();
    let policy = json!({"min": 1, "max": 3, "target_cpu_percent": 50,
                        "target_rps_per_instance": null,
                        "scale_down_stabilization_seconds": 15});
    assert_eq!(on["policy"], policy);
    assert_eq!(on["replicas"], 1);
    assert_eq!(status(&alice, &web).await["policy"], policy);
    let app_view = get_json(&alice, &web).await;
    assert_eq!(app_view["replicas"], 1, "a policy alone scales nothing");

    // A change replaces the whole policy; the window defaults to 300 s.
    let res = put_policy(
        &alice,
        &web,
        json!({"min": 2, "max": 100, "target_rps_per_instance": 12.5, "target_cpu_percent": 90}),
    )
    .await;
    assert_eq!(res.status(), StatusCode::OK);
    let policy = json!({"min": 2, "max": 100, "target_cpu_percent": 90,
                        "target_rps_per_instance": 12.5,
                        "scale_down_stabilization_seconds": 300});
    assert_eq!(res.json::<Value>().await.unwrap()["policy"], policy);
    assert_eq!(status(&alice, &web).await["policy"], policy);
    // `min` needs no metric: the app is raised to it at the next decision (the `PUT` wakes the
    // autoscaler).
    let deadline = Instant::now() + DECIDE;
    let raised = loop {
        let now = status(&alice, &web).await;
        if now["replicas"] == 2 {
            break now;
        }
        assert!(Instant::now() < deadline, "not raised to min 2: {now:#}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let decision = &decisions(&raised)[0];
    assert_eq!((&decision["from"], &decision["to"]), (&json!(1), &json!(2)));
    assert_eq!(decision["cpu_percent"], Value::Null);
    let reason = decision["reason"].as_str().unwrap();
    assert!(
        reason.contains("no metric data") && reason.ends_with("raised to min 2; scale 1 → 2"),
        "{decision:#}"
    );

    let res = alice.delete(&format!("{web}/autoscaling")).await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    let now = status(&alice, &web).await;
    assert_eq!(now["policy"], Value::Null);
    // Off, the app keeps the replica count it has, and the decisions stay on record.
    assert_eq!(now["replicas"], 2);
    assert_eq!(now["decisions"], raised["decisions"]);
    // Turning it off again is no error.
    let res = alice.delete(&format!("{web}/autoscaling")).await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);

    // Every change is audited with the policy it set (null: off).
    let audited: Vec<(String, Value)> = audit_actions(&alice)
        .await
        .into_iter()
        .filter(|(action, _)| action == "app.autoscaling")
        .collect();
    assert_eq!(audited.len(), 4, "{audited:#?}");
    // Newest first.
    assert_eq!(audited[0].1["autoscaling"], Value::Null);
    assert_eq!(audited[2].1["autoscaling"], policy);
    assert_eq!(audited[3].1["autoscaling"]["max"], 3);

    // An app that does not exist.
    let nope = format!("/api/v1/teams/{}/apps/nope/autoscaling", alice.team);
    assert_eq!(alice.get(&nope).await.status(), StatusCode::NOT_FOUND);
    let res = alice
        .put(&nope, json!({"min": 1, "max": 3, "target_cpu_percent": 50}))
        .await;
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    assert_eq!(alice.delete(&nope).await.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn bad_policies_are_refused_with_what_is_wrong_and_change_nothing() {
    let app = TestApp::spawn().await;
    let alice = app.signup("alice@example.com").await;
    alice.create_app(&alice.team, "web").await;
    let web = format!("/api/v1/teams/{}/apps/web", alice.team);
    let good = json!({"min": 1, "max": 3, "target_cpu_percent": 50});
    assert_eq!(
        put_policy(&alice, &web, good).await.status(),
        StatusCode::OK
    );
    let before = status(&alice, &web).await;
    let audited = app.count("audit_events").await;

    let cases = [
        (
            json!({"min": 3, "max": 2, "target_cpu_percent": 50}),
            "min (3) must not exceed max (2)",
        ),
        (
            json!({"min": 1, "max": 5}),
            "give target_cpu_percent, target_rps_per_instance or both",
        ),
        (
            json!({"min": 1, "max": 5, "target_cpu_percent": null,
                   "target_rps_per_instance": null}),
            "give target_cpu_percent, target_rps_per_instance or both",
        ),
        (
            json!({"min": 1, "max": 5, "target_cpu_percent": 0}),
            "target_cpu_percent (0) must be between 1 and 90",
        ),
        (
            json!({"min": 1, "max": 5, "target_cpu_percent": 91}),
            "target_cpu_percent (91) must be between 1 and 90",
        ),
        (
            json!({"min": 1, "max": 101, "target_cpu_percent": 50}),
            "max (101) must be at most 100",
        ),
        (
            json!({"min": 0, "max": 2, "target_cpu_percent": 50}),
            "min must be at least 1",
        ),
        (
            json!({"min": 1, "max": 5, "target_rps_per_instance": 0}),
            "target_rps_per_instance (0) must be a number above 0",
        ),
        (
            json!({"min": 1, "max": 5, "target_cpu_percent": 50,
                   "scale_down_stabilization_seconds": 3601}),
            "scale_down_stabilization_seconds (3601) must be between 0 and 3600",
        ),
        (
            json!({"min": 1, "max": 5, "target_cpu": 50}),
            "unknown field `target_cpu`",
        ),
        (
            json!({"min": 1, "max": 5, "target_cpu_percent": 50, "behavior": {}}),
            "unknown field `behavior`",
        ),
        (
            json!({"min": 1, "max": 5, "target_cpu_percent": "50"}),
            "target_cpu_percent",
        ),
        (
            json!({"max": 5, "target_cpu_percent": 50}),
            "missing field `min`",
        ),
    ];
    for (body, message) in cases {
        let res = put_policy(&alice, &web, body.clone()).await;
        assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        let error: Value = res.json().await.unwrap();
        assert_eq!(error["error"]["code"], "invalid", "{body}: {error}");
        let text = error["error"]["message"].as_str().unwrap();
        assert!(text.contains(message), "{body}: {text}");
    }
    assert_eq!(status(&alice, &web).await, before, "nothing changed");
    assert_eq!(app.count("audit_events").await, audited, "nothing audited");

    // A viewer sees the policy and cannot change it or turn it off.
    let bob = app.signup("bob@example.com").await;
    alice.add_member(&alice.team, &bob, "viewer").await;
    let audited = app.count("audit_events").await;
    assert_eq!(status(&bob, &web).await, before);
    let res = put_policy(
        &bob,
        &web,
        json!({"min": 1, "max": 9, "target_cpu_percent": 50}),
    )
    .await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    assert_eq!(error_code(res).await, "forbidden");
    let res = bob.delete(&format!("{web}/autoscaling")).await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    assert_eq!(status(&alice, &web).await, before, "nothing changed");
    assert_eq!(app.count("audit_events").await, audited, "nothing audited");
}

#[tokio::test]
async fn high_cpu_scales_the_app_out_and_low_cpu_back_in_with_each_decision_and_its_inputs() {
    let app = TestApp::spawn().await;
    let admin = app.signup("admin@example.com").await;
    // One ready instance reserving a tenth of a core.
    let (mut agent, web, v1) = serving_v1(&app, &admin, 1).await;
    let first = v1[0].id;
    let res = put_policy(
        &admin,
        &web,
        json!({"min": 1, "max": 3, "target_cpu_percent": 50,
               "scale_down_stabilization_seconds": 0}),
    )
    .await;
    assert_eq!(res.status(), StatusCode::OK);
    // No usage known yet: nothing to scale on, nothing recorded.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let quiet = status(&admin, &web).await;
    assert_eq!(quiet["replicas"], 1);
    assert_eq!(quiet["decisions"], json!([]), "{quiet:#}");

    // 90 of its 100 millicores: 90 % of a 50 % target → ceil(1 × 90 / 50) = 2.
    let hot = [(first, 90)];
    let out = status_until(&admin, &web, &mut agent, &hot, "a scale-out", |s| {
        s["replicas"] != 1
    })
    .await;
    assert_eq!(out["replicas"], 2, "{out:#}");
    let decision = &decisions(&out)[0];
    assert_eq!(decision["from"], 1);
    assert_eq!(decision["to"], 2);
    assert_eq!(decision["cpu_percent"], 90.0);
    assert_eq!(
        decision["reason"], "cpu 90 % (target 50 %) → 2; scale 1 → 2",
        "{decision:#}"
    );
    assert!(decision["at"].is_string());
    assert_eq!(get_json(&admin, &web).await["replicas"], 2);

    // The rollout controller carries it out: a second instance for the agent.
    let (generation, desired) = agent
        .desired_until("2 instances", |d| d.iter().filter(|d| !d.stop).count() == 2)
        .await;
    let second = running(&desired)
        .into_iter()
        .map(|d| d.id)
        .find(|id| *id != first)
        .unwrap();

    // Both ready and nearly idle (5 %): ceil(2 × 5 / 50) = 1, and with no window the app
    // scales in at the next decision. The usage goes first, so that no decision sees two ready
    // instances with only the first one's hot reading.
    let cold = [(first, 5), (second, 5)];
    report_usage(&mut agent, &cold).await;
    agent
        .report(generation, &desired, InstanceState::Ready)
        .await;
    let back = status_until(&admin, &web, &mut agent, &cold, "a scale-in", |s| {
        s["replicas"] == 1
    })
    .await;
    let decision = &decisions(&back)[0];
    assert_eq!(decision["from"], 2);
    assert_eq!(decision["to"], 1);
    assert_eq!(decision["cpu_percent"], 5.0);
    let reason = decision["reason"].as_str().unwrap();
    assert!(
        reason.starts_with("cpu 5 % (target 50 %) → 1") && reason.ends_with("scale 2 → 1"),
        "{decision:#}"
    );
    assert!(
        decisions(&back)
            .iter()
            .all(|d| d["to"].as_u64() <= Some(3) && d["from"].as_u64() <= Some(3)),
        "{back:#}"
    );
    agent
        .desired_until("the second instance stopped", |d| {
            d.iter().any(|d| d.id == second && d.stop) && d.iter().any(|d| d.id == first && !d.stop)
        })
        .await;

    // Both decisions are events of the app, with their reasons.
    let events = autoscaler_events(&admin, &web).await;
    for reason in [
        "autoscaler: cpu 90 % (target 50 %) → 2; scale 1 → 2",
        &format!("autoscaler: {reason}"),
    ] {
        assert!(
            events.iter().any(|e| e == reason),
            "{reason:?} in {events:#?}"
        );
    }
}

#[tokio::test]
async fn a_rollout_in_progress_holds_the_replica_count_and_says_so() {
    let app = TestApp::spawn().await;
    let admin = app.signup("admin@example.com").await;
    let (mut agent, web, v1) = serving_v1(&app, &admin, 1).await;
    // v2 starts and never becomes ready: its rollout stays in progress.
    deploy(&admin, &web, "gantry-hello:2").await;
    agent
        .desired_until("v2's instance", |d| d.iter().any(|d| d.release == 2))
        .await;
    let res = put_policy(
        &admin,
        &web,
        json!({"min": 1, "max": 3, "target_cpu_percent": 50}),
    )
    .await;
    assert_eq!(res.status(), StatusCode::OK);
    let hot = [(v1[0].id, 100)];
    let held = status_until(&admin, &web, &mut agent, &hot, "a held decision", |s| {
        !s["decisions"].as_array().unwrap().is_empty()
    })
    .await;
    let decision = &decisions(&held)[0];
    assert_eq!((&decision["from"], &decision["to"]), (&json!(1), &json!(1)));
    assert_eq!(
        decision["reason"],
        "cpu 100 % (target 50 %) → 2; a rollout is in progress and holds the replica count; \
         keep 1",
        "{decision:#}"
    );
    assert_eq!(held["replicas"], 1);
    let rollout = get_json(&admin, &format!("{web}/rollouts/current")).await;
    assert_eq!(rollout["status"], "rolling_out", "{rollout:#}");
    let events = autoscaler_events(&admin, &web).await;
    assert!(
        events
            .iter()
            .any(|e| e.contains("a rollout is in progress")),
        "{events:#?}"
    );
}

/// The CPU figure is the mean over ready instances (`autoscale::decide` multiplies it by the
/// ready count): instances that are starting (or failing their health check, or draining) and
/// idle must not pull it down. One ready instance at 100 % of its CPU beside two starting ones
/// at 0 % is 100 %, not 33 % — which, with no stabilisation window, would scale the app from 3
/// to 1 while its only ready instance is saturated.
#[tokio::test]
async fn starting_instances_do_not_dilute_the_cpu_of_the_ready_ones() {
    let app = TestApp::spawn().await;
    let admin = app.signup("admin@example.com").await;
    let (mut agent, web, v1) = serving_v1(&app, &admin, 1).await;
    let res = admin
        .post(&format!("{web}/scale"), json!({"replicas": 3}))
        .await;
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    let (generation, desired) = agent
        .desired_until("3 instances", |d| running(d).len() == 3)
        .await;
    // The first is ready; the two new ones are still starting.
    agent
        .report_with(generation, &desired, |d| {
            Some(if d.id == v1[0].id {
                InstanceState::Ready
            } else {
                InstanceState::Running
            })
        })
        .await;
    let usage: Vec<(Uuid, u32)> = desired
        .iter()
        .map(|d| (d.id, if d.id == v1[0].id { 100 } else { 0 }))
        .collect();
    report_usage(&mut agent, &usage).await;
    let res = put_policy(
        &admin,
        &web,
        json!({"min": 1, "max": 5, "target_cpu_percent": 50,
               "scale_down_stabilization_seconds": 0}),
    )
    .await;
    assert_eq!(res.status(), StatusCode::OK);
    // Three decisions' time: the ready instance is at twice the target, so the app keeps (at
    // least) its 3 replicas.
    let deadline = Instant::now() + DECIDE;
    while Instant::now() < deadline {
        report_usage(&mut agent, &usage).await;
        let now = status(&admin, &web).await;
        assert!(
            now["replicas"].as_u64() >= Some(3),
            "scaled in while the only ready instance is at 100 %: {now:#}"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}
