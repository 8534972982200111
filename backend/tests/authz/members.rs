//! Member management: adding, changing and removing members, leaving, the last-owner rule, what
//! admins may not do to owners, and how a member's role caps their API tokens.

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use uuid::Uuid;

use crate::common::{assert_error, create_team, json_ok, slugs, Caller};
use crate::support::{TestApp, TestUser};

const TEAM: &str = "acme";

fn members_path() -> String {
    format!("/api/v1/teams/{TEAM}/members")
}

fn member_path(user: Uuid) -> String {
    format!("/api/v1/teams/{TEAM}/members/{user}")
}

fn apps_path() -> String {
    format!("/api/v1/teams/{TEAM}/apps")
}

/// The role of `email` in the team, as alice's member list shows it (`None`: not a member).
async fn role_of(owner: &TestUser, email: &str) -> Option<String> {
    let members = json_ok(
        owner.get(&members_path()).await,
        StatusCode::OK,
        "list members",
    )
    .await;
    members
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["email"] == email)
        .map(|m| m["role"].as_str().unwrap().to_owned())
}

/// A fresh server with team `acme` owned by alice.
async fn acme() -> (TestApp, TestUser) {
    let app = TestApp::spawn().await;
    let alice = app.signup("alice@example.com").await;
    create_team(&alice, TEAM).await;
    (app, alice)
}

#[tokio::test]
async fn adding_a_member_needs_an_existing_account_that_is_not_yet_a_member() {
    let (app, alice) = acme().await;
    let bob = app.signup("bob@example.com").await;

    let before = app.snapshot().await;
    let res = alice
        .post(
            &members_path(),
            json!({"email": "nobody@example.com", "role": "member"}),
        )
        .await;
    let message = assert_error(res, StatusCode::NOT_FOUND, "not_found", "unknown e-mail").await;
    assert!(message.contains("nobody@example.com"), "{message}");
    assert!(message.contains("sign up"), "{message}");
    assert_eq!(app.snapshot().await, before);

    let res = alice
        .post(
            &members_path(),
            json!({"email": "Bob@Example.com", "role": "viewer"}),
        )
        .await;
    let added = json_ok(res, StatusCode::CREATED, "add bob").await;
    assert_eq!(added["email"], "bob@example.com");
    assert_eq!(added["role"], "viewer");
    assert_eq!(added["user_id"], bob.id.to_string());
    assert_eq!(
        role_of(&alice, "bob@example.com").await.as_deref(),
        Some("viewer")
    );
    let me = json_ok(bob.get("/api/v1/me").await, StatusCode::OK, "bob's me").await;
    let acme = me["teams"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["slug"] == TEAM)
        .expect("bob now sees acme");
    assert_eq!(acme["role"], "viewer");

    let before = app.snapshot().await;
    for role in ["viewer", "admin"] {
        let res = alice
            .post(&members_path(), json!({"email": bob.email, "role": role}))
            .await;
        let message = assert_error(res, StatusCode::CONFLICT, "conflict", "already a member").await;
        assert!(message.contains("already a member"), "{message}");
    }
    assert_eq!(app.snapshot().await, before);
    assert_eq!(
        role_of(&alice, "bob@example.com").await.as_deref(),
        Some("viewer")
    );
}

