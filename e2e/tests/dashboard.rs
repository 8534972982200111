//! The dashboard in real headless Chromium against a real server and Postgres: the journeys a
//! newcomer makes, tenant isolation, and what a viewer can (not) do.

use anyhow::Context;
use gantry_e2e::browser::{screenshot_dir, Browser, Stack};
use gantry_e2e::cluster::PASSWORD;

async fn signup(b: &Browser, base: &str, email: &str) -> anyhow::Result<String> {
    b.open(&format!("{base}/signup")).await?;
    b.fill("#email", email).await?;
    b.fill("#password", PASSWORD).await?;
    b.click("form button[type=submit]").await?;
    b.wait_for_path(|p| p.starts_with("/teams/") && p.ends_with("/apps"))
        .await
}

async fn login(b: &Browser, base: &str, email: &str) -> anyhow::Result<String> {
    b.open(&format!("{base}/login")).await?;
    b.fill("#email", email).await?;
    b.fill("#password", PASSWORD).await?;
    b.click("form button[type=submit]").await?;
    b.wait_for_path(|p| p.starts_with("/teams/") && p.ends_with("/apps"))
        .await
}

async fn logout(b: &Browser) -> anyhow::Result<()> {
    b.click_text("header button", "Log out").await?;
    b.wait_for_path(|p| p == "/login").await?;
    Ok(())
}

#[tokio::test]
async fn newcomer_signs_up_creates_an_app_sets_config_and_finds_it_again() -> anyhow::Result<()> {
    let stack = Stack::start().await?;
    let base = &stack.base;
    let b = Browser::start(1440, 900).await?;

    // Sign up → land on the personal team's apps, with an empty state that says what to do.
    let path = signup(&b, base, "alice@example.com").await?;
    assert_eq!(path, "/teams/alice/apps");
    b.wait_for_text(".empty", "No apps yet").await?;
    b.wait_for_text("[data-test=user-email]", "alice@example.com")
        .await?;

    // The name is checked as you type, with the server's rule.
    b.fill("#app-name", "Hello").await?;
    b.wait_for_text("#app-name-help", "must start with a lowercase letter")
        .await?;
    let disabled = b
        .wait_for("[data-test=create-app] button[type=submit]")
        .await?
        .attr("disabled")
        .await?;
    assert!(
        disabled.is_some(),
        "create is disabled while the name is invalid"
    );
    b.fill("#app-name", "hello").await?;
    b.click("[data-test=create-app] button[type=submit]")
        .await?;
    b.wait_for_text("[data-test=apps-table]", "hello").await?;
    let shots = screenshot_dir();
    let list_shot = b.screenshot(&shots, "apps-list").await?;

    // A name the server refuses shows the server's message in place.
    b.fill("#app-name", "hello").await?;
    b.click("[data-test=create-app] button[type=submit]")
        .await?;
    b.wait_for_text("[data-test=create-app] .error", "already exists")
        .await?;

    // Open it, set a config var.
    b.click_text("[data-test=apps-table] a", "hello").await?;
    b.wait_for_path(|p| p == "/teams/alice/apps/hello").await?;
    b.wait_for_text(
        "section[aria-labelledby=instances-title] .empty",
        "No instances",
    )
    .await?;
    b.wait_for_text(
        "section[aria-labelledby=config-title] .empty",
        "No config vars",
    )
    .await?;
    b.fill("#config-key", "DATABASE_URL").await?;
    b.fill("#config-value", "postgres://db/app").await?;
    b.click("[data-test=add-config] button[type=submit]")
        .await?;
    b.wait_for_text("[data-test=config-table]", "postgres://db/app")
        .await?;
    // Settings save.
    b.fill("#replicas", "3").await?;
    b.fill("#stop-grace", "5").await?;
    b.click_text("[data-test=settings] button", "Save settings")
        .await?;
    b.wait_for_text("[data-test=settings] .ok", "Saved").await?;
    let detail_shot = b.screenshot(&shots, "app-detail").await?;
    println!(
        "screenshots: {} and {}",
        list_shot.display(),
        detail_shot.display()
    );

    // Log out, log in again: the app and its config are still there.
    logout(&b).await?;
    let path = login(&b, base, "alice@example.com").await?;
    assert_eq!(path, "/teams/alice/apps");
    b.wait_for_text("[data-test=apps-table]", "hello").await?;
    b.open(&format!("{base}/teams/alice/apps/hello")).await?;
    b.wait_for_text("[data-test=config-table]", "DATABASE_URL")
        .await?;
    let replicas = b.wait_for("#replicas").await?.prop("value").await?;
    assert_eq!(replicas.as_deref(), Some("3"));
    let grace = b.wait_for("#stop-grace").await?.prop("value").await?;
    assert_eq!(grace.as_deref(), Some("5"));
    let deadline = b
        .wait_for("#progress-deadline")
        .await?
        .prop("value")
        .await?;
    assert_eq!(deadline.as_deref(), Some("300"), "the default deadline");
    b.client.clone().close().await?;
    Ok(())
}

