//! A private Postgres for `gantry up`, `gantry db` and the test suite, run from the machine's own
//! PostgreSQL binaries.
//!
//! The cluster lives in `<data-dir>/postgres`, listens only on a unix socket (no TCP port, so no
//! other machine and no port clash), and is reused on the next start. As root, the server runs as
//! the `postgres` system user, because `initdb` refuses to run as root.
//!
//! Paths and names here come from the operator's configuration, never from tenants; every program
//! is still run with an argument vector, not through a shell.

use std::ffi::OsStr;
use std::fmt::Write as _;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use anyhow::{bail, Context};
use nix::unistd::{Gid, Uid, User};

/// The superuser `initdb` creates; connections over the private socket use it.
pub const SUPERUSER: &str = "gantry";
const PORT: u16 = 5432;
/// A unix socket path must fit in `sockaddr_un.sun_path` (108 bytes with the NUL).
const MAX_SOCKET_PATH: usize = 100;

pub struct EmbeddedPostgres {
    bin_dir: PathBuf,
    pgdata: PathBuf,
    socket_dir: PathBuf,
    /// Who runs the server: `Some` when we are root and must switch to `postgres`.
    run_as: Option<(Uid, Gid)>,
}

impl EmbeddedPostgres {
    /// Finds the binaries (in `bin_dir` when given) and lays out paths under `data_dir`;
    /// starts nothing.
    pub fn new(data_dir: &Path, bin_dir: Option<&Path>) -> anyhow::Result<Self> {
        let bin_dir = match bin_dir {
            Some(dir) if has_binaries(dir) => dir.to_path_buf(),
            Some(dir) => bail!(
                "no initdb and pg_ctl in GANTRY_PG_BINDIR={}. {MISSING_BINARIES}",
                dir.display()
            ),
            None => find_bin_dir().ok_or_else(|| anyhow::anyhow!(MISSING_BINARIES))?,
        };
        std::fs::create_dir_all(data_dir)
            .with_context(|| format!("failed to create data directory {}", data_dir.display()))?;
        let data_dir = data_dir
            .canonicalize()
            .with_context(|| format!("failed to resolve {}", data_dir.display()))?;
        let pgdata = data_dir.join("postgres");
        let run_as = if Uid::effective().is_root() {
            let user = User::from_name("postgres")?.context(
                "gantry is running as root, and Postgres refuses to: a `postgres` system user is needed \
                 to run it (installing Debian's postgresql package creates one), or set DATABASE_URL",
            )?;
            check_reachable_by_others(&data_dir)?;
            Some((user.uid, user.gid))
        } else {
            None
        };
        let socket_dir = socket_dir_for(&pgdata);
        Ok(Self {
            bin_dir,
            pgdata,
            socket_dir,
            run_as,
        })
    }

    /// Creates the cluster on first use, then starts it unless it is already running.
    /// `ephemeral` trades crash durability for speed (tests only).
    pub async fn ensure_started(&self, ephemeral: bool) -> anyhow::Result<()> {
        if !self.pgdata.join("PG_VERSION").exists() {
            self.init().await?;
        }
        self.write_settings(ephemeral)?;
        if self.is_running().await? {
            tracing::info!(pgdata = %self.pgdata.display(), "reusing the running embedded Postgres");
            return Ok(());
        }
        let log = self.pgdata.join("gantry-postgres.log");
        let status = self
            .pg_ctl()
            .args([
                OsStr::new("start"),
                OsStr::new("-w"),
                OsStr::new("-t"),
                OsStr::new("60"),
                OsStr::new("-s"),
            ])
            .arg("-D")
            .arg(&self.pgdata)
            .arg("-l")
            .arg(&log)
            .status()
            .await
            .context("failed to run pg_ctl start")?;
        if !status.success() {
            let tail = std::fs::read_to_string(&log).unwrap_or_default();
            let tail: String = tail
                .lines()
                .rev()
                .take(15)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect::<Vec<_>>()
                .join("\n");
            bail!(
                "the embedded Postgres did not start ({status}); its log {} ends with:\n{tail}",
                log.display()
            );
        }
        tracing::info!(pgdata = %self.pgdata.display(), "embedded Postgres started");
        Ok(())
    }

