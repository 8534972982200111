//! The role table, end to end over HTTP: every team route, for every role, as a session and as an
//! API token. Allowed requests succeed; refused ones are a 403 in the error shape and change
//! nothing.
//!
//! The expectations are written out here (the `needs` column) rather than derived from
//! `gantry_common::roles`, so that a wrong table in the server makes these tests fail. Which
//! routes there are comes from the OpenAPI document: a team route without a row fails
//! `every_team_operation_of_the_document_has_a_row`.

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use uuid::Uuid;

use crate::common::{assert_error, create_team, json_ok, Caller};
use crate::support::document::{document, Route};
use crate::support::{TestApp, TestUser};

const TEAM: &str = "acme";
const SECRET_VALUE: &str = "postgres://app:s3cret@db/app";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Owner,
    Admin,
    Member,
    Viewer,
}

impl Role {
    fn name(self) -> &'static str {
        match self {
            Role::Owner => "owner",
            Role::Admin => "admin",
            Role::Member => "member",
            Role::Viewer => "viewer",
        }
    }

    fn rank(self) -> u8 {
        match self {
            Role::Owner => 3,
            Role::Admin => 2,
            Role::Member => 1,
            Role::Viewer => 0,
        }
    }

    fn at_least(self, needed: Role) -> bool {
        self.rank() >= needed.rank()
    }
}

#[derive(Debug, Clone, Copy)]
enum Via {
    Session,
    Token,
}

/// One row of the table: a request, the least role that may make it, and what success looks like.
struct Case {
    what: &'static str,
    method: Method,
    path: String,
    body: Option<Value>,
    needs: Role,
    ok: StatusCode,
    /// Extra checks of a successful response body, given the caller's role.
    check: Option<fn(Role, &Value)>,
}

/// A team `acme` owned by alice, with the caller (`actor`) in it at some role, two apps, a config
/// var, and one member per member-management case to act on. App `web` was deployed twice, so
/// it has releases 1 and 2 (with no node, its instances stay pending and v2 rolling out).
struct World {
    app: TestApp,
    actor: TestUser,
    /// Accounts that are not in the team yet (targets of "add member").
    outsider: TestUser,
    future_owner: TestUser,
    /// Members of the team (targets of "change role" and "remove").
    to_demote: TestUser,
    to_promote: TestUser,
    co_owner: TestUser,
    to_remove: TestUser,
    owner_to_remove: TestUser,
}

