//! The `pre-receive` hook: this binary, run by `git receive-pack` under the name
//! `pre-receive` (a link in the hooks directory) before a push's refs move.
//!
//! It reads the ref updates on stdin. When the deploy branch moves to a new commit, it exports
//! that commit with `git archive` (the pushed objects are visible to it, still in quarantine),
//! sends the tar to the server's hook endpoint, and prints the build's output as it comes:
//! git relays the hook's output to the pusher as `remote:` lines. It exits 0 only when the build
//! succeeded, so a failed build refuses the whole push.
//!
//! What it needs comes from the environment the server gave `git http-backend`:
//! [`URL_VAR`], [`SECRET_VAR`] and [`DEPLOY_REF_VAR`].

use std::io::{BufRead, Write};
use std::process::{ExitCode, Stdio};

use futures_util::StreamExt;
use gantry_common::builds::is_commit_id;
use serde::{Deserialize, Serialize};

/// The hook's file name, which is how this binary knows it runs as the hook.
pub const NAME: &str = "pre-receive";
/// The push's endpoint on the server.
pub const URL_VAR: &str = "GANTRY_HOOK_URL";
/// The push's secret, which the endpoint requires.
pub const SECRET_VAR: &str = "GANTRY_HOOK_SECRET";
/// `refs/heads/<deploy branch>`.
pub const DEPLOY_REF_VAR: &str = "GANTRY_DEPLOY_REF";

/// One line of the endpoint's answer (JSON lines).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HookFrame {
    /// Build output, to print.
    Lines(Vec<String>),
    /// The end: whether the push may go on.
    End { ok: bool },
}

/// Whether this process was started as the hook (by its name).
pub fn invoked_as_hook() -> bool {
    std::env::args_os()
        .next()
        .and_then(|arg0| std::path::Path::new(&arg0).file_name().map(|n| n == NAME))
        .unwrap_or(false)
}

/// One ref update: `<old> <new> <ref>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Update {
    pub old: String,
    pub new: String,
    pub name: String,
}

/// The updates on the hook's stdin; `None` for a line git would never write.
pub fn parse_update(line: &str) -> Option<Update> {
    let mut parts = line.splitn(3, ' ');
    let (old, new, name) = (parts.next()?, parts.next()?, parts.next()?);
    (is_commit_id(old) && is_commit_id(new) && !name.is_empty()).then(|| Update {
        old: old.to_owned(),
        new: new.to_owned(),
        name: name.to_owned(),
    })
}

/// What the hook does with a push's updates: the commit to build (the deploy branch's new
/// tip, unless the branch is deleted), and the other branches it only stores.
pub fn plan<'a>(updates: &'a [Update], deploy_ref: &str) -> (Option<&'a str>, Vec<&'a str>) {
    let deleted = |u: &Update| u.new.bytes().all(|b| b == b'0');
    let build = updates
        .iter()
        .find(|u| u.name == deploy_ref && !deleted(u))
        .map(|u| u.new.as_str());
    let stored = updates
        .iter()
        .filter(|u| u.name != deploy_ref)
        .map(|u| u.name.as_str())
        .collect();
    (build, stored)
}

/// Runs the hook; its exit code decides whether git accepts the push.
pub async fn main() -> ExitCode {
    match run().await {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            println!("gantry: the push could not be built: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> anyhow::Result<bool> {
    let (url, secret, deploy_ref) = match (
        std::env::var(URL_VAR),
        std::env::var(SECRET_VAR),
        std::env::var(DEPLOY_REF_VAR),
    ) {
        (Ok(url), Ok(secret), Ok(deploy_ref)) => (url, secret, deploy_ref),
        _ => anyhow::bail!("this push did not come through the Gantry server"),
    };
    let mut updates = Vec::new();
    for line in std::io::stdin().lock().lines() {
        let line = line?;
        match parse_update(&line) {
            Some(update) => updates.push(update),
            None => anyhow::bail!("git sent an update this hook cannot read: {line:?}"),
        }
    }
    let (build, stored) = plan(&updates, &deploy_ref);
    let old = updates
        .iter()
        .find(|u| u.name == deploy_ref)
        .map_or(String::new(), |u| u.old.clone());
    let branch = deploy_ref
        .strip_prefix("refs/heads/")
        .unwrap_or(&deploy_ref);
    for name in stored {
        say(&format!(
            "=== {name} is stored without a build: pushes to {branch} are built and released"
        ));
    }
    let Some(commit) = build else {
        return Ok(true);
    };

    // The tar of the commit, straight from git to the server.
    let mut archive = tokio::process::Command::new("git")
        .args(["archive", "--format=tar", commit])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    let stdout = archive.stdout.take().expect("stdout is piped");
    let body = reqwest::Body::wrap_stream(tokio_util::io::ReaderStream::new(stdout));
    let response = reqwest::Client::new()
        .post(format!("{url}?commit={commit}&old={old}"))
        .bearer_auth(&secret)
        .body(body)
        .send()
        .await?;
    let status = response.status();
    if !status.is_success() {
        let text = response.text().await.unwrap_or_default();
        anyhow::bail!("the server refused the build ({status}): {}", text.trim());
    }
    let exported = archive.wait().await?;
    if !exported.success() {
        anyhow::bail!("git archive failed ({exported})");
    }
    let mut body = response.bytes_stream();
    let mut pending = Vec::new();
    while let Some(chunk) = body.next().await {
        pending.extend_from_slice(&chunk?);
        while let Some(end) = pending.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = pending.drain(..=end).collect();
            match serde_json::from_slice::<HookFrame>(&line)? {
                HookFrame::Lines(lines) => lines.iter().for_each(|l| say(l)),
                HookFrame::End { ok } => return Ok(ok),
            }
        }
    }
    anyhow::bail!("the server's answer ended before the build did")
}

/// A line for the pusher's terminal (git prefixes it with `remote:`).
fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "1111111111111111111111111111111111111111";
    const B: &str = "2222222222222222222222222222222222222222";
    const ZERO: &str = "0000000000000000000000000000000000000000";

    #[test]
    fn updates_are_read_strictly() {
        assert_eq!(
            parse_update(&format!("{A} {B} refs/heads/main")),
            Some(Update {
                old: A.into(),
                new: B.into(),
                name: "refs/heads/main".into()
            })
        );
        assert_eq!(
            parse_update(&format!("{A} {B} refs/heads/$(touch x) y")).map(|u| u.name),
            Some("refs/heads/$(touch x) y".to_owned())
        );
        assert_eq!(parse_update(&format!("{A} $(x) refs/heads/main")), None);
        assert_eq!(parse_update(&format!("{A} {B}")), None);
    }

    #[test]
    fn only_the_deploy_branch_is_built() {
        let update = |new: &str, name: &str| Update {
            old: A.into(),
            new: new.into(),
            name: name.into(),
        };
        let updates = [update(B, "refs/heads/main"), update(B, "refs/heads/dev")];
        assert_eq!(
            plan(&updates, "refs/heads/main"),
            (Some(B), vec!["refs/heads/dev"])
        );
        assert_eq!(
            plan(&updates, "refs/heads/prod"),
            (None, vec!["refs/heads/main", "refs/heads/dev"])
        );
        let deleted = [update(ZERO, "refs/heads/main")];
        assert_eq!(plan(&deleted, "refs/heads/main"), (None, vec![]));
    }
}
