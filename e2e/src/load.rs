//! An open-loop load generator through the router, for the zero-downtime tests: a request every
//! `1 / rate` seconds whatever the answers take (so a stall shows as failures or latency, not as
//! fewer requests), each one's outcome recorded with the release that answered.
//!
//! The hello app answers `… (release vN)`; the release is read from there. Requests go to
//! 127.0.0.1 with the app's host name resolved there by the client (the system resolver does not
//! know `*.localhost`), so the router sees the `Host` a browser would send.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// How long one request may take before it counts as failed.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// One request's outcome.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// When it was sent, from the start of the run.
    pub sent: Duration,
    /// The release that answered (`Some(2)` for `(release v2)`), or the failure.
    pub result: Result<Option<u32>, String>,
}

pub struct Load {
    stop: watch::Sender<bool>,
    task: JoinHandle<Vec<Outcome>>,
    /// When the first request was due; `Outcome::sent` counts from here.
    pub started: Instant,
}

/// What a run saw.
#[derive(Debug)]
pub struct Report {
    pub outcomes: Vec<Outcome>,
}

impl Report {
    pub fn total(&self) -> usize {
        self.outcomes.len()
    }

    pub fn failures(&self) -> Vec<&Outcome> {
        self.outcomes.iter().filter(|o| o.result.is_err()).collect()
    }

    /// The releases that answered, in the order the requests were sent.
    pub fn releases(&self) -> Vec<u32> {
        self.outcomes
            .iter()
            .filter_map(|o| o.result.as_ref().ok().copied().flatten())
            .collect()
    }

    /// When (from the start of the run) the answers became `release` for good: the send time
    /// of the first request of the last unbroken run of answers from it.
    pub fn settled_on(&self, release: u32) -> Option<Duration> {
        let mut first_of_run = None;
        for o in &self.outcomes {
            match o.result {
                Ok(Some(r)) if r == release => {
                    first_of_run.get_or_insert(o.sent);
                }
                _ => first_of_run = None,
            }
        }
        first_of_run
    }

    /// A line for assertion messages: counts, and the first failures.
    pub fn summary(&self) -> String {
        let failures = self.failures();
        let mut text = format!("{} requests, {} failed", self.total(), failures.len());
        for f in failures.iter().take(5) {
            text.push_str(&format!("\n  at {:?}: {:?}", f.sent, f.result));
        }
        text
    }
}

impl Load {
    /// Starts sending `GET /` for `host` to the router at `router` (`127.0.0.1:port`), `rate`
    /// requests a second.
    pub fn start(router: SocketAddr, host: &str, rate: u32) -> anyhow::Result<Load> {
        let client = reqwest::Client::builder()
            .resolve(host, router)
            .timeout(REQUEST_TIMEOUT)
            .pool_max_idle_per_host(64)
            .build()
            .context("load generator client")?;
        let url = format!("http://{host}:{}/", router.port());
        let (stop, mut stopped) = watch::channel(false);
        let period = Duration::from_secs_f64(1.0 / f64::from(rate.max(1)));
        let started = Instant::now();
        let task = tokio::spawn(async move {
            let (tx, mut rx) = mpsc::unbounded_channel();
            let start = started;
            let mut ticks = tokio::time::interval(period);
            // Open loop: a late tick is sent at once, never skipped.
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
            loop {
                tokio::select! {
                    _ = ticks.tick() => {}
                    _ = stopped.changed() => break,
                }
                let (client, url, tx) = (client.clone(), url.clone(), tx.clone());
                let sent = start.elapsed();
                tokio::spawn(async move {
                    let result = request(&client, &url).await;
                    let _ = tx.send(Outcome { sent, result });
                });
            }
            drop(tx);
            let mut outcomes = Vec::new();
            while let Some(outcome) = rx.recv().await {
                outcomes.push(outcome);
            }
            outcomes.sort_by_key(|o| o.sent);
            outcomes
        });
        Ok(Load {
            stop,
            task,
            started,
        })
    }

    /// Stops sending, waits for the answers in flight and reports.
    pub async fn stop(self) -> anyhow::Result<Report> {
        let _ = self.stop.send(true);
        let outcomes = self.task.await.context("the load generator failed")?;
        Ok(Report { outcomes })
    }
}

async fn request(client: &reqwest::Client, url: &str) -> Result<Option<u32>, String> {
    let res = client.get(url).send().await.map_err(|e| format!("{e:#}"))?;
    let status = res.status();
    let body = res.text().await.map_err(|e| format!("body: {e:#}"))?;
    if !status.is_success() {
        return Err(format!("{status}: {}", body.trim()));
    }
    Ok(release_of(&body))
}

/// `… (release v3)` → 3.
pub fn release_of(body: &str) -> Option<u32> {
    let start = body.rfind("(release v")? + "(release v".len();
    let digits: String = body[start..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settles_on_the_last_unbroken_run() {
        let at = |ms: u64, r: Result<Option<u32>, String>| Outcome {
            sent: Duration::from_millis(ms),
            result: r,
        };
        let report = Report {
            outcomes: vec![
                at(0, Ok(Some(1))),
                at(5, Ok(Some(2))),
                at(10, Ok(Some(1))),
                at(15, Ok(Some(2))),
                at(20, Ok(Some(2))),
            ],
        };
        assert_eq!(report.settled_on(2), Some(Duration::from_millis(15)));
        assert_eq!(report.settled_on(3), None);
    }

    #[test]
    fn reads_the_release_from_hellos_answer() {
        assert_eq!(
            release_of("Hello, 世界 from 3f2a9c1d (release v12)\n"),
            Some(12)
        );
        assert_eq!(release_of("Hello, 世界 from 3f2a9c1d\n"), None);
    }
}
