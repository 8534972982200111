//! `gantry-loadgen`: an open-loop HTTP load generator for the benchmark scripts in `bench/`.
//!
//! It sends requests at a fixed rate (`--rate` per second, like `wrk2 -R` or `oha -q`)
//! and reports latency percentiles. The schedule is *open-loop*: request `i` is due at
//! `start + i / rate` whether or not earlier requests have finished. A closed-loop tool
//! (send, wait, send again) slows down along with the server, so a stall delays only a
//! handful of requests and the percentiles look far better than what users would see;
//! this is called *coordinated omission*.
//!
//! To correct for it, each latency is measured from the request's *intended* send time,
//! not from when it actually went out. If the server falls behind, all `--connections`
//! in-flight slots fill up, later requests wait for a free slot, and that wait is counted
//! in their latency. The first `--warmup` of the run is sent the same way but discarded.
//!
//! Requests are dispatched from a dedicated blocking thread with `std::thread::sleep`,
//! which is accurate to tens of microseconds, rather than from tokio's millisecond timer,
//! whose lateness would otherwise be counted as server latency.

mod stats;
mod template;

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use clap::Parser;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_TYPE};
use reqwest::{Client, Method, RequestBuilder, Url};
use tokio::runtime::Handle;
use tokio::sync::{mpsc, Semaphore};

use crate::stats::percentile;
use crate::template::{random_run_id, BodyTemplate};

/// How many failed requests are described on stderr.
const MAX_ERRORS_SHOWN: usize = 5;
/// How many characters of an error response body are shown.
const MAX_BODY_SHOWN: usize = 200;

/// Open-loop HTTP load generator: fixed request rate, latency corrected for coordinated omission.
#[derive(Debug, Parser)]
#[command(name = "gantry-loadgen", version)]
struct Args {
    /// Target URL (http or https).
    #[arg(long, value_parser = parse_url)]
    url: Url,
    /// HTTP method.
    #[arg(long, default_value = "GET", value_parser = parse_method)]
    method: Method,
    /// Requests per second, held fixed however slowly the server answers.
    #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u32).range(1..))]
    rate: u32,
    /// How long to measure, after the warm-up (e.g. 10s, 500ms, 2m).
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    duration: Duration,
    /// Warm-up sent at the same rate before measuring; its results are discarded.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    warmup: Duration,
    /// Request header as 'Name: value'; repeatable.
    #[arg(long = "header", value_name = "HEADER", value_parser = parse_header)]
    headers: Vec<Header>,
    /// Request body. `{n}` becomes a unique increasing number per request, `{run}` a random
    /// 6-character id per run. Sent as application/json unless a Content-Type header is given.
    #[arg(long)]
    body_template: Option<String>,
    /// Maximum number of requests in flight (and of pooled idle connections).
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..))]
    connections: u32,
    /// Per-request timeout; a request that exceeds it counts as an error.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    timeout: Duration,
    /// Print one JSON object instead of the human-readable summary.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Clone)]
struct Header(HeaderName, HeaderValue);

/// The outcome of one request.
struct Sample {
    /// Request number, as substituted for `{n}`.
    n: u64,
    /// False during the warm-up.
    measured: bool,
    /// From the intended send time to the end of the response body.
    latency: Duration,
    /// `None` for transport errors.
    status: Option<u16>,
    /// `Some` for transport errors and non-2xx responses.
    error: Option<String>,
}

/// Aggregates over the measured (post-warm-up) requests.
struct Report {
    requests: u64,
    errors: u64,
    /// Measured requests divided by the time it took to send them.
    achieved_rps: f64,
    /// Count per status code, plus "error" for transport errors.
    statuses: BTreeMap<String, u64>,
    /// Sorted latencies in microseconds.
    latencies_us: Vec<u64>,
    /// Requests that had to wait for a free in-flight slot.
    saturated: u64,
}