async fn world(role: Role) -> World {
    let app = TestApp::spawn().await;
    let alice = app.signup("alice@example.com").await;
    create_team(&alice, TEAM).await;
    let actor = app.signup("actor@example.com").await;
    alice.add_member(TEAM, &actor, role.name()).await;
    let outsider = app.signup("outsider@example.com").await;
    let future_owner = app.signup("future-owner@example.com").await;
    let to_demote = app.signup("to-demote@example.com").await;
    let to_promote = app.signup("to-promote@example.com").await;
    let co_owner = app.signup("co-owner@example.com").await;
    let to_remove = app.signup("to-remove@example.com").await;
    let owner_to_remove = app.signup("owner-to-remove@example.com").await;
    for (user, role) in [
        (&to_demote, "member"),
        (&to_promote, "member"),
        (&co_owner, "owner"),
        (&to_remove, "member"),
        (&owner_to_remove, "owner"),
    ] {
        alice.add_member(TEAM, user, role).await;
    }
    alice.create_app(TEAM, "web").await;
    alice.create_app(TEAM, "doomed").await;
    let res = alice
        .put(
            &format!("/api/v1/teams/{TEAM}/apps/web/config"),
            json!({"vars": {"DATABASE_URL": SECRET_VALUE}}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK, "seed config");
    for image in ["gantry-hello:1", "gantry-hello:2"] {
        alice.deploy(TEAM, "web", image).await;
    }
    World {
        app,
        actor,
        outsider,
        future_owner,
        to_demote,
        to_promote,
        co_owner,
        to_remove,
        owner_to_remove,
    }
}

fn member_path(user: Uuid) -> String {
    format!("/api/v1/teams/{TEAM}/members/{user}")
}

/// The table. `needs` is the least role that may make the request; everyone below gets a 403.
#[rustfmt::skip]
fn cases(w: &World) -> Vec<Case> {
    use Role::{Admin, Member, Owner, Viewer};
    let team = format!("/api/v1/teams/{TEAM}");
    let web = format!("{team}/apps/web");
    let (ok, created, gone) = (StatusCode::OK, StatusCode::CREATED, StatusCode::NO_CONTENT);
    let accepted = StatusCode::ACCEPTED;
    let case = |needs, what, method, path: String, body, ok, check: Option<fn(Role, &Value)>| {
        Case { what, method, path, body, needs, ok, check }
    };
    vec![
        case(Viewer, "GET team", Method::GET, team.clone(), None, ok, Some(check_team)),
        case(Viewer, "GET apps", Method::GET, format!("{team}/apps"), None, ok, Some(check_apps)),
        case(Viewer, "GET app", Method::GET, web.clone(), None, ok, Some(check_app)),
        case(Viewer, "GET config", Method::GET, format!("{web}/config"), None, ok, Some(check_config)),
        case(Viewer, "GET members", Method::GET, format!("{team}/members"), None, ok, Some(check_members)),
        case(Viewer, "GET instances", Method::GET, format!("{web}/instances"), None, ok, Some(check_instances)),
        case(Viewer, "GET routes", Method::GET, format!("{web}/routes"), None, ok, Some(check_routes)),
        case(Viewer, "GET rollout", Method::GET, format!("{web}/rollouts/current"), None, ok, Some(check_rollout)),
        case(Viewer, "GET releases", Method::GET, format!("{web}/releases"), None, ok, Some(check_releases)),
        case(Viewer, "GET release v1", Method::GET, format!("{web}/releases/1"), None, ok, Some(check_release_v1)),
        case(Viewer, "GET quota", Method::GET, format!("{team}/quota"), None, ok, Some(check_quota)),
        case(Viewer, "GET registry usage", Method::GET, format!("{team}/registry"), None, ok, Some(check_registry_usage)),
        case(Viewer, "GET images", Method::GET, format!("{web}/images"), None, ok, Some(check_images)),
        case(Viewer, "GET logs", Method::GET, format!("{web}/logs"), None, ok, Some(check_logs)),
        // A plain GET of the websocket: past the access check, it is told to upgrade.
        case(Viewer, "GET logs stream", Method::GET, format!("{web}/logs/stream"), None,
             StatusCode::BAD_REQUEST, Some(check_stream_wants_an_upgrade)),
        case(Viewer, "GET log retention", Method::GET, format!("{team}/logs/retention"), None, ok, Some(check_retention)),
        case(Admin, "PUT log retention", Method::PUT, format!("{team}/logs/retention"), Some(json!({"days": 3})), ok, Some(check_retention_set)),
        case(Viewer, "GET metrics", Method::GET, format!("{web}/metrics"), None, ok, Some(check_metrics)),
        case(Viewer, "GET metrics stream", Method::GET, format!("{web}/metrics/stream"), None,
             StatusCode::BAD_REQUEST, Some(check_stream_wants_an_upgrade)),
        case(Viewer, "GET rollout stream", Method::GET, format!("{web}/rollouts/current/stream"), None,
             StatusCode::BAD_REQUEST, Some(check_stream_wants_an_upgrade)),
        // `web` rolls out v2 with the rolling strategy: it has no steps to promote or pause
        // (past the access check, a 409), and abort ends it.
        case(Member, "POST rollout pause", Method::POST, format!("{web}/rollouts/2/pause"), Some(json!({})),
             StatusCode::CONFLICT, Some(check_rolling_has_no_steps)),
        case(Member, "POST rollout resume", Method::POST, format!("{web}/rollouts/2/resume"), Some(json!({})),
             StatusCode::CONFLICT, Some(check_rolling_has_no_steps)),
        case(Member, "POST rollout promote", Method::POST, format!("{web}/rollouts/2/promote"), Some(json!({})),
             StatusCode::CONFLICT, Some(check_rolling_has_no_steps)),
        case(Member, "POST rollout abort", Method::POST, format!("{web}/rollouts/2/abort"), Some(json!({})), ok, Some(check_aborted)),
        case(Member, "POST apps", Method::POST, format!("{team}/apps"), Some(json!({"name": "fresh"})), created, Some(check_created_app)),
        case(Member, "PATCH app", Method::PATCH, web.clone(), Some(json!({"replicas": 3})), ok, Some(check_patched_app)),
        case(Member, "PUT config", Method::PUT, format!("{web}/config"),
             Some(json!({"vars": {"DATABASE_URL": SECRET_VALUE, "ADDED_BY_PUT": "1"}})), ok, Some(check_put_config)),
        case(Member, "PATCH config", Method::PATCH, format!("{web}/config"),
             Some(json!({"vars": {"ADDED_BY_PATCH": "2"}})), ok, Some(check_patched_config)),
        case(Member, "POST deploys", Method::POST, format!("{web}/deploys"),
             Some(json!({"image": "gantry-hello:3"})), accepted, Some(check_deployed)),
        case(Member, "POST scale", Method::POST, format!("{web}/scale"), Some(json!({"replicas": 5})), accepted, Some(check_scaled)),
        case(Member, "PUT strategy", Method::PUT, format!("{web}/strategy"),
             Some(json!({"kind": "rolling", "max_surge": 2, "max_unavailable": 0})), ok, Some(check_strategy)),
        case(Viewer, "GET autoscaling", Method::GET, format!("{web}/autoscaling"), None, ok, Some(check_autoscaling_off)),
        case(Member, "PUT autoscaling", Method::PUT, format!("{web}/autoscaling"),
             Some(json!({"min": 1, "max": 4, "target_cpu_percent": 60})), ok, Some(check_autoscaling_on)),
        case(Member, "DELETE autoscaling", Method::DELETE, format!("{web}/autoscaling"), None, gone, None),
        case(Viewer, "GET build settings", Method::GET, format!("{web}/build-settings"), None, ok, Some(check_build_settings)),
        case(Member, "PUT build settings", Method::PUT, format!("{web}/build-settings"),
             Some(json!({"deploy_branch": "prod", "build_args": {"NPM_TOKEN": SECRET_VALUE}})), ok, Some(check_build_settings_set)),
        case(Viewer, "GET builds", Method::GET, format!("{web}/builds"), None, ok, Some(check_no_builds)),
        // No push has been built: past the access check, there is no build 1.
        case(Viewer, "GET build 1", Method::GET, format!("{web}/builds/1"), None, StatusCode::NOT_FOUND, None),
        case(Member, "POST build cancel", Method::POST, format!("{web}/builds/1/cancel"), Some(json!({})),
             StatusCode::NOT_FOUND, None),
        case(Member, "POST rollback (to v1)", Method::POST, format!("{web}/rollback"), Some(json!({"version": 1})), created, Some(check_rolled_back)),
        case(Admin, "DELETE app", Method::DELETE, format!("{team}/apps/doomed"), None, gone, None),
        case(Admin, "GET audit", Method::GET, format!("{team}/audit"), None, ok, Some(check_audit)),
        case(Admin, "POST members (role member)", Method::POST, format!("{team}/members"),
             Some(json!({"email": w.outsider.email, "role": "member"})), created, Some(check_role_member)),
        case(Owner, "POST members (role owner)", Method::POST, format!("{team}/members"),
             Some(json!({"email": w.future_owner.email, "role": "owner"})), created, Some(check_role_owner)),
        case(Admin, "PATCH member: member to viewer", Method::PATCH, member_path(w.to_demote.id),
             Some(json!({"role": "viewer"})), ok, Some(check_role_viewer)),
        case(Owner, "PATCH member: member to owner", Method::PATCH, member_path(w.to_promote.id),
             Some(json!({"role": "owner"})), ok, Some(check_role_owner)),
        case(Owner, "PATCH member: owner to member", Method::PATCH, member_path(w.co_owner.id),
             Some(json!({"role": "member"})), ok, Some(check_role_member)),
        case(Admin, "DELETE member (a member)", Method::DELETE, member_path(w.to_remove.id), None, gone, None),
        case(Owner, "DELETE member (an owner)", Method::DELETE, member_path(w.owner_to_remove.id), None, gone, None),
    ]
}

fn check_build_settings(_: Role, body: &Value) {
    let remote = body["remote_url"].as_str().unwrap_or_default();
    assert!(remote.ends_with(&format!("/git/{TEAM}/web.git")), "{body}");
    assert_eq!(body["deploy_branch"], "main", "{body}");
}

/// Build args' values are never shown: only their names.
fn check_build_settings_set(_: Role, body: &Value) {
    assert_eq!(body["deploy_branch"], "prod", "{body}");
    assert_eq!(body["build_arg_names"], json!(["NPM_TOKEN"]), "{body}");
    assert!(!body.to_string().contains(SECRET_VALUE), "{body}");
}

fn check_no_builds(_: Role, body: &Value) {
    assert_eq!(body, &json!([]));
}

fn check_registry_usage(_: Role, body: &Value) {
    assert_eq!(body["used_bytes"], 0, "{body}");
    assert_eq!(body["repositories"], json!([]), "{body}");
}

fn check_logs(_: Role, body: &Value) {
    assert!(body["items"].is_array(), "{body}");
}

fn check_retention(_: Role, body: &Value) {
    assert_eq!(body["platform_days"], 7, "{body}");
}

fn check_retention_set(_: Role, body: &Value) {
    assert_eq!(
        (body["days"].as_u64(), body["effective_days"].as_u64()),
        (Some(3), Some(3)),
        "{body}"
    );
}

fn check_metrics(_: Role, body: &Value) {
    assert!(
        body["points"].is_array() && body["step_seconds"] == 5,
        "{body}"
    );
}

fn check_stream_wants_an_upgrade(_: Role, body: &Value) {
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("websocket"), "{body}");
}

