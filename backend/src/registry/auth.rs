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
use crate::auth::{caller, password, throttle, tokens, Caller, UserRow, Via};
use crate::authz::{self, TeamAccess};
use crate::state::AppState;

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

/// The caller of a registry request, from its Basic credentials.
pub async fn authenticate(state: &AppState, headers: &HeaderMap) -> RegistryResult<Caller> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Err(unauthorized(
            "authentication required: docker login with your e-mail and an API token",
        ));
    };
    let (user, secret) = basic_credentials(value.as_bytes())
        .ok_or_else(|| unauthorized("send Basic credentials: your e-mail and an API token"))?;
    if tokens::looks_valid(&secret) {
        let caller = caller::from_token(&secret, state)
            .await
            .map_err(|_| unauthorized("invalid or revoked API token"))?;
        if !caller.user.email.eq_ignore_ascii_case(user.trim()) {
            return Err(unauthorized(
                "this API token belongs to another account: log in with its owner's e-mail",
            ));
        }
        return Ok(caller);
    }
    by_password(state, &user, secret).await
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

/// The caller's access to `repo`'s team when it may do `need` there. A team the caller cannot
/// see is answered as a repository that does not exist; a visible team with too small a role
/// is `DENIED`.
pub async fn repo_access(
    state: &AppState,
    caller: Caller,
    repo: &RepoName,
    need: Permission,
) -> RegistryResult<TeamAccess> {
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
    Ok(access)
}

/// [`repo_access`] for a repository that must exist already (`NAME_UNKNOWN` otherwise): its id.
pub async fn existing_repo(
    state: &AppState,
    caller: Caller,
    repo: &RepoName,
    need: Permission,
) -> RegistryResult<uuid::Uuid> {
    let access = repo_access(state, caller, repo, need).await?;
    super::repository::find(&state.db, access.team.id, repo).await
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
