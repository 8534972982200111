#!/usr/bin/env bash
# Dashboard weight and speed: the compressed size of the wasm and JS the browser downloads, and
# first contentful paint / time to interactive of the apps page in headless Chromium (from the
# Performance API; "interactive" = the mark the app sets once hydrated). Loopback only.
# Usage: bench/dashboard.sh [LOADS]   — results are recorded by hand in bench/RESULTS.md.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
ensure_chromium
scripts/build-dashboard >&2
cargo build --release --locked -p gantry-backend -p gantry-e2e --bin gantry --bin dashboard_bench >&2

echo "== assets as served (bytes)"
for f in gantry_bg.wasm gantry.js gantry.css; do
    printf '  %-16s raw %8d  gzip %8d  brotli %8d\n' "$f" \
        "$(stat -c %s target/dashboard/$f)" "$(stat -c %s target/dashboard/$f.gz)" "$(stat -c %s target/dashboard/$f.br)"
done
echo "== load times"
GANTRY_BIN="$PWD/target/release/gantry" target/release/dashboard_bench "${1:-11}"