#[tokio::test]
async fn another_user_cannot_see_the_team_and_a_viewer_gets_no_edit_controls() -> anyhow::Result<()>
{
    let stack = Stack::start().await?;
    let base = &stack.base;
    let b = Browser::start(360, 800).await?; // phone width

    signup(&b, base, "alice@example.com").await?;
    b.fill("#app-name", "hello").await?;
    b.click("[data-test=create-app] button[type=submit]")
        .await?;
    b.wait_for_text("[data-test=apps-table]", "hello").await?;
    b.open(&format!("{base}/teams/alice/apps/hello")).await?;
    b.fill("#config-key", "API_KEY").await?;
    b.fill("#config-value", "very-secret").await?;
    b.click("[data-test=add-config] button[type=submit]")
        .await?;
    b.wait_for_text("[data-test=config-table]", "very-secret")
        .await?;
    logout(&b).await?;

    // Bob has only his own team, and alice's is "not found" for him.
    let path = signup(&b, base, "bob@example.com").await?;
    assert_eq!(path, "/teams/bob/apps");
    let options = b.count("[data-test=team-switcher] option").await?;
    assert_eq!(options, 1, "bob sees only his team");
    b.open(&format!("{base}/teams/alice/apps")).await?;
    b.wait_for_text(".error", "not found").await?;
    logout(&b).await?;

    // Alice adds bob as a viewer from the team page.
    login(&b, base, "alice@example.com").await?;
    b.open(&format!("{base}/teams/alice/members")).await?;
    b.fill("#member-email", "bob@example.com").await?;
    b.click("#member-role").await?;
    b.click("#member-role option[value=viewer]").await?;
    b.click("[data-test=add-member] button[type=submit]")
        .await?;
    b.wait_for_text("[data-test=members-table]", "bob@example.com")
        .await?;
    logout(&b).await?;

    // Bob, viewer: sees the app and config names, but no values and no edit controls.
    login(&b, base, "bob@example.com").await?;
    b.open(&format!("{base}/teams/alice/apps")).await?;
    b.wait_for_text("[data-test=apps-table]", "hello").await?;
    assert_eq!(
        b.count("[data-test=create-app]").await?,
        0,
        "no create form for viewers"
    );
    b.open(&format!("{base}/teams/alice/apps/hello")).await?;
    b.wait_for_text("[data-test=config-table]", "API_KEY")
        .await?;
    let table = b.wait_for("[data-test=config-table]").await?.text().await?;
    assert!(
        !table.contains("very-secret"),
        "values are masked for viewers: {table}"
    );
    assert_eq!(b.count("[data-test=add-config]").await?, 0);
    assert_eq!(
        b.count("[data-test=settings] button[type=submit]").await?,
        0
    );
    assert_eq!(b.count(".danger-zone").await?, 0);
    let readonly = b.wait_for("#replicas").await?.attr("readonly").await?;
    assert!(readonly.is_some(), "settings are read-only for viewers");

    // And the server refuses a direct write with the viewer's session.
    let status = b
        .client
        .execute(
            "return fetch('/api/v1/auth/csrf').then(r => r.json()).then(c =>
                fetch('/api/v1/teams/alice/apps/hello', {method: 'PATCH',
                    headers: {'content-type': 'application/json', 'x-csrf-token': c.csrf_token},
                    body: JSON.stringify({replicas: 7})})).then(r => r.status)",
            vec![],
        )
        .await?;
    assert_eq!(status, serde_json::json!(403));
    let replicas = b
        .client
        .execute(
            "return fetch('/api/v1/teams/alice/apps/hello').then(r => r.json()).then(a => a.replicas)",
            vec![],
        )
        .await?;
    assert_eq!(replicas, serde_json::json!(1), "nothing changed");
    b.client.clone().close().await?;
    Ok(())
}

#[tokio::test]
async fn tokens_page_shows_a_new_secret_once_and_revokes() -> anyhow::Result<()> {
    let stack = Stack::start().await?;
    let base = &stack.base;
    let b = Browser::start(1440, 900).await?;
    signup(&b, base, "carol@example.com").await?;
    b.open(&format!("{base}/tokens")).await?;
    b.wait_for_text(".empty", "No API tokens").await?;
    b.fill("#token-name", "ci").await?;
    b.click("[data-test=create-token] button[type=submit]")
        .await?;
    let secret = b
        .wait_for_text("[data-test=token-secret] code", "gnt_")
        .await?
        .text()
        .await?;
    b.wait_for_text("[data-test=tokens-table]", "ci").await?;

    // The secret works as a bearer token.
    let res = reqwest::Client::new()
        .get(format!("{base}/api/v1/teams/carol/apps"))
        .bearer_auth(secret.trim())
        .send()
        .await?;
    assert_eq!(res.status(), 200);

    // Reloading never shows it again; revoking ends it.
    b.open(&format!("{base}/tokens")).await?;
    b.wait_for_text("[data-test=tokens-table]", "ci").await?;
    assert_eq!(b.count("[data-test=token-secret]").await?, 0);
    b.click_text("[data-test=tokens-table] button", "Revoke")
        .await?;
    b.wait_for_text(".empty", "No API tokens").await?;
    let res = reqwest::Client::new()
        .get(format!("{base}/api/v1/teams/carol/apps"))
        .bearer_auth(secret.trim())
        .send()
        .await?;
    assert_eq!(res.status(), 401);
    b.client.clone().close().await?;
    Ok(())
}

