#!/usr/bin/env bash
# Progressive delivery's figures (issue 11) in one run on this machine, loopback only, release
# builds; one `gantry server` and one `gantry agent` on the local Docker engine, the hello image,
# an open-loop load generator through the router (e2e/src/bin/progressive_bench.rs):
# - bad canary: 3 replicas, a canary at 10 % waiting for promote with analysis (5xx ≤ 5 % over
#   10 s, at least 20 requests), 200 requests/s, a config change that makes the new release fail
#   half its requests (FAIL_PERCENT=50). From the load's records: the first and the last answer
#   from the bad release (t1 − t0, target ≤ 5 s) and the failed requests (target < 100); from
#   the API: when the rollout was aborted and why. Min/median/max over RUNS runs, and the same
#   canary under Flagger's documented defaults (interval 60 s × threshold 5), COMPUTED from the
#   measured rates, not run (no Kubernetes here);
# - autoscaler scale-out: 1 replica, a policy of 1–5 replicas at 100 requests/s per instance,
#   50 requests/s for 15 s, then a step to 500/s: the load step → the first decision up, and the
#   decision → the first answer from a new instance (target ≤ 3 s). Min/median/max over RUNS.
# Everything it starts (Postgres, server, agent, the team's containers and network, temp dirs)
# is stopped or removed when it ends, also on failure or Ctrl-C.
#
# Usage: bench/progressive.sh [RUNS]   (default 5; about 1 min per run of each benchmark)
# Results are recorded by hand in bench/RESULTS.md.
set -euo pipefail
cd "$(dirname "$0")/.."
docker info >/dev/null
# The server embeds the dashboard; this benchmark does not measure it, so an existing build does.
[ -f target/dashboard/gantry_bg.wasm.br ] || scripts/build-dashboard >&2
docker image inspect gantry-hello:latest >/dev/null 2>&1 || scripts/build-hello-image >&2
cargo build --release --locked -p gantry-backend -p gantry-e2e --bin gantry --bin progressive_bench >&2
# Hundreds of requests a second through the router: sockets in the client and the server.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
echo "$(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg)"
GANTRY_BIN="$PWD/target/release/gantry" target/release/progressive_bench "${1:-5}"
