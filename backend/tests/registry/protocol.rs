//! Protocol errors: wrong digests, missing blobs, unknown sessions, bad ranges, oversize blobs,
//! invalid manifests and names.

use std::path::PathBuf;

use reqwest::StatusCode;

use crate::support::TestApp;
use crate::{
    digest, expect_error, files_under, header, manifest_bytes, random_bytes, spawn_with_dir, Image,
    Reg, OCI_MANIFEST,
};

async fn alice_reg(app: &TestApp) -> (Reg, String) {
    let alice = app.signup("alice@example.com").await;
    let reg = Reg::token(app, &alice, &alice.team, "member").await;
    let repo = format!("{}/hello", alice.team);
    (reg, repo)
}

/// Asserts neither HEAD nor GET serves `digest` in `repo`.
async fn not_served(reg: &Reg, repo: &str, digest: &str) {
    let path = format!("/v2/{repo}/blobs/{digest}");
    assert_eq!(
        reg.head(&path).await.status(),
        StatusCode::NOT_FOUND,
        "HEAD {path}"
    );
    expect_error(reg.get(&path).await, 404, "BLOB_UNKNOWN", &path).await;
}

#[tokio::test]
async fn a_wrong_digest_is_refused_and_nothing_is_served() {
    let (app, dir) = spawn_with_dir(None).await;
    let (reg, repo) = alice_reg(&app).await;
    let bytes = random_bytes(300);
    let real = digest(&bytes);
    let claimed = digest(b"something else");

    // Monolithic.
    expect_error(
        reg.post_blob(&repo, &claimed, &bytes).await,
        400,
        "DIGEST_INVALID",
        "monolithic upload with a wrong digest",
    )
    .await;
    not_served(&reg, &repo, &claimed).await;
    not_served(&reg, &repo, &real).await;
    // Nothing left behind on disk: not a blob, not the refused upload's bytes.
    assert_eq!(files_under(&dir), Vec::<PathBuf>::new());

    // Chunked, with the digest at the end.
    let location = reg.upload_location(&repo).await;
    let res = reg.patch(&location, &bytes, Some(0)).await;
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    let location = header(&res, "location").unwrap();
    expect_error(
        reg.finish(&location, &claimed, None).await,
        400,
        "DIGEST_INVALID",
        "closing an upload with a wrong digest",
    )
    .await;
    not_served(&reg, &repo, &claimed).await;
    not_served(&reg, &repo, &real).await;

    // A digest that is not one at all.
    expect_error(
        reg.post_blob(&repo, "sha256:nothex", &bytes).await,
        400,
        "DIGEST_INVALID",
        "a malformed digest",
    )
    .await;
    assert_eq!(app.count("registry_blobs").await, 0);
    assert_eq!(files_under(&dir.join("blobs")), Vec::<PathBuf>::new());

    // A blob digest in a blob path that is not a digest: not a known blob.
    let res = reg.get(&format!("/v2/{repo}/blobs/sha256:nothex")).await;
    assert!(
        [StatusCode::NOT_FOUND, StatusCode::BAD_REQUEST].contains(&res.status()),
        "{}",
        res.status()
    );
}

