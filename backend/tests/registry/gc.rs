//! Garbage collection: a deleted manifest's own blobs go, blobs another manifest uses stay, an
//! upload in progress survives and completes, abandoned uploads expire, and only platform
//! admins may run it on demand. Ages are set in the database instead of waiting an hour.

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::{digest, files_under, manifest_bytes, random_bytes, spawn_with_dir, Reg, OCI_MANIFEST};

#[tokio::test]
async fn a_deleted_manifests_own_blobs_are_collected_and_shared_ones_and_uploads_stay() {
    let (app, dir) = spawn_with_dir(None).await;
    let alice = app.signup("alice@example.com").await;
    let reg = Reg::token(&app, &alice, &alice.team, "member").await;
    let repo = format!("{}/web", alice.team);

    let shared = random_bytes(300);
    let (own, config1, config2) = (random_bytes(200), random_bytes(50), random_bytes(60));
    for blob in [&shared, &own, &config1, &config2] {
        reg.push_blob(&repo, blob).await;
    }
    let m1 = manifest_bytes(OCI_MANIFEST, &config1, &[&shared, &own]);
    let m2 = manifest_bytes(OCI_MANIFEST, &config2, &[&shared]);
    reg.push_manifest(&repo, "one", OCI_MANIFEST, &m1).await;
    reg.push_manifest(&repo, "two", OCI_MANIFEST, &m2).await;

    // An upload in progress, and one abandoned a day ago.
    let in_progress = reg.upload_location(&repo).await;
    let pending = random_bytes(100);
    assert_eq!(
        reg.patch(&in_progress, &pending[..40], Some(0))
            .await
            .status(),
        StatusCode::ACCEPTED
    );
    let abandoned = reg.upload_location(&repo).await;
    reg.patch(&abandoned, b"stale", Some(0)).await;
    let abandoned_id = abandoned.rsplit('/').next().unwrap().to_owned();

    let res = reg
        .delete(&format!("/v2/{repo}/manifests/{}", digest(&m1)))
        .await;
    assert_eq!(res.status(), StatusCode::ACCEPTED);

    // Within the hour nothing is collected.
    let res = alice.post("/api/v1/registry/gc", json!({})).await;
    assert_eq!(res.status(), StatusCode::OK);
    let report: Value = res.json().await.unwrap();
    assert_eq!(report["blobs_deleted"], 0, "{report}");

    for table in ["registry_blobs", "registry_repository_blobs"] {
        sqlx::query(&format!(
            "UPDATE {table} SET created_at = now() - interval '2 hours'"
        ))
        .execute(&app.db)
        .await
        .unwrap();
    }
    sqlx::query(
        "UPDATE registry_uploads SET updated_at = now() - interval '25 hours' WHERE id = $1",
    )
    .bind(uuid::Uuid::parse_str(&abandoned_id).unwrap())
    .execute(&app.db)
    .await
    .unwrap();
    let files_before = files_under(&dir).len();

    let res = alice.post("/api/v1/registry/gc", json!({})).await;
    assert_eq!(res.status(), StatusCode::OK);
    let report: Value = res.json().await.unwrap();
    assert_eq!(
        report,
        json!({"uploads_expired": 1, "links_removed": 2, "blobs_deleted": 2,
               "bytes_freed": own.len() + config1.len()}),
    );
    // Two blob files and the abandoned upload's file are gone.
    assert_eq!(files_under(&dir).len(), files_before - 3);

    for (blob, status) in [
        (&own, StatusCode::NOT_FOUND),
        (&config1, StatusCode::NOT_FOUND),
        (&shared, StatusCode::OK),
        (&config2, StatusCode::OK),
    ] {
        let res = reg.get(&format!("/v2/{repo}/blobs/{}", digest(blob))).await;
        assert_eq!(res.status(), status);
        if status == StatusCode::OK {
            assert_eq!(res.bytes().await.unwrap().as_ref(), blob.as_slice());
        }
    }
    let res = reg.get(&format!("/v2/{repo}/manifests/two")).await;
    assert_eq!(res.status(), StatusCode::OK);

    // The upload in progress completes and is pullable; the abandoned one is unknown.
    let res = reg
        .finish(&in_progress, &digest(&pending), Some(&pending[40..]))
        .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let res = reg
        .get(&format!("/v2/{repo}/blobs/{}", digest(&pending)))
        .await;
    assert_eq!(res.bytes().await.unwrap().as_ref(), pending.as_slice());
    assert_eq!(reg.get(&abandoned).await.status(), StatusCode::NOT_FOUND);

    // Only a platform admin runs it (the first account is one; the second is not).
    let bob = app.signup("bob@example.com").await;
    let res = bob.post("/api/v1/registry/gc", json!({})).await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
}
