//! API token secrets: `gnt_` followed by 256 random bits (base64url). Only a SHA-256 of the
//! secret is stored; a fast hash is enough because the secret cannot be guessed.

use base64::Engine;
use rand::RngCore;
use sha2::{Digest, Sha256};

pub const PREFIX: &str = "gnt_";
/// How much of the secret is kept to recognise a token in a list.
const VISIBLE_LEN: usize = PREFIX.len() + 8;

pub struct NewSecret {
    pub secret: String,
    pub hash: Vec<u8>,
    pub visible_prefix: String,
}

pub fn generate() -> NewSecret {
    generate_with_prefix(PREFIX)
}

/// A secret of the same shape with another prefix (`gjt_` for node join tokens), so a secret
/// pasted in the wrong place is recognised as such.
pub fn generate_with_prefix(prefix: &str) -> NewSecret {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    let secret = format!(
        "{prefix}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    );
    NewSecret {
        hash: hash(&secret),
        visible_prefix: secret[..prefix.len() + VISIBLE_LEN - PREFIX.len()].to_owned(),
        secret,
    }
}

pub fn hash(secret: &str) -> Vec<u8> {
    Sha256::digest(secret.as_bytes()).to_vec()
}

/// Does this look like one of our tokens? Lets a wrong credential be refused without a query.
pub fn looks_valid(secret: &str) -> bool {
    looks_valid_with_prefix(secret, PREFIX)
}

pub fn looks_valid_with_prefix(secret: &str, prefix: &str) -> bool {
    secret.len() == prefix.len() + 43
        && secret.starts_with(prefix)
        && secret[prefix.len()..]
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_tokens_are_unique_and_recognised() {
        let a = generate();
        let b = generate();
        assert_ne!(a.secret, b.secret);
        assert!(looks_valid(&a.secret), "{}", a.secret);
        assert!(a.secret.starts_with(&a.visible_prefix));
        assert_eq!(a.hash, hash(&a.secret));
        assert!(!looks_valid("gnt_short"));
        assert!(!looks_valid(&a.secret.replace("gnt_", "xyz_")));
    }
}