    /// Stops the server, waiting for it to finish (fast mode: ends sessions, checkpoints).
    pub async fn stop(&self) -> anyhow::Result<()> {
        if !self.is_running().await? {
            return Ok(());
        }
        let status = self
            .pg_ctl()
            .args(["stop", "-w", "-t", "60", "-s", "-m", "fast", "-D"])
            .arg(&self.pgdata)
            .status()
            .await
            .context("failed to run pg_ctl stop")?;
        if !status.success() {
            bail!("pg_ctl stop failed ({status})");
        }
        tracing::info!(pgdata = %self.pgdata.display(), "embedded Postgres stopped");
        Ok(())
    }

    pub async fn is_running(&self) -> anyhow::Result<bool> {
        if !self.pgdata.join("PG_VERSION").exists() {
            return Ok(false);
        }
        let status = self
            .pg_ctl()
            .args(["status", "-D"])
            .arg(&self.pgdata)
            .stdout(Stdio::null())
            .status()
            .await
            .context("failed to run pg_ctl status")?;
        Ok(status.success())
    }

    /// Connection URL for database `db` over the private socket.
    pub fn url(&self, db: &str) -> String {
        let mut host = String::new();
        for b in self.socket_dir.as_os_str().as_encoded_bytes() {
            if b.is_ascii_alphanumeric() || b"/-_.".contains(b) {
                host.push(*b as char);
            } else {
                let _ = write!(host, "%{b:02X}");
            }
        }
        format!("postgres://{SUPERUSER}@localhost:{PORT}/{db}?host={host}")
    }

    /// Creates database `db` when missing.
    pub async fn ensure_database(&self, db: &str) -> anyhow::Result<()> {
        use sqlx::Connection;
        let mut conn = sqlx::PgConnection::connect(&self.url("postgres"))
            .await
            .context("failed to connect to the embedded Postgres")?;
        let exists: bool =
            sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
                .bind(db)
                .fetch_one(&mut conn)
                .await?;
        if !exists {
            // Identifiers cannot be bound as parameters; `db` is ours (quoted, quotes doubled).
            sqlx::query(&format!("CREATE DATABASE \"{}\"", db.replace('"', "\"\"")))
                .execute(&mut conn)
                .await
                .with_context(|| format!("failed to create database {db}"))?;
        }
        Ok(())
    }

    async fn init(&self) -> anyhow::Result<()> {
        tracing::info!(pgdata = %self.pgdata.display(), "creating the embedded Postgres cluster");
        std::fs::create_dir_all(&self.pgdata)?;
        std::fs::set_permissions(&self.pgdata, std::fs::Permissions::from_mode(0o700))?;
        self.chown(&self.pgdata)?;
        let output = self
            .command("initdb")
            .arg("-D")
            .arg(&self.pgdata)
            .args(["-U", SUPERUSER, "-A", "trust", "-E", "UTF8", "--locale=C"])
            .output()
            .await
            .context("failed to run initdb")?;
        if !output.status.success() {
            bail!(
                "initdb failed ({}): {}",
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            );
        }
        // Our settings live in a file of their own, rewritten at each start.
        let mut conf = std::fs::OpenOptions::new()
            .append(true)
            .open(self.pgdata.join("postgresql.conf"))?;
        std::io::Write::write_all(&mut conf, b"\ninclude_if_exists = 'gantry.conf'\n")?;
        Ok(())
    }

    fn write_settings(&self, ephemeral: bool) -> anyhow::Result<()> {
        std::fs::create_dir_all(&self.socket_dir)?;
        std::fs::set_permissions(&self.socket_dir, std::fs::Permissions::from_mode(0o700))?;
        self.chown(&self.socket_dir)?;
        let quoted = self.socket_dir.display().to_string().replace('\'', "''");
        let mut conf = format!(
            "# Written by gantry at every start; edits are lost.\n\
             listen_addresses = ''\n\
             port = {PORT}\n\
             unix_socket_directories = '{quoted}'\n\
             unix_socket_permissions = 0700\n\
             max_connections = 200\n"
        );
        if ephemeral {
            conf.push_str("fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n");
        }
        let path = self.pgdata.join("gantry.conf");
        std::fs::write(&path, conf)?;
        self.chown(&path)?;
        Ok(())
    }

