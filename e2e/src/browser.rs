//! Headless Chromium driven over WebDriver (Debian's `chromium` and `chromium-driver`), and a
//! running Gantry (private Postgres + `gantry server`) for it to talk to.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use fantoccini::{elements::Element, Client, ClientBuilder, Locator};
use serde_json::json;
use tokio::process::{Child, Command};

use crate::{
    data_dir, free_port, gantry, start_postgres, wait_for_status, Running, StopPostgresOnDrop,
};

/// How long a page may take to show what a test waits for.
pub const PATIENCE: Duration = Duration::from_secs(20);

/// A Gantry server with its own Postgres, stopped when dropped.
pub struct Stack {
    pub base: String,
    _server: Running,
    _postgres: StopPostgresOnDrop,
    _dir: tempfile::TempDir,
}

impl Stack {
    pub async fn start() -> anyhow::Result<Self> {
        let dir = data_dir();
        let postgres = StopPostgresOnDrop(dir.path().to_path_buf());
        let url = start_postgres(dir.path()).await?;
        let port = free_port();
        let mut cmd = gantry();
        cmd.arg("server")
            .env("DATABASE_URL", url)
            .env("GANTRY_SECRET_KEY", "1".repeat(64))
            .env("GANTRY_LISTEN", format!("127.0.0.1:{port}"));
        let mut server = Running::spawn(cmd)?;
        server
            .wait_for_line("listening on", Duration::from_secs(60))
            .await?;
        let base = format!("http://127.0.0.1:{port}");
        wait_for_status(&format!("{base}/readyz"), 200, Duration::from_secs(10)).await?;
        Ok(Self {
            base,
            _server: server,
            _postgres: postgres,
            _dir: dir,
        })
    }
}

/// One chromedriver and one headless Chromium session.
pub struct Browser {
    pub client: Client,
    _driver: Child,
    _profile: tempfile::TempDir,
}

