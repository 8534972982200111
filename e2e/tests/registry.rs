//! The built-in registry with the real docker CLI: `docker login` with an API token, `docker
//! push` of the hello image to `<server>/<team>/hello`, `docker rmi` and `docker pull` it back,
//! then a push of an image with one more layer uploads only that layer and its config (the
//! server counts the blobs it stores). Every docker command runs with a `DOCKER_CONFIG` of its
//! own, so the login neither reads nor clobbers the machine's.

use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{ensure, Context};
use gantry_e2e::cluster::{
    docker_as, start_agent, start_server, Admin, DockerCleanup, Server, IMAGE,
};
use gantry_e2e::{data_dir, free_port, start_postgres, StopPostgresOnDrop};
use serde_json::json;

/// A line the server logs for each blob it stores.
const BLOB_STORED: &str = "registry: blob stored";
const MANIFEST_STORED: &str = "registry: manifest stored";

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

/// A `gantry server` on a private Postgres, its first account, and a member API token of that
/// account's team. Dropped in the order of its fields: the server, then its Postgres, then the
/// directory Postgres lived in.
struct World {
    server: Server,
    _pg: StopPostgresOnDrop,
    dir: tempfile::TempDir,
    admin: Admin,
    secret: String,
    port: u16,
    router_port: u16,
    /// `127.0.0.1:<port>`: the registry's host.
    host: String,
    base: String,
}

async fn world() -> anyhow::Result<World> {
    let dir = data_dir();
    let pg = StopPostgresOnDrop(dir.path().to_owned());
    let db_url = start_postgres(dir.path()).await?;
    let (port, router_port) = (free_port(), free_port());
    let server = start_server(&db_url, port, router_port).await?;
    let base = format!("http://127.0.0.1:{port}");
    let admin = Admin::sign_up(&base).await?;
    let token = admin
        .post(
            "/api/v1/tokens",
            json!({"name": "ci", "team": admin.team, "role": "member"}),
        )
        .await?;
    let secret = token["secret"].as_str().context("token secret")?.to_owned();
    Ok(World {
        server,
        _pg: pg,
        dir,
        admin,
        secret,
        port,
        router_port,
        host: format!("127.0.0.1:{port}"),
        base,
    })
}

