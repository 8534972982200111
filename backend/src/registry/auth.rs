//! Who is calling the registry, and what they may do with a repository.
//!
//! The docker CLI and skopeo answer a `Basic` challenge with the credentials of `docker login`
//! and then send them with every request. The password is an API token (`gnt_…`: one team,
//! its role) or the account's password. A password is verified with argon2 once, then
//! remembered for a few minutes, so a push of many layers does not hash it per request.

use axum::http::{header, HeaderMap, StatusCode};
use gantry_common::Permission;

use super::error::{denied, name_unknown, unauthorized, RegistryError, RegistryResult};
use super::path::RepoName;
use super::pull_secret::{self, BuildGrant, PullGrant};
use crate::auth::basic::{self, BasicError};
use crate::auth::Caller;
use crate::authz::{self, TeamAccess};
use crate::state::AppState;
use gantry_common::cluster::ImageRef;

/// Who calls the registry.
pub enum Who {
    /// A person or CI, with their teams and roles.
    User(Caller),
    /// An agent pulling the image of an instance placed on its node.
    Node(PullGrant),
    /// An agent pushing the image of a build it runs.
    Build(BuildGrant),
}

/// The caller of a registry request, from its Basic credentials.
pub async fn authenticate(state: &AppState, headers: &HeaderMap) -> RegistryResult<Who> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Err(unauthorized(
            "authentication required: docker login with your e-mail and an API token",
        ));
    };
    let (user, secret) = basic::credentials(value.as_bytes())
        .ok_or_else(|| unauthorized("send Basic credentials: your e-mail and an API token"))?;
    if pull_secret::looks_like(&secret) {
        return state
            .registry
            .pull_secrets
            .verify(&secret, time::OffsetDateTime::now_utc())
            .map(Who::Node)
            .ok_or_else(|| unauthorized("invalid or expired pull secret"));
    }
    if pull_secret::looks_like_build(&secret) {
        return state
            .registry
            .build_secrets
            .verify(&secret, time::OffsetDateTime::now_utc())
            .map(Who::Build)
            .ok_or_else(|| unauthorized("invalid or expired build secret"));
    }
    match basic::caller(state, &state.registry.passwords, &user, secret).await {
        Ok(caller) => Ok(Who::User(caller)),
        Err(BasicError::Wrong(message)) => Err(unauthorized(message)),
        Err(BasicError::Throttled(retry_after)) => Err(RegistryError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "TOOMANYREQUESTS",
            format!("too many failed logins for this account; try again in {retry_after} s"),
        )),
        Err(BasicError::Internal(e)) => Err(RegistryError::internal(e)),
    }
}

/// What a caller may do in a repository's team.
pub struct Grant {
    pub team_id: uuid::Uuid,
    /// A person's access (none for an agent's pull).
    pub user: Option<TeamAccess>,
}

/// The caller's access to `repo`'s team when it may do `need` there. A team the caller cannot
/// see is answered as a repository that does not exist; a visible team with too small a role
/// is `DENIED`. An agent's pull secret reaches only the repository of its instance's image,
/// while the instance is placed on its node and meant to run.
pub async fn repo_access(
    state: &AppState,
    who: Who,
    repo: &RepoName,
    need: Permission,
) -> RegistryResult<Grant> {
    let caller = match who {
        Who::User(caller) => caller,
        Who::Node(grant) => return node_access(state, grant, repo, need).await,
        Who::Build(grant) => return build_access(state, grant, repo, need).await,
    };
    let access = authz::resolve(state, caller, &repo.team)
        .await
        .map_err(|e| RegistryError::internal(e.message))?
        .ok_or_else(|| name_unknown(repo))?;
    if !access.role.allows(need) {
        return Err(denied(format!(
            "your role in team {} ({}) may pull but not push images",
            repo.team, access.role
        )));
    }
    Ok(Grant {
        team_id: access.team.id,
        user: Some(access),
    })
}

async fn node_access(
    state: &AppState,
    grant: PullGrant,
    repo: &RepoName,
    need: Permission,
) -> RegistryResult<Grant> {
    if need != Permission::Read {
        return Err(denied("a pull secret only pulls"));
    }
    let placed: Option<(String, uuid::Uuid)> = sqlx::query_as(
        "SELECT image, team_id FROM instances WHERE id = $1 AND node_id = $2 AND desired = 'run'",
    )
    .bind(grant.instance)
    .bind(grant.node)
    .fetch_optional(&state.db)
    .await?;
    let repo_name = repo.to_string();
    match placed {
        Some((image, team_id))
            if ImageRef::parse(&image).is_ok_and(|i| i.parts().path == repo_name) =>
        {
            Ok(Grant {
                team_id,
                user: None,
            })
        }
        // Any other repository, or an instance gone from the node: as if it did not exist.
        _ => Err(name_unknown(repo)),
    }
}

/// A build's push secret reaches its app's repository (`<team>/<app>`), to push and pull, while
/// the build runs on the secret's node.
async fn build_access(
    state: &AppState,
    grant: BuildGrant,
    repo: &RepoName,
    need: Permission,
) -> RegistryResult<Grant> {
    if !matches!(need, Permission::Read | Permission::PushImages) {
        return Err(denied("a build secret only pushes its build's image"));
    }
    let running: Option<(String, String, uuid::Uuid)> = sqlx::query_as(
        "SELECT t.slug, a.name, b.team_id FROM builds b
         JOIN apps a ON a.id = b.app_id JOIN teams t ON t.id = b.team_id
         WHERE b.id = $1 AND b.node_id = $2 AND b.status = 'running'",
    )
    .bind(grant.build)
    .bind(grant.node)
    .fetch_optional(&state.db)
    .await?;
    match running {
        Some((team, app, team_id)) if repo.to_string() == format!("{team}/{app}") => Ok(Grant {
            team_id,
            user: None,
        }),
        _ => Err(name_unknown(repo)),
    }
}

/// [`repo_access`] for a repository that must exist already (`NAME_UNKNOWN` otherwise): its id.
pub async fn existing_repo(
    state: &AppState,
    who: Who,
    repo: &RepoName,
    need: Permission,
) -> RegistryResult<uuid::Uuid> {
    let grant = repo_access(state, who, repo, need).await?;
    super::repository::find(&state.db, grant.team_id, repo).await
}
