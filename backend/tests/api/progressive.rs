//! Canary and blue-green rollouts through the API, with a hand-driven agent: the steps and
//! their weights in the route table, pause and resume, promote, abort (and its instant flip
//! back after a blue-green promotion), what each action refuses, and the history and audit
//! they leave. Analysis under real traffic is the e2e suite's (`e2e/tests/progressive.rs`).

use std::time::Duration;

use gantry_common::agent::DesiredInstance;
use gantry_common::cluster::InstanceState;
use reqwest::StatusCode;
use serde_json::{json, Value};
use tokio::time::Instant;

use crate::fake_agent::{deploy, error_message, release_until, FakeAgent, WAIT};
use crate::releases::{get_json, serving_v1};
use crate::support::TestUser;

/// Instances of release `version` the agent is told to run.
fn running(desired: &[DesiredInstance], version: u32) -> usize {
    desired
        .iter()
        .filter(|d| d.release == version && !d.stop)
        .count()
}

/// Reports every instance the agent is told to run as ready (and the others gone).
async fn all_ready(agent: &mut FakeAgent, generation: u64, desired: &[DesiredInstance]) {
    agent
        .report_with(generation, desired, |d| {
            (!d.stop).then_some(InstanceState::Ready)
        })
        .await;
}

/// Polls the current rollout until `done` holds, for [`WAIT`] at most.
async fn rollout_until(
    user: &TestUser,
    web: &str,
    what: &str,
    done: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + WAIT;
    loop {
        let rollout = get_json(user, &format!("{web}/rollouts/current")).await;
        if done(&rollout) {
            return rollout;
        }
        assert!(
            Instant::now() < deadline,
            "waited {WAIT:?} for {what}: {rollout:#}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The route table's weight per release version.
async fn weights(user: &TestUser, web: &str) -> Vec<(u64, u64)> {
    let routes = get_json(user, &format!("{web}/routes")).await;
    let mut w: Vec<(u64, u64)> = routes["sets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["release"].as_u64().unwrap(),
                s["weight"].as_u64().unwrap(),
            )
        })
        .collect();
    w.sort();
    w
}

/// Polls the route table until its weights are `want`.
async fn weights_until(user: &TestUser, web: &str, want: &[(u64, u64)], within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let got = weights(user, web).await;
        if got == want {
            return;
        }
        assert!(Instant::now() < deadline, "weights {got:?}, want {want:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn history(rollout: &Value) -> Vec<String> {
    rollout["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["text"].as_str().unwrap().to_owned())
        .collect()
}

async fn act(user: &TestUser, web: &str, version: u32, action: &str) -> reqwest::Response {
    user.post(&format!("{web}/rollouts/{version}/{action}"), json!({}))
        .await
}

#[tokio::test]
async fn a_canary_walks_its_steps_pauses_is_promoted_and_takes_over() {
    let app = crate::support::TestApp::spawn().await;
    let admin = app.signup("admin@example.com").await;
    let (mut agent, web, _) = serving_v1(&app, &admin, 4).await;
    let strategy = json!({"kind": "canary",
        "steps": [{"set_weight": 25}, {"pause_seconds": null}]});
    let res = admin
        .put(&format!("{web}/strategy"), strategy.clone())
        .await;
    assert_eq!(res.status(), StatusCode::OK);

    // v2: one instance (25 % of 4) beside the four of v1, which keep serving.
    deploy(&admin, &web, "gantry-hello:2").await;
    let (generation, desired) = agent
        .desired_until("one v2 instance beside four of v1", |d| {
            running(d, 2) == 1 && running(d, 1) == 4
        })
        .await;
    let before = rollout_until(&admin, &web, "v2 waiting for its canary", |r| {
        r["release"] == 2 && r["status"] == "rolling_out"
    })
    .await;
    assert_eq!(before["strategy"]["kind"], "canary");
    assert_eq!(before["weight"], 0);
    all_ready(&mut agent, generation, &desired).await;

    // Ready: weight 25 %, then the indefinite pause.
    let paused = rollout_until(&admin, &web, "weight 25 % and the pause", |r| {
        r["step"] == 1 && r["weight"] == 25 && r["waiting"].is_string()
    })
    .await;
    assert_eq!(
        paused["waiting"], "promote (an indefinite pause)",
        "{paused:#}"
    );
    assert_eq!(
        paused["actions"],
        json!(["promote", "promote_full", "pause", "abort"])
    );
    weights_until(&admin, &web, &[(1, 75), (2, 25)], WAIT).await;

    // A person's pause and resume.
    let res = act(&admin, &web, 2, "pause").await;
    assert_eq!(res.status(), StatusCode::OK);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["paused"], true, "{body:#}");
    assert_eq!(
        body["actions"],
        json!(["promote", "promote_full", "resume", "abort"])
    );
    let res = act(&admin, &web, 2, "resume").await;
    assert_eq!(res.status(), StatusCode::OK);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["paused"], false, "{body:#}");

    // What promote refuses: another rollout, a bad id, a bad query.
    let res = act(&admin, &web, 9, "promote").await;
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    let res = act(&admin, &web, 1, "promote").await;
    assert_eq!(res.status(), StatusCode::CONFLICT);
    assert!(error_message(res).await.contains("not under way"));
    let res = admin
        .post(&format!("{web}/rollouts/two/promote"), json!({}))
        .await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    let res = admin
        .post(&format!("{web}/rollouts/2/promote?full=maybe"), json!({}))
        .await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        weights(&admin, &web).await,
        [(1, 75), (2, 25)],
        "nothing changed"
    );

    // Promote: the pause ends, v2 grows to full size and takes over; v1 goes.
    let res = act(&admin, &web, 2, "promote").await;
    assert_eq!(res.status(), StatusCode::OK);
    let (generation, desired) = agent
        .desired_until("four v2 instances", |d| running(d, 2) == 4)
        .await;
    all_ready(&mut agent, generation, &desired).await;
    release_until(&admin, &web, 2, "active", WAIT).await;
    let (generation, desired) = agent
        .desired_until("v1 gone", |d| running(d, 1) == 0 && running(d, 2) == 4)
        .await;
    all_ready(&mut agent, generation, &desired).await;
    let done = get_json(&admin, &format!("{web}/rollouts/current")).await;
    assert_eq!(done["status"], "active", "{done:#}");
    assert_eq!(done["weight"], 100);
    assert_eq!(done["actions"], json!([]));
    let texts = history(&done);
    let position = |needle: &str| {
        texts
            .iter()
            .position(|t| t.contains(needle))
            .unwrap_or_else(|| panic!("no {needle:?} in {texts:#?}"))
    };
    assert!(position("rolling out gantry-hello:2 (canary)") < position("weight 25 %"));
    assert!(position("weight 25 %") < position("paused by admin@example.com"));
    assert!(position("resumed by") < position("asked to promote v2"));
    assert!(position("pause ended by promote") < position("release v2 is active"));

    let audit = get_json(&admin, &format!("/api/v1/teams/{}/audit", admin.team)).await;
    let actions: Vec<&str> = audit["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["action"].as_str())
        .collect();
    for action in ["rollout.pause", "rollout.resume", "rollout.promote"] {
        assert!(actions.contains(&action), "{action} in {actions:?}");
    }
}

#[tokio::test]
async fn blue_green_previews_flips_on_promote_and_abort_flips_back_at_once() {
    let app = crate::support::TestApp::spawn().await;
    let admin = app.signup("admin@example.com").await;
    let (mut agent, web, _) = serving_v1(&app, &admin, 2).await;
    let res = admin
        .put(
            &format!("{web}/strategy"),
            json!({"kind": "blue_green", "scale_down_delay_seconds": 300}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);

    deploy(&admin, &web, "gantry-hello:2").await;
    let (generation, desired) = agent
        .desired_until("v2 at full size beside v1", |d| {
            running(d, 2) == 2 && running(d, 1) == 2
        })
        .await;
    // Promote before v2 is ready is taken once it is; a set_weight-style refusal does not apply.
    all_ready(&mut agent, generation, &desired).await;
    let ready = rollout_until(&admin, &web, "v2 ready at the preview host", |r| {
        r["step"] == 1
    })
    .await;
    assert_eq!(ready["waiting"], "promote", "{ready:#}");
    let preview = ready["preview_url"].as_str().unwrap();
    assert!(preview.starts_with("http://preview.web."), "{preview}");
    weights_until(&admin, &web, &[(1, 100), (2, 0)], WAIT).await;
    let routes = get_json(&admin, &format!("{web}/routes")).await;
    assert_eq!(routes["preview_url"], preview, "{routes:#}");

    let res = act(&admin, &web, 2, "promote").await;
    assert_eq!(res.status(), StatusCode::OK);
    let promoted = rollout_until(&admin, &web, "the flip and the delay", |r| {
        r["step"] == 2
            && r["waiting"]
                .as_str()
                .is_some_and(|w| w.contains("v1 stays up"))
    })
    .await;
    assert_eq!(promoted["weight"], 100);
    assert_eq!(promoted["actions"], json!(["pause", "abort"]));
    assert!(promoted["promoted_at"].is_string());
    weights_until(&admin, &web, &[(1, 0), (2, 100)], WAIT).await;
    let res = act(&admin, &web, 2, "promote").await;
    assert_eq!(res.status(), StatusCode::CONFLICT);
    assert!(error_message(res).await.contains("already promoted"));

    // Abort within the scale-down delay: v1 (still up) takes everything back at once.
    let res = act(&admin, &web, 2, "abort").await;
    assert_eq!(res.status(), StatusCode::OK);
    let aborted: Value = res.json().await.unwrap();
    assert_eq!(aborted["status"], "aborted");
    assert_eq!(aborted["reason"], "aborted by admin@example.com");
    // v2's set leaves the table with its endpoints; until then it gets nothing.
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let got = weights(&admin, &web).await;
        if got == [(1, 100)] || got == [(1, 100), (2, 0)] {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "weights after the abort: {got:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (_, desired) = agent
        .desired_until("v2 stopped, v1 kept", |d| {
            running(d, 2) == 0 && running(d, 1) == 2
        })
        .await;
    assert!(desired.iter().filter(|d| d.release == 2).all(|d| d.stop));
    let v1 = get_json(&admin, &format!("{web}/releases/1")).await;
    assert_eq!(v1["status"], "active");
    let res = act(&admin, &web, 2, "abort").await;
    assert_eq!(res.status(), StatusCode::CONFLICT);
    let after = get_json(&admin, &format!("{web}/rollouts/current")).await;
    assert!(
        history(&after)
            .iter()
            .any(|t| t.contains("aborted by admin@example.com")),
        "{after:#}"
    );
}

#[tokio::test]
async fn progressive_strategies_are_checked_and_kept_by_the_rollout_that_started_with_them() {
    let app = crate::support::TestApp::spawn().await;
    let admin = app.signup("admin@example.com").await;
    let (mut agent, web, _) = serving_v1(&app, &admin, 2).await;
    for bad in [
        json!({"kind": "canary", "steps": []}),
        json!({"kind": "canary", "steps": [{"set_weight": 101}]}),
        json!({"kind": "canary", "steps": [{"set_weight": 10}], "analysis": {}}),
        json!({"kind": "blue_green", "auto_promote_seconds": -1}),
    ] {
        let res = admin.put(&format!("{web}/strategy"), bad.clone()).await;
        assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY, "{bad}");
    }
    let canary = json!({"kind": "canary", "steps": [{"set_weight": 50}, {"pause_seconds": 3600}],
        "analysis": {"max_error_percent": 5.0, "max_p99_ms": 500, "window_seconds": 10, "min_requests": 20},
        "sticky": true});
    let res = admin.put(&format!("{web}/strategy"), canary.clone()).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.json::<Value>().await.unwrap(), canary);
    deploy(&admin, &web, "gantry-hello:2").await;
    let (generation, desired) = agent
        .desired_until("one v2 instance", |d| running(d, 2) == 1)
        .await;
    all_ready(&mut agent, generation, &desired).await;
    let at_50 = rollout_until(&admin, &web, "weight 50", |r| {
        r["weight"] == 50
            && r["waiting"]
                .as_str()
                .is_some_and(|w| w.starts_with("pause: "))
    })
    .await;
    assert!(
        at_50["waiting"].as_str().unwrap().starts_with("pause: "),
        "{at_50:#}"
    );
    let analysis = &at_50["analysis"];
    assert_eq!(analysis["window_seconds"], 10, "{at_50:#}");
    assert!(analysis["canary"]["requests"].is_u64(), "{at_50:#}");
    // promote (not in full) at a timed pause ends it; a changed strategy does not touch it.
    let res = admin
        .put(&format!("{web}/strategy"), json!({"kind": "rolling"}))
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let still = get_json(&admin, &format!("{web}/rollouts/current")).await;
    assert_eq!(still["strategy"], canary, "the rollout keeps its strategy");
    let res = admin
        .post(&format!("{web}/rollouts/2/promote?full=true"), json!({}))
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let (generation, desired) = agent
        .desired_until("two v2 instances", |d| running(d, 2) == 2)
        .await;
    all_ready(&mut agent, generation, &desired).await;
    release_until(&admin, &web, 2, "active", WAIT).await;
}