#[tokio::main]
async fn main() -> Result<ExitCode> {
    let args = Args::parse();
    let report = run(&args).await?;
    if args.json {
        println!("{}", json_summary(&args, &report));
    } else {
        print_summary(&args, &report);
    }
    // More than 1% failed requests fails the benchmark.
    Ok(if report.errors * 100 > report.requests {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

async fn run(args: &Args) -> Result<Report> {
    let rate = u64::from(args.rate);
    let warmup_n = requests_in(args.warmup, rate);
    let total_n = requests_in(args.warmup + args.duration, rate);
    ensure!(
        total_n > warmup_n,
        "--duration {:?} is too short to send any request at --rate {rate}",
        args.duration
    );

    let connections = args.connections as usize;
    let client = Client::builder()
        .default_headers(default_headers(args))
        .pool_max_idle_per_host(connections)
        .timeout(args.timeout)
        .build()
        .context("building HTTP client")?;
    let template = args
        .body_template
        .as_deref()
        .map(|t| BodyTemplate::new(t, &random_run_id()));
    let method = args.method.clone();
    let url = args.url.clone();

    let (tx, mut rx) = mpsc::unbounded_channel::<Sample>();
    let slots = Arc::new(Semaphore::new(connections));
    let runtime = Handle::current();
    let start = Instant::now() + Duration::from_millis(10);
    let window_start = start + offset(warmup_n, rate);

    // The dispatcher owns `tx`; the channel closes once it and every request task are done.
    let dispatcher = tokio::task::spawn_blocking(move || {
        let mut saturated = 0;
        let mut last_sent = window_start;
        for i in 0..total_n {
            let intended = start + offset(i, rate);
            std::thread::sleep(intended.saturating_duration_since(Instant::now()));
            let measured = i >= warmup_n;
            let permit = match slots.clone().try_acquire_owned() {
                Ok(permit) => permit,
                Err(_) => {
                    saturated += u64::from(measured);
                    runtime
                        .block_on(slots.clone().acquire_owned())
                        .expect("the semaphore is never closed")
                }
            };
            if measured {
                last_sent = Instant::now();
            }
            let n = i + 1;
            let mut request = client.request(method.clone(), url.clone());
            if let Some(template) = &template {
                request = request.body(template.render(n));
            }
            let tx = tx.clone();
            runtime.spawn(async move {
                let (status, error) = send(request).await;
                let done = Instant::now();
                drop(permit);
                // The receiver only goes away if the process is exiting anyway.
                let _ = tx.send(Sample {
                    n,
                    measured,
                    latency: done - intended,
                    status,
                    error,
                });
            });
        }
        (saturated, last_sent)
    });

    let mut report = Report {
        requests: 0,
        errors: 0,
        achieved_rps: 0.0,
        statuses: BTreeMap::new(),
        latencies_us: Vec::with_capacity((total_n - warmup_n) as usize),
        saturated: 0,
    };
    let mut errors_shown = 0;
    while let Some(sample) = rx.recv().await {
        if let Some(error) = &sample.error {
            if errors_shown < MAX_ERRORS_SHOWN {
                let phase = if sample.measured { "" } else { " (warm-up)" };
                eprintln!("request {}{phase} failed: {error}", sample.n);
                errors_shown += 1;
            }
        }
        if !sample.measured {
            continue;
        }
        report.requests += 1;
        report.errors += u64::from(sample.error.is_some());
        let key = sample.status.map_or("error".to_owned(), |s| s.to_string());
        *report.statuses.entry(key).or_default() += 1;
        report.latencies_us.push(sample.latency.as_micros() as u64);
    }
    let (saturated, last_sent) = dispatcher.await.context("dispatcher thread panicked")?;
    report.saturated = saturated;
    report.latencies_us.sort_unstable();
    // Sending on schedule takes exactly `duration`; waiting for free slots stretches it.
    let send_time = last_sent - window_start + offset(1, rate);
    let elapsed = args.duration.max(send_time).as_secs_f64();
    if elapsed > 0.0 {
        report.achieved_rps = report.requests as f64 / elapsed;
    }
    Ok(report)
}

/// Sends one request and reads the whole response body.
async fn send(request: RequestBuilder) -> (Option<u16>, Option<String>) {
    let response = match request.send().await {
        Ok(response) => response,
        Err(e) => return (None, Some(format!("{:#}", anyhow::Error::from(e)))),
    };
    let status = response.status();
    let error = match response.bytes().await {
        Ok(_) if status.is_success() => None,
        Ok(body) => {
            // One line per error: HTML error pages are otherwise unreadable.
            let body = String::from_utf8_lossy(&body);
            let body = body.split_whitespace().collect::<Vec<_>>().join(" ");
            let shown: String = body.chars().take(MAX_BODY_SHOWN).collect();
            let more = if shown.len() < body.len() { "…" } else { "" };
            Some(format!("status {status}: {shown}{more}"))
        }
        Err(e) => Some(format!(
            "status {status}, reading body: {:#}",
            anyhow::Error::from(e)
        )),
    };
    (Some(status.as_u16()), error)
}

fn default_headers(args: &Args) -> HeaderMap {
    let mut headers = HeaderMap::new();
    if args.body_template.is_some() {
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    }
    for Header(name, value) in &args.headers {
        headers.insert(name.clone(), value.clone());
    }
    headers
}

/// Number of requests due within `d` at `rate` per second.
fn requests_in(d: Duration, rate: u64) -> u64 {
    (d.as_nanos() * u128::from(rate) / 1_000_000_000) as u64
}

/// Intended send time of request `i`, relative to the start.
fn offset(i: u64, rate: u64) -> Duration {
    Duration::from_nanos((u128::from(i) * 1_000_000_000 / u128::from(rate)) as u64)
}

fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

fn latency_percentiles(report: &Report) -> [(&'static str, f64); 5] {
    let p = |q| ms(percentile(&report.latencies_us, q).unwrap_or(0));
    [
        ("p50", p(50.0)),
        ("p90", p(90.0)),
        ("p99", p(99.0)),
        ("p99.9", p(99.9)),
        ("max", p(100.0)),
    ]
}

fn print_summary(args: &Args, report: &Report) {
    let error_pct = 100.0 * report.errors as f64 / report.requests.max(1) as f64;
    let statuses: Vec<String> = report
        .statuses
        .iter()
        .map(|(status, count)| format!("{status}={count}"))
        .collect();
    println!(
        "{} {} at {} req/s for {:.2}s (warm-up {:.2}s, {} connections)",
        args.method,
        args.url,
        args.rate,
        args.duration.as_secs_f64(),
        args.warmup.as_secs_f64(),
        args.connections
    );
    println!("  requests:  {}", report.requests);
    println!("  achieved:  {:.2} req/s", report.achieved_rps);
    println!("  errors:    {} ({error_pct:.2}%)", report.errors);
    println!("  statuses:  {}", statuses.join(" "));
    println!("  latency (ms, from intended send time):");
    for (name, value) in latency_percentiles(report) {
        println!("    {name:<6} {value:>10.2}");
    }
    if report.saturated > 0 {
        println!(
            "  note: {} requests waited for one of the {} in-flight slots; \
             the server did not keep up with this rate",
            report.saturated, args.connections
        );
    }
}

fn json_summary(args: &Args, report: &Report) -> serde_json::Value {
    let [p50, p90, p99, p999, max] = latency_percentiles(report).map(|(_, v)| v);
    serde_json::json!({
        "url": args.url.as_str(),
        "method": args.method.as_str(),
        "rate": args.rate,
        "duration_s": args.duration.as_secs_f64(),
        "requests": report.requests,
        "errors": report.errors,
        "achieved_rps": (report.achieved_rps * 100.0).round() / 100.0,
        "p50_ms": p50,
        "p90_ms": p90,
        "p99_ms": p99,
        "p999_ms": p999,
        "max_ms": max,
    })
}

fn parse_url(s: &str) -> Result<Url, String> {
    let url = Url::parse(s).map_err(|e| e.to_string())?;
    match url.scheme() {
        "http" | "https" => Ok(url),
        other => Err(format!(
            "unsupported scheme {other:?}, expected http or https"
        )),
    }
}

fn parse_method(s: &str) -> Result<Method, String> {
    Method::from_bytes(s.to_ascii_uppercase().as_bytes()).map_err(|e| e.to_string())
}

fn parse_header(s: &str) -> Result<Header, String> {
    let (name, value) = s
        .split_once(':')
        .ok_or_else(|| format!("expected 'Name: value', got {s:?}"))?;
    let name = HeaderName::from_bytes(name.trim().as_bytes()).map_err(|e| e.to_string())?;
    let value = HeaderValue::from_str(value.trim()).map_err(|e| e.to_string())?;
    Ok(Header(name, value))
}

/// Parses `10s`, `500ms`, `2m`, `1h` or a bare number of seconds (fractions allowed).
fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(s.len());
    let (number, unit) = s.split_at(split);
    let value: f64 = number
        .trim()
        .parse()
        .map_err(|_| format!("invalid duration {s:?}, expected e.g. 10s, 500ms or 2m"))?;
    let seconds = match unit {
        "ms" => value / 1000.0,
        "" | "s" => value,
        "m" => value * 60.0,
        "h" => value * 3600.0,
        _ => return Err(format!("unknown unit {unit:?} in {s:?}, use ms, s, m or h")),
    };
    Duration::try_from_secs_f64(seconds).map_err(|e| format!("invalid duration {s:?}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_durations() {
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1.5"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
        assert!(parse_duration("10x").is_err());
        assert!(parse_duration("-1s").is_err());
        assert!(parse_duration("s").is_err());
    }

    #[test]
    fn schedule_is_evenly_spaced() {
        assert_eq!(requests_in(Duration::from_secs(10), 500), 5000);
        assert_eq!(requests_in(Duration::from_millis(2500), 3), 7);
        assert_eq!(offset(0, 500), Duration::ZERO);
        assert_eq!(offset(1, 500), Duration::from_millis(2));
        assert_eq!(offset(3, 3), Duration::from_secs(1));
    }

    #[test]
    fn parses_headers() {
        let Header(name, value) = parse_header("Authorization:  Bearer x:y ").unwrap();
        assert_eq!(name, "authorization");
        assert_eq!(value, "Bearer x:y");
        assert!(parse_header("no colon").is_err());
    }

    #[test]
    fn cli_is_well_formed() {
        use clap::CommandFactory;
        Args::command().debug_assert();
    }
}
