//! Pull secrets: what an agent pulls a registry image with.
//!
//! A secret names one instance on one node and when it ends, signed by the server
//! (HMAC-SHA256 under a key derived from `GANTRY_SECRET_KEY`):
//! `gnp_` + base64url(instance id ‖ node id ‖ expiry (unix seconds, big-endian) ‖ MAC). The
//! registry accepts it for pulls of that instance's image repository only, and only while the
//! instance is still placed on that node and meant to run (checked in Postgres at each use).
//! Expiries fall on the hour, two hours ahead, so the desired set (and its secrets) changes once
//! an hour and agents always hold a valid one.

use base64::Engine;
use gantry_common::agent::{PullSecret, PULL_SECRET_PREFIX};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::config::SecretKey;

type HmacSha256 = Hmac<Sha256>;

const PAYLOAD: usize = 16 + 16 + 8;
const LIFETIME_HOURS: i64 = 2;

#[derive(Clone)]
pub struct PullSecrets {
    key: [u8; 32],
}

/// What a valid secret stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PullGrant {
    pub instance: Uuid,
    pub node: Uuid,
}

impl PullSecrets {
    pub fn new(secret_key: &SecretKey) -> Self {
        // A key of its own: a MAC made here can never be mistaken for anything else keyed
        // by the server's secret.
        let mut mac = HmacSha256::new_from_slice(&secret_key.0).expect("HMAC takes any key");
        mac.update(b"gantry registry pull secrets v1");
        Self {
            key: mac.finalize().into_bytes().into(),
        }
    }

    fn mac(&self, payload: &[u8]) -> HmacSha256 {
        let mut mac = HmacSha256::new_from_slice(&self.key).expect("HMAC takes any key");
        mac.update(payload);
        mac
    }

    /// The secret of `instance` on `node` as of `now`.
    pub fn issue(&self, instance: Uuid, node: Uuid, now: OffsetDateTime) -> PullSecret {
        let hour = now.unix_timestamp().div_euclid(3600);
        let expires = (hour + LIFETIME_HOURS) * 3600;
        let mut bytes = Vec::with_capacity(PAYLOAD + 32);
        bytes.extend_from_slice(instance.as_bytes());
        bytes.extend_from_slice(node.as_bytes());
        bytes.extend_from_slice(&expires.to_be_bytes());
        let tag = self.mac(&bytes).finalize().into_bytes();
        bytes.extend_from_slice(&tag);
        PullSecret(format!(
            "{PULL_SECRET_PREFIX}{}",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
        ))
    }

    /// The grant of a secret this server made and that has not expired.
    pub fn verify(&self, secret: &str, now: OffsetDateTime) -> Option<PullGrant> {
        let encoded = secret.strip_prefix(PULL_SECRET_PREFIX)?;
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
        Some(PullGrant {
            instance: Uuid::from_slice(&payload[..16]).ok()?,
            node: Uuid::from_slice(&payload[16..32]).ok()?,
        })
    }
}

pub fn looks_like(secret: &str) -> bool {
    secret.starts_with(PULL_SECRET_PREFIX)
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
}
