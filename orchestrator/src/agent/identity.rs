//! Who this node is, kept in the agent's state directory: its name and its own credential.
//!
//! The agent makes the credential itself (256 random bits), writes it to disk, and only then
//! presents it to the server together with a join token, at the node's first connection. The
//! server keeps its hash and from then on knows the node by it: the join token is no longer
//! needed (it may expire or be revoked), and no other agent can take the node's name. Because
//! the secret is on disk before the server sees it, a crash at any moment leaves nothing to
//! clean up: the next start presents the same credential again.

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use gantry_common::agent::NODE_CREDENTIAL_PREFIX;
use rand::RngCore;
use serde::{Deserialize, Serialize};

const FILE: &str = "node.json";

/// The node's identity as stored.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    pub name: String,
    /// `gnc_…`: secret.
    pub credential: String,
    /// The server accepted the credential (a welcome arrived): no join token is needed any more.
    pub registered: bool,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity")
            .field("name", &self.name)
            .field("credential", &"***")
            .field("registered", &self.registered)
            .finish()
    }
}

/// The identity in `dir`, made (and written) when there is none yet.
///
/// # Errors
/// - The directory holds another registered node's identity and `name` differs: one state
///   directory is one node.
/// - No identity yet and no join token to register one with.
pub fn load_or_create(dir: &Path, name: &str, has_join_token: bool) -> anyhow::Result<Identity> {
    match read(dir)? {
        Some(id) if id.registered && id.name != name => bail!(
            "the state directory {} belongs to node {:?}; run this agent with --name {} \
             (or give another node its own --state-dir)",
            dir.display(),
            id.name,
            id.name
        ),
        Some(id) if id.registered => Ok(id),
        // Never accepted: the same credential again (a crash or refusal before the welcome),
        // under the name asked for now.
        Some(id) => {
            let id = Identity {
                name: name.to_owned(),
                ..id
            };
            require_join_token(has_join_token, name)?;
            write(dir, &id)?;
            Ok(id)
        }
        None => {
            require_join_token(has_join_token, name)?;
            let id = Identity {
                name: name.to_owned(),
                credential: new_credential(),
                registered: false,
            };
            write(dir, &id)?;
            Ok(id)
        }
    }
}

fn require_join_token(has_join_token: bool, name: &str) -> anyhow::Result<()> {
    if !has_join_token {
        bail!(
            "node {name} is not registered yet: its first start needs a join token \
             (--token gjt_…, from POST /api/v1/nodes/join-tokens)"
        );
    }
    Ok(())
}

/// Records that the server accepted the credential.
pub fn mark_registered(dir: &Path, id: &Identity) -> anyhow::Result<()> {
    write(
        dir,
        &Identity {
            registered: true,
            ..id.clone()
        },
    )
}

fn path(dir: &Path) -> PathBuf {
    dir.join(FILE)
}

fn read(dir: &Path) -> anyhow::Result<Option<Identity>> {
    let file = path(dir);
    match std::fs::read_to_string(&file) {
        Ok(text) => serde_json::from_str(&text)
            .map(Some)
            .with_context(|| format!("{} is not a node identity", file.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("failed to read {}", file.display())),
    }
}

/// Writes atomically (a temporary file renamed over the old one), readable by the owner only.
fn write(dir: &Path, id: &Identity) -> anyhow::Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("failed to create the state directory {}", dir.display()))?;
    let tmp = dir.join(format!("{FILE}.tmp"));
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("failed to write {}", tmp.display()))?;
    file.write_all(serde_json::to_string_pretty(id)?.as_bytes())?;
    file.sync_all()?;
    std::fs::rename(&tmp, path(dir))
        .with_context(|| format!("failed to write {}", path(dir).display()))?;
    Ok(())
}

fn new_credential() -> String {
    use base64::Engine;
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    format!(
        "{NODE_CREDENTIAL_PREFIX}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_node_keeps_its_credential_and_its_name() {
        let dir = tempfile::tempdir().unwrap();
        assert!(load_or_create(dir.path(), "n1", false)
            .unwrap_err()
            .to_string()
            .contains("needs a join token"));
        let first = load_or_create(dir.path(), "n1", true).unwrap();
        assert!(first.credential.starts_with("gnc_"));
        assert_eq!(first.credential.len(), 4 + 43);
        assert!(!first.registered);
        // Not accepted yet: the same credential again, even under another name.
        let again = load_or_create(dir.path(), "n2", true).unwrap();
        assert_eq!(again.credential, first.credential);
        assert_eq!(again.name, "n2");

        mark_registered(dir.path(), &again).unwrap();
        let registered = load_or_create(dir.path(), "n2", false).unwrap();
        assert!(registered.registered);
        assert_eq!(registered.credential, first.credential);
        let err = load_or_create(dir.path(), "n3", true).unwrap_err();
        assert!(err.to_string().contains("belongs to node \"n2\""), "{err}");

        let mode = std::fs::metadata(dir.path().join(FILE))
            .unwrap()
            .permissions();
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
            0o600
        );
        assert!(!format!("{registered:?}").contains("gnc_"));
    }
}