#[tokio::test]
async fn a_role_change_takes_effect_for_the_member_at_once() {
    let (app, alice) = acme().await;
    let bob = app.signup("bob@example.com").await;
    alice.add_member(TEAM, &bob, "viewer").await;
    let res = bob.post(&apps_path(), json!({"name": "web"})).await;
    assert_error(
        res,
        StatusCode::FORBIDDEN,
        "forbidden",
        "viewer creates app",
    )
    .await;

    let res = alice
        .patch(&member_path(bob.id), json!({"role": "member"}))
        .await;
    let updated = json_ok(res, StatusCode::OK, "promote bob").await;
    assert_eq!(updated["role"], "member");
    assert_eq!(updated["email"], "bob@example.com");
    assert_eq!(
        role_of(&alice, "bob@example.com").await.as_deref(),
        Some("member")
    );
    let res = bob.post(&apps_path(), json!({"name": "web"})).await;
    assert_eq!(res.status(), StatusCode::CREATED, "member creates app");

    let res = alice
        .patch(&member_path(bob.id), json!({"role": "viewer"}))
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let res = bob.post(&apps_path(), json!({"name": "api"})).await;
    assert_error(
        res,
        StatusCode::FORBIDDEN,
        "forbidden",
        "demoted bob creates app",
    )
    .await;
    let team = json_ok(
        bob.get(&format!("/api/v1/teams/{TEAM}")).await,
        StatusCode::OK,
        "bob's view of the team",
    )
    .await;
    assert_eq!(team["role"], "viewer");
}

#[tokio::test]
async fn removing_a_member_ends_their_session_access_and_revokes_their_team_tokens_at_once() {
    let (app, alice) = acme().await;
    let bob = app.signup("bob@example.com").await;
    alice.add_member(TEAM, &bob, "member").await;
    alice.create_app(TEAM, "web").await;
    let acme_token = Caller::token(&app, &bob.token(TEAM, "member").await);
    let own_token = Caller::token(&app, &bob.token(&bob.team, "owner").await);
    let web = format!("{}/web", apps_path());
    assert_eq!(bob.get(&web).await.status(), StatusCode::OK);
    assert_eq!(acme_token.get(&web).await.status(), StatusCode::OK);

    let res = alice.delete(&member_path(bob.id)).await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    assert_eq!(role_of(&alice, "bob@example.com").await, None);

    for path in [apps_path(), web.clone()] {
        let res = bob.get(&path).await;
        assert_error(
            res,
            StatusCode::NOT_FOUND,
            "not_found",
            &format!("bob session {path}"),
        )
        .await;
        let res = acme_token.get(&path).await;
        assert_error(
            res,
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            &format!("bob token {path}"),
        )
        .await;
    }
    let res = bob.patch(&web, json!({"replicas": 5})).await;
    assert_error(res, StatusCode::NOT_FOUND, "not_found", "bob writes").await;
    let me = json_ok(bob.get("/api/v1/me").await, StatusCode::OK, "bob's me").await;
    assert_eq!(slugs(&me["teams"]), [bob.team.as_str()]);
    // Only the tokens for the team he left are revoked.
    let res = own_token
        .get(&format!("/api/v1/teams/{}/apps", bob.team))
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let tokens = json_ok(
        bob.get("/api/v1/tokens").await,
        StatusCode::OK,
        "bob's tokens",
    )
    .await;
    let teams: Vec<&str> = tokens
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["team"].as_str().unwrap())
        .collect();
    assert_eq!(teams, [bob.team.as_str()]);
}

#[tokio::test]
async fn any_member_below_owner_can_leave_a_team_themselves() {
    let (app, alice) = acme().await;
    for role in ["admin", "member", "viewer"] {
        let user = app.signup(&format!("{role}@example.com")).await;
        alice.add_member(TEAM, &user, role).await;
        let res = user.delete(&member_path(user.id)).await;
        assert_eq!(res.status(), StatusCode::NO_CONTENT, "{role} leaves");
        assert_eq!(role_of(&alice, &user.email).await, None, "{role}");
        let res = user.get(&format!("/api/v1/teams/{TEAM}")).await;
        assert_error(res, StatusCode::NOT_FOUND, "not_found", role).await;
    }
}