fn check_images(_: Role, body: &Value) {
    assert!(
        body["repository"]
            .as_str()
            .unwrap()
            .ends_with(&format!("/{TEAM}/web")),
        "{body}"
    );
    assert_eq!(body["tags"], json!([]), "{body}");
}

fn check_team(role: Role, body: &Value) {
    assert_eq!(body["slug"], TEAM);
    assert_eq!(body["role"], role.name(), "the caller's effective role");
}

fn check_apps(_: Role, body: &Value) {
    let names: Vec<&str> = body
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["doomed", "web"]);
}

fn check_app(_: Role, body: &Value) {
    assert_eq!(body["name"], "web");
    assert_eq!(body["team"], TEAM);
}

/// Viewers see names with `value: null`; members and above see values.
fn check_config(role: Role, body: &Value) {
    let vars = body["vars"].as_array().unwrap();
    assert_eq!(vars.len(), 1, "{body}");
    assert_eq!(vars[0]["key"], "DATABASE_URL");
    if role.at_least(Role::Member) {
        assert_eq!(body["values_visible"], true, "{body}");
        assert_eq!(vars[0]["value"], SECRET_VALUE);
    } else {
        assert_eq!(body["values_visible"], false, "{body}");
        assert!(vars[0]["value"].is_null(), "{body}");
        assert!(!body.to_string().contains(SECRET_VALUE), "{body}");
    }
}

