//! The dashboard in real headless Chromium against a real server and Postgres: the journeys a
//! newcomer makes, tenant isolation, and what a viewer can (not) do.

use gantry_e2e::browser::{screenshot_dir, Browser, Stack};

const PASSWORD: &str = "correct horse battery";

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
    b.wait_for_text(".empty", "No config vars").await?;
    b.fill("#config-key", "DATABASE_URL").await?;
    b.fill("#config-value", "postgres://db/app").await?;
    b.click("[data-test=add-config] button[type=submit]")
        .await?;
    b.wait_for_text("[data-test=config-table]", "postgres://db/app")
        .await?;
    // Settings save.
    b.fill("#replicas", "3").await?;
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