#[tokio::test]
async fn a_manifest_needs_its_blobs_in_the_repository() {
    let app = TestApp::spawn().await;
    let (reg, repo) = alice_reg(&app).await;
    let image = Image::new(100);

    // Neither blob pushed.
    expect_error(
        reg.put_manifest(&repo, "v1", OCI_MANIFEST, &image.manifest)
            .await,
        400,
        "MANIFEST_BLOB_UNKNOWN",
        "manifest without its blobs",
    )
    .await;
    // The config only: the layer is missing.
    reg.push_blob(&repo, &image.config).await;
    expect_error(
        reg.put_manifest(&repo, "v1", OCI_MANIFEST, &image.manifest)
            .await,
        400,
        "MANIFEST_BLOB_UNKNOWN",
        "manifest without its layer",
    )
    .await;
    // The layer in another repository of the team does not count.
    let other = format!("{}/other", repo.split('/').next().unwrap());
    reg.push_blob(&other, &image.layer).await;
    expect_error(
        reg.put_manifest(&repo, "v1", OCI_MANIFEST, &image.manifest)
            .await,
        400,
        "MANIFEST_BLOB_UNKNOWN",
        "manifest whose layer is in another repository",
    )
    .await;
    // A layer but no config.
    let without_config = format!("{}/noconfig", repo.split('/').next().unwrap());
    reg.push_blob(&without_config, &image.layer).await;
    expect_error(
        reg.put_manifest(&without_config, "v1", OCI_MANIFEST, &image.manifest)
            .await,
        400,
        "MANIFEST_BLOB_UNKNOWN",
        "manifest without its config",
    )
    .await;

    for (r, reference) in [(&repo, "v1".to_owned()), (&repo, image.digest.clone())] {
        expect_error(
            reg.get(&format!("/v2/{r}/manifests/{reference}")).await,
            404,
            "MANIFEST_UNKNOWN",
            "a refused manifest",
        )
        .await;
    }
    assert_eq!(
        reg.head(&format!("/v2/{repo}/manifests/v1")).await.status(),
        StatusCode::NOT_FOUND
    );

    // Once the layer is there too, it goes in.
    reg.push_blob(&repo, &image.layer).await;
    reg.push_manifest(&repo, "v1", OCI_MANIFEST, &image.manifest)
        .await;
}

#[tokio::test]
async fn unknown_upload_sessions() {
    let app = TestApp::spawn().await;
    let (reg, repo) = alice_reg(&app).await;
    let bytes = random_bytes(10);
    let d = digest(&bytes);

    // Both repositories exist (a repository that does not is NAME_UNKNOWN instead).
    let location = reg.upload_location(&repo).await;
    let other = repo.replace("/hello", "/other");
    reg.push_blob(&other, &random_bytes(5)).await;

    let random = uuid::Uuid::new_v4();
    for session in [random.to_string(), "not-a-uuid".to_owned()] {
        let location = format!("/v2/{repo}/blobs/uploads/{session}");
        expect_error(
            reg.patch(&location, &bytes, Some(0)).await,
            404,
            "BLOB_UPLOAD_UNKNOWN",
            "PATCH",
        )
        .await;
        expect_error(
            reg.patch(&location, &bytes, None).await,
            404,
            "BLOB_UPLOAD_UNKNOWN",
            "PATCH without range",
        )
        .await;
        expect_error(
            reg.finish(&location, &d, Some(&bytes)).await,
            404,
            "BLOB_UPLOAD_UNKNOWN",
            "PUT",
        )
        .await;
        expect_error(reg.get(&location).await, 404, "BLOB_UPLOAD_UNKNOWN", "GET").await;
        expect_error(
            reg.delete(&location).await,
            404,
            "BLOB_UPLOAD_UNKNOWN",
            "DELETE",
        )
        .await;
    }
    not_served(&reg, &repo, &d).await;

    // A session of one repository is unknown under another of the team.
    let moved = location.replace("/hello/", "/other/");
    assert_ne!(moved, location);
    expect_error(
        reg.get(&moved).await,
        404,
        "BLOB_UPLOAD_UNKNOWN",
        "session under another repository",
    )
    .await;
    expect_error(
        reg.finish(&moved, &d, Some(&bytes)).await,
        404,
        "BLOB_UPLOAD_UNKNOWN",
        "PUT under another repository",
    )
    .await;

    // Cancelled: 204, then unknown.
    let res = reg.patch(&location, &bytes, Some(0)).await;
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    let location = header(&res, "location").unwrap();
    assert_eq!(reg.delete(&location).await.status(), StatusCode::NO_CONTENT);
    expect_error(
        reg.get(&location).await,
        404,
        "BLOB_UPLOAD_UNKNOWN",
        "GET after DELETE",
    )
    .await;
    expect_error(
        reg.finish(&location, &d, None).await,
        404,
        "BLOB_UPLOAD_UNKNOWN",
        "PUT after DELETE",
    )
    .await;
    not_served(&reg, &repo, &d).await;
    not_served(&reg, &other, &d).await;
    assert_eq!(app.count("registry_blobs").await, 1);
}

