//! The built-in registry with the real docker CLI: `docker login` with an API token, `docker
//! push` of the hello image to `<server>/<team>/hello`, `docker rmi` and `docker pull` it back,
//! then a push of an image with one more layer uploads only that layer and its config (the
//! server counts the blobs it stores). Every docker command runs with a `DOCKER_CONFIG` of its
//! own, so the login neither reads nor clobbers the machine's.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{bail, ensure, Context};
use gantry_e2e::cluster::{start_server, Admin, IMAGE};
use gantry_e2e::{data_dir, free_port, start_postgres, StopPostgresOnDrop};
use serde_json::json;

/// A line the server logs for each blob it stores.
const BLOB_STORED: &str = "registry: blob stored";
const MANIFEST_STORED: &str = "registry: manifest stored";

/// The docker CLI with its own config directory; `stdin` is written to it.
fn docker_with(config: &Path, args: &[&str], stdin: Option<&str>) -> anyhow::Result<String> {
    use std::io::Write;
    let mut child = Command::new("docker")
        .args(args)
        .env("DOCKER_CONFIG", config)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("failed to run the docker CLI")?;
    if let Some(input) = stdin {
        child
            .stdin
            .take()
            .context("docker stdin")?
            .write_all(input.as_bytes())?;
    }
    let out = child.wait_with_output()?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if !out.status.success() {
        bail!("docker {args:?} failed: {text}");
    }
    Ok(text)
}

/// Removes the images this test tagged, whatever happens.
struct RemoveImages(Vec<String>);

impl Drop for RemoveImages {
    fn drop(&mut self) {
        for image in &self.0 {
            let _ = Command::new("docker")
                .args(["rmi", "--force", image])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}

#[tokio::test]
async fn docker_login_push_pull_and_a_second_push_uploads_only_the_new_layer() -> anyhow::Result<()>
{
    let pg_dir = data_dir();
    let _pg = StopPostgresOnDrop(pg_dir.path().to_owned());
    let db_url = start_postgres(pg_dir.path()).await?;
    let port = free_port();
    let mut server = start_server(&db_url, port, free_port()).await?;
    let base = format!("http://127.0.0.1:{port}");
    let admin = Admin::sign_up(&base).await?;
    let token = admin
        .post(
            "/api/v1/tokens",
            json!({"name": "ci", "team": admin.team, "role": "member"}),
        )
        .await?;
    let secret = token["secret"].as_str().context("token secret")?.to_owned();

    let config = tempfile::tempdir()?;
    let host = format!("127.0.0.1:{port}");
    let repo = format!("{host}/{}/hello", admin.team);
    let v1 = format!("{repo}:v1");
    let v2 = format!("{repo}:v2");
    let _cleanup = RemoveImages(vec![v1.clone(), v2.clone()]);

    // A wrong token is refused at login.
    let wrong = docker_with(
        config.path(),
        &["login", &host, "-u", &admin.email, "--password-stdin"],
        Some("gnt_0000000000000000000000000000000000000000000"),
    );
    ensure!(wrong.is_err(), "a wrong token logs in: {wrong:?}");

    let login = docker_with(
        config.path(),
        &["login", &host, "-u", &admin.email, "--password-stdin"],
        Some(&secret),
    )?;
    ensure!(login.contains("Login Succeeded"), "{login}");

    docker_with(config.path(), &["tag", IMAGE, &v1], None)?;
    let pushed = docker_with(config.path(), &["push", &v1], None)?;
    eprintln!("first push:\n{pushed}");
    ensure!(pushed.contains("digest: sha256:"), "{pushed}");
    // The manifest is stored (and logged) after every blob it names.
    server
        .process
        .wait_for_line(MANIFEST_STORED, Duration::from_secs(10))
        .await?;
    let first_blobs = server.process.count_lines(BLOB_STORED);
    // The hello image: one layer and its config.
    ensure!(
        first_blobs == 2,
        "the first push stored {first_blobs} blobs"
    );

    // Gone from the engine, then pulled back from Gantry.
    docker_with(config.path(), &["rmi", &v1], None)?;
    let pulled = docker_with(config.path(), &["pull", &v1], None)?;
    ensure!(pulled.contains("Downloaded newer image"), "{pulled}");
    docker_with(config.path(), &["image", "inspect", &v1], None)?;

    // One more layer on top: only it and the new config are uploaded.
    let context = tempfile::tempdir()?;
    std::fs::write(
        context.path().join("Dockerfile"),
        format!("FROM {v1}\nCOPY stamp /stamp\n"),
    )?;
    std::fs::write(context.path().join("stamp"), format!("{}\n", port))?;
    let context_path = context.path().to_str().context("utf-8 temp path")?;
    docker_with(
        config.path(),
        &["build", "-q", "-t", &v2, context_path],
        None,
    )?;
    let pushed = docker_with(config.path(), &["push", &v2], None)?;
    eprintln!("second push:\n{pushed}");
    ensure!(pushed.contains("Layer already exists"), "{pushed}");
    server
        .process
        .wait_for_line(MANIFEST_STORED, Duration::from_secs(10))
        .await?;
    let second_blobs = server.process.count_lines(BLOB_STORED) - first_blobs;
    ensure!(
        second_blobs == 2,
        "the second push stored {second_blobs} blobs (expected the new layer and its config)"
    );

    // Without credentials, nothing is pulled.
    let anonymous = tempfile::tempdir()?;
    docker_with(config.path(), &["rmi", &v2], None)?;
    let refused = docker_with(anonymous.path(), &["pull", &v2], None);
    ensure!(refused.is_err(), "an anonymous pull worked: {refused:?}");

    // The tag list, as skopeo or a CI script reads it.
    let tags: serde_json::Value = reqwest::Client::new()
        .get(format!("{base}/v2/{}/hello/tags/list", admin.team))
        .basic_auth(&admin.email, Some(&secret))
        .timeout(Duration::from_secs(10))
        .send()
        .await?
        .json()
        .await?;
    ensure!(tags["tags"] == json!(["v1", "v2"]), "{tags}");
    Ok(())
}
