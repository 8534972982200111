//! Pull secrets: what an agent pulls a registry image with; build secrets: what it pushes a
//! build's image with.
//!
//! A secret names one instance on one node and when it ends, signed by the server
//! (HMAC-SHA256 under a key derived from `GANTRY_SECRET_KEY`):
//! `gnp_` + base64url(instance id ‖ node id ‖ expiry (unix seconds, big-endian) ‖ MAC). The
//! registry accepts it for pulls of that instance's image repository only, and only while the
//! instance is still placed on that node and meant to run (checked in Postgres at each use).
//! Expiries fall on the hour, two hours ahead, so the desired set (and its secrets) changes once
//! an hour and agents always hold a valid one.

use base64::Engine;
use gantry_common::agent::{PullSecret, BUILD_SECRET_PREFIX, PULL_SECRET_PREFIX};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::config::SecretKey;

type HmacSha256 = Hmac<Sha256>;

const PAYLOAD: usize = 16 + 16 + 8;
const LIFETIME_HOURS: i64 = 2;

/// Signs and checks secrets of one kind: a prefix and a key of their own, so a secret of one
/// kind is never valid as another.
#[derive(Clone)]
struct Signer {
    key: [u8; 32],
    prefix: &'static str,
}

impl Signer {
    fn new(secret_key: &SecretKey, purpose: &[u8], prefix: &'static str) -> Self {
        // A key of its own: a MAC made here can never be mistaken for anything else keyed
        // by the server's secret.
        let mut mac = HmacSha256::new_from_slice(&secret_key.0).expect("HMAC takes any key");
        mac.update(purpose);
        Self {
            key: mac.finalize().into_bytes().into(),
            prefix,
        }
    }

    fn mac(&self, payload: &[u8]) -> HmacSha256 {
        let mut mac = HmacSha256::new_from_slice(&self.key).expect("HMAC takes any key");
        mac.update(payload);
        mac
    }

    /// `prefix` + base64url(a ‖ b ‖ expiry (unix seconds, big-endian) ‖ MAC).
    fn issue(&self, a: Uuid, b: Uuid, expires: i64) -> String {
        let mut bytes = Vec::with_capacity(PAYLOAD + 32);
        bytes.extend_from_slice(a.as_bytes());
        bytes.extend_from_slice(b.as_bytes());
        bytes.extend_from_slice(&expires.to_be_bytes());
        let tag = self.mac(&bytes).finalize().into_bytes();
        bytes.extend_from_slice(&tag);
        format!(
            "{}{}",
            self.prefix,
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
        )
    }

    /// The two ids of a secret this server made and that has not expired.
    fn verify(&self, secret: &str, now: OffsetDateTime) -> Option<(Uuid, Uuid)> {
        let encoded = secret.strip_prefix(self.prefix)?;
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(encoded)
            .ok()?;
        if bytes.len() != PAYLOAD + 32 {
            return None;
        }
        let (payload, tag) = bytes.split_at(PAYLOAD);
        // Constant time.
        self.mac(payload).verify_slice(tag).ok()?;
        let expires = i64::from_be_bytes(payload[32..40].try_into().ok()?);
        if now.unix_timestamp() >= expires {
            return None;
        }
        Some((
            Uuid::from_slice(&payload[..16]).ok()?,
            Uuid::from_slice(&payload[16..32]).ok()?,
        ))
    }
}

#[derive(Clone)]
pub struct PullSecrets(Signer);

/// What a valid secret stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PullGrant {
    pub instance: Uuid,
    pub node: Uuid,
}

impl PullSecrets {
    pub fn new(secret_key: &SecretKey) -> Self {
        Self(Signer::new(
            secret_key,
            b"gantry registry pull secrets v1",
            PULL_SECRET_PREFIX,
        ))
    }

    /// The secret of `instance` on `node` as of `now`.
    pub fn issue(&self, instance: Uuid, node: Uuid, now: OffsetDateTime) -> PullSecret {
        let hour = now.unix_timestamp().div_euclid(3600);
        PullSecret(self.0.issue(instance, node, (hour + LIFETIME_HOURS) * 3600))
    }