#[tokio::test]
async fn docker_login_push_pull_and_a_second_push_uploads_only_the_new_layer() -> anyhow::Result<()>
{
    // Borrowed, not moved out: `world` drops as a whole at the end, in its fields' order.
    let mut world = world().await?;
    let World {
        ref mut server,
        ref admin,
        ref secret,
        port,
        ref host,
        ref base,
        ..
    } = world;
    let config = tempfile::tempdir()?;
    let repo = format!("{host}/{}/hello", admin.team);
    let v1 = format!("{repo}:v1");
    let v2 = format!("{repo}:v2");
    let _cleanup = RemoveImages(vec![v1.clone(), v2.clone()]);

    // A wrong token is refused at login.
    let wrong = docker_as(
        config.path(),
        &["login", host, "-u", &admin.email, "--password-stdin"],
        Some("gnt_0000000000000000000000000000000000000000000"),
    );
    ensure!(wrong.is_err(), "a wrong token logs in: {wrong:?}");

    let login = docker_as(
        config.path(),
        &["login", host, "-u", &admin.email, "--password-stdin"],
        Some(secret),
    )?;
    ensure!(login.contains("Login Succeeded"), "{login}");

    docker_as(config.path(), &["tag", IMAGE, &v1], None)?;
    let pushed = docker_as(config.path(), &["push", &v1], None)?;
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
    docker_as(config.path(), &["rmi", &v1], None)?;
    let pulled = docker_as(config.path(), &["pull", &v1], None)?;
    ensure!(pulled.contains("Downloaded newer image"), "{pulled}");
    docker_as(config.path(), &["image", "inspect", &v1], None)?;

    // One more layer on top: only it and the new config are uploaded.
    let context = tempfile::tempdir()?;
    std::fs::write(
        context.path().join("Dockerfile"),
        format!("FROM {v1}\nCOPY stamp /stamp\n"),
    )?;
    std::fs::write(context.path().join("stamp"), format!("{}\n", port))?;
    let context_path = context.path().to_str().context("utf-8 temp path")?;
    docker_as(
        config.path(),
        &["build", "-q", "-t", &v2, context_path],
        None,
    )?;
    let pushed = docker_as(config.path(), &["push", &v2], None)?;
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
    docker_as(config.path(), &["rmi", &v2], None)?;
    let refused = docker_as(anonymous.path(), &["pull", &v2], None);
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

/// A push of `<team>/hello:latest` deploys the app (its release pinned to the pushed digest) and
/// it answers through the router. Images are the team's: another team's app cannot deploy them
/// by tag or by digest, nor name a local image id, and no container of that team starts.
#[tokio::test]
async fn a_push_deploys_the_app_and_another_team_cannot_run_its_image() -> anyhow::Result<()> {
    let run = format!("{:x}", std::process::id());
    let world = world().await?;
    let World {
        ref dir,
        ref admin,
        ref secret,
        port,
        router_port,
        ref host,
        ref base,
        ..
    } = world;
    let other_team = format!("rb-{run}");
    let _cleanup = (
        DockerCleanup {
            team: admin.team.clone(),
        },
        DockerCleanup {
            team: other_team.clone(),
        },
    );
    let join = admin.post("/api/v1/nodes/join-tokens", json!({})).await?;
    let join = join["token"].as_str().context("join token")?.to_owned();
    let _agent = start_agent(base, &join, &format!("rg-{run}"), "z0", dir.path())?;
    admin.wait_nodes_ready(1).await?;

    let apps = format!("/api/v1/teams/{}/apps", admin.team);
    admin
        .post(
            &apps,
            json!({"name": "hello", "port": 8888, "cpu_millis": 100, "memory_mib": 32,
                   "health_check_path": "/healthz", "stop_grace_seconds": 1}),
        )
        .await?;
    let config = tempfile::tempdir()?;
    let latest = format!("{host}/{}/hello:latest", admin.team);
    let _images = RemoveImages(vec![latest.clone()]);
    docker_as(
        config.path(),
        &["login", host, "-u", &admin.email, "--password-stdin"],
        Some(secret),
    )?;
    docker_as(config.path(), &["tag", IMAGE, &latest], None)?;
    let pushed = docker_as(config.path(), &["push", &latest], None)?;
    let digest = pushed
        .split_whitespace()
        .find(|w| w.starts_with("sha256:"))
        .with_context(|| format!("no digest in {pushed}"))?
        .to_owned();

    // The push made v1, pinned to what was pushed, and it serves.
    let v1 = admin
        .wait_release("hello", 1, "active", Duration::from_secs(90))
        .await?;
    let pinned = format!("{host}/{}/hello@{digest}", admin.team);
    ensure!(v1["image"] == json!(pinned), "{v1:#}");
    ensure!(v1["image_source"] == "registry", "{v1:#}");
    let app_host = format!("hello.{}.localhost", admin.team);
    let client = reqwest::Client::builder()
        .resolve(&app_host, ([127, 0, 0, 1], router_port).into())
        .build()?;
    let answer = client
        .get(format!("http://{app_host}:{router_port}/"))
        .send()
        .await?;
    ensure!(
        answer.status() == 200,
        "the router answered {}",
        answer.status()
    );
    ensure!(answer.text().await?.contains("release v1"));

    // A deploy by tag through the API is pinned the same way.
    let v2 = admin
        .post(&format!("{apps}/hello/deploys"), json!({"image": latest}))
        .await?;
    ensure!(v2["image"] == json!(pinned), "{v2:#}");

    // Another team: neither the tag, nor the digest, nor the local image id.
    admin
        .post("/api/v1/teams", json!({"slug": other_team}))
        .await?;
    let other_apps = format!("/api/v1/teams/{other_team}/apps");
    admin
        .post(&other_apps, json!({"name": "copy", "port": 8888}))
        .await?;
    let image_id = docker_as(
        config.path(),
        &["image", "inspect", "--format", "{{.Id}}", &latest],
        None,
    )?;
    for image in [
        latest.clone(),
        pinned.clone(),
        format!("localhost:{port}/{}/hello:latest", admin.team),
        image_id.trim().to_owned(),
        image_id.trim().trim_start_matches("sha256:")[..12].to_owned(),
    ] {
        let refused = admin
            .post(
                &format!("{other_apps}/copy/deploys"),
                json!({"image": image}),
            )
            .await;
        let message = format!("{refused:?}");
        ensure!(
            refused.is_err() && message.contains("422"),
            "team {other_team} deployed {image}: {message}"
        );
    }
    let releases = admin.get(&format!("{other_apps}/copy/releases")).await?;
    ensure!(releases == json!([]), "{releases}");
    let theirs = gantry_e2e::cluster::containers(&format!("gantry.team={other_team}"))?;
    ensure!(theirs.is_empty(), "containers of {other_team}: {theirs:?}");
    Ok(())
}
