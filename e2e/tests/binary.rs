//! The `gantry` binary as an operator uses it: `gantry up` with its own Postgres, `gantry server`
//! against a database, probes, graceful shutdown, and clear errors when something is missing.

use std::time::Duration;

use gantry_e2e::{data_dir, free_port, gantry, wait_for_status, Running, StopPostgresOnDrop};
use serde_json::json;

const PASSWORD: &str = "correct horse battery";

#[tokio::test]
async fn up_runs_its_own_postgres_reuses_it_and_stops_it_on_exit() -> anyhow::Result<()> {
    let dir = data_dir();
    let _guard = StopPostgresOnDrop(dir.path().to_path_buf());
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let start = || {
        let mut cmd = gantry();
        cmd.arg("up")
            .env("GANTRY_DATA_DIR", dir.path())
            .env("GANTRY_LISTEN", format!("127.0.0.1:{port}"));
        Running::spawn(cmd)
    };

    let mut first = start()?;
    let line = first
        .wait_for_line("Gantry is up at", Duration::from_secs(60))
        .await?;
    assert!(line.contains(&base), "{line}");
    let apps = first
        .wait_for_line("Apps:", Duration::from_secs(10))
        .await?;
    assert!(apps.contains("<app>.<team>.localhost:"), "{apps}");
    wait_for_status(&format!("{base}/readyz"), 200, Duration::from_secs(5)).await?;
    let client = reqwest::Client::new();
    let res = client
        .post(format!("{base}/api/v1/auth/signup"))
        .json(&json!({"email": "owner@example.com", "password": PASSWORD}))
        .send()
        .await?;
    assert_eq!(res.status(), 201);
    assert!(
        dir.path().join("postgres/PG_VERSION").exists(),
        "cluster in the data dir"
    );
    assert!(
        dir.path().join("secret.key").exists(),
        "secret key kept in the data dir"
    );
    let pid_file = dir.path().join("postgres/postmaster.pid");
    assert!(pid_file.exists(), "Postgres running");

    // `up` runs a node on the local Docker engine, in-process.
    let admin = reqwest::Client::builder().cookie_store(true).build()?;
    admin
        .post(format!("{base}/api/v1/auth/login"))
        .json(&json!({"email": "owner@example.com", "password": PASSWORD}))
        .send()
        .await?
        .error_for_status()?;
    local_node_ready(&admin, &base).await?;
    assert!(
        dir.path().join("agent/node.json").exists(),
        "the local node's identity is kept in the data dir"
    );

    let node = local_node_ready(&admin, &base).await?;
    assert_eq!(
        first.terminate(Duration::from_secs(30)).await?,
        0,
        "clean exit on SIGTERM"
    );
    assert!(!pid_file.exists(), "Postgres stopped with gantry");

    // Second start: same cluster, same data, same key.
    let mut second = start()?;
    second
        .wait_for_line("Gantry is up at", Duration::from_secs(60))
        .await?;
    let res = client
        .post(format!("{base}/api/v1/auth/login"))
        .json(&json!({"email": "owner@example.com", "password": PASSWORD}))
        .send()
        .await?;
    assert_eq!(res.status(), 200, "the account survived the restart");
    // The same local node, not a second one: it kept its identity, and its agent is back (a
    // new credential under the same name would have been refused).
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let again = loop {
        let again = local_node_ready(&admin, &base).await?;
        // Heard from since the restart (the first run's last heartbeat was `node`'s).
        if again["last_seen_at"] != node["last_seen_at"] {
            break again;
        }
        anyhow::ensure!(
            std::time::Instant::now() < deadline,
            "the local agent did not reconnect: {again}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(again["id"], node["id"], "{again}");
    let nodes: serde_json::Value = admin
        .get(format!("{base}/api/v1/nodes"))
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(nodes.as_array().map(Vec::len), Some(1), "{nodes}");
    assert_eq!(second.terminate(Duration::from_secs(30)).await?, 0);
    Ok(())
}

/// Waits for `gantry up`'s own node to be ready; returns it.
async fn local_node_ready(
    admin: &reqwest::Client,
    base: &str,
) -> anyhow::Result<serde_json::Value> {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let nodes: serde_json::Value = admin
            .get(format!("{base}/api/v1/nodes"))
            .send()
            .await?
            .json()
            .await?;
        if nodes[0]["status"] == "ready" {
            return Ok(nodes[0].clone());
        }
        anyhow::ensure!(
            std::time::Instant::now() < deadline,
            "the local node never became ready: {nodes}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn up_without_postgres_binaries_says_how_to_install_them() -> anyhow::Result<()> {
    let dir = data_dir();
    let empty = data_dir();
    let mut cmd = gantry();
    cmd.arg("up")
        .env("GANTRY_DATA_DIR", dir.path())
        .env("GANTRY_PG_BINDIR", empty.path())
        .env("GANTRY_LISTEN", format!("127.0.0.1:{}", free_port()));
    let (code, output) = Running::spawn(cmd)?.exit(Duration::from_secs(30)).await?;
    assert_ne!(code, 0);
    assert!(output.contains("apt-get install postgresql"), "{output}");
    assert!(output.contains("DATABASE_URL"), "{output}");
    Ok(())
}

#[tokio::test]
async fn server_refuses_to_start_without_database_url_or_secret_key() -> anyhow::Result<()> {
    let (code, output) = Running::spawn({
        let mut c = gantry();
        c.arg("server");
        c
    })?
    .exit(Duration::from_secs(30))
    .await?;
    assert_ne!(code, 0);
    assert!(output.contains("DATABASE_URL is not set"), "{output}");

    let (code, output) = Running::spawn({
        let mut c = gantry();
        c.arg("server")
            .env("DATABASE_URL", "postgres://x@127.0.0.1:1/x");
        c
    })?
    .exit(Duration::from_secs(30))
    .await?;
    assert_ne!(code, 0);
    assert!(output.contains("GANTRY_SECRET_KEY is not set"), "{output}");
    Ok(())
}

#[tokio::test]
async fn server_reports_not_ready_while_its_database_is_down() -> anyhow::Result<()> {
    let dir = data_dir();
    let _guard = StopPostgresOnDrop(dir.path().to_path_buf());
    let db = |action: &str| {
        let mut c = gantry();
        c.args(["db", action, "--data-dir"]).arg(dir.path());
        c
    };
    let out = db("start").output().await?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let url = String::from_utf8(out.stdout)?.trim().to_owned();

    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let mut server = {
        let mut c = gantry();
        c.arg("server")
            .env("DATABASE_URL", &url)
            .env("GANTRY_SECRET_KEY", "0".repeat(64))
            .env("GANTRY_LISTEN", format!("127.0.0.1:{port}"));
        Running::spawn(c)?
    };
    server
        .wait_for_line("listening on", Duration::from_secs(30))
        .await?;
    wait_for_status(&format!("{base}/readyz"), 200, Duration::from_secs(5)).await?;

    assert!(db("stop").status().await?.success());
    wait_for_status(&format!("{base}/readyz"), 503, Duration::from_secs(10)).await?;
    wait_for_status(&format!("{base}/healthz"), 200, Duration::from_secs(1)).await?;

    assert!(db("start").status().await?.success());
    wait_for_status(&format!("{base}/readyz"), 200, Duration::from_secs(15)).await?;
    assert_eq!(server.terminate(Duration::from_secs(30)).await?, 0);
    Ok(())
}
