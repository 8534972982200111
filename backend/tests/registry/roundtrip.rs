//! Pushing and pulling: monolithic and chunked uploads, manifests by tag and digest, ranges, tags.

use reqwest::{Method, StatusCode};
use serde_json::Value;

use crate::support::TestApp;
use crate::{
    digest, expect_error, header, index_bytes, manifest_bytes, random_bytes, Image, Reg,
    DOCKER_LIST, DOCKER_MANIFEST, OCI_INDEX, OCI_MANIFEST,
};

#[tokio::test]
async fn push_and_pull_an_image() {
    let app = TestApp::spawn().await;
    let alice = app.signup("alice@example.com").await;
    let reg = Reg::token(&app, &alice, &alice.team, "member").await;
    let repo = format!("{}/hello", alice.team);

    // The base endpoint.
    let res = reg.get("/v2/").await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(
        header(&res, "docker-distribution-api-version").as_deref(),
        Some("registry/2.0")
    );

    let image = Image::new(3100);

    // The config, monolithic.
    let config = digest(&image.config);
    let res = reg.post_blob(&repo, &config, &image.config).await;
    assert_eq!(res.status(), StatusCode::CREATED);
    assert_eq!(
        header(&res, "location").map(|l| l.trim_start_matches(&app.base).to_owned()),
        Some(format!("/v2/{repo}/blobs/{config}"))
    );
    assert_eq!(header(&res, "docker-content-digest"), Some(config.clone()));

    // The layer in chunks, with the upload's status in between.
    let layer = digest(&image.layer);
    let res = reg.start_upload(&repo).await;
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    let uuid = header(&res, "docker-upload-uuid").expect("Docker-Upload-UUID");
    assert!(!uuid.is_empty());
    if let Some(range) = header(&res, "range") {
        assert_eq!(range, "0-0", "Range of an empty upload");
    }
    let mut location = header(&res, "location").expect("Location");
    assert!(
        reg.url(&location)
            .starts_with(&format!("{}/v2/{repo}/blobs/uploads/", app.base)),
        "{location}"
    );

    let status = |reg: Reg, location: String, uuid: String, end: usize| async move {
        let res = reg.get(&location).await;
        assert_eq!(res.status(), StatusCode::NO_CONTENT, "upload status");
        assert_eq!(header(&res, "range"), Some(format!("0-{end}")));
        assert_eq!(header(&res, "docker-upload-uuid"), Some(uuid));
    };

    for (i, (start, end)) in [(0, 1000), (1000, 2000)].into_iter().enumerate() {
        let res = reg
            .patch(&location, &image.layer[start..end], Some(start))
            .await;
        assert_eq!(res.status(), StatusCode::ACCEPTED, "chunk {i}");
        assert_eq!(header(&res, "range"), Some(format!("0-{}", end - 1)));
        assert_eq!(header(&res, "docker-upload-uuid").as_ref(), Some(&uuid));
        location = header(&res, "location").expect("Location after a chunk");
        status(reg.clone(), location.clone(), uuid.clone(), end - 1).await;
    }
    // A chunk without Content-Range (streamed) goes at the end.
    let res = reg.patch(&location, &image.layer[2000..3000], None).await;
    assert_eq!(res.status(), StatusCode::ACCEPTED, "streamed chunk");
    assert_eq!(header(&res, "range").as_deref(), Some("0-2999"));
    location = header(&res, "location").expect("Location after a chunk");
    status(reg.clone(), location.clone(), uuid.clone(), 2999).await;

    // The last bytes come with the PUT that closes it.
    let res = reg
        .finish(&location, &layer, Some(&image.layer[3000..]))
        .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    assert_eq!(
        header(&res, "location").map(|l| l.trim_start_matches(&app.base).to_owned()),
        Some(format!("/v2/{repo}/blobs/{layer}"))
    );
    assert_eq!(header(&res, "docker-content-digest"), Some(layer.clone()));
    // A finished upload is over.
    expect_error(
        reg.get(&location).await,
        404,
        "BLOB_UPLOAD_UNKNOWN",
        "status of a finished upload",
    )
    .await;

    // The blobs read back.
    let res = reg.head(&format!("/v2/{repo}/blobs/{layer}")).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(header(&res, "content-length").as_deref(), Some("3100"));
    assert_eq!(header(&res, "docker-content-digest"), Some(layer.clone()));
    let res = reg.get(&format!("/v2/{repo}/blobs/{layer}")).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(header(&res, "docker-content-digest"), Some(layer.clone()));
    assert_eq!(res.bytes().await.unwrap(), image.layer);
    let res = reg.get(&format!("/v2/{repo}/blobs/{config}")).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.bytes().await.unwrap(), image.config);

    // A range of it.
    let res = reg
        .get_range(&format!("/v2/{repo}/blobs/{layer}"), "bytes=10-1009")
        .await;
    assert_eq!(res.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(
        header(&res, "content-range").as_deref(),
        Some("bytes 10-1009/3100")
    );
    assert_eq!(res.bytes().await.unwrap(), image.layer[10..1010]);

    // The manifest, by tag; read back by tag and by digest, byte for byte.
    let res = reg
        .put_manifest(&repo, "v1", OCI_MANIFEST, &image.manifest)
        .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    assert_eq!(
        header(&res, "docker-content-digest"),
        Some(image.digest.clone())
    );
    let location = header(&res, "location").expect("manifest Location");
    assert!(
        location.contains(&format!("/v2/{repo}/manifests/")),
        "{location}"
    );
    for reference in ["v1", image.digest.as_str()] {
        let path = format!("/v2/{repo}/manifests/{reference}");
        let res = reg
            .req(Method::GET, &path)
            .header("accept", OCI_MANIFEST)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::OK, "GET {reference}");
        assert_eq!(header(&res, "content-type").as_deref(), Some(OCI_MANIFEST));
        assert_eq!(
            header(&res, "docker-content-digest"),
            Some(image.digest.clone())
        );
        assert_eq!(res.bytes().await.unwrap(), image.manifest, "{reference}");
        let res = reg.head(&path).await;
        assert_eq!(res.status(), StatusCode::OK, "HEAD {reference}");
        assert_eq!(header(&res, "content-type").as_deref(), Some(OCI_MANIFEST));
        assert_eq!(
            header(&res, "docker-content-digest"),
            Some(image.digest.clone())
        );
        assert_eq!(
            header(&res, "content-length"),
            Some(image.manifest.len().to_string())
        );
    }
    // The location of the manifest serves it.
    let res = reg.get(&location).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.bytes().await.unwrap(), image.manifest);

    // A second tag of the same manifest; the list is sorted.
    reg.push_manifest(&repo, "latest", OCI_MANIFEST, &image.manifest)
        .await;
    let res = reg.tags(&repo, "").await;
    assert_eq!(res.status(), StatusCode::OK);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["name"], repo.as_str());
    assert_eq!(body["tags"], serde_json::json!(["latest", "v1"]));

    assert_eq!(app.count("registry_blobs").await, 2);
}

