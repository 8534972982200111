//! The `gantry` command line: `server`, `up`, and `db` (the embedded Postgres).

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::{Parser, Subcommand};

use crate::config::{Config, SecretKey, ServerArgs};
use crate::embedded_pg::EmbeddedPostgres;
use crate::startup::{shutdown_signal, Application};

#[derive(Debug, Parser)]
#[command(name = "gantry", version, about = "Gantry: a self-hostable PaaS")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the control plane against DATABASE_URL.
    Server(ServerArgs),
    /// Run everything on this machine; without DATABASE_URL, with a private Postgres.
    Up {
        #[command(flatten)]
        server: ServerArgs,
        #[command(flatten)]
        data: DataDir,
    },
    /// Run a worker node's agent: join a server and run its instances on the local Docker engine.
    Agent(crate::agent::AgentArgs),
    /// Manage the private Postgres of a data directory (what `gantry up` runs).
    Db {
        #[command(subcommand)]
        action: DbAction,
        #[command(flatten)]
        data: DataDir,
    },
}

#[derive(Debug, Clone, clap::Args)]
pub struct DataDir {
    /// Where `gantry up` keeps its Postgres cluster and secret key.
    #[arg(
        long,
        env = "GANTRY_DATA_DIR",
        default_value = ".gantry",
        global = true
    )]
    pub data_dir: PathBuf,

    /// Folder holding PostgreSQL's initdb and pg_ctl (default: PATH, then the newest
    /// /usr/lib/postgresql/*/bin).
    #[arg(long, env = "GANTRY_PG_BINDIR", global = true)]
    pub pg_bindir: Option<PathBuf>,
}

impl DataDir {
    fn postgres(&self) -> anyhow::Result<EmbeddedPostgres> {
        EmbeddedPostgres::new(&self.data_dir, self.pg_bindir.as_deref())
    }
}

#[derive(Debug, Subcommand)]
pub enum DbAction {
    /// Start it (creating it on first use) and print the URL of database `gantry`.
    Start {
        /// Turn off fsync: faster, but a machine crash can lose data. For tests.
        #[arg(long)]
        ephemeral: bool,
    },
    /// Stop it.
    Stop,
    /// Print the connection URL of database `gantry`.
    Url,
}

const DATABASE: &str = "gantry";

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Server(args) => serve(Config::from_args(args)?, None).await,
        Command::Up { server, data } => up(server, &data).await,
        Command::Agent(args) => crate::agent::run(args).await,
        Command::Db { action, data } => {
            let pg = data.postgres()?;
            match action {
                DbAction::Start { ephemeral } => {
                    pg.ensure_started(ephemeral).await?;
                    pg.ensure_database(DATABASE).await?;
                    println!("{}", pg.url(DATABASE));
                }
                DbAction::Stop => pg.stop().await?,
                DbAction::Url => println!("{}", pg.url(DATABASE)),
            }
            Ok(())
        }
    }
}

async fn up(mut args: ServerArgs, data: &DataDir) -> anyhow::Result<()> {
    let data_dir = data.data_dir.as_path();
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("failed to create data directory {}", data_dir.display()))?;
    if args.secret_key.is_none() {
        args.secret_key = Some(load_or_create_secret_key(data_dir)?);
    }
    if args.registry_dir.is_none() {
        args.registry_dir = Some(data_dir.join("registry"));
    }
    if args.git_dir.is_none() {
        args.git_dir = Some(data_dir.join("git"));
    }
    let embedded = if args.database_url.is_none() {
        let pg = data.postgres()?;
        pg.ensure_started(false).await?;
        pg.ensure_database(DATABASE).await?;
        args.database_url = Some(pg.url(DATABASE));
        Some(pg)
    } else {
        None
    };
    let result = match Config::from_args(args) {
        Ok(config) => serve(config, Some(data_dir)).await,
        Err(e) => Err(e),
    };
    if let Some(pg) = embedded {
        if let Err(e) = pg.stop().await {
            tracing::error!(error = %e, "failed to stop the embedded Postgres");
        }
    }
    result
}

async fn serve(config: Config, data_dir: Option<&Path>) -> anyhow::Result<()> {
    let app = Application::build(config.clone()).await?;
    let host = match config.listen.ip() {
        ip if ip.is_unspecified() => "127.0.0.1".to_owned(),
        ip => ip.to_string(),
    };
    let url = config
        .public_url
        .clone()
        .unwrap_or_else(|| format!("http://{host}:{}", app.port()));
    tracing::info!(port = app.port(), "listening on {url}");
    tracing::info!(
        port = app.router_port(),
        "router listening on port {}: apps at http://<app>.<team>.{}:{}/",
        app.router_port(),
        config.apps_domain,
        app.router_port()
    );
    if let Some(dir) = data_dir {
        // `gantry up` talks to a person: say where things are.
        println!("Gantry is up at {url}/");
        println!("  REST API: {url}/api/v1 (OpenAPI: {url}/api/v1/openapi.json)");
        println!("  Data:     {}", dir.display());
        println!(
            "  Apps:     http://<app>.<team>.{}:{}/ (the router)",
            config.apps_domain,
            app.router_port()
        );
        crate::agent::spawn_local(app.db(), format!("http://{host}:{}", app.port()), dir).await?;
        println!(
            "Sign up first: the first account administers this instance. Ctrl-C stops Gantry."
        );
    }
    app.run_until_stopped(shutdown_signal()).await
}

/// `gantry up` keeps its key next to its database, readable by the owner only.
fn load_or_create_secret_key(data_dir: &Path) -> anyhow::Result<String> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let path = data_dir.join("secret.key");
    if path.exists() {
        return std::fs::read_to_string(&path)
            .map(|s| s.trim().to_owned())
            .with_context(|| format!("failed to read {}", path.display()));
    }
    let key = SecretKey::generate().to_base64();
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .with_context(|| format!("failed to create {}", path.display()))?;
    writeln!(file, "{key}")?;
    Ok(key)
}
