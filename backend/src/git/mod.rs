//! Apps' git remotes: `<server>/git/<team>/<app>.git`, git's smart HTTP protocol.
//!
//! - [`http`]: the route: Basic authentication, the caller's role, then git's own
//!   `http-backend` as a CGI program ([`cgi`]) on the app's bare repository.
//! - [`push`]: a push to the deploy branch is built before the branch moves: git runs our
//!   `pre-receive` hook ([`hook`], this binary under another name), which sends the pushed
//!   commit (as a tar) back to the server and prints the build's output as it comes — the
//!   `remote:` lines of `git push`. A failed build makes the hook fail, so git refuses the push.
//!
//! On disk, under the git directory: `repos/<app id>.git` (bare repositories, named by id so a
//! tenant's names never reach a path), `hooks/pre-receive` (a link to this binary),
//! `contexts/` (build contexts until their build ends). Git is always run with an argv vector
//! and a clean environment; the repositories' own hooks and config never run.

pub mod cgi;
pub mod hook;
pub mod http;
pub mod push;

use std::path::{Path, PathBuf};

use anyhow::Context;
use axum::routing::{any, post};
use uuid::Uuid;

use crate::state::AppState;

/// `/git/…`: the remotes and the hooks' endpoint. Outside the REST API's OpenAPI document
/// (its client is git), without sessions or the API's body limit: pushes can be large.
pub fn router() -> axum::Router<AppState> {
    axum::Router::new()
        .route("/git/-/hooks/{push}", post(push::build))
        .route("/git/{team}/{repo}/{*rest}", any(http::serve))
        .layer(axum::extract::DefaultBodyLimit::disable())
}

/// The git directory and the pushes in progress.
pub struct Git {
    dir: PathBuf,
    /// The largest push accepted (git's request body), in bytes.
    pub max_push_bytes: u64,
    pub pushes: push::Pushes,
    /// The directories are made and the hook linked at the first git request, so a server
    /// that never serves one leaves nothing on disk.
    prepared: tokio::sync::OnceCell<()>,
}

impl Git {
    /// The git directory at `dir`. Contexts a server that stopped during builds left behind
    /// are removed (those builds are failed).
    pub fn open(dir: &Path, max_push_bytes: u64) -> Self {
        let git = Git {
            dir: dir.to_owned(),
            max_push_bytes,
            pushes: push::Pushes::default(),
            prepared: tokio::sync::OnceCell::new(),
        };
        if let Ok(entries) = std::fs::read_dir(git.contexts_dir()) {
            for entry in entries.flatten() {
                let _ = std::fs::remove_file(entry.path());
            }
        }
        git
    }

    /// Makes the directories and links the hook to this binary (again at each start: the
    /// binary may have moved).
    async fn prepare(&self) -> anyhow::Result<()> {
        self.prepared
            .get_or_try_init(|| async {
                for sub in [self.repos_dir(), self.hooks_dir(), self.contexts_dir()] {
                    tokio::fs::create_dir_all(&sub)
                        .await
                        .with_context(|| format!("failed to create {}", sub.display()))?;
                }
                let exe = std::env::current_exe()
                    .context("failed to find this binary for the git hook")?;
                let link = self.hooks_dir().join(hook::NAME);
                let staged = self
                    .hooks_dir()
                    .join(format!(".{}.{}", hook::NAME, Uuid::new_v4()));
                std::os::unix::fs::symlink(&exe, &staged)
                    .and_then(|()| std::fs::rename(&staged, &link))
                    .with_context(|| format!("failed to link the git hook {}", link.display()))
            })
            .await
            .map(|_| ())
    }

    pub fn repos_dir(&self) -> PathBuf {
        self.dir.join("repos")
    }

    pub fn hooks_dir(&self) -> PathBuf {
        self.dir.join("hooks")
    }

    pub fn contexts_dir(&self) -> PathBuf {
        self.dir.join("contexts")
    }

    /// `<app id>.git`, relative to [`Git::repos_dir`].
    pub fn repo_name(app_id: Uuid) -> String {
        format!("{app_id}.git")
    }

    /// Makes the app's bare repository unless it exists. Made aside and moved into place, so a
    /// request never sees half a repository.
    pub async fn ensure_repo(&self, app_id: Uuid) -> anyhow::Result<()> {
        self.prepare().await?;
        let path = self.repos_dir().join(Self::repo_name(app_id));
        if tokio::fs::try_exists(&path).await.unwrap_or(false) {
            return Ok(());
        }
        let staged = self
            .repos_dir()
            .join(format!(".{app_id}.{}", Uuid::new_v4()));
        let output = cgi::git_command()
            .args(["init", "--quiet", "--bare", "--initial-branch=main"])
            .arg(&staged)
            .output()
            .await
            .context("failed to run git (is it installed on the server?)")?;
        if !output.status.success() {
            anyhow::bail!(
                "git init failed: {}",
                String::from_utf8_lossy(&output.stderr).trim()
            );
        }
        match tokio::fs::rename(&staged, &path).await {
            Ok(()) => Ok(()),
            // Made by a concurrent request meanwhile.
            Err(_) if tokio::fs::try_exists(&path).await.unwrap_or(false) => {
                let _ = tokio::fs::remove_dir_all(&staged).await;
                Ok(())
            }
            Err(e) => Err(e).context("failed to put the new repository in place"),
        }
    }

    /// Where `git_ref` of the app's repository points now; `None` when it does not exist.
    pub async fn tip(&self, app_id: Uuid, git_ref: &str) -> anyhow::Result<Option<String>> {
        let path = self.repos_dir().join(Self::repo_name(app_id));
        let output = cgi::git_command()
            .arg("--git-dir")
            .arg(&path)
            .args(["rev-parse", "--verify", "--quiet", "--end-of-options"])
            .arg(git_ref)
            .output()
            .await
            .context("failed to run git")?;
        let tip = String::from_utf8_lossy(&output.stdout).trim().to_owned();
        Ok(output.status.success().then_some(tip))
    }

    /// Removes an app's repository (the app is deleted).
    pub async fn remove_repo(&self, app_id: Uuid) {
        let path = self.repos_dir().join(Self::repo_name(app_id));
        if let Err(e) = tokio::fs::remove_dir_all(&path).await {
            if e.kind() != std::io::ErrorKind::NotFound {
                tracing::warn!(app.id = %app_id, "failed to remove the app's git repository: {e}");
            }
        }
    }
}
