//! HTTP Basic credentials, as the docker and git CLIs send them: an account's e-mail with an
//! API token (`gnt_…`: one team, its role) or the account's password. A password is verified
//! with argon2 once, then remembered for a few minutes, so a push of many layers (or a git
//! push's several requests) does not hash it each time.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine;
use gantry_common::{Email, Password};
use sha2::{Digest as _, Sha256};

use crate::auth::{caller, password, throttle, tokens, Caller, UserRow, Via};
use crate::state::AppState;

/// Why Basic credentials were not accepted; each boundary words its own answer.
#[derive(Debug)]
pub enum BasicError {
    /// Wrong, expired or revoked: the message for the person.
    Wrong(&'static str),
    /// Too many failed logins of the account: seconds until it may try again.
    Throttled(u64),
    /// The database failed.
    Internal(String),
}

impl From<sqlx::Error> for BasicError {
    fn from(e: sqlx::Error) -> Self {
        BasicError::Internal(e.to_string())
    }
}

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

/// The account behind `user` and `secret` (an API token or the password).
pub async fn caller(
    state: &AppState,
    cache: &PasswordCache,
    user: &str,
    secret: String,
) -> Result<Caller, BasicError> {
    if tokens::looks_valid(&secret) {
        let caller = caller::from_token(&secret, state)
            .await
            .map_err(|_| BasicError::Wrong("invalid or revoked API token"))?;
        if !caller.user.email.eq_ignore_ascii_case(user.trim()) {
            return Err(BasicError::Wrong(
                "this API token belongs to another account: use its owner's e-mail",
            ));
        }
        return Ok(caller);
    }
    by_password(state, cache, user, secret).await
}

async fn by_password(
    state: &AppState,
    cache: &PasswordCache,
    user: &str,
    secret: String,
) -> Result<Caller, BasicError> {
    let wrong = || BasicError::Wrong("wrong e-mail, password or API token");
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
    if let (Some(hit), Some((_, hash))) = (cache.get(&key), &account) {
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
    .map_err(|e| BasicError::Internal(e.to_string()))?;
    match (outcome, account) {
        (Err(retry_after), _) => Err(BasicError::Throttled(retry_after)),
        (Ok(true), Some((user, password_hash))) => {
            cache.put(
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
pub fn credentials(value: &[u8]) -> Option<(String, String)> {
    let encoded = value.strip_prefix(b"Basic ")?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim_ascii())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (user, password) = text.split_once(':')?;
    Some((user.to_owned(), password.to_owned()))
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
            credentials(value.as_bytes()),
            Some(("a@b.io".into(), "pa:ss".into()))
        );
        assert_eq!(credentials(b"Bearer x"), None);
        assert_eq!(credentials(b"Basic !!!"), None);
    }
}
