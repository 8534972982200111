//! Request body templates: `{run}` is fixed per run, `{n}` changes per request.

use std::time::{SystemTime, UNIX_EPOCH};

/// A body template with `{run}` already substituted; `{n}` is filled in by [`render`].
///
/// [`render`]: BodyTemplate::render
#[derive(Debug, Clone)]
pub struct BodyTemplate {
    text: String,
}

impl BodyTemplate {
    pub fn new(template: &str, run_id: &str) -> Self {
        Self {
            text: template.replace("{run}", run_id),
        }
    }

    /// The body for request number `n`.
    pub fn render(&self, n: u64) -> String {
        self.text.replace("{n}", &n.to_string())
    }
}

/// A 6-character lowercase alphanumeric id, different on every run, so that objects
/// created by repeated runs (e.g. `app-{run}-{n}`) do not collide.
pub fn random_run_id() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    run_id_from_seed(nanos ^ (u64::from(std::process::id()) << 32))
}

fn run_id_from_seed(seed: u64) -> String {
    const ALPHABET: &[u8; 36] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    // splitmix64 finaliser: spreads nearby seeds (consecutive runs) over the whole range.
    let mut x = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^= x >> 31;
    (0..6)
        .map(|_| {
            let c = ALPHABET[(x % 36) as usize] as char;
            x /= 36;
            c
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn substitutes_run_once_and_n_per_request() {
        let t = BodyTemplate::new(r#"{"name":"app-{run}-{n}","id":{n}}"#, "abc123");
        assert_eq!(t.render(17), r#"{"name":"app-abc123-17","id":17}"#);
        assert_eq!(t.render(18), r#"{"name":"app-abc123-18","id":18}"#);
    }

    #[test]
    fn template_without_placeholders_is_unchanged() {
        let t = BodyTemplate::new(r#"{"name":"fixed"}"#, "abc123");
        assert_eq!(t.render(1), r#"{"name":"fixed"}"#);
    }

    #[test]
    fn run_id_is_six_lowercase_alphanumerics() {
        for id in [
            random_run_id(),
            run_id_from_seed(0),
            run_id_from_seed(u64::MAX),
        ] {
            assert_eq!(id.len(), 6, "{id}");
            assert!(
                id.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()),
                "{id}"
            );
        }
    }

    #[test]
    fn nearby_seeds_give_different_ids() {
        assert_ne!(run_id_from_seed(1), run_id_from_seed(2));
    }
}
