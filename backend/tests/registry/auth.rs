//! Authentication and authorization: Basic challenges, roles, other teams, the catalog.

use reqwest::{Response, StatusCode};
use serde_json::Value;

use crate::support::{TestApp, PASSWORD};
use crate::{digest, expect_error, header, oci_error, random_bytes, Image, Reg, OCI_MANIFEST};

/// Asserts a 401 with a Basic challenge and the UNAUTHORIZED code.
async fn challenged(res: Response, what: &str) {
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED, "{what}");
    let challenge =
        header(&res, "www-authenticate").unwrap_or_else(|| panic!("{what}: no WWW-Authenticate"));
    assert!(
        challenge.starts_with("Basic ") && challenge.contains("realm="),
        "{what}: {challenge}"
    );
    let (_, code) = oci_error(res).await;
    assert_eq!(code, "UNAUTHORIZED", "{what}");
}

#[tokio::test]
async fn credentials_are_required_and_checked() {
    let app = TestApp::spawn().await;
    let alice = app.signup("alice@example.com").await;
    let good = Reg::token(&app, &alice, &alice.team, "member").await;
    let repo = format!("{}/hello", alice.team);
    good.push_image(&repo, "v1", &Image::new(100)).await;
    let before = app.count("registry_blobs").await;

    let secret = good.auth.clone().unwrap().1;
    let mut wrong_token = secret.clone();
    wrong_token.pop();
    wrong_token.push(if secret.ends_with('a') { 'b' } else { 'a' });
    // Each wrong password counts towards the login throttle (10 free failures per e-mail): at
    // most 7 requests per e-mail below.
    let clients = [
        ("no credentials", Reg::anonymous(&app)),
        ("a wrong token", Reg::new(&app, &alice.email, &wrong_token)),
        (
            "a made-up token",
            Reg::new(&app, &alice.email, &format!("gnt_{}", "0".repeat(43))),
        ),
        (
            "alice's token with another e-mail",
            Reg::new(&app, "bob@example.com", &secret),
        ),
        (
            "a wrong password",
            Reg::new(&app, &alice.email, "not the password"),
        ),
        (
            "an unknown user",
            Reg::new(&app, "nobody@example.com", PASSWORD),
        ),
    ];
    for (what, reg) in &clients {
        challenged(reg.get("/v2/").await, &format!("/v2/ with {what}")).await;
        challenged(reg.tags(&repo, "").await, &format!("tags with {what}")).await;
        challenged(
            reg.get(&format!("/v2/{repo}/manifests/v1")).await,
            &format!("manifest with {what}"),
        )
        .await;
        challenged(
            reg.start_upload(&repo).await,
            &format!("upload with {what}"),
        )
        .await;
        challenged(
            reg.get("/v2/_catalog").await,
            &format!("catalog with {what}"),
        )
        .await;
        challenged(
            reg.post_blob(&repo, &digest(b"x"), b"x").await,
            &format!("monolithic upload with {what}"),
        )
        .await;
        // HEAD answers have no body: the status and the challenge only.
        let res = reg.head(&format!("/v2/{repo}/manifests/v1")).await;
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED, "HEAD with {what}");
        assert!(header(&res, "www-authenticate").is_some());
    }
    // A bearer token is not Basic auth.
    let res = reqwest::Client::new()
        .get(app.url("/v2/"))
        .bearer_auth(&secret)
        .send()
        .await
        .unwrap();
    challenged(res, "a bearer token").await;
    assert_eq!(app.count("registry_blobs").await, before);

    // A revoked token stops working at once.
    let tokens: Value = alice.get("/api/v1/tokens").await.json().await.unwrap();
    let id = tokens
        .as_array()
        .unwrap()
        .iter()
        .find(|t| secret.starts_with(t["prefix"].as_str().unwrap()))
        .expect("the token in the list")["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(good.get("/v2/").await.status(), StatusCode::OK);
    let res = alice.delete(&format!("/api/v1/tokens/{id}")).await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    challenged(good.get("/v2/").await, "a revoked token").await;
    challenged(good.tags(&repo, "").await, "tags with a revoked token").await;
}

#[tokio::test]
async fn the_account_password_works_too() {
    let app = TestApp::spawn().await;
    let alice = app.signup("alice@example.com").await;
    let reg = Reg::new(&app, &alice.email, PASSWORD);
    let repo = format!("{}/hello", alice.team);
    let res = reg.get("/v2/").await;
    assert_eq!(res.status(), StatusCode::OK);
    let image = Image::new(100);
    reg.push_image(&repo, "v1", &image).await;
    let res = reg.get(&format!("/v2/{repo}/manifests/v1")).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.bytes().await.unwrap(), image.manifest);
    assert_eq!(reg.tag_names(&repo).await, ["v1"]);
}