fn check_members(role: Role, body: &Value) {
    let members = body.as_array().unwrap();
    assert_eq!(members.len(), 7, "{body}");
    let actor = members
        .iter()
        .find(|m| m["email"] == "actor@example.com")
        .expect("the caller is listed");
    assert_eq!(actor["role"], role.name());
}

fn check_instances(_: Role, body: &Value) {
    // No node: those the reconciler has made so far wait, pending, for one.
    let instances = body.as_array().expect("a list of instances");
    for i in instances {
        assert_eq!(i["state"], "pending", "{body}");
    }
}

fn check_routes(_: Role, body: &Value) {
    assert_eq!(body["host"], format!("web.{TEAM}.localhost"), "{body}");
}

fn check_rollout(_: Role, body: &Value) {
    assert!(body["release"].as_u64().unwrap() >= 2, "{body}");
}

fn check_quota(_: Role, body: &Value) {
    assert_eq!(body["limits"]["apps"], 20, "{body}");
    assert_eq!(body["usage"]["apps"], 2, "{body}");
}

fn check_autoscaling_off(_: Role, body: &Value) {
    assert_eq!(body["policy"], Value::Null, "{body}");
}

fn check_autoscaling_on(_: Role, body: &Value) {
    assert_eq!(body["policy"]["max"], 4, "{body}");
    assert_eq!(
        body["policy"]["scale_down_stabilization_seconds"], 300,
        "{body}"
    );
}

fn check_rolling_has_no_steps(_: Role, body: &Value) {
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("rolling update"), "{body}");
}