#[tokio::test]
async fn ranges_beyond_a_blob_and_chunks_out_of_order() {
    let app = TestApp::spawn().await;
    let (reg, repo) = alice_reg(&app).await;
    let bytes = random_bytes(100);
    let d = reg.push_blob(&repo, &bytes).await;
    let path = format!("/v2/{repo}/blobs/{d}");

    for range in ["bytes=100-200", "bytes=150-", "bytes=100-"] {
        let res = reg.get_range(&path, range).await;
        assert_eq!(
            res.status(),
            StatusCode::RANGE_NOT_SATISFIABLE,
            "{range} of a 100-byte blob"
        );
    }
    // The end clamped to the size (RFC 9110 14.1.1), an open end, the last byte.
    for (range, content_range, slice) in [
        ("bytes=90-200", "bytes 90-99/100", 90..100),
        ("bytes=95-", "bytes 95-99/100", 95..100),
        ("bytes=99-99", "bytes 99-99/100", 99..100),
        ("bytes=0-0", "bytes 0-0/100", 0..1),
    ] {
        let res = reg.get_range(&path, range).await;
        assert_eq!(res.status(), StatusCode::PARTIAL_CONTENT, "{range}");
        assert_eq!(
            header(&res, "content-range").as_deref(),
            Some(content_range),
            "{range}"
        );
        assert_eq!(res.bytes().await.unwrap(), bytes[slice], "{range}");
    }

    // Chunks: the first must start at 0, each next one where the last ended.
    let chunked = random_bytes(300);
    let location = reg.upload_location(&repo).await;
    let res = reg.patch(&location, &chunked[5..10], Some(5)).await;
    assert_eq!(
        res.status(),
        StatusCode::RANGE_NOT_SATISFIABLE,
        "first chunk at 5"
    );
    let res = reg.patch(&location, &chunked[..100], Some(0)).await;
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    let location = header(&res, "location").unwrap();
    for (start, what) in [
        (200, "a gap"),
        (0, "the same chunk again"),
        (50, "an overlap"),
    ] {
        let res = reg
            .patch(&location, &chunked[start..start + 100], Some(start))
            .await;
        assert_eq!(res.status(), StatusCode::RANGE_NOT_SATISFIABLE, "{what}");
    }
    // Nothing of the refused chunks was kept.
    let res = reg.get(&location).await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    assert_eq!(header(&res, "range").as_deref(), Some("0-99"));
    let res = reg.patch(&location, &chunked[100..300], Some(100)).await;
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    assert_eq!(header(&res, "range").as_deref(), Some("0-299"));
    let location = header(&res, "location").unwrap();
    let res = reg.finish(&location, &digest(&chunked), None).await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let res = reg
        .get(&format!("/v2/{repo}/blobs/{}", digest(&chunked)))
        .await;
    assert_eq!(res.bytes().await.unwrap(), chunked);
}

#[tokio::test]
async fn a_blob_over_the_size_limit_is_refused_and_not_stored() {
    let (app, dir) = spawn_with_dir(Some(1024)).await;
    let (reg, repo) = alice_reg(&app).await;

    // Exactly the limit is fine.
    reg.push_blob(&repo, &random_bytes(1024)).await;
    assert_eq!(app.count("registry_blobs").await, 1);
    let stored = files_under(&dir);
    assert_eq!(stored.len(), 1, "{stored:?}");

    // Monolithic, over it.
    let big = random_bytes(2000);
    let d = digest(&big);
    expect_error(
        reg.post_blob(&repo, &d, &big).await,
        413,
        "SIZE_INVALID",
        "monolithic over the limit",
    )
    .await;
    not_served(&reg, &repo, &d).await;
    assert_eq!(
        files_under(&dir),
        stored,
        "files after a refused monolithic upload"
    );

    // Chunked: the chunk that goes over it.
    let location = reg.upload_location(&repo).await;
    let res = reg.patch(&location, &big[..600], Some(0)).await;
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    let location = header(&res, "location").unwrap();
    expect_error(
        reg.patch(&location, &big[600..1200], Some(600)).await,
        413,
        "SIZE_INVALID",
        "a chunk past the limit",
    )
    .await;

    // The last bytes with the closing PUT.
    let location = reg.upload_location(&repo).await;
    let res = reg.patch(&location, &big[..1000], Some(0)).await;
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    let location = header(&res, "location").unwrap();
    let closing = reg.finish(&location, &d, Some(&big[1000..])).await;
    expect_error(closing, 413, "SIZE_INVALID", "a closing PUT past the limit").await;

    not_served(&reg, &repo, &d).await;
    assert_eq!(app.count("registry_blobs").await, 1);
    assert_eq!(files_under(&dir.join("blobs")), stored);
}