#[tokio::test]
async fn docker_manifests_and_indexes_keep_their_media_type() {
    let app = TestApp::spawn().await;
    let alice = app.signup("alice@example.com").await;
    let reg = Reg::token(&app, &alice, &alice.team, "member").await;
    let repo = format!("{}/multi", alice.team);

    let image = Image::new(200);
    reg.push_image(&repo, "oci", &image).await;
    let docker = manifest_bytes(DOCKER_MANIFEST, &image.config, &[&image.layer]);
    reg.push_manifest(&repo, "docker", DOCKER_MANIFEST, &docker)
        .await;
    let oci_index = index_bytes(OCI_INDEX, OCI_MANIFEST, &image.manifest);
    reg.push_manifest(&repo, "index", OCI_INDEX, &oci_index)
        .await;
    let list = index_bytes(DOCKER_LIST, DOCKER_MANIFEST, &docker);
    reg.push_manifest(&repo, "list", DOCKER_LIST, &list).await;

    for (tag, media_type, bytes) in [
        ("oci", OCI_MANIFEST, &image.manifest),
        ("docker", DOCKER_MANIFEST, &docker),
        ("index", OCI_INDEX, &oci_index),
        ("list", DOCKER_LIST, &list),
    ] {
        for reference in [tag.to_owned(), digest(bytes)] {
            let res = reg
                .req(Method::GET, &format!("/v2/{repo}/manifests/{reference}"))
                .header(
                    "accept",
                    format!("{OCI_MANIFEST}, {OCI_INDEX}, {DOCKER_MANIFEST}, {DOCKER_LIST}"),
                )
                .send()
                .await
                .unwrap();
            assert_eq!(res.status(), StatusCode::OK, "{reference}");
            assert_eq!(
                header(&res, "content-type").as_deref(),
                Some(media_type),
                "{reference}"
            );
            assert_eq!(header(&res, "docker-content-digest"), Some(digest(bytes)));
            assert_eq!(&res.bytes().await.unwrap()[..], &bytes[..], "{reference}");
        }
    }
    assert_eq!(
        reg.tag_names(&repo).await,
        ["docker", "index", "list", "oci"]
    );
}