fn check_aborted(_: Role, body: &Value) {
    assert_eq!(body["release"], 2, "{body}");
    assert_eq!(body["status"], "aborted", "{body}");
    assert!(
        body["reason"]
            .as_str()
            .unwrap_or_default()
            .starts_with("aborted by "),
        "{body}"
    );
}

fn check_releases(_: Role, body: &Value) {
    let versions: Vec<u64> = body
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["version"].as_u64().unwrap())
        .collect();
    assert!(versions.len() >= 2, "{body}");
    assert!(
        versions.windows(2).all(|w| w[0] > w[1]),
        "newest first: {versions:?}"
    );
}

fn check_release_v1(_: Role, body: &Value) {
    assert_eq!(body["version"], 1);
    assert_eq!(body["image"], "gantry-hello:1");
    assert!(!body.to_string().contains(SECRET_VALUE), "{body}");
}

fn check_deployed(_: Role, body: &Value) {
    assert_eq!(body["image"], "gantry-hello:3");
    assert_eq!(body["status"], "pending");
}

fn check_scaled(_: Role, body: &Value) {
    assert_eq!(body["replicas"], 5);
}

fn check_strategy(_: Role, body: &Value) {
    assert_eq!(body["max_surge"], 2);
}

fn check_rolled_back(_: Role, body: &Value) {
    assert_eq!(body["rollback_of"], 1);
    assert_eq!(body["image"], "gantry-hello:1");
}

fn check_created_app(_: Role, body: &Value) {
    assert_eq!(body["name"], "fresh");
    assert_eq!(body["team"], TEAM);
}

fn check_patched_app(_: Role, body: &Value) {
    assert_eq!(body["replicas"], 3);
}

fn config_keys(body: &Value) -> Vec<&str> {
    body["vars"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["key"].as_str().unwrap())
        .collect()
}

fn check_put_config(_: Role, body: &Value) {
    assert_eq!(config_keys(body), ["ADDED_BY_PUT", "DATABASE_URL"]);
}

fn check_patched_config(_: Role, body: &Value) {
    assert_eq!(
        config_keys(body),
        ["ADDED_BY_PATCH", "ADDED_BY_PUT", "DATABASE_URL"]
    );
}

