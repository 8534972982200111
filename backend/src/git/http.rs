//! `/git/<team>/<app>.git/…`: who may fetch or push, then git's `http-backend` on the app's
//! bare repository.
//!
//! Only the smart protocol is served (`info/refs?service=…`, `git-upload-pack`,
//! `git-receive-pack`). Credentials are HTTP Basic: the account's e-mail with an API token or
//! the password. A request without them is answered 401 with a `Basic` challenge, which makes
//! git send the credentials of the remote's URL (or ask for them). Fetching needs a viewer's
//! role, pushing a member's; another team's remote is a 404 like one that does not exist.
//!
//! Answers of our own are plain text: git shows them to the person (`remote: …`).

use std::collections::BTreeMap;

use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use gantry_common::builds::BranchName;
use gantry_common::{AppName, Permission};
use uuid::Uuid;

use super::{cgi, hook, Git};
use crate::audit::Actor;
use crate::auth::basic::{self, BasicError};
use crate::auth::Caller;
use crate::authz;
use crate::state::AppState;

/// The challenge git answers with the remote's credentials.
pub const CHALLENGE: &str = "Basic realm=\"Gantry\"";

/// What a request asks of the repository.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    /// Fetch or clone.
    UploadPack,
    /// Push.
    ReceivePack,
}

impl Service {
    fn from_name(name: &str) -> Option<Self> {
        match name {
            "git-upload-pack" => Some(Service::UploadPack),
            "git-receive-pack" => Some(Service::ReceivePack),
            _ => None,
        }
    }

    fn needs(self) -> Permission {
        match self {
            Service::UploadPack => Permission::Read,
            Service::ReceivePack => Permission::WriteApps,
        }
    }
}

/// The service a smart-protocol request is for; `None` for anything else (the dumb
/// protocol's file reads, unknown paths).
pub fn service_of(method: &Method, rest: &str, query: &str) -> Option<Service> {
    match (method.as_str(), rest) {
        ("GET", "info/refs") => query
            .split('&')
            .find_map(|pair| pair.strip_prefix("service="))
            .and_then(Service::from_name),
        ("POST", name) => Service::from_name(name),
        _ => None,
    }
}

fn text(status: StatusCode, message: &str) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        format!("{message}\n"),
    )
        .into_response()
}

fn challenge(message: &str) -> Response {
    let mut response = text(StatusCode::UNAUTHORIZED, message);
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        header::HeaderValue::from_static(CHALLENGE),
    );
    response
}

fn not_found() -> Response {
    text(StatusCode::NOT_FOUND, "repository not found")
}

/// The app's settings a push builds with.
#[derive(sqlx::FromRow)]
struct AppGit {
    id: Uuid,
    name: String,
    deploy_branch: String,
    dockerfile: String,
    build_args_sealed: Option<Vec<u8>>,
}

