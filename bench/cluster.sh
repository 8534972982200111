#!/usr/bin/env bash
# The cluster's figures against their peer, in one run on this machine (loopback only):
# - replica start: `scale +1` → the first 200 through the router, versus `docker run -d` of the
#   same image → first 200 on its port (plain, and with the isolation Gantry gives every
#   instance), alternating (ABAB), medians;
# - deploy under 200 req/s: deploy call → every answer from the new release (3 replicas), and
#   the failed requests (0 expected);
# - the agent's idle RSS with 10 instances.
# Release builds of gantry and the bench driver; the gantry-hello image is built if missing.
# Usage: bench/cluster.sh [ROUNDS]   — results are recorded by hand in bench/RESULTS.md.
# (The scheduler's own benchmark is criterion: cargo bench -p gantry-orchestrator --bench scheduler.)
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/build-dashboard >&2
scripts/build-hello-image >&2
cargo build --release --locked -p gantry-backend -p gantry-e2e --bin gantry --bin cluster_bench >&2
GANTRY_BIN="$PWD/target/release/gantry" GANTRY_LOG=warn target/release/cluster_bench "${1:-10}"
