//! Password hashing: argon2id with m=19456 KiB, t=2, p=1 (OWASP's minimum), on the blocking pool.

use std::sync::LazyLock;

use argon2::password_hash::{
    rand_core::OsRng, PasswordHash, PasswordHasher, PasswordVerifier, SaltString,
};
use argon2::{Algorithm, Argon2, Params, Version};
use gantry_common::Password;

fn argon2() -> Argon2<'static> {
    let params = Params::new(19_456, 2, 1, None).expect("static argon2 parameters are valid");
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// Verified instead of a real hash when the e-mail is unknown, so that a login for a missing
/// account costs the same time as one with a wrong password.
static DUMMY_HASH: LazyLock<String> = LazyLock::new(|| {
    hash_blocking("gantry-dummy-password-for-timing").expect("hashing a constant cannot fail")
});

fn hash_blocking(password: &str) -> Result<String, argon2::password_hash::Error> {
    let salt = SaltString::generate(&mut OsRng);
    Ok(argon2()
        .hash_password(password.as_bytes(), &salt)?
        .to_string())
}

pub async fn hash(password: Password) -> anyhow::Result<String> {
    tokio::task::spawn_blocking(move || hash_blocking(password.expose()))
        .await?
        .map_err(|e| anyhow::anyhow!("hashing password: {e}"))
}

/// True when `password` matches `stored`; with `stored = None` it checks a dummy hash and
/// returns false, taking the same time.
pub async fn verify(password: Password, stored: Option<String>) -> anyhow::Result<bool> {
    tokio::task::spawn_blocking(move || {
        let known = stored.is_some();
        let phc = stored.unwrap_or_else(|| DUMMY_HASH.clone());
        let parsed = PasswordHash::new(&phc).map_err(|e| anyhow::anyhow!("stored hash: {e}"))?;
        let ok = argon2()
            .verify_password(password.expose().as_bytes(), &parsed)
            .is_ok();
        Ok(known && ok)
    })
    .await?
}

/// Computes the dummy hash ahead of the first login (it costs one hash).
pub fn warm_up() {
    LazyLock::force(&DUMMY_HASH);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hash_and_verify() {
        let pw = Password::parse("correct horse").unwrap();
        let stored = hash(pw.clone()).await.unwrap();
        assert!(
            stored.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "{stored}"
        );
        assert!(verify(pw.clone(), Some(stored.clone())).await.unwrap());
        assert!(
            !verify(Password::parse("wrong horse").unwrap(), Some(stored))
                .await
                .unwrap()
        );
        // Even the dummy password is refused when the account does not exist.
        let dummy = Password::parse("gantry-dummy-password-for-timing").unwrap();
        assert!(!verify(dummy, None).await.unwrap());
    }
}
