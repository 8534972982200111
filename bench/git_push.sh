#!/usr/bin/env bash
# "git push deploys" (issue 12) against the same steps done by hand, in one run on this machine,
# loopback only, release builds; one `gantry server` and one `gantry agent` on the local Docker
# engine, which also builds (e2e/src/bin/git_push_bench.rs):
# - git: `git push` of a one-line change (`ENV GREETING=git-<i>` in the hello image's
#   Dockerfile) → the router serves the new greeting;
# - by hand: `docker build` of the same context + `docker push` to the built-in registry +
#   `POST …/deploys {image}` → the router serves it.
# After a warm-up of each (base layers cached), RUNS alternating pairs; prints each run,
# min/median/max of both and the ratio of the medians (target ≤ 1.1×).
# Everything it starts (Postgres, server, agent, the team's containers and network, the images
# it tagged, temp dirs) is stopped or removed when it ends, also on failure or Ctrl-C.
#
# Usage: bench/git_push.sh [RUNS]   (default 5; about 30 s per run)
# Results are recorded by hand in bench/RESULTS.md.
set -euo pipefail
cd "$(dirname "$0")/.."
docker info >/dev/null
# Timings mean nothing next to a CI run (builds compete for the same cores and the same engine).
if pgrep -f '\.ci/run' >/dev/null && [ -z "${FORCE:-}" ]; then
    echo "a .ci/run is running; wait for it, or set FORCE=1" >&2
    exit 1
fi
# The server embeds the dashboard; this benchmark does not measure it, so an existing build does.
[ -f target/dashboard/gantry_bg.wasm.br ] || scripts/build-dashboard >&2
# The image and the static binary the git side commits (quick when nothing changed).
scripts/build-hello-image >&2
cargo build --release --locked -p gantry-backend -p gantry-e2e --bin gantry --bin git_push_bench >&2
echo "$(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg), $(git --version), docker $(docker version --format '{{.Server.Version}}')"
GANTRY_BIN="$PWD/target/release/gantry" target/release/git_push_bench "${1:-5}"