#[tokio::test]
async fn blobs_are_stored_once_and_mounted_within_a_team() {
    let app = TestApp::spawn().await;
    let alice = app.signup("alice@example.com").await;
    let reg = Reg::token(&app, &alice, &alice.team, "member").await;
    let hello = format!("{}/hello", alice.team);
    let other = format!("{}/other", alice.team);
    let third = format!("{}/third", alice.team);

    let image = Image::new(500);
    reg.push_image(&hello, "v1", &image).await;
    assert_eq!(app.count("registry_blobs").await, 2);
    let layer = digest(&image.layer);

    // Not readable in another repository until pushed or mounted there.
    reg.push_blob(&other, &random_bytes(5)).await;
    expect_error(
        reg.get(&format!("/v2/{other}/blobs/{layer}")).await,
        404,
        "BLOB_UNKNOWN",
        "a blob of another repository",
    )
    .await;
    assert_eq!(
        reg.head(&format!("/v2/{other}/blobs/{layer}"))
            .await
            .status(),
        StatusCode::NOT_FOUND
    );

    // The same blob pushed to a second repository: still one stored blob for it.
    reg.push_blob(&other, &image.layer).await;
    assert_eq!(app.count("registry_blobs").await, 3);
    let res = reg.get(&format!("/v2/{other}/blobs/{layer}")).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.bytes().await.unwrap(), image.layer);

    // Mounted into a third one from the first.
    let res = reg.mount(&third, &layer, &hello).await;
    assert_eq!(res.status(), StatusCode::CREATED, "mount within the team");
    assert_eq!(
        header(&res, "location").map(|l| l.trim_start_matches(&app.base).to_owned()),
        Some(format!("/v2/{third}/blobs/{layer}"))
    );
    assert_eq!(header(&res, "docker-content-digest"), Some(layer.clone()));
    let res = reg.get(&format!("/v2/{third}/blobs/{layer}")).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.bytes().await.unwrap(), image.layer);
    assert_eq!(app.count("registry_blobs").await, 3);

    // Mounting a blob the source does not have: a plain upload session instead.
    let missing = digest(&random_bytes(10));
    let res = reg.mount(&third, &missing, &hello).await;
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    assert!(header(&res, "location")
        .unwrap()
        .contains(&format!("/v2/{third}/blobs/uploads/")));
    assert_eq!(
        reg.head(&format!("/v2/{third}/blobs/{missing}"))
            .await
            .status(),
        StatusCode::NOT_FOUND
    );

    // Manifests belong to their repository too.
    expect_error(
        reg.get(&format!("/v2/{other}/manifests/{}", image.digest))
            .await,
        404,
        "MANIFEST_UNKNOWN",
        "a manifest of another repository",
    )
    .await;
    expect_error(
        reg.get(&format!("/v2/{other}/manifests/v1")).await,
        404,
        "MANIFEST_UNKNOWN",
        "a tag of another repository",
    )
    .await;

    // Blobs are not deleted through the API.
    expect_error(
        reg.delete(&format!("/v2/{hello}/blobs/{layer}")).await,
        405,
        "UNSUPPORTED",
        "DELETE of a blob",
    )
    .await;
    assert_eq!(
        reg.head(&format!("/v2/{hello}/blobs/{layer}"))
            .await
            .status(),
        StatusCode::OK
    );

    // The layer mounted, the config pushed: the manifest is complete in the third repository.
    reg.mount(&third, &digest(&image.config), &hello).await;
    reg.push_manifest(&third, "v1", OCI_MANIFEST, &image.manifest)
        .await;
}