#[tokio::test]
async fn viewers_pull_but_do_not_push() {
    let app = TestApp::spawn().await;
    let alice = app.signup("alice@example.com").await;
    let bob = app.signup("bob@example.com").await;
    alice.add_member(&alice.team, &bob, "viewer").await;
    let member = Reg::token(&app, &alice, &alice.team, "member").await;
    let repo = format!("{}/hello", alice.team);
    let image = Image::new(100);
    member.push_image(&repo, "v1", &image).await;
    let upload = member.upload_location(&repo).await;
    let before = app.count("registry_blobs").await;

    let viewers = [
        (
            "bob's viewer token",
            Reg::token(&app, &bob, &alice.team, "viewer").await,
        ),
        (
            "alice's viewer token",
            Reg::token(&app, &alice, &alice.team, "viewer").await,
        ),
        ("bob's password", Reg::new(&app, &bob.email, PASSWORD)),
    ];
    let layer = digest(&image.layer);
    for (who, reg) in &viewers {
        // Pulls.
        assert_eq!(reg.get("/v2/").await.status(), StatusCode::OK, "{who}");
        let res = reg.get(&format!("/v2/{repo}/manifests/v1")).await;
        assert_eq!(res.status(), StatusCode::OK, "{who} pulls the manifest");
        assert_eq!(res.bytes().await.unwrap(), image.manifest);
        let res = reg.get(&format!("/v2/{repo}/blobs/{layer}")).await;
        assert_eq!(res.status(), StatusCode::OK, "{who} pulls the layer");
        assert_eq!(res.bytes().await.unwrap(), image.layer);
        assert_eq!(reg.tag_names(&repo).await, ["v1"], "{who}");
        assert_eq!(reg.catalog().await, std::slice::from_ref(&repo), "{who}");

        // Does not push.
        expect_error(
            reg.start_upload(&repo).await,
            403,
            "DENIED",
            &format!("{who} starts an upload"),
        )
        .await;
        let bytes = random_bytes(10);
        expect_error(
            reg.post_blob(&repo, &digest(&bytes), &bytes).await,
            403,
            "DENIED",
            &format!("{who} pushes a blob"),
        )
        .await;
        expect_error(
            reg.mount(&format!("{}/copy", alice.team), &layer, &repo)
                .await,
            403,
            "DENIED",
            &format!("{who} mounts a blob"),
        )
        .await;
        expect_error(
            reg.patch(&upload, &bytes, Some(0)).await,
            403,
            "DENIED",
            &format!("{who} writes to a member's upload"),
        )
        .await;
        expect_error(
            reg.put_manifest(&repo, "v2", OCI_MANIFEST, &image.manifest)
                .await,
            403,
            "DENIED",
            &format!("{who} tags a manifest"),
        )
        .await;
        expect_error(
            reg.delete(&format!("/v2/{repo}/manifests/v1")).await,
            403,
            "DENIED",
            &format!("{who} deletes a tag"),
        )
        .await;
        expect_error(
            reg.delete(&format!("/v2/{repo}/manifests/{}", image.digest))
                .await,
            403,
            "DENIED",
            &format!("{who} deletes a manifest"),
        )
        .await;
    }
    assert_eq!(app.count("registry_blobs").await, before);
    assert_eq!(member.tag_names(&repo).await, ["v1"]);
    // The member's session was untouched.
    let res = member.get(&upload).await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    assert_eq!(header(&res, "range").as_deref(), Some("0-0"));
}

/// `(status, code)` of an answer (no code for a body-less one).
async fn answer(res: Response) -> (u16, Option<String>) {
    let status = res.status().as_u16();
    let text = res.text().await.unwrap();
    if text.is_empty() {
        return (status, None);
    }
    let body: Value = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("body is not JSON ({e}): {status} {text:?}"));
    (
        status,
        body["errors"][0]["code"].as_str().map(str::to_owned),
    )
}

