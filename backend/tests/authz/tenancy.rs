//! Cross-tenant isolation: another tenant's team, apps and members are invisible (404, never 403)
//! to sessions and tokens that do not belong to that team, and trying changes nothing. The
//! routes tried are every team operation of the OpenAPI document.

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::common::{assert_error, create_team, json_ok, slugs, Caller};
use crate::support::document::{document, Route};
use crate::support::{TestApp, TestUser};

const CONFIG_SECRET: &str = "hunter2-do-not-leak";

/// Alice's team (her personal one) with app `secret-app`, deployed twice (releases 1 and 2),
/// with a config var and a build; alice also owns a second team, `alice-side`. Bob has only his own team.
struct Tenants {
    app: TestApp,
    alice: TestUser,
    bob: TestUser,
}

async fn tenants() -> Tenants {
    let app = TestApp::spawn().await;
    let alice = app.signup("alice@example.com").await;
    let bob = app.signup("bob@example.com").await;
    assert_ne!(alice.team, bob.team);
    create_team(&alice, "alice-side").await;
    alice.create_app(&alice.team, "secret-app").await;
    let res = alice
        .put(
            &format!("/api/v1/teams/{}/apps/secret-app/config", alice.team),
            json!({"vars": {"SECRET": CONFIG_SECRET}}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    for image in ["gantry-hello:1", "gantry-hello:2"] {
        alice.deploy(&alice.team, "secret-app", image).await;
    }
    // Build 1 of the app, as a failed push leaves it (a real push needs git and an engine:
    // the e2e suite), so the build routes have something to hide.
    sqlx::query(
        "INSERT INTO builds (team_id, app_id, number, status, commit_id, branch, dockerfile,
             actor, finished_at)
         SELECT team_id, id, 1, 'failed', repeat('a', 40), 'main', 'Dockerfile', 'alice', now()
         FROM apps WHERE name = 'secret-app' AND team_id = (SELECT id FROM teams WHERE slug = $1)",
    )
    .bind(&alice.team)
    .execute(&app.db)
    .await
    .expect("seed a build");
    // Bob has an app of the same name, so a 404 cannot come from a missing name alone.
    bob.create_app(&bob.team, "secret-app").await;
    Tenants { app, alice, bob }
}

/// Every team operation of the OpenAPI document, aimed at `team`'s app, its release 1 and
/// `victim`'s membership (and, for member routes, at `intruder`'s own, which it tries to make
/// owner), with the most forceful body the document allows (see `Operation::sample_body`).
fn routes_of(
    team: &str,
    victim: &TestUser,
    intruder: &TestUser,
) -> Vec<(Method, String, Option<Value>)> {
    let mut routes = Vec::new();
    for op in document().operations() {
        if !op.template.contains("{team}") {
            continue;
        }
        let body = op.sample_body(&[("email", json!(intruder.email))]);
        let targets = if op.template.contains("{user_id}") {
            vec![victim, intruder]
        } else {
            vec![victim]
        };
        for target in targets {
            let path = op.path_with(|name| match name {
                "team" => team.to_owned(),
                "app" => "secret-app".to_owned(),
                "version" | "id" | "number" => "1".to_owned(),
                "user_id" => target.id.to_string(),
                other => panic!("{}: no value for {{{other}}}", op.describe()),
            });
            routes.push((op.method.clone(), path, body.clone()));
        }
    }
    assert!(routes.len() > 20, "{} team routes", routes.len());
    routes
}

/// Sends every route of alice's team as `caller`: all 404 `not_found`, nothing leaks, nothing
/// changes.
async fn assert_team_invisible(w: &Tenants, caller: &Caller<'_>, team: &str) {
    let held = w.app.hold_controllers().await;
    let before = w.app.snapshot().await;
    for (method, path, body) in routes_of(team, &w.alice, &w.bob) {
        let context = format!("{} {method} {path}", caller.describe());
        let res = caller.send(method, &path, body).await;
        let message = assert_error(res, StatusCode::NOT_FOUND, "not_found", &context).await;
        assert!(!message.contains(CONFIG_SECRET), "{context}: {message}");
    }
    assert_eq!(w.app.snapshot().await, before, "{}", caller.describe());
    held.release().await;
    // Alice still reads her app's config, value included.
    let config = json_ok(
        w.alice
            .get(&format!("/api/v1/teams/{team}/apps/secret-app/config"))
            .await,
        StatusCode::OK,
        "alice reads her config",
    )
    .await;
    assert_eq!(config["vars"][0]["value"], CONFIG_SECRET);
}

#[tokio::test]
async fn a_session_of_another_tenant_gets_404_on_every_route_of_the_team_and_changes_nothing() {
    let w = tenants().await;
    assert_team_invisible(&w, &Caller::Session(&w.bob), &w.alice.team).await;
}

#[tokio::test]
async fn an_owner_token_of_another_tenants_team_gets_404_on_every_route_of_the_team() {
    let w = tenants().await;
    let token = w.bob.token(&w.bob.team, "owner").await;
    let caller = Caller::token(&w.app, &token);
    // The token works on its own team: the 404s below are about the team, not the token.
    let res = caller
        .get(&format!("/api/v1/teams/{}/apps/secret-app", w.bob.team))
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_team_invisible(&w, &caller, &w.alice.team).await;
}

#[tokio::test]
async fn a_token_of_the_owners_other_team_gets_404_on_this_team() {
    let w = tenants().await;
    let token = w.alice.token("alice-side", "owner").await;
    let caller = Caller::token(&w.app, &token);
    let res = caller.get("/api/v1/teams/alice-side/apps").await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_team_invisible(&w, &caller, &w.alice.team).await;
}

#[tokio::test]
async fn another_tenants_team_is_indistinguishable_from_a_team_that_does_not_exist() {
    let w = tenants().await;
    for path in ["", "/apps/secret-app", "/members"] {
        let theirs = w
            .bob
            .get(&format!("/api/v1/teams/{}{path}", w.alice.team))
            .await;
        let theirs =
            assert_error(theirs, StatusCode::NOT_FOUND, "not_found", "existing team").await;
        let missing = w
            .bob
            .get(&format!("/api/v1/teams/no-such-team{path}"))
            .await;
        let missing =
            assert_error(missing, StatusCode::NOT_FOUND, "not_found", "missing team").await;
        assert_eq!(
            theirs.replace(&w.alice.team, "no-such-team"),
            missing,
            "{path}"
        );
    }
}

#[tokio::test]
async fn the_team_lists_and_me_of_another_tenant_do_not_mention_the_team() {
    let w = tenants().await;
    let token = w.bob.token(&w.bob.team, "owner").await;
    for caller in [Caller::Session(&w.bob), Caller::token(&w.app, &token)] {
        let who = caller.describe();
        let teams = json_ok(caller.get("/api/v1/teams").await, StatusCode::OK, &who).await;
        assert_eq!(slugs(&teams), [w.bob.team.as_str()], "{who}: /teams");
        let me = json_ok(caller.get("/api/v1/me").await, StatusCode::OK, &who).await;
        assert_eq!(slugs(&me["teams"]), [w.bob.team.as_str()], "{who}: /me");
        assert_eq!(me["user"]["email"], "bob@example.com");
    }
    // Alice's own list has both her teams, so the lists above are not just always short.
    let teams = json_ok(w.alice.get("/api/v1/teams").await, StatusCode::OK, "alice").await;
    let mut expected = vec![w.alice.team.clone(), "alice-side".to_owned()];
    expected.sort();
    assert_eq!(slugs(&teams), expected);
}

#[tokio::test]
async fn a_viewer_token_of_the_team_reads_but_every_write_is_403_and_changes_nothing() {
    let w = tenants().await;
    let team = w.alice.team.clone();
    // Bob joins as a member so that member routes have someone to act on.
    w.alice.add_member(&team, &w.bob, "member").await;
    let token = w.alice.token(&team, "viewer").await;
    let viewer = Caller::token(&w.app, &token);
    let held = w.app.hold_controllers().await;
    let before = w.app.snapshot().await;
    for (method, path, body) in routes_of(&team, &w.bob, &w.bob) {
        let context = format!("viewer token {method} {path}");
        let is_read = method == Method::GET;
        let res = viewer.send(method.clone(), &path, body).await;
        // A websocket (it answers 101): a plain request is a 400 once access is granted.
        let websocket = matches!(
            document().route(&method, &path),
            Route::Operation(op) if op.documents(StatusCode::SWITCHING_PROTOCOLS)
        );
        // The audit log is the one read a viewer may not make.
        if websocket {
            let message = assert_error(res, StatusCode::BAD_REQUEST, "bad_request", &context).await;
            assert!(message.contains("websocket"), "{context}: {message}");
        } else if is_read && !path.ends_with("/audit") {
            let body = json_ok(res, StatusCode::OK, &context).await;
            assert!(
                !body.to_string().contains(CONFIG_SECRET),
                "{context}: {body}"
            );
        } else {
            let message = assert_error(res, StatusCode::FORBIDDEN, "forbidden", &context).await;
            assert!(message.contains("viewer"), "{context}: {message}");
        }
    }
    assert_eq!(w.app.snapshot().await, before);
    held.release().await;
    let config = json_ok(
        viewer
            .get(&format!("/api/v1/teams/{team}/apps/secret-app/config"))
            .await,
        StatusCode::OK,
        "viewer config",
    )
    .await;
    assert_eq!(config["values_visible"], false);
    assert_eq!(config["vars"][0]["key"], "SECRET");
    assert!(config["vars"][0]["value"].is_null());
}

#[tokio::test]
async fn a_viewer_token_cannot_make_its_creator_leave_the_team() {
    let w = tenants().await;
    let team = w.alice.team.clone();
    // Bob is a second owner, so leaving would be allowed for alice herself.
    w.alice.add_member(&team, &w.bob, "owner").await;
    let token = w.alice.token(&team, "viewer").await;
    let viewer = Caller::token(&w.app, &token);
    let held = w.app.hold_controllers().await;
    let before = w.app.snapshot().await;
    let res = viewer
        .send(
            Method::DELETE,
            &format!("/api/v1/teams/{team}/members/{}", w.alice.id),
            None,
        )
        .await;
    assert_error(
        res,
        StatusCode::FORBIDDEN,
        "forbidden",
        "viewer token leaves",
    )
    .await;
    assert_eq!(w.app.snapshot().await, before);
    held.release().await;
}