/// The orchestrator's side of the dashboard: a platform admin sees the nodes, an app's URL,
/// instances, releases and rollout, and rolls back from the page; a member of a team sees the
/// instances and releases but neither the Nodes link nor the nodes (the server's refusal is shown
/// in place), and a viewer gets no Roll back.
#[tokio::test]
async fn nodes_instances_and_releases_show_their_states_and_an_admin_rolls_back(
) -> anyhow::Result<()> {
    use gantry_e2e::cluster::{
        docker_as, start_agent, start_server, Admin, DockerCleanup, CONVERGE, IMAGE,
    };
    use gantry_e2e::{data_dir, free_port, start_postgres, StopPostgresOnDrop};
    use serde_json::json;

    let dir = data_dir();
    let _postgres = StopPostgresOnDrop(dir.path().to_path_buf());
    let db_url = start_postgres(dir.path()).await?;
    let port = free_port();
    let base = &format!("http://127.0.0.1:{port}");
    let _server = start_server(&db_url, port, free_port()).await?;
    let admin = Admin::sign_up(base).await?;
    let _cleanup = DockerCleanup {
        team: admin.team.clone(),
    };
    let token = admin.post("/api/v1/nodes/join-tokens", json!({})).await?;
    let node = format!("web-{}", std::process::id());
    let token = token["token"].as_str().context("join token")?;
    let _agent = start_agent(base, token, &node, "a", dir.path())?;
    let apps = format!("/api/v1/teams/{}/apps", admin.team);
    admin
        .post(
            &apps,
            json!({"name": "hello", "port": 8888, "replicas": 2, "cpu_millis": 100,
                   "memory_mib": 32, "health_check_path": "/healthz"}),
        )
        .await?;
    admin
        .post(&format!("{apps}/hello/deploys"), json!({"image": IMAGE}))
        .await?;
    let ready = admin
        .wait_instances("hello", "2 ready replicas", |list| {
            list.len() == 2 && list.iter().all(|i| i["state"] == "ready")
        })
        .await?;
    let started = ready[0]["started_at"].as_str();
    // `2026-11-28T10:31:02.5Z` is shown as `2026-11-28 10:31:02`.
    let started_shown = started
        .and_then(|s| Some(format!("{} {}", s.get(..10)?, s.get(11..19)?)))
        .with_context(|| format!("a ready instance has an RFC 3339 start time: {ready:#?}"))?;
    admin.wait_release("hello", 1, "active", CONVERGE).await?;

    let b = Browser::start(1440, 900).await?;
    login(&b, base, &admin.email).await?;
    let shots = screenshot_dir();
    let page = format!("{base}/teams/{}/apps/hello", admin.team);

    // The app's page lists both instances, ready, on the node, of v1, with the deployed image
    // and the URL the router serves it at.
    b.open(&page).await?;
    let table = b
        .wait_for_text("[data-test=instances-table]", "ready")
        .await?;
    let text = table.text().await?;
    assert_eq!(text.matches("ready").count(), 2, "two ready rows: {text}");
    assert_eq!(text.matches("v1").count(), 2, "both run v1: {text}");
    assert_eq!(
        text.matches(node.as_str()).count(),
        2,
        "both on {node}: {text}"
    );
    assert!(text.contains("127.0.0.1:"), "endpoints shown: {text}");
    assert!(text.contains(&started_shown), "start time shown: {text}");
    b.wait_for_text("[data-test=image]", IMAGE).await?;
    let url = admin.get(&format!("{apps}/hello")).await?["url"]
        .as_str()
        .context("a web app has a URL")?
        .to_owned();
    let link = b.wait_for_text("[data-test=url] a", &url).await?;
    assert_eq!(link.attr("href").await?.as_deref(), Some(url.as_str()));
    assert_eq!(
        b.count("[data-test=instances-table] .badge[data-s=ready]")
            .await?,
        2
    );
    let instances_shot = b.screenshot(&shots, "app-instances").await?;

    // The Images section says how to push to the app's repository, and lists what was pushed
    // (a tag other than `latest`, so the push does not deploy).
    let repository = format!("127.0.0.1:{port}/{}/hello", admin.team);
    b.wait_for_text(
        "[data-test=push-commands]",
        &format!("docker push {repository}:latest"),
    )
    .await?;
    b.wait_for_text("[data-test=deploy-on-push]", "latest")
        .await?;
    let secret = admin
        .post(
            "/api/v1/tokens",
            json!({"name": "push", "team": admin.team, "role": "member"}),
        )
        .await?["secret"]
        .as_str()
        .context("token secret")?
        .to_owned();
    let docker_config = tempfile::tempdir()?;
    let pushed = format!("{repository}:candidate");
    docker_as(
        docker_config.path(),
        &[
            "login",
            &format!("127.0.0.1:{port}"),
            "-u",
            &admin.email,
            "--password-stdin",
        ],
        Some(&secret),
    )?;
    docker_as(docker_config.path(), &["tag", IMAGE, &pushed], None)?;
    let push = docker_as(docker_config.path(), &["push", &pushed], None);
    let _ = docker_as(docker_config.path(), &["rmi", &pushed], None);
    push?;
    b.click("[data-test=refresh]").await?;
    let images = b
        .wait_for_text("[data-test=images-table]", "candidate")
        .await?
        .text()
        .await?;
    // The hello image's manifest, config and compressed layer: about 600 kB.
    assert!(
        images.contains("sha256:") && images.contains(" kB"),
        "{images}"
    );
    // The apps page says what the team's images take.
    b.open(&format!("{base}/teams/{}/apps", admin.team)).await?;
    b.wait_for_text("[data-test=registry-usage]", "kB used")
        .await?;
    b.open(&page).await?;
    b.wait_for_text("[data-test=instances-table]", "ready")
        .await?;

    // Scaling shows on "Refresh" without reloading the page.
    admin.scale("hello", 3).await?;
    admin
        .wait_instances("hello", "3 ready replicas", |list| {
            list.len() == 3 && list.iter().all(|i| i["state"] == "ready")
        })
        .await?;
    b.click("[data-test=refresh]").await?;
    b.wait_for_count("[data-test=instances-table] .badge[data-s=ready]", 3)
        .await?;

    // A config var set on the page makes v2, which the page follows until it is active.
    b.fill("#config-key", "GREETING").await?;
    b.fill("#config-value", "hi").await?;
    b.click("[data-test=add-config] button[type=submit]")
        .await?;
    b.wait_for_text_within("[data-test=rollout]", "v2 active since", CONVERGE)
        .await?;
    let releases = "[data-test=releases-table] tbody tr";
    b.wait_for_text(releases, "active").await?;
    let rows = b.texts(releases).await?;
    assert_eq!(rows.len(), 2, "two releases: {rows:?}");
    for (row, want) in rows.iter().zip([
        ["v2", "Set GREETING", "active"],
        ["v1", "Deploy gantry-hello:latest", "superseded"],
    ]) {
        for want in want {
            assert!(row.contains(want), "{want:?} in {row:?}");
        }
        assert!(row.contains(&admin.email), "who made it: {row:?}");
    }
    // Roll back is offered on v1 only: v2 is the one that serves.
    let roll_back = "[data-test=releases-table] button";
    assert_eq!(b.texts(roll_back).await?, ["Roll back"]);
    assert_eq!(
        b.count(&format!("{releases}:nth-child(2) button")).await?,
        1
    );

    // Roll back to v1, confirming first: v3 "Rollback to v1" rolls out and becomes active, the
    // instances run it, and the config is v1's again (no GREETING).
    b.click_text(roll_back, "Roll back").await?;
    b.wait_for_text("[data-test=releases-table]", "Roll back to v1?")
        .await?;
    b.click_text(roll_back, "Confirm").await?;
    b.wait_for_text("[data-test=releases-table]", "Rollback to v1")
        .await?;
    b.wait_for_text_within("[data-test=rollout]", "v3 active since", CONVERGE)
        .await?;
    b.wait_for_text(releases, "Rollback to v1").await?;
    let rows = b.texts(releases).await?;
    assert_eq!(rows.len(), 3, "three releases: {rows:?}");
    assert!(
        rows[0].starts_with("v3") && rows[0].contains("active"),
        "{rows:?}"
    );
    assert!(rows[1].contains("superseded"), "{rows:?}");
    // The page stops reloading when the rollout ends, which may be while v2's instances are
    // still stopping; once they are gone, Refresh shows only v3's.
    admin
        .wait_instances("hello", "3 ready instances of v3 and no other", |list| {
            list.len() == 3
                && list
                    .iter()
                    .all(|i| i["state"] == "ready" && i["release"] == 3)
        })
        .await?;
    b.click("[data-test=refresh]").await?;
    b.wait_for_count("[data-test=instances-table] tbody tr", 3)
        .await?;
    let text = b
        .wait_for("[data-test=instances-table]")
        .await?
        .text()
        .await?;
    assert_eq!(text.matches("v3").count(), 3, "all run v3: {text}");
    b.wait_for_text(
        "section[aria-labelledby=config-title] .empty",
        "No config vars",
    )
    .await?;
    let release = admin.get(&format!("{apps}/hello/releases/3")).await?;
    assert_eq!(release["rollback_of"], json!(1), "{release}");
    b.client
        .execute(
            "document.getElementById('releases-title').scrollIntoView()",
            vec![],
        )
        .await?;
    let releases_shot = b.screenshot(&shots, "app-releases").await?;
    // At phone width the tables scroll sideways instead of squeezing.
    b.client.set_window_size(360, 800).await?;
    b.screenshot(&shots, "app-releases-phone").await?;
    b.client.set_window_size(1440, 900).await?;

    // The admin reaches the nodes from the header: the node, ready, with its instances and zone.
    b.click_text("header nav a", "Nodes").await?;
    b.wait_for_path(|p| p == "/nodes").await?;
    let row = b.wait_for_text("[data-test=nodes-table]", &node).await?;
    let text = row.text().await?;
    assert!(text.contains("ready"), "node status shown: {text}");
    assert!(text.contains("zone=a"), "labels shown: {text}");
    let nodes_shot = b.screenshot(&shots, "nodes").await?;
    println!(
        "screenshots: {}, {} and {}",
        instances_shot.display(),
        releases_shot.display(),
        nodes_shot.display()
    );

    // Someone who is not a platform admin: no Nodes link, and /nodes says why it is empty.
    logout(&b).await?;
    signup(&b, base, "dave@example.com").await?;
    b.wait_for("header nav a").await?;
    assert!(
        !b.page_text().await.contains("Nodes"),
        "no Nodes link for a non-admin"
    );
    b.open(&format!("{base}/nodes")).await?;
    b.wait_for_text(".error", "platform admin").await?;

    // Dave joins the team as a member: he sees the releases and may roll back to v1 or v2.
    let member = admin
        .post(
            &format!("/api/v1/teams/{}/members", admin.team),
            json!({"email": "dave@example.com", "role": "member"}),
        )
        .await?;
    let dave = member["user_id"].as_str().context("member's user id")?;
    b.open(&page).await?;
    b.wait_for_text(releases, "Rollback to v1").await?;
    b.wait_for_count(roll_back, 2).await?;
    // Made a viewer while his page is open, his click is refused, and the page says why.
    admin
        .patch(
            &format!("/api/v1/teams/{}/members/{dave}", admin.team),
            json!({"role": "viewer"}),
        )
        .await?;
    b.click_text(roll_back, "Roll back").await?;
    b.click_text(roll_back, "Confirm").await?;
    b.wait_for_text(
        "section[aria-labelledby=releases-title] .error",
        "does not allow",
    )
    .await?;
    // On his next visit, as a viewer, he sees the releases and the rollout but no Roll back.
    b.open(&page).await?;
    b.wait_for_text(releases, "Rollback to v1").await?;
    b.wait_for_text("[data-test=rollout]", "v3 active").await?;
    // Controls show once the session has loaded, which the header's e-mail tells.
    b.wait_for_text("[data-test=user-email]", "dave@example.com")
        .await?;
    b.wait_for("#replicas[readonly]").await?;
    assert_eq!(b.count(roll_back).await?, 0, "no Roll back for a viewer");
    assert_eq!(b.count("[data-test=releases-table] tbody tr").await?, 3);
    b.client.clone().close().await?;
    Ok(())
}

