//! The real git CLI against an app's git remote, for the "git push deploys" journeys and their
//! benchmark.
//!
//! ```text
//! let repo = Repo::with_hello("ENV GREETING=hi")?;   // Dockerfile + the static `hello`
//! repo.commit("first")?;
//! let remote = remote_url(&base, &email, &token, &team, "web");
//! let out = repo.push(&remote, "main").await?;        // killed after PUSH_TIMEOUT
//! assert!(out.success() && out.text().contains("=== build 1 succeeded"));
//! ```
//!
//! Every git command runs with a clean environment: no system or global config (`HOME` is the
//! repository's own temporary directory), no terminal prompt, no credential helper, English
//! messages. Strings that come from a test (branch names, messages, file names) reach git only
//! as argv elements, never through a shell.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use tokio::io::AsyncReadExt;

/// How long a `git push` (a whole build) may take unless a test says otherwise.
pub const PUSH_TIMEOUT: Duration = Duration::from_secs(180);
/// How long a local git command (`init`, `commit`, …) or a `fetch`/`ls-remote` may take.
pub const GIT_TIMEOUT: Duration = Duration::from_secs(60);

/// The static demo binary `scripts/build-hello-image` leaves in `target/hello-image/hello`.
pub fn hello_binary() -> anyhow::Result<PathBuf> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/hello-image/hello");
    if !path.is_file() {
        bail!(
            "{} is missing: run scripts/build-hello-image (scripts/test does) to build the \
             static hello binary the git tests commit",
            path.display()
        );
    }
    Ok(path)
}

/// The hello image's Dockerfile (`examples/hello/Dockerfile`) with `extra` appended: e.g.
/// `ENV GREETING=hi`, or `RUN ["/hello", "sleep", "600"]` (exec form: a `scratch` image has no
/// shell).
pub fn hello_dockerfile(extra: &str) -> String {
    let base = include_str!("../../examples/hello/Dockerfile");
    let mut text = base.trim_end().to_owned();
    text.push('\n');
    if !extra.is_empty() {
        text.push_str(extra.trim_end());
        text.push('\n');
    }
    text
}

/// The app's remote with Basic credentials in it:
/// `http://alice%40x.io:gnt_…@127.0.0.1:PORT/git/<team>/<app>.git`. `base` is the server's
/// `http://host:port`; the e-mail and the secret (an API token or a password) are
/// percent-encoded.
pub fn remote_url(base: &str, email: &str, secret: &str, team: &str, app: &str) -> String {
    let (scheme, rest) = base.split_once("://").unwrap_or(("http", base));
    format!(
        "{scheme}://{}:{}@{}/git/{team}/{app}.git",
        userinfo_encode(email),
        userinfo_encode(secret),
        rest.trim_end_matches('/')
    )
}

/// The remote without credentials (what an anonymous client, or the API's `remote_url`, has).
pub fn anonymous_url(base: &str, team: &str, app: &str) -> String {
    format!("{}/git/{team}/{app}.git", base.trim_end_matches('/'))
}

/// Percent-encodes all but RFC 3986's unreserved characters.
fn userinfo_encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// What a git command did.
#[derive(Debug, Clone)]
pub struct Output {
    /// The exit code (`None`: killed by a signal).
    pub status: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    pub elapsed: Duration,
}

impl Output {
    pub fn success(&self) -> bool {
        self.status == Some(0)
    }

    /// stdout then stderr: `git push` prints the remote's lines (`remote: …`) on stderr.
    pub fn text(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }
}

impl std::fmt::Display for Output {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {:?} after {:.1?}\n--- stdout\n{}--- stderr\n{}",
            self.status, self.elapsed, self.stdout, self.stderr
        )
    }
}

/// A git working repository in a temporary directory (removed on drop), with its own `HOME`.
pub struct Repo {
    /// `<tmp>/repo` is the work tree, `<tmp>/home` the `HOME` of every git command.
    tmp: tempfile::TempDir,
}

impl Repo {
    /// `git init -b main` with a local user name and e-mail.
    pub fn new() -> anyhow::Result<Repo> {
        let tmp = tempfile::Builder::new()
            .prefix("gantry-e2e-git-")
            .tempdir()?;
        std::fs::create_dir(tmp.path().join("repo"))?;
        std::fs::create_dir(tmp.path().join("home"))?;
        let repo = Repo { tmp };
        repo.git(&["init", "-q", "-b", "main"])?;
        repo.git(&["config", "user.name", "Gantry E2E"])?;
        repo.git(&["config", "user.email", "e2e@example.com"])?;
        Ok(repo)
    }

