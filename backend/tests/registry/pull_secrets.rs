//! The pull secrets agents get with their desired sets: one per instance of a registry image,
//! good for pulls of that instance's repository only, and only while the instance is meant to
//! run on that node. Images from elsewhere carry none.

use gantry_common::agent::PULL_USER;
use reqwest::StatusCode;
use serde_json::json;

use crate::fake_agent::{deploy, scale, FakeAgent};
use crate::{expect_error, Image, Reg};

#[tokio::test]
async fn a_pull_secret_pulls_its_instances_image_only_while_the_instance_runs_there() {
    let app = crate::support::TestApp::spawn().await;
    let alice = app.signup("alice@example.com").await;
    let reg = Reg::token(&app, &alice, &alice.team, "member").await;
    let (hello, other) = (
        format!("{}/hello", alice.team),
        format!("{}/other", alice.team),
    );
    let image = Image::new(64);
    reg.push_image(&hello, "latest", &image).await;
    reg.push_image(&other, "latest", &Image::new(64)).await;

    let apps = format!("/api/v1/teams/{}/apps", alice.team);
    let app_path = format!("{apps}/hello");
    alice.post(&apps, json!({"name": "hello"})).await;
    let host = app.base.trim_start_matches("http://").to_owned();
    let release = deploy(&alice, &app_path, &format!("{host}/{hello}:latest")).await;
    assert_eq!(release["image"], format!("{host}/{hello}@{}", image.digest));

    let mut agent = FakeAgent::joined(&app, &alice, "n1").await;
    let (_, desired) = agent.desired_with_instances().await;
    let secret = desired[0]
        .pull_secret
        .clone()
        .expect("a registry image comes with a pull secret");
    assert!(
        !format!("{:?}", desired[0]).contains(&secret.0),
        "Debug hides it"
    );
    let node = Reg::new(&app, PULL_USER, &secret.0);

    // Its own image: manifest by digest, and blobs.
    let res = node
        .get(&format!("/v2/{hello}/manifests/{}", image.digest))
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(
        res.bytes().await.unwrap().as_ref(),
        image.manifest.as_slice()
    );
    let res = node
        .get(&format!(
            "/v2/{hello}/blobs/{}",
            crate::digest(&image.layer)
        ))
        .await;
    assert_eq!(res.status(), StatusCode::OK);

    // Nothing else: another repository of the team, a push, the catalog.
    let res = node.get(&format!("/v2/{other}/manifests/latest")).await;
    expect_error(res, 404, "NAME_UNKNOWN", "another repository").await;
    let res = node.start_upload(&hello).await;
    expect_error(res, 403, "DENIED", "a push").await;
    let res = node.get("/v2/_catalog").await;
    expect_error(res, 403, "DENIED", "the catalog").await;
    // A forged secret is no credential at all.
    let forged = Reg::new(
        &app,
        PULL_USER,
        &format!("{}A", &secret.0[..secret.0.len() - 1]),
    );
    let res = forged.get(&format!("/v2/{hello}/manifests/latest")).await;
    expect_error(res, 401, "UNAUTHORIZED", "a forged secret").await;

    // Once the instance is to stop, its secret pulls nothing.
    scale(&alice, &app_path, 0).await;
    agent
        .desired_until("the stop order", |list| list.iter().all(|d| d.stop))
        .await;
    let res = node
        .get(&format!("/v2/{hello}/manifests/{}", image.digest))
        .await;
    expect_error(res, 404, "NAME_UNKNOWN", "a stopped instance's secret").await;

    // An image from elsewhere carries no secret.
    scale(&alice, &app_path, 1).await;
    deploy(&alice, &app_path, "ghcr.io/acme/hello:1").await;
    let (_, desired) = agent
        .desired_until("the external image", |list| {
            list.iter()
                .any(|d| !d.stop && d.image == "ghcr.io/acme/hello:1")
        })
        .await;
    let external = desired
        .iter()
        .find(|d| d.image == "ghcr.io/acme/hello:1")
        .unwrap();
    assert_eq!(external.pull_secret, None);
}