#[tokio::test]
async fn the_live_log_view_follows_pauses_filters_and_searches() -> anyhow::Result<()> {
    use gantry_e2e::cluster::{start_agent, start_server, Admin, DockerCleanup, CONVERGE, IMAGE};
    use gantry_e2e::{data_dir, free_port, start_postgres, StopPostgresOnDrop};
    use serde_json::json;
    use std::time::Duration;

    let dir = data_dir();
    let _postgres = StopPostgresOnDrop(dir.path().to_path_buf());
    let db_url = start_postgres(dir.path()).await?;
    let (port, router_port) = (free_port(), free_port());
    let base = &format!("http://127.0.0.1:{port}");
    let _server = start_server(&db_url, port, router_port).await?;
    let admin = Admin::sign_up(base).await?;
    let _cleanup = DockerCleanup {
        team: admin.team.clone(),
    };
    let token = admin.post("/api/v1/nodes/join-tokens", json!({})).await?;
    let token = token["token"].as_str().context("join token")?;
    let node = format!("logs-{}", std::process::id());
    let _agent = start_agent(base, token, &node, "a", dir.path())?;
    let apps = format!("/api/v1/teams/{}/apps", admin.team);
    admin
        .post(
            &apps,
            json!({"name": "chatty", "port": 8888, "replicas": 1, "cpu_millis": 100,
                   "memory_mib": 32, "health_check_path": "/healthz"}),
        )
        .await?;
    // Ten numbered lines a second for as long as the test runs.
    admin
        .patch(
            &format!("{apps}/chatty/config"),
            json!({"vars": {"LOG_LINES": "100000", "LOG_INTERVAL_MS": "100"}}),
        )
        .await?;
    admin
        .post(&format!("{apps}/chatty/deploys"), json!({"image": IMAGE}))
        .await?;

    let b = Browser::start(1440, 900).await?;
    login(&b, base, &admin.email).await?;
    b.open(&format!("{base}/teams/{}/apps/chatty", admin.team))
        .await?;
    b.click("[data-test=logs-link]").await?;
    b.wait_for_path(|p| p.ends_with("/apps/chatty/logs"))
        .await?;
    b.wait_for_text("[data-test=stream-status]", "live").await?;

    // The stream follows: the deploy's event (set apart), then numbered lines as they come.
    b.wait_for_text_within(
        ".log .logline[data-s=event]",
        "release v1 created",
        CONVERGE,
    )
    .await?;
    b.wait_for_text_within("[data-test=log]", "line 5", CONVERGE)
        .await?;
    let lines = "[data-test=log] .logline[data-s=stdout]";
    let before = b.count(lines).await?;
    tokio::time::sleep(Duration::from_millis(800)).await;
    let after = b.count(lines).await?;
    assert!(after > before, "new lines arrive: {before} then {after}");
    let shot = b.screenshot(&screenshot_dir(), "app-logs").await?;
    println!("screenshot: {}", shot.display());

    // Paused, the view holds new lines back and counts them; resumed, it shows them.
    b.click("[data-test=pause]").await?;
    let paused_at = b.count(lines).await?;
    b.wait_for_text("[data-test=held]", "new lines held while paused")
        .await?;
    assert_eq!(
        b.count(lines).await?,
        paused_at,
        "nothing added while paused"
    );
    b.click_text("[data-test=pause]", "Resume").await?;
    b.wait_for("[data-test=log]").await?;
    let resumed = b.count(lines).await?;
    assert!(
        resumed > paused_at,
        "held lines shown: {paused_at} then {resumed}"
    );

    // A text filter reopens the stream with it: every line shown matches.
    b.fill("#log-text", "line 2").await?;
    b.click("[data-test=log-filter] button[type=submit]")
        .await?;
    b.wait_for_text("[data-test=stream-status]", "live").await?;
    b.wait_for_text_within("[data-test=log]", "line 2", CONVERGE)
        .await?;
    let shown = b.texts(&format!("{lines} .text")).await?;
    assert!(
        !shown.is_empty() && shown.iter().all(|l| l.contains("line 2")),
        "only matching lines: {shown:?}"
    );

    // The history search finds a line written earlier.
    b.fill("#log-search", "line 3").await?;
    b.click("[data-test=log-search] button[type=submit]")
        .await?;
    b.wait_for_text("[data-test=log-found]", "line 3").await?;
    let found = b.texts("[data-test=log-found] .logline .text").await?;
    assert!(
        !found.is_empty() && found.iter().all(|l| l.contains("line 3")),
        "search results: {found:?}"
    );

    // The app's page charts its metrics live: requests through the router, and the
    // instance's CPU and memory, for v1.
    let host = format!("chatty.{}.localhost", admin.team);
    let router: std::net::SocketAddr = ([127, 0, 0, 1], router_port).into();
    let client = reqwest::Client::builder()
        .resolve(&host, router)
        .timeout(Duration::from_secs(5))
        .build()?;
    admin.wait_release("chatty", 1, "active", CONVERGE).await?;
    // Until the charts are checked (then aborted): the legend shows the newest point's figure.
    // What the requests got, for the failure message: 2xx answers, others, errors.
    let outcomes = std::sync::Arc::new(std::sync::Mutex::new((0u32, 0u32, String::new())));
    let seen = outcomes.clone();
    let load = tokio::spawn(async move {
        loop {
            let answer = client
                .get(format!("http://{host}:{router_port}/"))
                .send()
                .await;
            {
                let mut o = seen.lock().expect("not poisoned");
                match answer {
                    Ok(r) if r.status().is_success() => o.0 += 1,
                    Ok(r) => {
                        o.1 += 1;
                        o.2 = r.status().to_string();
                    }
                    Err(e) => o.2 = e.to_string(),
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
    b.open(&format!("{base}/teams/{}/apps/chatty", admin.team))
        .await?;
    b.wait_for_text("[data-test=metrics-status]", "live")
        .await?;
    for chart in ["chart-cpu", "chart-memory", "chart-requests"] {
        b.wait_for_text_within(&format!("[data-test={chart}] figcaption"), "v1", CONVERGE)
            .await?;
    }
    b.wait_for("[data-test=chart-requests] polyline[data-release='1']")
        .await?;
    // Requests/s shows a non-zero figure once a step with traffic arrives, memory a figure
    // once the agent reported the instance twice.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let requests = b.texts("[data-test=chart-requests] .legend").await?;
        let memory = b.texts("[data-test=chart-memory] .legend").await?;
        let shown = |legend: &[String]| {
            legend
                .iter()
                .any(|l| l.starts_with("v1 ") && l != "v1 0" && l != "v1 –")
        };
        if shown(&requests) && shown(&memory) {
            break;
        }
        if std::time::Instant::now() > deadline {
            let routes = admin.get(&format!("{apps}/chatty/routes")).await?;
            let (ok, other, last) = outcomes.lock().expect("not poisoned").clone();
            panic!(
                "no figures: requests {requests:?}, memory {memory:?}; the load got {ok} \
                 successes, {other} other answers (last error: {last}); the routes: {routes}"
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let shot = b.screenshot(&screenshot_dir(), "app-metrics").await?;
    println!("screenshot: {}", shot.display());
    load.abort();

    // The nodes page shows what the node's instances use, live: its stream is open.
    b.open(&format!("{base}/nodes")).await?;
    b.wait_for_text("[data-test=nodes-status]", "live").await?;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let row = b
            .wait_for_text("[data-test=nodes-table]", &node)
            .await?
            .text()
            .await?;
        if !row.contains('–') {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no usage on the nodes page: {row}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    Ok(())
}

/// Progressive delivery from the app page, against a real server and agent: an admin sets a
/// canary strategy through the form (a bad one refused in place with the server's message), a
/// config change makes v2, and the rollout panel follows it live to 50 % at the indefinite pause,
/// waiting for promote; pause and resume, then Promote makes v2 active. The autoscaling form sets
/// a policy (a bad one refused in place) that the page then shows, and turns it off. A viewer
/// watching the same page sees the panel follow the rollout too, without action buttons or
/// forms.
#[tokio::test]
async fn an_admin_sets_a_canary_follows_it_live_and_promotes_it_while_a_viewer_watches(
) -> anyhow::Result<()> {
    use gantry_e2e::cluster::{CONVERGE, IMAGE};
    use gantry_e2e::stage::Stage;
    use serde_json::json;

    let stage = Stage::start("canary", 1).await?;
    let (base, admin, router_port) = (&stage.base, &stage.admin, stage.router_port);
    let apps = stage.apps_path();
    admin
        .post(
            &apps,
            json!({"name": "web", "port": 8888, "replicas": 2, "cpu_millis": 100,
                   "memory_mib": 32, "health_check_path": "/healthz"}),
        )
        .await?;
    admin
        .post(&format!("{apps}/web/deploys"), json!({"image": IMAGE}))
        .await?;
    // Another user, a viewer of the team.
    let viewer = "vera@example.com";
    reqwest::Client::new()
        .post(format!("{base}/api/v1/auth/signup"))
        .json(&json!({"email": viewer, "password": PASSWORD}))
        .send()
        .await?
        .error_for_status()?;
    admin
        .post(
            &format!("/api/v1/teams/{}/members", admin.team),
            json!({"email": viewer, "role": "viewer"}),
        )
        .await?;
    admin.wait_release("web", 1, "active", CONVERGE).await?;

    let b = Browser::start(1440, 900).await?;
    login(&b, base, &admin.email).await?;
    let shots = screenshot_dir();
    let page = format!("{base}/teams/{}/apps/web", admin.team);
    b.open(&page).await?;
    b.wait_for_text("#rollout-stream", "live").await?;
    b.wait_for_text("#rollout-status", "v1 active").await?;
    b.wait_for_text("#rollout-strategy", "rolling").await?;
    assert_eq!(b.count("#rollout-actions").await?, 0, "nothing to act on");

    // The strategy form: a canary. The server refuses a weight over 100, and the form says why.
    b.click("#strategy-kind").await?;
    b.click("#strategy-kind option[value=canary]").await?;
    b.fill("#strategy-steps", "150, pause").await?;
    b.click("#strategy-form button[type=submit]").await?;
    b.wait_for_text("#strategy-form .error", "set_weight must be a percent")
        .await?;
    b.fill("#strategy-steps", "50, pause").await?;
    b.fill("#strategy-max-errors", "50").await?;
    b.click("#strategy-form button[type=submit]").await?;
    b.wait_for_text("#strategy-form .ok", "Saved").await?;
    assert_eq!(b.count("#strategy-form .error").await?, 0);
    let strategy = admin.get(&format!("{apps}/web")).await?["strategy"].clone();
    assert_eq!(
        strategy,
        json!({"kind": "canary", "steps": [{"set_weight": 50}, {"pause_seconds": null}],
               "analysis": {"max_error_percent": 50.0, "max_p99_ms": null, "window_seconds": 10,
                            "min_requests": 20},
               "sticky": false})
    );

    // The viewer opens the page before the release.
    let v = Browser::start(1440, 900).await?;
    login(&v, base, viewer).await?;
    v.open(&page).await?;
    v.wait_for_text("#rollout-stream", "live").await?;
    v.wait_for_text("#rollout-status", "v1 active").await?;

    // A config var set on the page makes v2: the panel follows its canary without a reload.
    b.fill("#config-key", "GREETING").await?;
    b.fill("#config-value", "hello canary").await?;
    b.click("[data-test=add-config] button[type=submit]")
        .await?;
    b.wait_for_text_within("#rollout-weight", "v2 50 % / v1 50 %", CONVERGE)
        .await?;
    b.wait_for_text_within("#rollout-waiting", "promote", CONVERGE)
        .await?;
    b.wait_for_text("#rollout-status", "v2 (from v1) rolling_out")
        .await?;
    b.wait_for_text("#rollout-strategy", "canary").await?;
    b.wait_for_text(
        "#rollout-steps li[aria-current=step]",
        "pause until promoted",
    )
    .await?;
    assert_eq!(b.count("#rollout-steps li.done").await?, 1, "50 % done");
    for button in [
        "#rollout-promote",
        "#rollout-promote-full",
        "#rollout-pause",
    ] {
        b.wait_for(button).await?;
    }
    assert_eq!(b.count("#rollout-resume").await?, 0);
    // Under some traffic through the router, the analysis shows the canary's figures beside
    // the stable release's, and its verdict.
    let host = format!("web.{}.localhost", admin.team);
    let client = reqwest::Client::builder()
        .resolve(&host, ([127, 0, 0, 1], router_port).into())
        .timeout(std::time::Duration::from_secs(5))
        .build()?;
    let load = tokio::spawn(async move {
        loop {
            let _ = client
                .get(format!("http://{host}:{router_port}/"))
                .send()
                .await;
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    });
    let verdict = b
        .wait_for_text_within("#rollout-verdict", ": ok", CONVERGE)
        .await;
    // Read at once: the panel is redrawn with every new figure.
    let analysis: Vec<String> = serde_json::from_value(
        b.client
            .execute(
                "return [...document.querySelectorAll('[data-test=rollout-analysis] tbody tr')]
                    .map(row => row.innerText)",
                vec![],
            )
            .await?,
    )?;
    load.abort();
    verdict?;
    assert_eq!(analysis.len(), 3, "canary, stable, limits: {analysis:?}");
    for (row, want) in analysis.iter().zip(["canary v2", "stable v1", "limits"]) {
        assert!(row.starts_with(want), "{want:?}: {analysis:?}");
    }
    assert!(analysis[2].contains("50 %"), "{analysis:?}");
    b.client
        .execute(
            "document.getElementById('rollout').scrollIntoView()",
            vec![],
        )
        .await?;
    let canary_shot = b.screenshot(&shots, "app-rollout-canary").await?;

    // The viewer's page followed too, and offers nothing to act with.
    v.wait_for_text_within("#rollout-weight", "v2 50 % / v1 50 %", CONVERGE)
        .await?;
    v.wait_for_text("#rollout-waiting", "promote").await?;
    // Controls show once the session has loaded, which the header's e-mail tells.
    v.wait_for_text("[data-test=user-email]", viewer).await?;
    v.wait_for("#strategy-kind[disabled]").await?;
    assert_eq!(
        v.count("#rollout-actions").await?,
        0,
        "no actions: {}",
        v.page_text().await
    );
    assert_eq!(v.count("#rollout button").await?, 0);
    assert_eq!(v.count("#strategy-form button[type=submit]").await?, 0);
    assert_eq!(v.count("#autoscaling-form").await?, 0);
    v.client
        .execute(
            "document.getElementById('rollout').scrollIntoView()",
            vec![],
        )
        .await?;
    let viewer_shot = v.screenshot(&shots, "app-rollout-viewer").await?;

    // Pause, then resume: the panel says so and swaps the buttons.
    b.click("#rollout-pause").await?;
    b.wait_for("#rollout-resume").await?;
    b.wait_for_text("#rollout-status", "paused").await?;
    b.wait_for_text("#rollout-waiting", "(paused)").await?;
    b.click("#rollout-resume").await?;
    b.wait_for("#rollout-pause").await?;

    // Promote: the canary ends its pause, v2 takes all the traffic and becomes active.
    b.click("#rollout-promote").await?;
    b.wait_for_text_within("#rollout-status", "v2 (from v1) active", CONVERGE)
        .await?;
    b.wait_for_text("#rollout-history", "promote").await?;
    assert_eq!(
        b.count("#rollout-actions").await?,
        0,
        "nothing left to act on"
    );
    admin.wait_release("web", 2, "active", CONVERGE).await?;
    b.wait_for_text_within("[data-test=rollout]", "v2 active since", CONVERGE)
        .await?;
    v.wait_for_text_within("#rollout-status", "v2 (from v1) active", CONVERGE)
        .await?;

    // Autoscaling: off at first; a policy the server refuses says why; a good one is shown.
    b.wait_for_text("#autoscaling-policy", "off").await?;
    b.wait_for_text("#autoscaling-replicas", "2").await?;
    b.fill("#autoscaling-min", "3").await?;
    b.fill("#autoscaling-max", "2").await?;
    b.click("#autoscaling-form button[type=submit]").await?;
    b.wait_for_text(
        "#autoscaling-form .error",
        "min (3) must not exceed max (2)",
    )
    .await?;
    b.fill("#autoscaling-min", "2").await?;
    b.fill("#autoscaling-max", "4").await?;
    b.fill("#autoscaling-cpu", "60").await?;
    b.fill("#autoscaling-rps", "12.5").await?;
    b.fill("#autoscaling-stabilization", "120").await?;
    b.click("#autoscaling-form button[type=submit]").await?;
    b.wait_for_text(
        "#autoscaling-policy",
        "2 to 4 replicas, aiming at 60 % CPU and 12.5 requests/s per instance; \
         scales down after 120 s",
    )
    .await?;
    assert_eq!(b.count("#autoscaling-form .error").await?, 0);
    let policy = admin.get(&format!("{apps}/web/autoscaling")).await?["policy"].clone();
    assert_eq!(
        policy,
        json!({"min": 2, "max": 4, "target_cpu_percent": 60, "target_rps_per_instance": 12.5,
               "scale_down_stabilization_seconds": 120})
    );
    b.client
        .execute(
            "document.getElementById('autoscaling').scrollIntoView()",
            vec![],
        )
        .await?;
    let autoscaling_shot = b.screenshot(&shots, "app-autoscaling").await?;
    // The viewer sees the policy too.
    v.open(&page).await?;
    v.wait_for_text("#autoscaling-policy", "2 to 4 replicas")
        .await?;
    // Turned off from the page.
    b.click("#autoscaling-off").await?;
    b.wait_for_text("#autoscaling-policy", "off").await?;
    assert_eq!(
        admin.get(&format!("{apps}/web/autoscaling")).await?["policy"],
        json!(null)
    );
    println!(
        "screenshots: {}, {} and {}",
        canary_shot.display(),
        viewer_shot.display(),
        autoscaling_shot.display()
    );
    v.client.clone().close().await?;
    b.client.clone().close().await?;
    Ok(())
}

/// Deploying with `git push`, seen from the dashboard (issue 12): the app page links to its
/// builds page, which shows the app's git remote with the commands to copy and the build
/// settings; a build arg set there is shown by name only. A push from the real git CLI makes
/// build 1 appear in the list without a reload; its page follows the log live while it runs
/// (with Cancel for a member), then shows `succeeded`, the release it made and the stored log,
/// which never holds the build arg's value.
#[tokio::test]
async fn a_push_shows_up_as_a_build_with_a_live_log() -> anyhow::Result<()> {
    use gantry_e2e::cluster::CONVERGE;
    use gantry_e2e::git::{remote_url, RemoveBuiltImages, Repo};
    use gantry_e2e::stage::Stage;
    use serde_json::json;

    const SECRET_VALUE: &str = "s3cr3t-build-arg";

    // Drops after the stage: untags what the build left in the engine.
    let mut built = RemoveBuiltImages::default();
    let stage = Stage::start("gitdash", 1).await?;
    built.prefix = Some(format!("127.0.0.1:{}/{}/", stage.port, stage.admin.team));
    let (base, admin) = (&stage.base, &stage.admin);
    admin
        .post(
            &stage.apps_path(),
            json!({"name": "web", "port": 8888, "replicas": 1, "cpu_millis": 100,
                   "memory_mib": 32, "health_check_path": "/healthz"}),
        )
        .await?;
    let token = admin
        .post(
            "/api/v1/tokens",
            json!({"name": "git", "team": admin.team, "role": "member"}),
        )
        .await?;
    let secret = token["secret"].as_str().context("token secret")?;

    let b = Browser::start(1440, 900).await?;
    login(&b, base, &admin.email).await?;
    let shots = screenshot_dir();
    b.open(&format!("{base}/teams/{}/apps/web", admin.team))
        .await?;
    b.click("[data-test=builds-link]").await?;
    let builds_path = format!("/teams/{}/apps/web/builds", admin.team);
    b.wait_for_path(|p| p == builds_path).await?;

    // The remote and what to type, with the credentials git will ask for.
    let remote_path = format!("/git/{}/web.git", admin.team);
    b.wait_for_text("#git-remote", &remote_path).await?;
    let commands = b
        .wait_for_text("#git-commands", "git push gantry main")
        .await?;
    assert!(
        commands
            .text()
            .await?
            .starts_with("git remote add gantry http"),
        "{}",
        commands.text().await?
    );
    b.wait_for_text("#git-credentials", "API token").await?;
    b.wait_for_text(".empty", "No builds yet").await?;

    // Build settings: a bad branch is refused in place; a build arg is shown by name only.
    b.wait_for_text("[data-test=user-email]", &admin.email)
        .await?;
    b.fill("#build-branch", "a..b").await?;
    b.click("#build-settings button[type=submit]").await?;
    b.wait_for("#build-settings .error").await?;
    b.fill("#build-branch", "main").await?;
    b.fill("#build-args", &format!("GREETING_ARG={SECRET_VALUE}"))
        .await?;
    b.click("#build-settings button[type=submit]").await?;
    b.wait_for_text("#build-settings .ok", "Saved").await?;
    b.wait_for_text("#build-arg-names", "GREETING_ARG").await?;
    assert_eq!(b.count("#build-settings .error").await?, 0);
    let settings = admin
        .get(&format!("{}/build-settings", stage.app_path("web")))
        .await?;
    assert_eq!(settings["build_arg_names"], json!(["GREETING_ARG"]));
    assert!(!b.page_text().await.contains(SECRET_VALUE));
    b.client.execute("window.scrollTo(0, 0)", vec![]).await?;
    let builds_shot = b.screenshot(&shots, "app-builds").await?;

    // A push: the build checks that the arg arrived, and takes a few seconds (a `scratch`
    // image has no shell: the hello binary is the build's tool). The mark makes this run's
    // steps new to the engine's build cache, so the build is not over at once.
    let mark = format!(
        "{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_nanos()
    );
    let repo = Repo::with_hello(&format!(
        "ENV BUILD_MARK={mark}\nARG GREETING_ARG\n\
         RUN [\"/hello\", \"require-env\", \"GREETING_ARG\"]\n\
         RUN [\"/hello\", \"sleep\", \"8\"]"
    ))?;
    let commit = repo.commit("first")?;
    let remote = remote_url(base, &admin.email, secret, &admin.team, "web");
    let mut push = repo.spawn_push(&remote, "main", gantry_e2e::git::PUSH_TIMEOUT);

    let row = "[data-test=builds-table] tr[data-build='1']";
    let journey = async {
        // Build 1 appears without a reload, and its page follows it live.
        b.wait_for_text_within(row, &commit[..12], CONVERGE).await?;
        b.click(&format!("{row} a")).await?;
        b.wait_for_path(|p| p == format!("{builds_path}/1")).await?;
        b.wait_for_text("#build-stream", "live").await?;
        b.wait_for("#build-cancel").await?;
        b.wait_for_text("#build-commit", &commit[..12]).await?;
        b.wait_for_text("#build-branch", "main").await?;
        b.wait_for_text("#build-by", &admin.email).await?;
        b.wait_for_text_within("#build-status", "running", CONVERGE)
            .await?;
        // A line has arrived.
        b.wait_for_text_within("#build-log .logline", "", CONVERGE)
            .await?;
        let live_shot = b.screenshot(&shots, "app-build-live").await?;

        // The outcome, without a reload: the stored log replaces the stream's.
        b.wait_for_text_within("#build-status", "succeeded", 3 * CONVERGE)
            .await?;
        b.wait_for_text("#build-release", "v1").await?;
        b.wait_for_count("#build-cancel", 0).await?;
        assert_eq!(
            b.texts("#build-stream").await?,
            [""],
            "the stream is closed"
        );
        assert!(b.count("#build-log .logline").await? > 0);
        let log = b.texts("#build-log").await?.concat();
        assert!(
            !log.contains(SECRET_VALUE),
            "a build arg's value in the log"
        );
        let done_shot = b.screenshot(&shots, "app-build-succeeded").await?;

        let out = (&mut push).await??;
        assert!(out.success(), "{out}");
        assert!(out.text().contains("=== build 1 succeeded"), "{out}");

        // The list says so too.
        b.click_text(".crumbs a", "Builds").await?;
        b.wait_for_text(&format!("{row} .badge"), "succeeded")
            .await?;
        b.wait_for_text(row, "v1").await?;
        anyhow::Ok((live_shot, done_shot))
    };
    let (live_shot, done_shot) = match journey.await {
        Ok(shots) => shots,
        // Say what the API and the push say, to tell a page that did not follow from a build
        // that did not finish.
        Err(e) => {
            let api = admin
                .get(&format!("{}/builds/1", stage.app_path("web")))
                .await
                .unwrap_or_default();
            let log: Vec<&str> = api["log"]
                .as_array()
                .map(|lines| lines.iter().filter_map(|l| l["line"].as_str()).collect())
                .unwrap_or_default();
            push.abort();
            let out = match push.await {
                Ok(Ok(out)) => out.to_string(),
                Ok(Err(e)) => e.to_string(),
                Err(_) => "(still running: aborted)".into(),
            };
            let _ = b.screenshot(&shots, "app-build-failed").await;
            anyhow::bail!(
                "{e}\nthe API's build 1: {}\nits log:\n{}\nthe push: {out}",
                api["build"],
                log.join("\n")
            );
        }
    };
    println!(
        "screenshots: {}, {} and {}",
        builds_shot.display(),
        live_shot.display(),
        done_shot.display()
    );
    b.client.clone().close().await?;
    stage.shutdown().await;
    Ok(())
}