#[tokio::test]
async fn the_last_owner_cannot_leave_or_step_down_until_there_is_another_owner() {
    let (app, alice) = acme().await;
    let bob = app.signup("bob@example.com").await;
    alice.add_member(TEAM, &bob, "admin").await;

    let before = app.snapshot().await;
    let res = alice.delete(&member_path(alice.id)).await;
    let message = assert_error(res, StatusCode::CONFLICT, "conflict", "last owner leaves").await;
    assert!(message.contains("owner"), "{message}");
    let res = alice
        .patch(&member_path(alice.id), json!({"role": "admin"}))
        .await;
    assert_error(
        res,
        StatusCode::CONFLICT,
        "conflict",
        "last owner steps down",
    )
    .await;
    assert_eq!(app.snapshot().await, before);

    let res = alice
        .patch(&member_path(bob.id), json!({"role": "owner"}))
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let res = alice
        .patch(&member_path(alice.id), json!({"role": "admin"}))
        .await;
    assert_eq!(
        res.status(),
        StatusCode::OK,
        "a second owner lets alice step down"
    );
    assert_eq!(
        role_of(&bob, "alice@example.com").await.as_deref(),
        Some("admin")
    );

    // Now bob is the last owner.
    let before = app.snapshot().await;
    let res = bob.delete(&member_path(bob.id)).await;
    assert_error(
        res,
        StatusCode::CONFLICT,
        "conflict",
        "bob, last owner, leaves",
    )
    .await;
    assert_eq!(app.snapshot().await, before);
    let res = alice.delete(&member_path(alice.id)).await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT, "a non-owner leaves");
    assert_eq!(
        role_of(&bob, "bob@example.com").await.as_deref(),
        Some("owner")
    );
}

