#!/usr/bin/env bash
# Benchmark of the REST API under a fixed request rate, with a bearer token:
#   - GET  /api/v1/teams/{team}/apps   (a team with 20 apps)
#   - POST /api/v1/teams/{team}/apps   (each request creates a new app)
#   - POST /api/v1/auth/login          (argon2id cost; at a low rate)
# It builds release binaries, starts a private Postgres (fsync on, as `gantry up` runs it) and
# `gantry server`, drives them with bench/loadgen (open-loop, coordinated-omission corrected),
# prints the figures, and cleans up. Only loopback traffic.
#
# Usage: bench/api.sh [RATE] [DURATION]     (defaults: 500 20s)
# Results are recorded by hand in bench/RESULTS.md.
set -euo pipefail
cd "$(dirname "$0")/.."
RATE=${1:-500}
DURATION=${2:-20s}

cargo build --release --locked -p gantry-backend -p gantry-loadgen >&2
GANTRY=target/release/gantry
LOADGEN=target/release/gantry-loadgen

WORK=$(mktemp -d /tmp/gantry-bench.XXXXXX)
chmod 755 "$WORK"
SERVER_PID=
cleanup() {
    [ -n "$SERVER_PID" ] && kill "$SERVER_PID" 2>/dev/null && wait "$SERVER_PID" 2>/dev/null
    "$GANTRY" db stop --data-dir "$WORK" >/dev/null 2>&1 || true
    rm -rf "$WORK"
}
trap cleanup EXIT

DATABASE_URL=$("$GANTRY" db start --data-dir "$WORK")
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
BASE="http://127.0.0.1:$PORT"
DATABASE_URL="$DATABASE_URL" GANTRY_SECRET_KEY=$(head -c32 /dev/urandom | base64) \
    GANTRY_LISTEN="127.0.0.1:$PORT" GANTRY_LOG=warn "$GANTRY" server &
SERVER_PID=$!
for _ in $(seq 100); do curl -sf "$BASE/readyz" >/dev/null && break; sleep 0.1; done

# An account, its personal team "bench", an owner token, and 20 apps to list.
JAR="$WORK/cookies"
CSRF=$(curl -sf -c "$JAR" -H 'content-type: application/json' \
    -d '{"email":"bench@example.com","password":"bench-password-1"}' "$BASE/api/v1/auth/signup" |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["csrf_token"])')
TOKEN=$(curl -sf -b "$JAR" -H 'content-type: application/json' -H "x-csrf-token: $CSRF" \
    -d '{"name":"bench","team":"bench","role":"owner"}' "$BASE/api/v1/tokens" |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["secret"])')
for i in $(seq 20); do
    curl -sf -o /dev/null -H "authorization: Bearer $TOKEN" -H 'content-type: application/json' \
        -d "{\"name\":\"seed-$i\"}" "$BASE/api/v1/teams/bench/apps"
done

run() { "$LOADGEN" --warmup 3s "$@"; }

echo "== GET /api/v1/teams/bench/apps (20 apps) at $RATE req/s for $DURATION"
run --url "$BASE/api/v1/teams/bench/apps" --rate "$RATE" --duration "$DURATION" \
    --header "authorization: Bearer $TOKEN"

echo "== POST /api/v1/teams/bench/apps (new app each) at $RATE req/s for $DURATION"
run --url "$BASE/api/v1/teams/bench/apps" --method POST --rate "$RATE" --duration "$DURATION" \
    --header "authorization: Bearer $TOKEN" --body-template '{"name":"b{run}-{n}"}'

echo "== POST /api/v1/auth/login (argon2id m=19456 t=2 p=1) at 5 req/s for 10s"
run --url "$BASE/api/v1/auth/login" --method POST --rate 5 --duration 10s --connections 2 \
    --body-template '{"email":"bench@example.com","password":"bench-password-1"}'