fn check_audit(_: Role, body: &Value) {
    let actions: Vec<&str> = body["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert!(actions.contains(&"member.add"), "{actions:?}");
    assert!(actions.contains(&"app.create"), "{actions:?}");
}

fn check_role_member(_: Role, body: &Value) {
    assert_eq!(body["role"], "member");
}

fn check_role_owner(_: Role, body: &Value) {
    assert_eq!(body["role"], "owner");
}

fn check_role_viewer(_: Role, body: &Value) {
    assert_eq!(body["role"], "viewer");
}

/// Runs every case of the table as `role` over `via`.
async fn role_table(role: Role, via: Via) {
    let w = world(role).await;
    let caller = match via {
        Via::Session => Caller::Session(&w.actor),
        Via::Token => Caller::token(&w.app, &w.actor.token(TEAM, role.name()).await),
    };
    let mut allowed = 0;
    let mut refused = 0;
    for case in cases(&w) {
        let context = format!(
            "{} as {} via {via:?} ({})",
            case.what,
            role.name(),
            case.method
        );
        // The controllers wait, so only the request can change the snapshot.
        let held = w.app.hold_controllers().await;
        let before = w.app.snapshot().await;
        let res = caller
            .send(case.method.clone(), &case.path, case.body.clone())
            .await;
        if role.at_least(case.needs) {
            allowed += 1;
            if case.ok == StatusCode::NO_CONTENT {
                assert_eq!(res.status(), case.ok, "{context}");
            } else {
                let body = json_ok(res, case.ok, &context).await;
                if let Some(check) = case.check {
                    check(role, &body);
                }
            }
            if case.method != Method::GET && case.ok.is_success() {
                // Shows the snapshot sees this write, so that "unchanged" below means something.
                assert_ne!(w.app.snapshot().await, before, "{context}: no effect");
            } else if !case.ok.is_success() {
                // Past the access check, refused for another reason: nothing changed.
                assert_eq!(w.app.snapshot().await, before, "{context}: changed state");
            }
        } else {
            refused += 1;
            let message = assert_error(res, StatusCode::FORBIDDEN, "forbidden", &context).await;
            assert!(message.contains(role.name()), "{context}: {message}");
            assert_eq!(w.app.snapshot().await, before, "{context}: changed state");
        }
        held.release().await;
    }
    let expected_refusals = match role {
        Role::Owner => 0,
        Role::Admin => 4,
        Role::Member => 10,
        Role::Viewer => 26,
    };
    assert_eq!(refused, expected_refusals, "{role:?}: refusals");
    assert_eq!(allowed + refused, 49);
}

#[tokio::test]
async fn every_team_operation_of_the_document_has_a_row() {
    let w = world(Role::Owner).await;
    let mut covered = Vec::new();
    for case in cases(&w) {
        match document().route(&case.method, &case.path) {
            Route::Operation(op) => covered.push(op.describe()),
            _ => panic!(
                "{} ({} {}) is not in the OpenAPI document",
                case.what, case.method, case.path
            ),
        }
    }
    let missing: Vec<String> = document()
        .operations()
        .iter()
        .filter(|op| op.template.contains("{team}"))
        .map(|op| op.describe())
        .filter(|op| !covered.contains(op))
        .collect();
    assert!(
        missing.is_empty(),
        "team operations without a row in the role table (add one to `cases`, with the least \
         role that may make it): {missing:#?}"
    );
}

#[tokio::test]
async fn an_owner_session_may_use_every_team_route() {
    role_table(Role::Owner, Via::Session).await;
}

#[tokio::test]
async fn an_owner_token_may_use_every_team_route() {
    role_table(Role::Owner, Via::Token).await;
}

#[tokio::test]
async fn an_admin_session_may_do_everything_but_touch_owners() {
    role_table(Role::Admin, Via::Session).await;
}

#[tokio::test]
async fn an_admin_token_may_do_everything_but_touch_owners() {
    role_table(Role::Admin, Via::Token).await;
}

#[tokio::test]
async fn a_member_session_may_write_apps_and_config_but_not_delete_apps_manage_members_or_read_audit(
) {
    role_table(Role::Member, Via::Session).await;
}

#[tokio::test]
async fn a_member_token_may_write_apps_and_config_but_not_delete_apps_manage_members_or_read_audit()
{
    role_table(Role::Member, Via::Token).await;
}

#[tokio::test]
async fn a_viewer_session_may_only_read_and_sees_config_names_without_values() {
    role_table(Role::Viewer, Via::Session).await;
}

#[tokio::test]
async fn a_viewer_token_may_only_read_and_sees_config_names_without_values() {
    role_table(Role::Viewer, Via::Token).await;
}

#[tokio::test]
async fn the_last_owner_can_be_neither_demoted_nor_removed_by_session_or_token() {
    let app = TestApp::spawn().await;
    let alice = app.signup("alice@example.com").await;
    create_team(&alice, TEAM).await;
    let bob = app.signup("bob@example.com").await;
    alice.add_member(TEAM, &bob, "admin").await;
    let token = alice.token(TEAM, "owner").await;
    for caller in [Caller::Session(&alice), Caller::token(&app, &token)] {
        for new_role in ["admin", "member", "viewer"] {
            let context = format!("{}: demote the last owner to {new_role}", caller.describe());
            let before = app.snapshot().await;
            let res = caller
                .send(
                    Method::PATCH,
                    &member_path(alice.id),
                    Some(json!({ "role": new_role })),
                )
                .await;
            assert_error(res, StatusCode::CONFLICT, "conflict", &context).await;
            assert_eq!(app.snapshot().await, before, "{context}");
        }
        let context = format!("{}: remove the last owner", caller.describe());
        let before = app.snapshot().await;
        let res = caller
            .send(Method::DELETE, &member_path(alice.id), None)
            .await;
        let message = assert_error(res, StatusCode::CONFLICT, "conflict", &context).await;
        assert!(message.contains("owner"), "{context}: {message}");
        assert_eq!(app.snapshot().await, before, "{context}");
    }
    let members: Value = alice
        .get(&format!("/api/v1/teams/{TEAM}/members"))
        .await
        .json()
        .await
        .unwrap();
    let alice_row = members
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["email"] == "alice@example.com")
        .expect("alice is still a member");
    assert_eq!(alice_row["role"], "owner");
}