#[tokio::test]
async fn another_teams_repositories_look_missing() {
    let app = TestApp::spawn().await;
    let alice = app.signup("alice@example.com").await;
    let bob = app.signup("bob@example.com").await;
    let alice_reg = Reg::token(&app, &alice, &alice.team, "member").await;
    let repo = format!("{}/hello", alice.team);
    let image = Image::new(100);
    alice_reg.push_image(&repo, "v1", &image).await;
    let upload = alice_reg.upload_location(&repo).await;
    let upload_id = upload
        .rsplit('/')
        .next()
        .unwrap()
        .split('?')
        .next()
        .unwrap();
    let layer = digest(&image.layer);
    let before = app.count("registry_blobs").await;

    let missing = "nosuchteam/nothing";
    let bob_repo = format!("{}/mine", bob.team);
    for (who, reg) in [
        (
            "bob's token",
            Reg::token(&app, &bob, &bob.team, "member").await,
        ),
        ("bob's password", Reg::new(&app, &bob.email, PASSWORD)),
    ] {
        let bytes = random_bytes(10);
        let d = digest(&bytes);
        // Each operation, on alice's repository and on one that does not exist: the same answer.
        macro_rules! same {
            ($what:expr, |$r:ident| $call:expr) => {{
                let seen = {
                    let $r: &str = &repo;
                    answer($call.await).await
                };
                let $r: &str = missing;
                let reference = answer($call.await).await;
                assert_eq!(seen, reference, "{who}: {} on alice's repository", $what);
                seen
            }};
        }
        let not_found = (404, Some("NAME_UNKNOWN".to_owned()));
        let seen = same!("GET a tag", |r| reg.get(&format!("/v2/{r}/manifests/v1")));
        assert_eq!(seen, not_found, "{who}");
        let seen = same!("GET a manifest digest", |r| reg
            .get(&format!("/v2/{r}/manifests/{}", image.digest)));
        assert_eq!(seen, not_found, "{who}");
        same!("HEAD a tag", |r| reg.head(&format!("/v2/{r}/manifests/v1")));
        let seen = same!("GET a blob", |r| reg.get(&format!("/v2/{r}/blobs/{layer}")));
        assert_eq!(seen, not_found, "{who}");
        same!("HEAD a blob", |r| reg
            .head(&format!("/v2/{r}/blobs/{layer}")));
        let seen = same!("GET a range of a blob", |r| reg
            .get_range(&format!("/v2/{r}/blobs/{layer}"), "bytes=0-9"));
        assert_eq!(seen, not_found, "{who}");
        let seen = same!("list tags", |r| reg.tags(r, ""));
        assert_eq!(seen, not_found, "{who}");
        let seen = same!("list tags by page", |r| reg.tags(r, "n=1&last=a"));
        assert_eq!(seen, not_found, "{who}");
        let seen = same!("start an upload", |r| reg.start_upload(r));
        assert_eq!(seen, not_found, "{who}");
        let seen = same!("push a blob", |r| reg.post_blob(r, &d, &bytes));
        assert_eq!(seen, not_found, "{who}");
        let seen = same!("mount within it", |r| reg.mount(r, &layer, r));
        assert_eq!(seen, not_found, "{who}");
        let seen = same!("push a manifest", |r| reg.put_manifest(
            r,
            "v2",
            OCI_MANIFEST,
            &image.manifest
        ));
        assert_eq!(seen, not_found, "{who}");
        let seen = same!("delete a tag", |r| reg
            .delete(&format!("/v2/{r}/manifests/v1")));
        assert_eq!(seen, not_found, "{who}");
        let seen = same!("delete a manifest", |r| reg
            .delete(&format!("/v2/{r}/manifests/{}", image.digest)));
        assert_eq!(seen, not_found, "{who}");
        // Alice's upload session, under her repository vs under a missing one.
        let session = |r: &str| format!("/v2/{r}/blobs/uploads/{upload_id}");
        same!("upload status", |r| reg.get(&session(r)));
        same!("write to an upload", |r| reg.patch(
            &session(r),
            &bytes,
            Some(0)
        ));
        same!("close an upload", |r| reg.finish(&session(r), &d, None));
        same!("cancel an upload", |r| reg.delete(&session(r)));

        // Alice's session id under bob's own repository: unknown there, and it cannot be
        // finished from there.
        reg.push_blob(&bob_repo, &random_bytes(3)).await;
        let stolen = format!("/v2/{bob_repo}/blobs/uploads/{upload_id}");
        for (what, res) in [
            ("status", reg.get(&stolen).await),
            ("PATCH", reg.patch(&stolen, &bytes, Some(0)).await),
            ("PUT", reg.finish(&stolen, &d, Some(&bytes)).await),
            ("DELETE", reg.delete(&stolen).await),
        ] {
            expect_error(
                res,
                404,
                "BLOB_UPLOAD_UNKNOWN",
                &format!("{who}: {what} of alice's session under bob's repository"),
            )
            .await;
        }

        // Mounting alice's blob into bob's own repository: a plain upload, nothing leaks.
        let res = reg.mount(&bob_repo, &layer, &repo).await;
        assert_eq!(
            res.status(),
            StatusCode::ACCEPTED,
            "{who} mounts from alice"
        );
        assert!(header(&res, "location")
            .unwrap()
            .contains(&format!("/v2/{bob_repo}/blobs/uploads/")));
        let res = reg.mount(&bob_repo, &layer, missing).await;
        assert_eq!(
            res.status(),
            StatusCode::ACCEPTED,
            "{who} mounts from nowhere"
        );
        expect_error(
            reg.get(&format!("/v2/{bob_repo}/blobs/{layer}")).await,
            404,
            "BLOB_UNKNOWN",
            "alice's blob after a refused mount",
        )
        .await;
        assert_eq!(
            reg.head(&format!("/v2/{bob_repo}/blobs/{layer}"))
                .await
                .status(),
            StatusCode::NOT_FOUND
        );
        // Nor can bob's manifest refer to it.
        reg.push_blob(&bob_repo, &image.config).await;
        expect_error(
            reg.put_manifest(&bob_repo, "stolen", OCI_MANIFEST, &image.manifest)
                .await,
            400,
            "MANIFEST_BLOB_UNKNOWN",
            "bob's manifest with alice's layer",
        )
        .await;
    }
    // Alice's repository is as it was, her session too.
    assert_eq!(alice_reg.tag_names(&repo).await, ["v1"]);
    let res = alice_reg.get(&upload).await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    assert_eq!(header(&res, "range").as_deref(), Some("0-0"));
    let res = alice_reg
        .get(&format!("/v2/{repo}/manifests/{}", image.digest))
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    // Bob's config is alice's (content-addressed); his own few bytes are the only new blobs.
    assert_eq!(app.count("registry_blobs").await, before + 2);
}