#[tokio::test]
async fn invalid_manifests_and_digest_mismatches() {
    let app = TestApp::spawn().await;
    let (reg, repo) = alice_reg(&app).await;
    let image = Image::new(100);
    reg.push_blob(&repo, &image.config).await;
    reg.push_blob(&repo, &image.layer).await;

    for (what, body) in [
        ("not JSON", &b"{not json"[..]),
        ("an array", &b"[]"[..]),
        ("empty", &b""[..]),
        (
            "a config that is not a descriptor",
            &br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":5,"layers":[]}"#[..],
        ),
    ] {
        expect_error(
            reg.put_manifest(&repo, "bad", OCI_MANIFEST, body).await,
            400,
            "MANIFEST_INVALID",
            what,
        )
        .await;
    }
    expect_error(
        reg.get(&format!("/v2/{repo}/manifests/bad")).await,
        404,
        "MANIFEST_UNKNOWN",
        "an invalid manifest was not stored",
    )
    .await;

    // By a digest that is not the one of the bytes.
    let other = manifest_bytes(OCI_MANIFEST, &image.config, &[]);
    expect_error(
        reg.put_manifest(&repo, &digest(&other), OCI_MANIFEST, &image.manifest)
            .await,
        400,
        "DIGEST_INVALID",
        "PUT by another manifest's digest",
    )
    .await;
    expect_error(
        reg.get(&format!("/v2/{repo}/manifests/{}", image.digest))
            .await,
        404,
        "MANIFEST_UNKNOWN",
        "a mismatched manifest was not stored",
    )
    .await;
    expect_error(
        reg.get(&format!("/v2/{repo}/manifests/{}", digest(&other)))
            .await,
        404,
        "MANIFEST_UNKNOWN",
        "a mismatched manifest was not stored under the claimed digest",
    )
    .await;

    // By its own digest: stored, without a tag.
    let res = reg
        .put_manifest(&repo, &image.digest, OCI_MANIFEST, &image.manifest)
        .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    assert_eq!(
        header(&res, "docker-content-digest"),
        Some(image.digest.clone())
    );
    let res = reg
        .get(&format!("/v2/{repo}/manifests/{}", image.digest))
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.bytes().await.unwrap(), image.manifest);
    assert!(reg.tag_names(&repo).await.is_empty());

    // Unknown references.
    for reference in ["nope".to_owned(), digest(b"nothing")] {
        expect_error(
            reg.get(&format!("/v2/{repo}/manifests/{reference}")).await,
            404,
            "MANIFEST_UNKNOWN",
            "an unknown manifest",
        )
        .await;
    }
}

#[tokio::test]
async fn invalid_repository_names() {
    let app = TestApp::spawn().await;
    let (reg, repo) = alice_reg(&app).await;
    let team = repo.split('/').next().unwrap();
    for name in [
        format!("{team}/HeLLo"),
        format!("{team}/-hello"),
        format!("{team}/hello_"),
        format!("{team}/he..llo"),
    ] {
        expect_error(
            reg.start_upload(&name).await,
            400,
            "NAME_INVALID",
            &format!("upload to {name}"),
        )
        .await;
    }
}