/// `/git/{team}/{repo}/{*rest}`.
pub async fn serve(
    State(state): State<AppState>,
    Path((team, repo, rest)): Path<(String, String, String)>,
    RawQuery(query): RawQuery,
    method: Method,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let query = query.unwrap_or_default();
    let Some(service) = service_of(&method, &rest, &query) else {
        return text(
            StatusCode::NOT_FOUND,
            "only git's smart HTTP protocol is served here (git 1.6.6 or later)",
        );
    };
    let Some(app) = repo
        .strip_suffix(".git")
        .and_then(|a| AppName::parse(a).ok())
    else {
        return not_found();
    };
    let caller = match authenticate(&state, &headers).await {
        Ok(caller) => caller,
        Err(response) => return response,
    };
    let email = caller.user.email.clone();
    let access = match authz::resolve(&state, caller, &team).await {
        Ok(Some(access)) => access,
        Ok(None) => return not_found(),
        Err(e) => return text(e.status, &e.message),
    };
    let found: Result<Option<AppGit>, _> = sqlx::query_as(
        "SELECT id, name, deploy_branch, dockerfile, build_args_sealed FROM apps
         WHERE team_id = $1 AND name = $2",
    )
    .bind(access.team.id)
    .bind(app.as_str())
    .fetch_optional(&state.db)
    .await;
    let app = match found {
        Ok(Some(app)) => app,
        Ok(None) => return not_found(),
        Err(e) => {
            tracing::error!("git: failed to look up an app: {e}");
            return text(StatusCode::SERVICE_UNAVAILABLE, "try again later");
        }
    };
    if !access.role.allows(service.needs()) {
        return text(
            StatusCode::FORBIDDEN,
            &format!(
                "your role in team {} ({}) may fetch but not push",
                access.team.slug, access.role
            ),
        );
    }
    if let Err(e) = state.git.ensure_repo(app.id).await {
        tracing::error!(app.id = %app.id, "git: {e:#}");
        return text(
            StatusCode::SERVICE_UNAVAILABLE,
            "the repository is not available now; try again later",
        );
    }
    let mut env = vec![
        ("GIT_CONFIG_COUNT".to_owned(), "2".to_owned()),
        ("GIT_CONFIG_KEY_0".into(), "core.hooksPath".into()),
        (
            "GIT_CONFIG_VALUE_0".into(),
            state.git.hooks_dir().to_string_lossy().into_owned(),
        ),
        ("GIT_CONFIG_KEY_1".into(), "http.receivepack".into()),
        ("GIT_CONFIG_VALUE_1".into(), "true".into()),
    ];
    // A push (its POST: the advertisement needs no session) gets a session for its hook.
    let session = if service == Service::ReceivePack && method == Method::POST {
        let Some(build_args) = open_build_args(&state, &app) else {
            tracing::error!(app.id = %app.id, "the app's build args cannot be opened");
            return text(
                StatusCode::SERVICE_UNAVAILABLE,
                "the app's build args cannot be read (was GANTRY_SECRET_KEY changed?)",
            );
        };
        let branch = BranchName::parse(&app.deploy_branch)
            .map(|b| b.git_ref())
            .unwrap_or_else(|_| format!("refs/heads/{}", BranchName::DEFAULT));
        let (id, secret, registered) = state.git.pushes.open(
            access.team.clone(),
            app.id,
            app.name.clone(),
            Actor::from(&access.caller),
            app.deploy_branch.clone(),
            app.dockerfile.clone(),
            build_args,
        );
        env.push((hook::URL_VAR.into(), hook_url(&state, id)));
        env.push((hook::SECRET_VAR.into(), secret));
        env.push((hook::DEPLOY_REF_VAR.into(), branch));
        Some(registered)
    } else {
        None
    };
    let request = cgi::CgiRequest {
        project_root: &state.git.repos_dir(),
        path_info: format!("/{}/{rest}", Git::repo_name(app.id)),
        method: method.as_str(),
        query: &query,
        headers: &headers,
        remote_user: &email,
        remote_addr: "gantry".to_owned(),
        env,
        body,
        max_body_bytes: state.git.max_push_bytes,
    };
    match cgi::run(request, session).await {
        Ok(response) => response,
        Err(e) => {
            tracing::error!("git: {e}");
            text(StatusCode::SERVICE_UNAVAILABLE, &e.to_string())
        }
    }
}

/// Where the hook reaches this server: its own listener, on loopback when it listens on all
/// addresses.
fn hook_url(state: &AppState, push: Uuid) -> String {
    let mut addr = state.listen;
    if addr.ip().is_unspecified() {
        addr.set_ip(match addr {
            std::net::SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
            std::net::SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
        });
    }
    format!("http://{addr}/git/-/hooks/{push}")
}

/// The app's build args, opened; `None` when they cannot be (the key changed).
fn open_build_args(state: &AppState, app: &AppGit) -> Option<BTreeMap<String, String>> {
    let Some(sealed) = &app.build_args_sealed else {
        return Some(BTreeMap::new());
    };
    state
        .sealer
        .open(app.id, crate::builds::BUILD_ARGS_KEY, sealed)
        .ok()
        .and_then(|json| serde_json::from_str(&json).ok())
}

/// The caller, from Basic credentials; the 401 to answer otherwise.
async fn authenticate(state: &AppState, headers: &HeaderMap) -> Result<Caller, Response> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Err(challenge(
            "authentication required: your e-mail and an API token (or your password)",
        ));
    };
    let Some((user, secret)) = basic::credentials(value.as_bytes()) else {
        return Err(challenge(
            "send Basic credentials: your e-mail and an API token",
        ));
    };
    match basic::caller(state, &state.registry.passwords, &user, secret).await {
        Ok(caller) => Ok(caller),
        Err(BasicError::Wrong(message)) => Err(challenge(message)),
        Err(BasicError::Throttled(retry_after)) => Err(text(
            StatusCode::TOO_MANY_REQUESTS,
            &format!("too many failed logins for this account; try again in {retry_after} s"),
        )),
        Err(BasicError::Internal(e)) => {
            tracing::error!("git: authentication failed: {e}");
            Err(text(StatusCode::SERVICE_UNAVAILABLE, "try again later"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_smart_protocol_is_served() {
        let get = Method::GET;
        let post = Method::POST;
        let cases = [
            (
                &get,
                "info/refs",
                "service=git-upload-pack",
                Some(Service::UploadPack),
            ),
            (
                &get,
                "info/refs",
                "service=git-receive-pack",
                Some(Service::ReceivePack),
            ),
            (&get, "info/refs", "", None),
            (&get, "info/refs", "service=git-upload-archive", None),
            (&post, "git-upload-pack", "", Some(Service::UploadPack)),
            (&post, "git-receive-pack", "", Some(Service::ReceivePack)),
            (&get, "HEAD", "", None),
            (&get, "objects/info/packs", "", None),
            (&get, "git-receive-pack", "", None),
        ];
        for (method, rest, query, want) in cases {
            assert_eq!(
                service_of(method, rest, query),
                want,
                "{method} {rest}?{query}"
            );
        }
    }
}