    /// The grant of a secret this server made and that has not expired.
    pub fn verify(&self, secret: &str, now: OffsetDateTime) -> Option<PullGrant> {
        let (instance, node) = self.0.verify(secret, now)?;
        Some(PullGrant { instance, node })
    }
}

/// Push secrets of builds: an agent pushes a build's image with one. It names the build and
/// the node, and the registry accepts it for the build's own repository only, while the build
/// runs on that node (checked in Postgres at each use).
#[derive(Clone)]
pub struct BuildSecrets(Signer);

/// What a valid build secret stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BuildGrant {
    pub build: Uuid,
    pub node: Uuid,
}

impl BuildSecrets {
    pub fn new(secret_key: &SecretKey) -> Self {
        Self(Signer::new(
            secret_key,
            b"gantry registry build secrets v1",
            BUILD_SECRET_PREFIX,
        ))
    }

    /// The secret of `build` on `node`, valid until `expires`.
    pub fn issue(&self, build: Uuid, node: Uuid, expires: OffsetDateTime) -> PullSecret {
        PullSecret(self.0.issue(build, node, expires.unix_timestamp()))
    }

    pub fn verify(&self, secret: &str, now: OffsetDateTime) -> Option<BuildGrant> {
        let (build, node) = self.0.verify(secret, now)?;
        Some(BuildGrant { build, node })
    }
}

pub fn looks_like(secret: &str) -> bool {
    secret.starts_with(PULL_SECRET_PREFIX)
}

pub fn looks_like_build(secret: &str) -> bool {
    secret.starts_with(BUILD_SECRET_PREFIX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_names_its_instance_and_node_until_it_expires_and_cannot_be_forged() {
        let secrets = PullSecrets::new(&SecretKey([7; 32]));
        let (instance, node) = (Uuid::new_v4(), Uuid::new_v4());
        let now = OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap();
        let secret = secrets.issue(instance, node, now);
        assert!(format!("{secret:?}").contains('…'));
        assert_eq!(
            secrets.verify(&secret.0, now),
            Some(PullGrant { instance, node })
        );
        // The same secret all hour: the desired set changes once an hour, not on every pass.
        let same_hour = now.replace_minute(59).unwrap();
        assert_eq!(secrets.issue(instance, node, same_hour), secret);
        // Valid into the next hour, expired after two.
        assert!(secrets
            .verify(&secret.0, now + time::Duration::minutes(90))
            .is_some());
        assert!(secrets
            .verify(&secret.0, now + time::Duration::hours(2))
            .is_none());
        // Another server's key, or a flipped byte, is refused.
        let other = PullSecrets::new(&SecretKey([8; 32]));
        assert!(other.verify(&secret.0, now).is_none());
        let mut forged = secret.0.clone().into_bytes();
        let last = forged.len() - 1;
        forged[last] = if forged[last] == b'A' { b'B' } else { b'A' };
        assert!(secrets
            .verify(std::str::from_utf8(&forged).unwrap(), now)
            .is_none());
        assert!(secrets.verify("gnp_short", now).is_none());
    }

    #[test]
    fn a_build_secret_is_not_a_pull_secret_and_ends_when_told() {
        let key = SecretKey([7; 32]);
        let (pulls, builds) = (PullSecrets::new(&key), BuildSecrets::new(&key));
        let (build, node) = (Uuid::new_v4(), Uuid::new_v4());
        let now = OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap();
        let secret = builds.issue(build, node, now + time::Duration::minutes(20));
        assert!(looks_like_build(&secret.0) && !looks_like(&secret.0));
        assert_eq!(
            builds.verify(&secret.0, now),
            Some(BuildGrant { build, node })
        );
        assert!(builds
            .verify(&secret.0, now + time::Duration::minutes(20))
            .is_none());
        assert!(pulls.verify(&secret.0, now).is_none());
        let pull = pulls.issue(build, node, now);
        assert!(builds.verify(&pull.0, now).is_none());
    }
}
