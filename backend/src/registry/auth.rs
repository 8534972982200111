//! Who is calling the registry, and what they may do with a repository.
//!
//! The docker CLI and skopeo answer a `Basic` challenge with the credentials of `docker login`
//! and then send them with every request. The password is an API token (`gnt_…`: one team,
//! its role) or the account's password. A password is verified with argon2 once, then
//! remembered for a few minutes, so a push of many layers does not hash it per request.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::http::{header, HeaderMap, StatusCode};
use base64::Engine;
use gantry_common::{Email, Password, Permission};
use sha2::{Digest as _, Sha256};

use super::error::{denied, name_unknown, unauthorized, RegistryError, RegistryResult};
use super::path::RepoName;
use super::pull_secret::{self, PullGrant};
use crate::auth::{caller, password, throttle, tokens, Caller, UserRow, Via};
use crate::authz::{self, TeamAccess};
use crate::state::AppState;
use gantry_common::cluster::ImageRef;

/// How long a verified password is trusted without hashing it again.
const PASSWORD_TTL: Duration = Duration::from_secs(5 * 60);
/// Remembered passwords at most (the oldest are forgotten first).
const PASSWORD_CACHE_MAX: usize = 10_000;

/// Passwords verified lately: SHA-256 of `email NUL password` → the user and the stored hash
/// it matched (a password change makes the entry stale at once).
#[derive(Default)]
pub struct PasswordCache(Mutex<HashMap<[u8; 32], Verified>>);

#[derive(Clone)]
struct Verified {
    user: UserRow,
    password_hash: String,
    at: Instant,
}

impl PasswordCache {
    fn get(&self, key: &[u8; 32]) -> Option<Verified> {
        let map = self.0.lock().expect("password cache poisoned");
        map.get(key)
            .filter(|v| v.at.elapsed() < PASSWORD_TTL)
            .cloned()
    }

    fn put(&self, key: [u8; 32], verified: Verified) {
        let mut map = self.0.lock().expect("password cache poisoned");
        if map.len() >= PASSWORD_CACHE_MAX {
            map.retain(|_, v| v.at.elapsed() < PASSWORD_TTL);
            if map.len() >= PASSWORD_CACHE_MAX {
                map.clear();
            }
        }
        map.insert(key, verified);
    }
}

/// Who calls the registry.
pub enum Who {
    /// A person or CI, with their teams and roles.
    User(Caller),
    /// An agent pulling the image of an instance placed on its node.
    Node(PullGrant),
}

/// The caller of a registry request, from its Basic credentials.
pub async fn authenticate(state: &AppState, headers: &HeaderMap) -> RegistryResult<Who> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Err(unauthorized(
            "authentication required: docker login with your e-mail and an API token",
        ));
    };
    let (user, secret) = basic_credentials(value.as_bytes())
        .ok_or_else(|| unauthorized("send Basic credentials: your e-mail and an API token"))?;
    if pull_secret::looks_like(&secret) {
        return state
            .registry
            .pull_secrets
            .verify(&secret, time::OffsetDateTime::now_utc())
            .map(Who::Node)
            .ok_or_else(|| unauthorized("invalid or expired pull secret"));
    }
    if tokens::looks_valid(&secret) {
        let caller = caller::from_token(&secret, state)
            .await
            .map_err(|_| unauthorized("invalid or revoked API token"))?;
        if !caller.user.email.eq_ignore_ascii_case(user.trim()) {
            return Err(unauthorized(
                "this API token belongs to another account: log in with its owner's e-mail",
            ));
        }
        return Ok(Who::User(caller));
    }
    by_password(state, &user, secret).await.map(Who::User)
}

async fn by_password(state: &AppState, user: &str, secret: String) -> RegistryResult<Caller> {
    let wrong = || unauthorized("wrong e-mail, password or API token");
    let email = Email::parse(user).map_err(|_| wrong())?;
    let password = Password::parse(&secret).map_err(|_| wrong())?;
    let key: [u8; 32] = Sha256::new()
        .chain_update(email.as_str())
        .chain_update([0])
        .chain_update(secret.as_bytes())
        .finalize()
        .into();
    let account = sqlx::query_as::<_, (String, bool, time::OffsetDateTime, uuid::Uuid, String)>(
        "SELECT email, is_platform_admin, created_at, id, password_hash FROM users WHERE email = $1",
    )
    .bind(email.as_str())
    .fetch_optional(&state.db)
    .await?
    .map(|(email, is_platform_admin, created_at, id, hash)| {
        (
            UserRow {
                id,
                email,
                is_platform_admin,
                created_at,
            },
            hash,
        )
    });
    if let (Some(hit), Some((_, hash))) = (state.registry.passwords.get(&key), &account) {
        if &hit.password_hash == hash {
            return Ok(Caller {
                user: hit.user,
                via: Via::Password,
            });
        }
    }
    let stored = account.as_ref().map(|(_, hash)| hash.clone());
    let outcome = throttle::attempt(&state.db, email.as_str(), || {
        password::verify(password, stored)
    })
    .await
    .map_err(RegistryError::internal)?;
    match (outcome, account) {
        (Err(retry_after), _) => Err(RegistryError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "TOOMANYREQUESTS",
            format!("too many failed logins for this account; try again in {retry_after} s"),
        )),
        (Ok(true), Some((user, password_hash))) => {
            state.registry.passwords.put(
                key,
                Verified {
                    user: user.clone(),
                    password_hash,
                    at: Instant::now(),
                },
            );
            Ok(Caller {
                user,
                via: Via::Password,
            })
        }
        _ => Err(wrong()),
    }
}

/// `Basic base64(user:password)` → (user, password).
fn basic_credentials(value: &[u8]) -> Option<(String, String)> {
    let encoded = value.strip_prefix(b"Basic ")?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim_ascii())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (user, password) = text.split_once(':')?;
    Some((user.to_owned(), password.to_owned()))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_credentials_split_at_the_first_colon() {
        let value = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode("a@b.io:pa:ss")
        );
        assert_eq!(
            basic_credentials(value.as_bytes()),
            Some(("a@b.io".into(), "pa:ss".into()))
        );
        assert_eq!(basic_credentials(b"Bearer x"), None);
        assert_eq!(basic_credentials(b"Basic !!!"), None);
    }
}