#[tokio::test]
async fn an_admin_cannot_grant_the_owner_role_by_session_or_token() {
    let (app, alice) = acme().await;
    let carol = app.signup("carol@example.com").await;
    let bob = app.signup("bob@example.com").await;
    let dave = app.signup("dave@example.com").await;
    alice.add_member(TEAM, &carol, "admin").await;
    alice.add_member(TEAM, &bob, "member").await;
    let token = carol.token(TEAM, "admin").await;
    for caller in [Caller::Session(&carol), Caller::token(&app, &token)] {
        let who = caller.describe();
        let before = app.snapshot().await;
        let res = caller
            .send(
                Method::POST,
                &members_path(),
                Some(json!({"email": dave.email, "role": "owner"})),
            )
            .await;
        assert_error(
            res,
            StatusCode::FORBIDDEN,
            "forbidden",
            &format!("{who} adds an owner"),
        )
        .await;
        let res = caller
            .send(
                Method::PATCH,
                &member_path(bob.id),
                Some(json!({"role": "owner"})),
            )
            .await;
        assert_error(
            res,
            StatusCode::FORBIDDEN,
            "forbidden",
            &format!("{who} makes an owner"),
        )
        .await;
        assert_eq!(app.snapshot().await, before, "{who}");
    }
    assert_eq!(
        role_of(&alice, "bob@example.com").await.as_deref(),
        Some("member")
    );
    assert_eq!(role_of(&alice, "dave@example.com").await, None);
    // What an admin may do, so the 403s above are about the owner role only.
    let res = carol
        .post(
            &members_path(),
            json!({"email": dave.email, "role": "admin"}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let res = carol
        .patch(&member_path(bob.id), json!({"role": "viewer"}))
        .await;
    assert_eq!(res.status(), StatusCode::OK);
}

#[tokio::test]
async fn an_admin_cannot_demote_or_remove_an_owner_by_session_or_token() {
    let (app, alice) = acme().await;
    let carol = app.signup("carol@example.com").await;
    let olga = app.signup("olga@example.com").await;
    let bob = app.signup("bob@example.com").await;
    alice.add_member(TEAM, &carol, "admin").await;
    // Two owners, so no refusal below can come from the last-owner rule.
    alice.add_member(TEAM, &olga, "owner").await;
    alice.add_member(TEAM, &bob, "member").await;
    let token = carol.token(TEAM, "admin").await;
    for caller in [Caller::Session(&carol), Caller::token(&app, &token)] {
        let who = caller.describe();
        let before = app.snapshot().await;
        for owner in [&alice, &olga] {
            for role in ["admin", "member", "viewer"] {
                let res = caller
                    .send(
                        Method::PATCH,
                        &member_path(owner.id),
                        Some(json!({ "role": role })),
                    )
                    .await;
                let context = format!("{who} demotes {} to {role}", owner.email);
                assert_error(res, StatusCode::FORBIDDEN, "forbidden", &context).await;
            }
            let res = caller
                .send(Method::DELETE, &member_path(owner.id), None)
                .await;
            let context = format!("{who} removes {}", owner.email);
            assert_error(res, StatusCode::FORBIDDEN, "forbidden", &context).await;
        }
        assert_eq!(app.snapshot().await, before, "{who}");
    }
    assert_eq!(
        role_of(&alice, "alice@example.com").await.as_deref(),
        Some("owner")
    );
    assert_eq!(
        role_of(&alice, "olga@example.com").await.as_deref(),
        Some("owner")
    );
    // The same admin may remove a plain member.
    let res = carol.delete(&member_path(bob.id)).await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
}

#[tokio::test]
async fn a_token_acts_with_the_lesser_of_its_role_and_its_creators_current_role() {
    let (app, alice) = acme().await;
    let bob = app.signup("bob@example.com").await;
    alice.add_member(TEAM, &bob, "member").await;
    alice.create_app(TEAM, "web").await;
    let token = Caller::token(&app, &bob.token(TEAM, "member").await);
    let web = format!("{}/web", apps_path());
    let write = |name: &str| {
        (
            Method::PATCH,
            format!("{web}/config"),
            Some(json!({"vars": { name: "1" }})),
        )
    };
    let role_via_token = || async {
        let me = json_ok(token.get("/api/v1/me").await, StatusCode::OK, "token me").await;
        me["teams"][0]["role"].as_str().unwrap().to_owned()
    };

    let (m, p, b) = write("BEFORE");
    assert_eq!(token.send(m, &p, b).await.status(), StatusCode::OK);
    assert_eq!(role_via_token().await, "member");

    // Bob is demoted to viewer: his member token is capped at viewer.
    let res = alice
        .patch(&member_path(bob.id), json!({"role": "viewer"}))
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(role_via_token().await, "viewer");
    let before = app.snapshot().await;
    let (m, p, b) = write("CAPPED");
    let res = token.send(m, &p, b).await;
    assert_error(
        res,
        StatusCode::FORBIDDEN,
        "forbidden",
        "capped token writes config",
    )
    .await;
    let res = token
        .send(Method::POST, &apps_path(), Some(json!({"name": "api"})))
        .await;
    assert_error(
        res,
        StatusCode::FORBIDDEN,
        "forbidden",
        "capped token creates app",
    )
    .await;
    assert_eq!(app.snapshot().await, before);
    let config = json_ok(
        token.get(&format!("{web}/config")).await,
        StatusCode::OK,
        "capped token reads config",
    )
    .await;
    assert_eq!(config["values_visible"], false);

    // Bob is made admin: the token stays at its own role, member.
    let res = alice
        .patch(&member_path(bob.id), json!({"role": "admin"}))
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(role_via_token().await, "member");
    let (m, p, b) = write("AFTER");
    assert_eq!(token.send(m, &p, b).await.status(), StatusCode::OK);
    let before = app.snapshot().await;
    let res = token.send(Method::DELETE, &web, None).await;
    assert_error(
        res,
        StatusCode::FORBIDDEN,
        "forbidden",
        "member token deletes app",
    )
    .await;
    let res = token.get(&format!("/api/v1/teams/{TEAM}/audit")).await;
    assert_error(
        res,
        StatusCode::FORBIDDEN,
        "forbidden",
        "member token reads audit",
    )
    .await;
    assert_eq!(app.snapshot().await, before);
    // Bob's own session, an admin now, may do both.
    assert_eq!(
        bob.get(&format!("/api/v1/teams/{TEAM}/audit"))
            .await
            .status(),
        StatusCode::OK
    );
    let config: Value = json_ok(
        bob.get(&format!("{web}/config")).await,
        StatusCode::OK,
        "bob reads config",
    )
    .await;
    assert_eq!(config["values_visible"], true);
}
