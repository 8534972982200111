//! A team's registry usage and quota, and an app's repository as the dashboard shows it.

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::support::TestApp;
use crate::{digest, expect_error, random_bytes, Image, Reg};

#[tokio::test]
async fn usage_counts_each_blob_once_and_the_quota_refuses_a_push_beyond_it() {
    let app = TestApp::spawn_with(|c| c.registry_team_quota_bytes = Some(10_000)).await;
    let alice = app.signup("alice@example.com").await;
    let reg = Reg::token(&app, &alice, &alice.team, "member").await;
    let (web, api) = (format!("{}/web", alice.team), format!("{}/api", alice.team));
    let layer = random_bytes(3_000);
    let blob = reg.push_blob(&web, &layer).await;
    // The same blob in a second repository is stored (and counted) once.
    let res = reg.mount(&api, &blob, &web).await;
    assert_eq!(res.status(), StatusCode::CREATED);

    let usage: Value = alice
        .get(&format!("/api/v1/teams/{}/registry", alice.team))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(usage["used_bytes"], 3_000, "{usage}");
    assert_eq!(usage["quota_bytes"], 10_000);
    assert_eq!(
        usage["repositories"],
        json!([{"name": api, "tags": 0, "size_bytes": 3000},
               {"name": web, "tags": 0, "size_bytes": 3000}])
    );

    // 3,000 stored + 8,000 more is over 10,000: refused with a clear message, nothing kept.
    let before = app.count("registry_blobs").await;
    let big = random_bytes(8_000);
    let res = reg.post_blob(&web, &digest(&big), &big).await;
    expect_error(res, 403, "DENIED", "a push over the quota").await;
    let location = reg.upload_location(&web).await;
    let res = reg.patch(&location, &big, None).await;
    let body = res.text().await.unwrap();
    assert!(body.contains("quota"), "{body}");
    assert_eq!(app.count("registry_blobs").await, before);
    // What fits still goes in.
    reg.push_blob(&web, &random_bytes(6_000)).await;
}

#[tokio::test]
async fn an_apps_images_list_its_tags_with_digest_size_and_push_time() {
    let app = TestApp::spawn().await;
    let alice = app.signup("alice@example.com").await;
    let reg = Reg::token(&app, &alice, &alice.team, "member").await;
    let apps = format!("/api/v1/teams/{}/apps", alice.team);
    alice
        .post(&apps, json!({"name": "web", "deploy_on_push": null}))
        .await;
    let images: Value = alice
        .get(&format!("{apps}/web/images"))
        .await
        .json()
        .await
        .unwrap();
    let host = app.base.trim_start_matches("http://");
    assert_eq!(images["registry"], host);
    assert_eq!(images["repository"], format!("{host}/{}/web", alice.team));
    assert_eq!(images["deploy_on_push"], Value::Null);
    assert_eq!(images["tags"], json!([]));

    let (v1, v2) = (Image::new(100), Image::new(200));
    let repo = format!("{}/web", alice.team);
    reg.push_image(&repo, "v1", &v1).await;
    reg.push_image(&repo, "v2", &v2).await;
    let images: Value = alice
        .get(&format!("{apps}/web/images"))
        .await
        .json()
        .await
        .unwrap();
    let tags = images["tags"].as_array().unwrap();
    assert_eq!(tags.len(), 2);
    assert_eq!(tags[0]["tag"], "v2", "newest first");
    assert_eq!(tags[0]["digest"], v2.digest);
    let size = v2.manifest.len() + v2.config.len() + v2.layer.len();
    assert_eq!(tags[0]["size_bytes"], size);
    assert!(tags[0]["pushed_at"].is_string());
    // With deploy on push off, the pushes made no release.
    let releases: Value = alice
        .get(&format!("{apps}/web/releases"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(releases, json!([]));
}
