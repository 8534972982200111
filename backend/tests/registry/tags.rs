//! Tag pagination (`n`, `last`, the `Link` header) and deleting manifests and tags.

use reqwest::StatusCode;
use serde_json::Value;

use crate::support::TestApp;
use crate::{expect_error, header, tag_array, Image, Reg, OCI_MANIFEST};

/// The target of a `Link: <url>; rel="next"` header.
fn next_link(link: &str) -> String {
    let (target, params) = link
        .split_once(';')
        .unwrap_or_else(|| panic!("Link without parameters: {link}"));
    assert!(
        params.replace(' ', "").contains("rel=\"next\""),
        "Link is not rel=\"next\": {link}"
    );
    let target = target.trim();
    assert!(
        target.starts_with('<') && target.ends_with('>'),
        "Link target not in <>: {link}"
    );
    target[1..target.len() - 1].to_owned()
}

/// The query parameters of a URL or path.
fn query_of(url: &str) -> Vec<(String, String)> {
    let query = url.split_once('?').map_or("", |(_, q)| q);
    let mut params: Vec<(String, String)> = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (k.to_owned(), v.to_owned())
        })
        .collect();
    params.sort();
    params
}

#[tokio::test]
async fn tags_are_listed_by_page() {
    let app = TestApp::spawn().await;
    let alice = app.signup("alice@example.com").await;
    let reg = Reg::token(&app, &alice, &alice.team, "member").await;
    let repo = format!("{}/hello", alice.team);
    let image = Image::new(100);
    reg.push_image(&repo, "v3", &image).await;
    for tag in ["v1", "latest", "v2", "beta"] {
        reg.push_manifest(&repo, tag, OCI_MANIFEST, &image.manifest)
            .await;
    }
    assert_eq!(
        reg.tag_names(&repo).await,
        ["beta", "latest", "v1", "v2", "v3"]
    );

    // Page by page, following the Link header.
    let mut pages = Vec::new();
    let mut next = Some(format!("/v2/{repo}/tags/list?n=2"));
    while let Some(url) = next.take() {
        assert!(pages.len() < 5, "more pages than tags");
        let res = reg.get(&url).await;
        assert_eq!(res.status(), StatusCode::OK, "{url}");
        let link = header(&res, "link");
        let body: Value = res.json().await.unwrap();
        assert_eq!(body["name"], repo.as_str());
        let tags = tag_array(&body);
        if let Some(link) = link {
            let target = next_link(&link);
            assert!(
                target.starts_with(&format!("/v2/{repo}/tags/list?"))
                    || target.starts_with(&format!("{}/v2/{repo}/tags/list?", app.base)),
                "{link}"
            );
            let last = tags.last().expect("a page with a next link has tags");
            assert_eq!(
                query_of(&target),
                [
                    ("last".to_owned(), last.clone()),
                    ("n".to_owned(), "2".to_owned())
                ],
                "{link}"
            );
            next = Some(target);
        }
        pages.push(tags);
    }
    assert_eq!(
        pages,
        [vec!["beta", "latest"], vec!["v1", "v2"], vec!["v3"]]
    );

    // Directly with n and last.
    for (query, expected) in [
        ("n=2&last=latest", &["v1", "v2"][..]),
        ("n=3&last=v1", &["v2", "v3"][..]),
        ("last=v1", &["v2", "v3"][..]),
        ("n=10", &["beta", "latest", "v1", "v2", "v3"][..]),
        ("n=1&last=beta", &["latest"][..]),
        // `last` need not be a tag: the ones after it in order.
        ("n=2&last=c", &["latest", "v1"][..]),
        ("n=2&last=v3", &[][..]),
    ] {
        let res = reg.tags(&repo, query).await;
        assert_eq!(res.status(), StatusCode::OK, "{query}");
        let body: Value = res.json().await.unwrap();
        assert_eq!(tag_array(&body), expected, "{query}");
    }
    // The last page has no Link.
    let res = reg.tags(&repo, "n=2&last=v2").await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(header(&res, "link"), None, "Link on the last page");
    let body: Value = res.json().await.unwrap();
    assert_eq!(tag_array(&body), ["v3"]);
}

#[tokio::test]
async fn deleting_tags_and_manifests() {
    let app = TestApp::spawn().await;
    let alice = app.signup("alice@example.com").await;
    let reg = Reg::token(&app, &alice, &alice.team, "member").await;
    let repo = format!("{}/hello", alice.team);
    let image = Image::new(100);
    reg.push_image(&repo, "v1", &image).await;
    reg.push_manifest(&repo, "v2", OCI_MANIFEST, &image.manifest)
        .await;
    let other = Image::new(100);
    reg.push_image(&repo, "other", &other).await;
    let manifest = |reference: &str| format!("/v2/{repo}/manifests/{reference}");

    // A tag: only the tag goes.
    let res = reg.delete(&manifest("v1")).await;
    assert_eq!(res.status(), StatusCode::ACCEPTED, "DELETE a tag");
    assert_eq!(reg.tag_names(&repo).await, ["other", "v2"]);
    expect_error(
        reg.get(&manifest("v1")).await,
        404,
        "MANIFEST_UNKNOWN",
        "a deleted tag",
    )
    .await;
    assert_eq!(
        reg.head(&manifest("v1")).await.status(),
        StatusCode::NOT_FOUND
    );
    for reference in ["v2", image.digest.as_str()] {
        let res = reg.get(&manifest(reference)).await;
        assert_eq!(
            res.status(),
            StatusCode::OK,
            "{reference} after deleting v1"
        );
        assert_eq!(res.bytes().await.unwrap(), image.manifest);
    }
    expect_error(
        reg.delete(&manifest("v1")).await,
        404,
        "MANIFEST_UNKNOWN",
        "deleting a deleted tag",
    )
    .await;

    // The manifest by digest: gone under its digest and its remaining tags.
    let res = reg.delete(&manifest(&image.digest)).await;
    assert_eq!(res.status(), StatusCode::ACCEPTED, "DELETE a manifest");
    for reference in [image.digest.as_str(), "v2"] {
        expect_error(
            reg.get(&manifest(reference)).await,
            404,
            "MANIFEST_UNKNOWN",
            &format!("{reference} after deleting the manifest"),
        )
        .await;
        assert_eq!(
            reg.head(&manifest(reference)).await.status(),
            StatusCode::NOT_FOUND
        );
    }
    assert_eq!(reg.tag_names(&repo).await, ["other"]);
    expect_error(
        reg.delete(&manifest(&image.digest)).await,
        404,
        "MANIFEST_UNKNOWN",
        "deleting a deleted manifest",
    )
    .await;

    // The other image is untouched; it can be pushed again after deletion.
    let res = reg.get(&manifest("other")).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.bytes().await.unwrap(), other.manifest);
    reg.push_manifest(&repo, "v1", OCI_MANIFEST, &image.manifest)
        .await;
    let res = reg.get(&manifest(&image.digest)).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(reg.tag_names(&repo).await, ["other", "v1"]);

    // A tag pushed again moves to the new manifest.
    reg.push_manifest(&repo, "v1", OCI_MANIFEST, &other.manifest)
        .await;
    let res = reg.get(&manifest("v1")).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(
        header(&res, "docker-content-digest"),
        Some(other.digest.clone())
    );
    assert_eq!(res.bytes().await.unwrap(), other.manifest);
    assert_eq!(reg.tag_names(&repo).await, ["other", "v1"]);
    // The untagged manifest is still there by digest.
    let res = reg.get(&manifest(&image.digest)).await;
    assert_eq!(res.status(), StatusCode::OK);
}