#[tokio::test]
async fn the_catalog_lists_the_callers_teams_only() {
    let app = TestApp::spawn().await;
    let alice = app.signup("alice@example.com").await;
    let bob = app.signup("bob@example.com").await;
    let carol = app.signup("carol@example.com").await;
    alice.add_member(&alice.team, &carol, "member").await;

    let alice_reg = Reg::token(&app, &alice, &alice.team, "member").await;
    let bob_reg = Reg::token(&app, &bob, &bob.team, "member").await;
    let carol_reg = Reg::token(&app, &carol, &carol.team, "member").await;
    let mut alices = vec![
        format!("{}/hello", alice.team),
        format!("{}/web", alice.team),
    ];
    for repo in &alices {
        alice_reg.push_image(repo, "v1", &Image::new(50)).await;
    }
    let bobs = vec![format!("{}/app", bob.team)];
    bob_reg.push_image(&bobs[0], "v1", &Image::new(50)).await;
    let carols = vec![format!("{}/tool", carol.team)];
    carol_reg
        .push_image(&carols[0], "v1", &Image::new(50))
        .await;

    alices.sort();
    assert_eq!(alice_reg.catalog().await, alices);
    assert_eq!(bob_reg.catalog().await, bobs);
    // A token is bound to its team.
    assert_eq!(carol_reg.catalog().await, carols);
    // Carol's password: both of her teams.
    let mut both: Vec<String> = alices.iter().chain(&carols).cloned().collect();
    both.sort();
    assert_eq!(Reg::new(&app, &carol.email, PASSWORD).catalog().await, both);
    // Bob's password: his team only.
    assert_eq!(Reg::new(&app, &bob.email, PASSWORD).catalog().await, bobs);

    // Carol's token for her own team does not reach alice's team, where she is a member.
    let hello = &alices[0];
    expect_error(
        carol_reg.tags(hello, "").await,
        404,
        "NAME_UNKNOWN",
        "carol's token of her team in alice's",
    )
    .await;
    expect_error(
        carol_reg.start_upload(hello).await,
        404,
        "NAME_UNKNOWN",
        "carol's token of her team pushing to alice's",
    )
    .await;
    assert_eq!(
        Reg::new(&app, &carol.email, PASSWORD)
            .tag_names(hello)
            .await,
        ["v1"]
    );

    // By page.
    let carol_pw = Reg::new(&app, &carol.email, PASSWORD);
    let mut seen = Vec::new();
    let mut next = Some("/v2/_catalog?n=2".to_owned());
    while let Some(url) = next.take() {
        assert!(seen.len() <= both.len(), "more pages than repositories");
        let res = carol_pw.get(&url).await;
        assert_eq!(res.status(), StatusCode::OK, "{url}");
        if let Some(link) = header(&res, "link") {
            let target = link
                .split_once(';')
                .map(|(t, _)| t.trim().trim_start_matches('<').trim_end_matches('>'))
                .unwrap()
                .to_owned();
            assert!(link.contains("rel=\"next\""), "{link}");
            assert!(target.contains("n=2"), "{link}");
            next = Some(target.trim_start_matches(&app.base).to_owned());
        }
        let body: Value = res.json().await.unwrap();
        let page: Vec<String> = body["repositories"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r.as_str().unwrap().to_owned())
            .collect();
        assert!(page.len() <= 2, "{page:?}");
        seen.extend(page);
    }
    assert_eq!(seen, both);
}
