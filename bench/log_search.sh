#!/usr/bin/env bash
# Log search latency (issue 10): 1,000,000 access-log lines of one app, then `GET …/logs?q=…`
# for a rare token, numeric phrases, a word on every line and a phrase no line holds; best of
# five after a warm-up, 100 lines a page. The lines and their search chunks (50 lines each, as
# the store makes them — logs/search.rs) are written with SQL, with the migration's tokenizer:
# loading a million lines through an agent would measure the store, which bench/logs.sh does.
# Usage: bench/log_search.sh [port]. Prints one line per query.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/build-dashboard >&2
# (the same packages as bench/logs.sh, so both reuse one build)
cargo build --release --locked -p gantry-backend -p gantry-e2e --bin gantry --bin logs_bench >&2
BIN="$PWD/target/release/gantry"
PORT=${1:-18080}
D=$(mktemp -d /tmp/gantry-log-search.XXXXXX)
chmod 755 "$D" # Postgres runs as its own user
SERVER=""
cleanup() {
    if [ -n "$SERVER" ]; then
        kill "$SERVER" 2>/dev/null || true
        wait "$SERVER" 2>/dev/null || true
    fi
    "$BIN" db stop --data-dir "$D/pg" >/dev/null 2>&1 || true
    rm -rf "$D"
}
trap cleanup EXIT
U=$("$BIN" db start --ephemeral --data-dir "$D/pg")
DATABASE_URL=$U GANTRY_SECRET_KEY=$(openssl rand -base64 32) GANTRY_LISTEN=127.0.0.1:$PORT \
    GANTRY_ROUTER_LISTEN=127.0.0.1:$((PORT + 1)) GANTRY_LOG=warn "$BIN" server >"$D/server.log" 2>&1 &
SERVER=$!
B=http://127.0.0.1:$PORT
for _ in $(seq 100); do curl -fs "$B/readyz" >/dev/null && break; sleep 0.2; done
json() { python3 -c "import sys, json; print(json.load(sys.stdin)$1)"; }
CSRF=$(curl -fs -c "$D/jar" -H 'content-type: application/json' \
    -d '{"email":"me@example.com","password":"a long password"}' "$B/api/v1/auth/signup" | json '["csrf_token"]')
TOKEN=$(curl -fs -b "$D/jar" -H 'content-type: application/json' -H "x-csrf-token: $CSRF" \
    -d '{"name":"bench","team":"me","role":"member"}' "$B/api/v1/tokens" | json '["secret"]')
curl -fs -o /dev/null -H "authorization: Bearer $TOKEN" -H 'content-type: application/json' \
    -d '{"name":"web"}' "$B/api/v1/teams/me/apps"
echo "loading 1,000,000 lines…" >&2
psql "$U" -q <<'SQL'
INSERT INTO log_lines (team_id, app_id, ts, instance_id, release, stream, line)
SELECT a.team_id, a.id, now() - interval '1 hour' + g * interval '3 ms', NULL, 1, 'stdout',
       'GET /api/items/' || (g::bigint * 7919 % 100000) || ' 200 ' || (g % 900) || 'ms user='
       || (g * 31 % 10000) || ' req=' || md5(g::text)
FROM apps a, generate_series(1, 1000000) g WHERE a.name = 'web';
INSERT INTO log_chunks (team_id, app_id, first_id, last_id, min_ts, max_ts, words)
SELECT team_id, app_id, min(id), max(id), min(ts), max(ts),
       array_to_tsvector(coalesce(array_agg(DISTINCT left(w, 64)) FILTER (WHERE w <> ''), '{}'))
FROM (SELECT team_id, app_id, id, ts, id / 50 AS bucket,
             unnest(regexp_split_to_array(lower(line), '[^a-z0-9]+')) AS w FROM log_lines) AS x
GROUP BY team_id, app_id, bucket;
VACUUM ANALYZE;
SQL
RARE=$(psql "$U" -qAt -c "SELECT substr(md5('777777'), 1, 10)")
for q in "$RARE" "user=4242 " "items/123" "GET" "200 5ms" "GET 200"; do
    enc=$(python3 -c 'import sys, urllib.parse; print(urllib.parse.quote(sys.argv[1]))' "$q")
    url="$B/api/v1/teams/me/apps/web/logs?q=$enc&limit=100"
    curl -fs -o /dev/null -H "authorization: Bearer $TOKEN" "$url"
    best=""
    for _ in 1 2 3 4 5; do
        t=$(curl -fs -o "$D/page.json" -w '%{time_total}' -H "authorization: Bearer $TOKEN" "$url")
        best=$(python3 -c "print(min(x for x in [$t, ${best:-$t}]))")
    done
    n=$(json '["items"].__len__()' <"$D/page.json")
    printf 'q=%-18s best of 5: %6.1f ms, %s lines\n' "\"$q\"" "$(python3 -c "print($best * 1000)")" "$n"
done
