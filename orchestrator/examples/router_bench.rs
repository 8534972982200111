//! `router_bench`: the router as `gantry server` runs it, with a static route table, for
//! `bench/router.sh` (the router against nginx, issue #8).
//!
//! One app, `hello` of team `bench` (host `hello.bench.localhost`), whose one release set has
//! one endpoint: the upstream given on the command line. It serves on a loopback port until it
//! is killed, and logs nothing (no subscriber is installed, so every `tracing` call is a no-op).
//!
//! ```text
//! cargo run --release -p gantry-orchestrator --example router_bench -- \
//!     --listen 127.0.0.1:8000 --upstream 127.0.0.1:8888 [--threads 1]
//! ```
//!
//! `--threads` sets the tokio runtime's worker threads: 1 by default, to match nginx's one
//! worker process in the benchmark. `gantry server` itself runs tokio's default multi-thread
//! runtime (one worker per core).

use std::net::SocketAddr;
use std::process::ExitCode;

use gantry_orchestrator::router::{
    AppSpec, EndpointSpec, RouteSpec, Router, RouterConfig, SetSpec,
};
use tokio::net::TcpListener;
use uuid::Uuid;

const USAGE: &str =
    "usage: router_bench --listen 127.0.0.1:PORT --upstream 127.0.0.1:PORT [--threads N]";

struct Args {
    listen: SocketAddr,
    upstream: SocketAddr,
    threads: usize,
}

fn parse_args(mut args: impl Iterator<Item = String>) -> Result<Args, String> {
    let (mut listen, mut upstream, mut threads) = (None, None, 1);
    while let Some(flag) = args.next() {
        let mut value = || args.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--listen" => listen = Some(parse_addr(&value()?)?),
            "--upstream" => upstream = Some(parse_addr(&value()?)?),
            "--threads" => {
                let v = value()?;
                threads = v
                    .parse()
                    .ok()
                    .filter(|&n| n > 0)
                    .ok_or_else(|| format!("--threads must be a positive number, not {v:?}"))?;
            }
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(Args {
        listen: listen.ok_or("--listen is required")?,
        upstream: upstream.ok_or("--upstream is required")?,
        threads,
    })
}

fn parse_addr(s: &str) -> Result<SocketAddr, String> {
    s.parse()
        .map_err(|_| format!("expected an address like 127.0.0.1:8000, not {s:?}"))
}

fn route_spec(upstream: SocketAddr) -> RouteSpec {
    RouteSpec {
        apps: vec![AppSpec {
            app_id: Uuid::from_u128(1),
            team: "bench".into(),
            app: "hello".into(),
            sets: vec![SetSpec {
                release_id: Uuid::from_u128(2),
                version: 1,
                weight: None,
                endpoints: vec![EndpointSpec {
                    instance: Uuid::from_u128(3),
                    addr: upstream,
                }],
            }],
            preview: None,
            sticky: false,
        }],
    }
}

fn main() -> ExitCode {
    let args = match parse_args(std::env::args().skip(1)) {
        Ok(args) => args,
        Err(msg) => {
            eprintln!("router_bench: {msg}\n{USAGE}");
            return ExitCode::FAILURE;
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.threads)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    runtime.block_on(async {
        let listener = match TcpListener::bind(args.listen).await {
            Ok(listener) => listener,
            Err(err) => {
                eprintln!("router_bench: cannot listen on {}: {err}", args.listen);
                return ExitCode::FAILURE;
            }
        };
        let router = Router::new(RouterConfig {
            apps_domain: "localhost".into(),
            public_port: args.listen.port(),
            ..RouterConfig::default()
        });
        router.update(route_spec(args.upstream));
        eprintln!(
            "router_bench: http://hello.bench.localhost:{} -> {} ({} worker thread(s))",
            args.listen.port(),
            args.upstream,
            args.threads
        );
        match router.serve(listener, std::future::pending()).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(err) => {
                eprintln!("router_bench: {err}");
                ExitCode::FAILURE
            }
        }
    })
}