/// Ends chromedriver and every browser process it started. Killing chromedriver alone
/// (`kill_on_drop`) left its Chromium running, orphaned, after every test that did not close
/// its session — a failed one, or one that simply ended.
impl Drop for Browser {
    fn drop(&mut self) {
        if let Some(pid) = self._driver.id().and_then(|p| i32::try_from(p).ok()) {
            let _ = nix::sys::signal::killpg(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}

fn which(program: &str) -> anyhow::Result<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
        .map(|d| d.join(program))
        .find(|p| p.is_file())
        .with_context(|| format!("{program} is not installed (scripts/test installs it: apt-get install chromium chromium-driver)"))
}

impl Browser {
    pub async fn start(width: u32, height: u32) -> anyhow::Result<Self> {
        let chromium = which("chromium")?;
        let chromedriver = which("chromedriver")?;
        let port = free_port();
        // The browser's profile and its temporary files, removed with `Browser`.
        let profile = tempfile::tempdir()?;
        let tmp = profile.path().join("tmp");
        std::fs::create_dir(&tmp)?;
        let driver = Command::new(chromedriver)
            .arg(format!("--port={port}"))
            .env("TMPDIR", &tmp)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            // Its own process group, which the Chromium it starts joins: see `Drop`.
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .context("failed to start chromedriver")?;
        let endpoint = format!("http://127.0.0.1:{port}");
        wait_for_status(&format!("{endpoint}/status"), 200, Duration::from_secs(20)).await?;
        let caps = json!({
            "goog:chromeOptions": {
                "binary": chromium,
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--disable-quic", "--disable-background-networking", "--disable-component-update",
                    "--disable-sync", "--no-first-run", "--disable-extensions",
                    format!("--window-size={width},{height}"),
                    format!("--user-data-dir={}", profile.path().join("data").display()),
                ]
            }
        });
        let serde_json::Value::Object(caps) = caps else {
            unreachable!()
        };
        // Several rustls back-ends are compiled in (via reqwest, sqlx, fantoccini): pick one.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = ClientBuilder::rustls()?
            .capabilities(caps)
            .connect(&endpoint)
            .await
            .context("failed to open a Chromium session")?;
        Ok(Self {
            client,
            _driver: driver,
            _profile: profile,
        })
    }

    /// Loads `url` and waits until the dashboard has hydrated (is interactive).
    pub async fn open(&self, url: &str) -> anyhow::Result<()> {
        self.client.goto(url).await?;
        self.wait_for("body[data-hydrated]").await?;
        Ok(())
    }

    pub async fn wait_for(&self, css: &str) -> anyhow::Result<Element> {
        match self
            .client
            .wait()
            .at_most(PATIENCE)
            .for_element(Locator::Css(css))
            .await
        {
            Ok(el) => Ok(el),
            Err(e) => bail!(
                "{css} did not appear on {}: {e}",
                self.url_or_unknown().await
            ),
        }
    }

    /// Waits until the first element matching `css` contains `text`.
    pub async fn wait_for_text(&self, css: &str, text: &str) -> anyhow::Result<Element> {
        self.wait_for_text_within(css, text, PATIENCE).await
    }

    /// [`Self::wait_for_text`] for what takes longer than a page, such as a rollout.
    pub async fn wait_for_text_within(
        &self,
        css: &str,
        text: &str,
        patience: Duration,
    ) -> anyhow::Result<Element> {
        let deadline = Instant::now() + patience;
        let mut last = String::new();
        loop {
            if let Ok(el) = self.client.find(Locator::Css(css)).await {
                if let Ok(t) = el.text().await {
                    if t.contains(text) {
                        return Ok(el);
                    }
                    last = t;
                }
            }
            if Instant::now() > deadline {
                bail!(
                    "{css} never contained {text:?} (last: {last:?}) on {}",
                    self.url_or_unknown().await
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until the page path (without origin) satisfies `pred`, returning it.
    pub async fn wait_for_path(&self, pred: impl Fn(&str) -> bool) -> anyhow::Result<String> {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let url = self.client.current_url().await?;
            if pred(url.path()) {
                return Ok(url.path().to_owned());
            }
            if Instant::now() > deadline {
                bail!(
                    "the page stayed at {url}, showing: {}",
                    self.page_text().await
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub async fn fill(&self, css: &str, text: &str) -> anyhow::Result<()> {
        let el = self.wait_for(css).await?;
        el.clear().await?;
        el.send_keys(text).await?;
        Ok(())
    }

    pub async fn click(&self, css: &str) -> anyhow::Result<()> {
        self.wait_for(css).await?.click().await?;
        Ok(())
    }

    /// Clicks the first `css` element whose text is `text`.
    pub async fn click_text(&self, css: &str, text: &str) -> anyhow::Result<()> {
        let deadline = Instant::now() + PATIENCE;
        loop {
            for el in self.client.find_all(Locator::Css(css)).await? {
                if el.text().await.map(|t| t.trim() == text).unwrap_or(false) {
                    el.click().await?;
                    return Ok(());
                }
            }
            if Instant::now() > deadline {
                bail!(
                    "no {css} with text {text:?} on {}",
                    self.url_or_unknown().await
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub async fn count(&self, css: &str) -> anyhow::Result<usize> {
        Ok(self.client.find_all(Locator::Css(css)).await?.len())
    }

    /// Waits until exactly `n` elements match `css`.
    pub async fn wait_for_count(&self, css: &str, n: usize) -> anyhow::Result<()> {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let count = self.count(css).await?;
            if count == n {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "{n} × {css} expected, {count} on {}: {}",
                    self.url_or_unknown().await,
                    self.page_text().await
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The text of every element matching `css`, in document order.
    pub async fn texts(&self, css: &str) -> anyhow::Result<Vec<String>> {
        let mut texts = Vec::new();
        for el in self.client.find_all(Locator::Css(css)).await? {
            texts.push(el.text().await?);
        }
        Ok(texts)
    }

    /// Saves a PNG screenshot as `dir/name.png`.
    pub async fn screenshot(&self, dir: &Path, name: &str) -> anyhow::Result<PathBuf> {
        std::fs::create_dir_all(dir)?;
        let path = dir.join(format!("{name}.png"));
        std::fs::write(&path, self.client.screenshot().await?)?;
        Ok(path)
    }

    /// The visible text of the page, shortened, for failure messages.
    pub async fn page_text(&self) -> String {
        let text = self
            .client
            .execute(
                "return document.body ? document.body.innerText : ''",
                vec![],
            )
            .await
            .map(|v| v.as_str().unwrap_or_default().replace('\n', " | "))
            .unwrap_or_default();
        text.chars().take(600).collect()
    }

    async fn url_or_unknown(&self) -> String {
        self.client
            .current_url()
            .await
            .map(|u| u.to_string())
            .unwrap_or_else(|_| "(unknown page)".into())
    }
}

/// Where browser tests save screenshots: `$GANTRY_SCREENSHOT_DIR`, else `target/screenshots`.
pub fn screenshot_dir() -> PathBuf {
    std::env::var_os("GANTRY_SCREENSHOT_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/screenshots"))
}