    fn pg_ctl(&self) -> tokio::process::Command {
        self.command("pg_ctl")
    }

    fn command(&self, program: &str) -> tokio::process::Command {
        let mut cmd = std::process::Command::new(self.bin_dir.join(program));
        if let Some((uid, gid)) = self.run_as {
            cmd.uid(uid.as_raw()).gid(gid.as_raw());
            // HOME of root is not readable by postgres; keep the child out of it.
            cmd.current_dir("/");
        }
        cmd.stdin(Stdio::null());
        tokio::process::Command::from(cmd)
    }

    fn chown(&self, path: &Path) -> anyhow::Result<()> {
        if let Some((uid, gid)) = self.run_as {
            nix::unistd::chown(path, Some(uid), Some(gid)).with_context(|| {
                format!("failed to give {} to the postgres user", path.display())
            })?;
        }
        Ok(())
    }
}

const MISSING_BINARIES: &str =
    "PostgreSQL's server binaries (initdb, pg_ctl) were not found on PATH \
or under /usr/lib/postgresql/*/bin. `gantry up` runs its own Postgres from them: install them \
(Debian/Ubuntu: `sudo apt-get install postgresql`; macOS: `brew install postgresql@15`), or point \
Gantry at an existing database with DATABASE_URL=postgres://user:password@host/db.";

fn has_binaries(dir: &Path) -> bool {
    dir.join("initdb").is_file() && dir.join("pg_ctl").is_file()
}

/// PATH first (it may hold a chosen version), then the newest `/usr/lib/postgresql/<v>/bin`.
fn find_bin_dir() -> Option<PathBuf> {
    let has_both = has_binaries;
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            if has_both(&dir) {
                return Some(dir);
            }
        }
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let v = e.file_name().to_str()?.parse::<u32>().ok()?;
            Some((v, e.path().join("bin")))
        })
        .filter(|(_, bin)| has_both(bin))
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin)
}

/// The socket goes in the cluster directory unless that path is too long for a unix socket.
fn socket_dir_for(pgdata: &Path) -> PathBuf {
    let socket_file_len = pgdata.as_os_str().len() + "/.s.PGSQL.5432".len();
    if socket_file_len <= MAX_SOCKET_PATH {
        return pgdata.to_path_buf();
    }
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    pgdata.hash(&mut h);
    std::env::temp_dir().join(format!("gantry-pg-{:016x}", h.finish()))
}

/// As root, Postgres runs as `postgres`, which must be able to walk down to the data directory.
fn check_reachable_by_others(dir: &Path) -> anyhow::Result<()> {
    for ancestor in dir.ancestors().skip(1) {
        let mode = std::fs::metadata(ancestor)?.permissions().mode();
        if mode & 0o001 == 0 {
            bail!(
                "the data directory {} is inside {}, which the postgres user cannot enter \
                 (mode {:o}); choose another GANTRY_DATA_DIR (e.g. /var/lib/gantry) or set DATABASE_URL",
                dir.display(),
                ancestor.display(),
                mode & 0o777
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_paths_move_the_socket_to_tmp() {
        let short = Path::new("/var/lib/gantry/postgres");
        assert_eq!(socket_dir_for(short), short);
        let long = PathBuf::from(format!("/{}/postgres", "x".repeat(100)));
        let moved = socket_dir_for(&long);
        assert!(
            moved.starts_with(std::env::temp_dir()),
            "{}",
            moved.display()
        );
        assert_eq!(moved, socket_dir_for(&long), "stable across starts");
    }

    #[test]
    fn url_percent_encodes_the_socket_dir() {
        let pg = EmbeddedPostgres {
            bin_dir: PathBuf::new(),
            pgdata: PathBuf::from("/d/postgres"),
            socket_dir: PathBuf::from("/tmp/my data/pg"),
            run_as: None,
        };
        assert_eq!(
            pg.url("gantry"),
            "postgres://gantry@localhost:5432/gantry?host=/tmp/my%20data/pg"
        );
    }
}
