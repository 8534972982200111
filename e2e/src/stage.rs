//! The stage of the orchestrator's journeys: a private Postgres, a `gantry server`, a platform
//! admin's session and `n` `gantry agent` processes on the real Docker engine, all ready.
//!
//! ```text
//! let mut stage = Stage::start("ro", 2).await?;
//! stage.admin.post(&stage.apps_path(), json!({"name": "hello"})).await?;
//! stage.server.restart().await?; // kill -9, then the same server again
//! stage.shutdown().await;
//! ```
//!
//! The fields drop in their order, which is the order a failed test must clean up in: the agents
//! first (so that none starts a container again), then the team's containers and networks, the
//! server, its Postgres, and last the directory that held Postgres and the agents' identities.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use serde_json::json;

use crate::cluster::{
    docker, kill9, start_agent, start_server, Admin, DockerCleanup, Server, IMAGE,
};
use crate::{data_dir, free_port, start_postgres, Running, StopPostgresOnDrop};

pub struct Stage {
    /// The agents, node `names[i]` in zone `z{i}`. A test may take one out (`remove`) to wait
    /// for its exit, or kill one.
    pub agents: Vec<Running>,
    /// Removes the containers and networks of the admin's team (after the agents are gone).
    _containers: DockerCleanup,
    /// `kill -9` and start again with [`Server::restart`] (it borrows only this field, so a
    /// test may hold `&stage.admin` meanwhile).
    pub server: Server,
    pub admin: Admin,
    /// A join token of the admin's, for more agents.
    pub token: String,
    /// The agents' node names: `<prefix>-<run>-n1`, `…-n2`, …
    pub names: Vec<String>,
    /// This run's mark (the test process id, in hex), in the node names.
    pub run: String,
    /// `http://127.0.0.1:<port>`, the server's API.
    pub base: String,
    pub port: u16,
    pub router_port: u16,
    /// Where the apps' router listens (`127.0.0.1:<router_port>`).
    pub router: SocketAddr,
    pub db_url: String,
    /// Stops Postgres (after the server).
    _postgres: StopPostgresOnDrop,
    /// Postgres' data and the agents' state (`<dir>/<node name>`), removed last.
    pub dir: tempfile::TempDir,
}

impl Stage {
    /// Checks the hello image is there, starts Postgres and the server, signs the admin up and
    /// starts `nodes` agents named `<prefix>-<run>-n<i>`; returns once they are all ready.
    pub async fn start(prefix: &str, nodes: usize) -> anyhow::Result<Stage> {
        docker(&["image", "inspect", IMAGE]).context(
            "the demo image is missing: run scripts/build-hello-image (scripts/test does) with Docker running",
        )?;
        let run = format!("{:x}", std::process::id());
        // Declared in the order the struct drops them backwards, so that a failure half-way
        // cleans up like a whole stage does.
        let dir = data_dir();
        let postgres = StopPostgresOnDrop(dir.path().to_path_buf());
        let db_url = start_postgres(dir.path()).await?;
        let (port, router_port) = (free_port(), free_port());
        let base = format!("http://127.0.0.1:{port}");
        let router: SocketAddr = ([127, 0, 0, 1], router_port).into();
        let server = start_server(&db_url, port, router_port).await?;

        let admin = Admin::sign_up(&base).await?;
        let containers = DockerCleanup {
            team: admin.team.clone(),
        };
        let token = admin.post("/api/v1/nodes/join-tokens", json!({})).await?;
        let token = token["token"].as_str().context("join token")?.to_owned();
        let names: Vec<String> = (1..=nodes)
            .map(|n| format!("{prefix}-{run}-n{n}"))
            .collect();
        let mut agents = Vec::new();
        for (n, name) in names.iter().enumerate() {
            agents.push(start_agent(
                &base,
                &token,
                name,
                &format!("z{n}"),
                dir.path(),
            )?);
        }
        admin.wait_nodes_ready(nodes).await?;
        Ok(Stage {
            agents,
            _containers: containers,
            server,
            admin,
            token,
            names,
            run,
            base,
            port,
            router_port,
            router,
            db_url,
            _postgres: postgres,
            dir,
        })
    }

    /// `/api/v1/teams/<team>/apps`
    pub fn apps_path(&self) -> String {
        format!("/api/v1/teams/{}/apps", self.admin.team)
    }

    /// `/api/v1/teams/<team>/apps/<app>`
    pub fn app_path(&self, app: &str) -> String {
        format!("{}/{app}", self.apps_path())
    }

    /// The host the router serves `app` at: `<app>.<team>.localhost`.
    pub fn host(&self, app: &str) -> String {
        format!("{app}.{}.localhost", self.admin.team)
    }

    /// The end of a journey that went well: the agents are killed, the server is stopped
    /// (SIGTERM), then the containers, Postgres and the directory are removed.
    pub async fn shutdown(mut self) {
        for agent in &self.agents {
            let _ = kill9(agent);
        }
        let _ = self.server.process.terminate(Duration::from_secs(10)).await;
    }
}
