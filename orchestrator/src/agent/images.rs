//! Removing images no instance on this node has used for a day, so nodes do not fill up.
//!
//! Only images this agent's instances ran are candidates, never an image the machine's owner
//! built or pulled for other work. When each was last used is kept in `<state dir>/images.json`,
//! so a restarted agent still collects what it ran before.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// An image unused this long is removed.
pub const UNUSED_FOR: Duration = Duration::from_secs(24 * 3600);
/// How often the agent looks for such images.
pub const EVERY: Duration = Duration::from_secs(3600);

/// Image id (`sha256:…`) → when an instance of this node last used it (unix seconds).
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageUse {
    last_used: BTreeMap<String, i64>,
}

impl ImageUse {
    /// What `path` holds; nothing when it is missing or unreadable (then images used before
    /// are simply not collected).
    pub fn load(path: &Path) -> Self {
        std::fs::read(path)
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .unwrap_or_default()
    }

    pub fn save(&self, path: &Path) -> std::io::Result<()> {
        let tmp = path.with_extension("json.tmp");
        std::fs::write(&tmp, serde_json::to_vec(self)?)?;
        std::fs::rename(tmp, path)
    }

    /// Marks the images of the node's containers as used at `now`; true when one is new.
    pub fn record<'a>(&mut self, in_use: impl IntoIterator<Item = &'a str>, now: i64) -> bool {
        let mut new = false;
        for id in in_use {
            new |= self.last_used.insert(id.to_owned(), now).is_none();
        }
        new
    }

    /// The images to remove: not used by any container now, and last used `UNUSED_FOR` ago.
    pub fn stale(&self, in_use: &HashSet<&str>, now: i64) -> Vec<String> {
        let cutoff = now - UNUSED_FOR.as_secs() as i64;
        self.last_used
            .iter()
            .filter(|(id, at)| **at <= cutoff && !in_use.contains(id.as_str()))
            .map(|(id, _)| id.clone())
            .collect()
    }

    /// Stops tracking an image (removed, or in use by something that is not ours).
    pub fn forget(&mut self, id: &str) {
        self.last_used.remove(id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: i64 = 24 * 3600;

    #[test]
    fn only_images_unused_for_a_day_and_not_in_use_are_stale() {
        let mut images = ImageUse::default();
        assert!(images.record(["sha256:old", "sha256:busy", "sha256:recent"], 0));
        assert!(!images.record(["sha256:recent"], DAY / 2), "nothing new");
        let busy = HashSet::from(["sha256:busy"]);
        // (now, expected)
        let cases = [
            (DAY - 1, vec![]),
            (DAY, vec!["sha256:old".to_owned()]),
            (
                DAY / 2 + DAY,
                vec!["sha256:old".into(), "sha256:recent".into()],
            ),
        ];
        for (now, want) in cases {
            assert_eq!(images.stale(&busy, now), want, "at {now}");
        }
        images.forget("sha256:old");
        assert_eq!(images.stale(&busy, 2 * DAY), vec!["sha256:recent"]);
    }

    #[test]
    fn it_survives_a_restart_in_the_state_directory() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("images.json");
        assert_eq!(ImageUse::load(&path), ImageUse::default());
        let mut images = ImageUse::default();
        images.record(["sha256:a"], 42);
        images.save(&path).unwrap();
        assert_eq!(ImageUse::load(&path), images);
        std::fs::write(&path, b"not json").unwrap();
        assert_eq!(ImageUse::load(&path), ImageUse::default());
    }
}
