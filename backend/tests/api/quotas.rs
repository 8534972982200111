//! Team quotas: the platform's defaults, a platform admin's limits for one team, and where they
//! bite — creating an app and scaling answer 409 with the figures and change nothing; a rollout
//! whose surge does not fit waits, says so, and goes on once there is room.

use gantry_common::cluster::InstanceState;
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::fake_agent::{deploy, error_message, release_until, WAIT};
use crate::releases::{get_json, serving_v1};
use crate::support::TestApp;

#[tokio::test]
async fn limits_are_the_defaults_until_a_platform_admin_sets_them_and_creation_and_scaling_obey() {
    let app = TestApp::spawn().await;
    let admin = app.signup("admin@example.com").await; // the first account: platform admin
    let bob = app.signup("bob@example.com").await;
    let quota = format!("/api/v1/teams/{}/quota", bob.team);
    let platform = format!("/api/v1/platform/teams/{}/quota", bob.team);

    let q = get_json(&bob, &quota).await;
    assert_eq!(
        q["limits"],
        json!({"apps": 20, "instances": 50, "cpu_millis": 16000, "memory_mib": 32768})
    );
    assert_eq!(q["custom"], false);
    assert_eq!(q["usage"]["apps"], 0);

    // Only a platform admin sets limits; bad ones and unknown teams are refused.
    let limits = json!({"apps": 1, "instances": 2, "cpu_millis": 1000, "memory_mib": 1024});
    let res = bob.put(&platform, limits.clone()).await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    let res = admin
        .put("/api/v1/platform/teams/nobody-here/quota", limits.clone())
        .await;
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    let res = admin
        .put(
            &platform,
            json!({"apps": 1, "instances": 2, "cpu_millis": 1000}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let res = admin.put(&platform, limits.clone()).await;
    assert_eq!(res.status(), StatusCode::OK);
    let q: Value = res.json().await.unwrap();
    assert_eq!(q["limits"], limits);
    assert_eq!(q["custom"], true);

    // One app fits, a second does not.
    let apps = format!("/api/v1/teams/{}/apps", bob.team);
    let res = bob
        .post(
            &apps,
            json!({"name": "web", "replicas": 0, "cpu_millis": 100, "memory_mib": 64}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let res = bob.post(&apps, json!({"name": "two"})).await;
    assert_eq!(res.status(), StatusCode::CONFLICT);
    let message = error_message(res).await;
    assert!(message.contains("2 of 1 apps"), "{message}");
    assert!(message.contains("platform admin"), "{message}");
    assert_eq!(get_json(&bob, &quota).await["usage"]["apps"], 1);

    // Scaling past the instances is refused, within them accepted.
    let web = format!("{apps}/web");
    let res = bob
        .post(&format!("{web}/scale"), json!({"replicas": 3}))
        .await;
    assert_eq!(res.status(), StatusCode::CONFLICT);
    let message = error_message(res).await;
    assert!(message.contains("3 of 2 instances"), "{message}");
    let got = get_json(&bob, &web).await;
    assert_eq!(got["replicas"], 0, "nothing changed");
    let res = bob
        .post(&format!("{web}/scale"), json!({"replicas": 2}))
        .await;
    assert_eq!(res.status(), StatusCode::ACCEPTED);

    // Back to the defaults.
    let res = admin.delete(&platform).await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    assert_eq!(get_json(&bob, &quota).await["custom"], false);
}

#[tokio::test]
async fn a_rollout_without_room_for_its_surge_waits_and_says_why() {
    let app = TestApp::spawn().await;
    let admin = app.signup("admin@example.com").await;
    let (mut agent, web, _) = serving_v1(&app, &admin, 2).await;
    let platform = format!("/api/v1/platform/teams/{}/quota", admin.team);
    let res = admin
        .put(
            &platform,
            json!({"apps": 5, "instances": 2, "cpu_millis": 100000, "memory_mib": 100000}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let quota = get_json(&admin, &format!("/api/v1/teams/{}/quota", admin.team)).await;
    assert_eq!(quota["usage"]["instances"], 2, "{quota:#}");

    // The rolling update needs a third instance (surge 1): it waits — longer than its
    // progress deadline, which counts only once there is room.
    let res = admin
        .patch(&web, json!({"progress_deadline_seconds": 5}))
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    deploy(&admin, &web, "gantry-hello:2").await;
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let rollout = get_json(&admin, &format!("{web}/rollouts/current")).await;
        if rollout["waiting"]
            .as_str()
            .is_some_and(|w| w.contains("room in the team's quota (3 of 2 instances)"))
        {
            assert_eq!(rollout["updated"], 0, "{rollout:#}");
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{rollout:#}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }

    // Past the deadline (a sleep on purpose: time must pass), it still waits.
    tokio::time::sleep(std::time::Duration::from_secs(7)).await;
    let rollout = get_json(&admin, &format!("{web}/rollouts/current")).await;
    assert_eq!(rollout["status"], "rolling_out", "{rollout:#}");
    assert!(
        rollout["waiting"]
            .as_str()
            .is_some_and(|w| w.contains("room in the team's quota")),
        "{rollout:#}"
    );

    // Room again: the rollout goes on.
    let res = admin
        .put(
            &platform,
            json!({"apps": 5, "instances": 3, "cpu_millis": 100000, "memory_mib": 100000}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let (generation, desired) = agent
        .desired_until("a v2 instance", |d| {
            d.iter().any(|i| i.release == 2 && !i.stop)
        })
        .await;
    agent
        .report_with(generation, &desired, |d| {
            (!d.stop).then_some(InstanceState::Ready)
        })
        .await;
    // One by one, never above 3 instances, v2 takes over.
    loop {
        let (generation, desired) = agent.desired_until("a change", |_| true).await;
        // Instances being taken out of the route still run until told to stop; those wanted
        // never exceed the quota.
        let wanted: i64 =
            sqlx::query_scalar("SELECT count(*) FROM instances WHERE desired = 'run'")
                .fetch_one(&app.db)
                .await
                .unwrap();
        assert!(wanted <= 3, "{wanted} instances wanted");
        agent
            .report_with(generation, &desired, |d| {
                (!d.stop).then_some(InstanceState::Ready)
            })
            .await;
        let v2 = get_json(&admin, &format!("{web}/releases/2")).await;
        if v2["status"] == "active" {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline + WAIT, "{v2:#}");
    }
    release_until(&admin, &web, 2, "active", WAIT).await;
}
