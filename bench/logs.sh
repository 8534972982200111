#!/usr/bin/env bash
# Live logs' figures (issue 10) in one run on this machine, loopback only, release builds:
# - footprint: the server's RSS with 20 apps running and their streams idle (none open, then one
#   idle live stream per app; target ≤ 80 MB), the agent's RSS with 10 instances logging
#   100 lines/s each (target ≤ 20 MB);
# - fan-out: VIEWERS websocket viewers (a Rust client, e2e/src/bin/logs_bench.rs) of one app
#   logging 100 lines/s of 200 bytes: delivery latency = frame read − the line's Docker stamp,
#   p50/p90/p99/max (target p99 < 100 ms), lines missed, CPU of server, agent and client;
# - throughput: an app writing LINES lines of 200 bytes as fast as it can. Live: the agent
#   follows it while `docker logs -f` of the same container runs beside it; lines/s until each
#   reader had every line (gantry: stored in Postgres), side by side (target gantry ≥ 0.9× the
#   docker CLI). Backlog: the agent stopped, the container restarted to write its LINES lines
#   again, the agent started again: how fast it drains them into Postgres (the server's
#   sustained store rate, target ≥ 20,000 lines/s), against `docker logs` reading the same
#   lines alone.
# Rates count rows in Postgres; an audit prints the lines missing per phase and the agent's
# "dropped" events. LOGS_BENCH_EPHEMERAL=1 runs Postgres with fsync off (default: on, as `gantry up`).
# Everything it starts (Postgres, server, agent, containers, the team's network, temp dirs,
# docker CLI processes) is stopped or removed when it ends, also on failure.
#
# Usage: bench/logs.sh [VIEWERS] [FANOUT_SECONDS] [LINES]   (defaults 1000 20 150000)
# Results are recorded by hand in bench/RESULTS.md.
set -euo pipefail
cd "$(dirname "$0")/.."
docker info >/dev/null
scripts/build-dashboard >&2
scripts/build-hello-image >&2
cargo build --release --locked -p gantry-backend -p gantry-e2e --bin gantry --bin logs_bench >&2
# 1,000 viewers hold 1,000 sockets in the client and as many in the server (which inherits this).
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
GANTRY_BIN="$PWD/target/release/gantry" target/release/logs_bench "${1:-1000}" "${2:-20}" "${3:-150000}"
