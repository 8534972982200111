//! Sealing of config var values at rest (XChaCha20-Poly1305 with a random 192-bit nonce).
//!
//! The associated data binds each sealed value to its app and key, so a value copied into another
//! row (or another app) fails to open instead of leaking under the wrong name.

use chacha20poly1305::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use uuid::Uuid;

use crate::config::SecretKey;

const NONCE_LEN: usize = 24;

pub struct Sealer {
    cipher: XChaCha20Poly1305,
}

#[derive(Debug, thiserror::Error)]
#[error("a sealed config value could not be opened (wrong GANTRY_SECRET_KEY or tampered data)")]
pub struct OpenError;

impl Sealer {
    pub fn new(key: &SecretKey) -> Self {
        Self {
            cipher: XChaCha20Poly1305::new((&key.0).into()),
        }
    }

    /// Returns `nonce || ciphertext`.
    pub fn seal(&self, app_id: Uuid, key: &str, value: &str) -> Vec<u8> {
        let nonce = XChaCha20Poly1305::generate_nonce(&mut OsRng);
        let aad = associated_data(app_id, key);
        let ciphertext = self
            .cipher
            .encrypt(
                &nonce,
                Payload {
                    msg: value.as_bytes(),
                    aad: &aad,
                },
            )
            .expect("XChaCha20-Poly1305 encryption cannot fail for in-memory buffers");
        let mut out = nonce.to_vec();
        out.extend_from_slice(&ciphertext);
        out
    }

    pub fn open(&self, app_id: Uuid, key: &str, sealed: &[u8]) -> Result<String, OpenError> {
        if sealed.len() < NONCE_LEN {
            return Err(OpenError);
        }
        let (nonce, ciphertext) = sealed.split_at(NONCE_LEN);
        let aad = associated_data(app_id, key);
        let plain = self
            .cipher
            .decrypt(
                XNonce::from_slice(nonce),
                Payload {
                    msg: ciphertext,
                    aad: &aad,
                },
            )
            .map_err(|_| OpenError)?;
        String::from_utf8(plain).map_err(|_| OpenError)
    }
}

fn associated_data(app_id: Uuid, key: &str) -> Vec<u8> {
    let mut aad = app_id.as_bytes().to_vec();
    aad.extend_from_slice(key.as_bytes());
    aad
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_binding() {
        let sealer = Sealer::new(&SecretKey::generate());
        let app = Uuid::new_v4();
        let sealed = sealer.seal(app, "DATABASE_URL", "postgres://secret");
        assert!(
            !sealed.windows(6).any(|w| w == b"secret"),
            "value must not be stored in clear"
        );
        assert_eq!(
            sealer.open(app, "DATABASE_URL", &sealed).unwrap(),
            "postgres://secret"
        );
        assert!(
            sealer.open(app, "OTHER", &sealed).is_err(),
            "bound to its key"
        );
        assert!(
            sealer
                .open(Uuid::new_v4(), "DATABASE_URL", &sealed)
                .is_err(),
            "bound to its app"
        );
        assert!(Sealer::new(&SecretKey::generate())
            .open(app, "DATABASE_URL", &sealed)
            .is_err());
        assert!(sealer.open(app, "DATABASE_URL", &sealed[..10]).is_err());
        // Same value twice gives different ciphertexts (random nonce).
        assert_ne!(
            sealed,
            sealer.seal(app, "DATABASE_URL", "postgres://secret")
        );
    }
}