    /// A new repository holding the hello image's context: `hello` (the static binary) and a
    /// `Dockerfile` with `dockerfile_extra` appended (see [`hello_dockerfile`]). Not committed.
    pub fn with_hello(dockerfile_extra: &str) -> anyhow::Result<Repo> {
        let binary = hello_binary()?;
        let repo = Repo::new()?;
        let dest = repo.path().join("hello");
        std::fs::copy(&binary, &dest)
            .with_context(|| format!("failed to copy {}", binary.display()))?;
        std::fs::set_permissions(&dest, std::os::unix::fs::PermissionsExt::from_mode(0o755))?;
        repo.set_dockerfile(dockerfile_extra)?;
        Ok(repo)
    }

    /// The work tree.
    pub fn path(&self) -> PathBuf {
        self.tmp.path().join("repo")
    }

    fn home(&self) -> PathBuf {
        self.tmp.path().join("home")
    }

    /// Rewrites `Dockerfile` as the hello one plus `extra`.
    pub fn set_dockerfile(&self, extra: &str) -> anyhow::Result<()> {
        self.write("Dockerfile", hello_dockerfile(extra))
    }

    /// Writes a file of the work tree (creating its directories); `path` is relative.
    pub fn write(&self, path: &str, contents: impl AsRef<[u8]>) -> anyhow::Result<()> {
        let full = self.path().join(path);
        if let Some(parent) = full.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&full, contents).with_context(|| format!("failed to write {path:?}"))
    }

    /// `git add -A` and `git commit -m msg` (even with nothing changed); returns the commit id.
    pub fn commit(&self, msg: &str) -> anyhow::Result<String> {
        self.git(&["add", "-A"])?;
        self.git(&["commit", "-q", "--allow-empty", "-m", msg])?;
        self.head()
    }

    /// The id of `HEAD`.
    pub fn head(&self) -> anyhow::Result<String> {
        Ok(self.git(&["rev-parse", "HEAD"])?.trim().to_owned())
    }

    /// `git switch -c <branch>` (or `git switch <branch>` when it exists).
    pub fn switch(&self, branch: &str) -> anyhow::Result<()> {
        let exists = self
            .git(&[
                "rev-parse",
                "--verify",
                "-q",
                &format!("refs/heads/{branch}"),
            ])
            .is_ok();
        if exists {
            self.git(&["switch", "-q", "--", branch]).map(drop)
        } else {
            self.git(&["switch", "-q", "-c", branch]).map(drop)
        }
    }

    /// A git command in the work tree with the clean environment and safe options. The
    /// arguments are argv elements: nothing is interpreted by a shell.
    pub fn command(&self, args: &[&str]) -> tokio::process::Command {
        let mut cmd = tokio::process::Command::new("git");
        cmd.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", self.home())
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env("GIT_TERMINAL_PROMPT", "0")
            .env("LC_ALL", "C")
            .current_dir(self.path())
            .args([
                // No credential helper: the URL's credentials or nothing.
                "-c",
                "credential.helper=",
                "-c",
                "commit.gpgsign=false",
                "-c",
                "core.autocrlf=false",
                "-c",
                "advice.detachedHead=false",
                // Our own hooks never run (there are none, but be sure).
                "-c",
                "core.hooksPath=/dev/null",
            ])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // Its own process group, so a deadline kills its helpers (`git-remote-http`) too.
            .process_group(0)
            .kill_on_drop(true);
        cmd
    }

    /// Runs a local git command (blocking, short) that must succeed; returns its stdout.
    pub fn git(&self, args: &[&str]) -> anyhow::Result<String> {
        let cmd = self.command(args);
        let mut cmd = cmd.into_std();
        let out = cmd
            .output()
            .with_context(|| format!("failed to run git {args:?}"))?;
        if !out.status.success() {
            bail!(
                "git {args:?} failed: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Runs git with a deadline (killed when it passes: an error holding the output so far);
    /// any exit code is an `Ok`.
    pub async fn run(&self, args: &[&str], timeout: Duration) -> anyhow::Result<Output> {
        run(self.command(args), args, timeout).await
    }

    /// `git push <remote> <refspec>` within [`PUSH_TIMEOUT`].
    pub async fn push(&self, remote: &str, refspec: &str) -> anyhow::Result<Output> {
        self.push_within(remote, refspec, PUSH_TIMEOUT).await
    }

    pub async fn push_within(
        &self,
        remote: &str,
        refspec: &str,
        timeout: Duration,
    ) -> anyhow::Result<Output> {
        self.run(&["push", remote, refspec], timeout).await
    }

    /// A push that runs while the test goes on (cancel a build, restart the server). Dropping
    /// the handle's future does not kill git; `abort()` on the handle does.
    pub fn spawn_push(
        &self,
        remote: &str,
        refspec: &str,
        timeout: Duration,
    ) -> tokio::task::JoinHandle<anyhow::Result<Output>> {
        let args = ["push", remote, refspec];
        let cmd = self.command(&args);
        let owned: Vec<String> = args.iter().map(|s| (*s).to_owned()).collect();
        tokio::spawn(async move {
            let args: Vec<&str> = owned.iter().map(String::as_str).collect();
            run(cmd, &args, timeout).await
        })
    }

    /// `git ls-remote <remote>`: on success, `(ref, id)` pairs.
    pub async fn ls_remote(&self, remote: &str) -> anyhow::Result<Output> {
        self.run(&["ls-remote", remote], GIT_TIMEOUT).await
    }

    /// `git fetch <remote> <refspec>`.
    pub async fn fetch(&self, remote: &str, refspec: &str) -> anyhow::Result<Output> {
        self.run(&["fetch", remote, refspec], GIT_TIMEOUT).await
    }
}

/// Untags, when dropped, the images the builds left in the local engine: every
/// `<registry host>/<team>/…` once `prefix` is set to `"<registry host>/<team>/"`. Declare it
/// before the stage so that it drops after the stage's containers are gone.
#[derive(Default)]
pub struct RemoveBuiltImages {
    pub prefix: Option<String>,
}

impl Drop for RemoveBuiltImages {
    fn drop(&mut self) {
        let Some(prefix) = &self.prefix else { return };
        let Ok(out) = std::process::Command::new("docker")
            .args(["images", "--format", "{{.Repository}}:{{.Tag}}"])
            .stderr(Stdio::null())
            .output()
        else {
            return;
        };
        let listing = String::from_utf8_lossy(&out.stdout);
        let images: Vec<&str> = listing
            .lines()
            .filter(|image| image.starts_with(prefix.as_str()))
            .collect();
        if !images.is_empty() {
            let _ = std::process::Command::new("docker")
                .args(["rmi", "--force"])
                .args(&images)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}

/// The commit id of `refs/heads/<branch>` in `git ls-remote`'s output.
pub fn remote_head(ls_remote: &Output, branch: &str) -> Option<String> {
    let want = format!("refs/heads/{branch}");
    ls_remote.stdout.lines().find_map(|line| {
        let (id, name) = line.split_once('\t')?;
        (name == want).then(|| id.to_owned())
    })
}

/// The arguments with the credentials of URLs (`scheme://user:secret@host`) left out, for
/// messages.
fn redacted(args: &[&str]) -> Vec<String> {
    args.iter()
        .map(|arg| match arg.split_once("://") {
            Some((scheme, rest)) => match rest.split_once('@') {
                Some((userinfo, host)) if !userinfo.contains('/') => {
                    format!("{scheme}://***@{host}")
                }
                _ => (*arg).to_owned(),
            },
            None => (*arg).to_owned(),
        })
        .collect()
}

async fn run(
    mut cmd: tokio::process::Command,
    args: &[&str],
    timeout: Duration,
) -> anyhow::Result<Output> {
    let started = Instant::now();
    let mut child = cmd
        .spawn()
        .with_context(|| format!("failed to run git {:?}", redacted(args)))?;
    let mut stdout = child.stdout.take().context("piped stdout")?;
    let mut stderr = child.stderr.take().context("piped stderr")?;
    let out_reader = tokio::spawn(async move {
        let mut buf = Vec::new();
        let _ = stdout.read_to_end(&mut buf).await;
        buf
    });
    let err_reader = tokio::spawn(async move {
        let mut buf = Vec::new();
        let _ = stderr.read_to_end(&mut buf).await;
        buf
    });
    let waited = tokio::time::timeout(timeout, child.wait()).await;
    let status = match waited {
        Ok(status) => Some(status?),
        Err(_) => {
            if let Some(pid) = child.id() {
                let group = nix::unistd::Pid::from_raw(pid as i32);
                let _ = nix::sys::signal::killpg(group, nix::sys::signal::Signal::SIGKILL);
            }
            let _ = child.kill().await;
            None
        }
    };
    // The pipes close when git (and its helpers, `git-remote-http`) exit; don't wait forever for
    // a helper that outlived a killed parent.
    let collect = |reader: tokio::task::JoinHandle<Vec<u8>>| async move {
        match tokio::time::timeout(Duration::from_secs(5), reader).await {
            Ok(Ok(buf)) => String::from_utf8_lossy(&buf).into_owned(),
            _ => String::from("(output not collected)\n"),
        }
    };
    let output = Output {
        status: status.and_then(|s| s.code()),
        stdout: collect(out_reader).await,
        stderr: collect(err_reader).await,
        elapsed: started.elapsed(),
    };
    if status.is_none() {
        bail!(
            "git {:?} did not finish within {timeout:?}; killed. {output}",
            redacted(args)
        );
    }
    Ok(output)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remote_urls_encode_the_credentials() {
        assert_eq!(
            remote_url("http://127.0.0.1:8080", "alice@x.io", "gnt_a-b", "t", "a"),
            "http://alice%40x.io:gnt_a-b@127.0.0.1:8080/git/t/a.git"
        );
        assert_eq!(
            remote_url("http://h:1/", "a+b@x.io", "correct horse:@/", "t", "a"),
            "http://a%2Bb%40x.io:correct%20horse%3A%40%2F@h:1/git/t/a.git"
        );
    }

    #[test]
    fn messages_leave_credentials_out() {
        assert_eq!(
            redacted(&["push", "http://a%40b:gnt_x@h:1/git/t/a.git", "main"]),
            ["push", "http://***@h:1/git/t/a.git", "main"]
        );
        assert_eq!(redacted(&["http://h/x@y"]), ["http://h/x@y"]);
    }

    #[test]
    fn the_hello_dockerfile_gets_the_extra_lines_last() {
        let text = hello_dockerfile("ENV GREETING=hi");
        assert!(text.starts_with("# The demo app's image"));
        assert!(
            text.ends_with("ENTRYPOINT [\"/hello\"]\nENV GREETING=hi\n"),
            "{text}"
        );
        assert!(hello_dockerfile("").ends_with("ENTRYPOINT [\"/hello\"]\n"));
    }

    /// The helpers against a bare repository on disk: no server needed.
    #[tokio::test]
    async fn pushes_branches_with_metacharacters_to_a_local_remote() -> anyhow::Result<()> {
        let remote = tempfile::tempdir()?;
        let bare = remote.path().to_str().context("utf-8")?;
        let repo = Repo::new()?;
        repo.git(&["init", "-q", "--bare", bare])?;
        repo.write("a/$(x) `y`;z", "content")?;
        let first = repo.commit("$(touch /tmp/never) `x`")?;
        let branch = "x;touch${IFS}/tmp/never|a&b`c`'\"<>";
        repo.switch(branch)?;
        let out = repo
            .push(bare, &format!("HEAD:refs/heads/{branch}"))
            .await?;
        assert!(out.success(), "{out}");
        let out = repo.push(bare, "main").await?;
        assert!(out.success(), "{out}");
        let refs = repo.ls_remote(bare).await?;
        assert_eq!(remote_head(&refs, branch), Some(first.clone()));
        assert_eq!(remote_head(&refs, "main"), Some(first));
        let missing = repo.ls_remote("/nonexistent/repo.git").await?;
        assert!(!missing.success());
        // A server that never answers (the kernel accepts into the backlog): killed at the
        // deadline.
        let silent = std::net::TcpListener::bind("127.0.0.1:0")?;
        let url = format!("http://{}/git/t/a.git", silent.local_addr()?);
        let started = Instant::now();
        let err = repo.push_within(&url, "main", Duration::from_secs(1)).await;
        assert!(format!("{err:?}").contains("did not finish"), "{err:?}");
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "{:?}",
            started.elapsed()
        );
        Ok(())
    }

    #[test]
    fn ls_remote_lines_are_parsed() {
        let out = Output {
            status: Some(0),
            stdout: "aaa\tHEAD\nbbb\trefs/heads/main\nccc\trefs/heads/x;y\n".into(),
            stderr: String::new(),
            elapsed: Duration::ZERO,
        };
        assert_eq!(remote_head(&out, "main").as_deref(), Some("bbb"));
        assert_eq!(remote_head(&out, "x;y").as_deref(), Some("ccc"));
        assert_eq!(remote_head(&out, "other"), None);
    }
}