#[tokio::test]
async fn the_same_blob_pushed_at_once_is_stored_once() {
    let (app, dir) = crate::spawn_with_dir(None).await;
    let alice = app.signup("alice@example.com").await;
    let reg = Reg::token(&app, &alice, &alice.team, "member").await;
    let layer = random_bytes(200_000);
    let d = digest(&layer);

    // Eight uploads of one blob at the same time, monolithic and chunked, to four repositories.
    let pushes = (0..8).map(|i| {
        let (reg, layer, d) = (reg.clone(), layer.clone(), d.clone());
        let repo = format!("{}/r{}", alice.team, i % 4);
        async move {
            if i % 2 == 0 {
                let res = reg.post_blob(&repo, &d, &layer).await;
                assert_eq!(res.status(), StatusCode::CREATED, "monolithic {i}");
            } else {
                let location = reg.upload_location(&repo).await;
                let res = reg.patch(&location, &layer[..100_000], Some(0)).await;
                assert_eq!(res.status(), StatusCode::ACCEPTED, "chunk of {i}");
                let location = header(&res, "location").unwrap();
                let res = reg.finish(&location, &d, Some(&layer[100_000..])).await;
                assert_eq!(res.status(), StatusCode::CREATED, "chunked {i}");
            }
            repo
        }
    });
    let repos = futures_util::future::join_all(pushes).await;
    assert_eq!(app.count("registry_blobs").await, 1);
    assert_eq!(crate::files_under(&dir.join("blobs")).len(), 1);
    for repo in repos {
        let res = reg.get(&format!("/v2/{repo}/blobs/{d}")).await;
        assert_eq!(res.status(), StatusCode::OK, "{repo}");
        assert_eq!(res.bytes().await.unwrap(), layer, "{repo}");
    }
}

#[tokio::test]
async fn a_blob_of_several_mebibytes() {
    let app = TestApp::spawn().await;
    let alice = app.signup("alice@example.com").await;
    let reg = Reg::token(&app, &alice, &alice.team, "member").await;
    let repo = format!("{}/big", alice.team);
    const MIB: usize = 1024 * 1024;
    let layer = random_bytes(5 * MIB + 123);
    let d = digest(&layer);

    // Chunks of 1.5 MiB, across the server's write buffers.
    let mut location = reg.upload_location(&repo).await;
    let chunk = 3 * MIB / 2;
    let mut start = 0;
    while start < layer.len() {
        let end = (start + chunk).min(layer.len());
        let res = reg.patch(&location, &layer[start..end], Some(start)).await;
        assert_eq!(res.status(), StatusCode::ACCEPTED, "chunk at {start}");
        assert_eq!(header(&res, "range"), Some(format!("0-{}", end - 1)));
        location = header(&res, "location").unwrap();
        start = end;
    }
    let res = reg.finish(&location, &d, None).await;
    assert_eq!(res.status(), StatusCode::CREATED);

    let path = format!("/v2/{repo}/blobs/{d}");
    let res = reg.get(&path).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(
        header(&res, "content-length"),
        Some(layer.len().to_string())
    );
    assert!(
        res.bytes().await.unwrap() == layer,
        "the blob read back differs"
    );
    // A range across a mebibyte boundary, and the tail.
    let res = reg
        .get_range(&path, &format!("bytes={}-{}", MIB - 10, 3 * MIB + 9))
        .await;
    assert_eq!(res.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(
        header(&res, "content-range"),
        Some(format!(
            "bytes {}-{}/{}",
            MIB - 10,
            3 * MIB + 9,
            layer.len()
        ))
    );
    assert!(res.bytes().await.unwrap() == layer[MIB - 10..3 * MIB + 10]);
    let res = reg.get_range(&path, &format!("bytes={}-", 5 * MIB)).await;
    assert_eq!(res.status(), StatusCode::PARTIAL_CONTENT);
    assert!(res.bytes().await.unwrap() == layer[5 * MIB..]);

    // The same bytes monolithic, to another repository.
    let other = format!("{}/big2", alice.team);
    reg.push_blob(&other, &layer).await;
    assert_eq!(app.count("registry_blobs").await, 1);
}
