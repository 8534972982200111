#!/usr/bin/env bash
# The router against nginx (issue #8): the same upstream (examples/hello, keep-alive) behind
# each proxy, alternating runs (ABAB…, the order swapped every round), medians with their spread.
#
# Two cores are shared by load generator, proxy and upstream, so the figure that holds is the
# proxy's own cost:
#   - max requests/s: `wrk -t1 -c32` for MAX_SECONDS through each proxy (and direct, for
#     reference), with the proxy's CPU over that run;
#   - at a fixed rate below saturation (RATE; default a quarter of nginx's median max): the
#     proxy process's CPU-seconds (utime+stime from /proc/PID/stat, before and after) per
#     10,000 requests and requests per CPU-second, counted over the requests bench/loadgen
#     completed (all of them, with 0 errors, or the run fails); and the p50/p99 the proxy adds
#     over sending the same rate directly to the upstream in the same round.
#
# Placement (2 cores): upstream and load generators on core 0, the proxy under test on core 1
# (`taskset`). nginx: 1 worker, upstream keep-alive, access log off, and the forwarding work our
# router does (X-Forwarded-For/-Proto/-Host, X-Request-Id both ways). router_bench: the real
# `Router` with a static table on a 1-worker tokio runtime (gantry server uses tokio's default
# runtime, one worker per core). Only loopback traffic. Everything started here is stopped and
# removed on exit.
#
# Why a quarter, not half: the load generator (reqwest, about 60 µs of CPU a request here)
# shares core 0 with the upstream, and at half of nginx's max that core saturates: latencies of
# every target grow to tens or hundreds of ms, which measures the load generator, not the proxies.
#
# Usage: bench/router.sh [SECONDS] [RATE]   (defaults: 10 s per fixed-rate run; RATE as above)
#   env: ROUNDS (5), MAX_SECONDS (5), THREADS (router_bench workers, 1),
#        ROUTER_BIN (a router_bench binary to measure instead of this tree's, to compare builds),
#        KEEP_WORK=1 (keep the temp dir with nginx's config and the logs)
# Results are recorded by hand in bench/RESULTS.md.
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${1:-10}
RATE=${2:-}
ROUNDS=${ROUNDS:-5}
MAX_SECONDS=${MAX_SECONDS:-5}
THREADS=${THREADS:-1}
HOST=hello.bench.localhost

missing=()
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || missing+=(nginx)
command -v wrk >/dev/null || missing+=(wrk)
if [ ${#missing[@]} -gt 0 ]; then
    SUDO=$([ "$(id -u)" = 0 ] || echo sudo)
    $SUDO apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >&2
fi
NGINX=$(command -v nginx || echo /usr/sbin/nginx)

cargo build --release --locked -p gantry-loadgen -p gantry-hello >&2
cargo build --release --locked -p gantry-orchestrator --example router_bench >&2
LOADGEN=target/release/gantry-loadgen
HELLO=target/release/hello
ROUTER=${ROUTER_BIN:-target/release/examples/router_bench}

WORK=$(mktemp -d /tmp/gantry-router-bench.XXXXXX)
chmod 755 "$WORK"
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    [ -n "${KEEP_WORK:-}" ] || rm -rf "$WORK"
}
trap cleanup EXIT

free_ports() {
    python3 -c 'import socket
socks = [socket.socket() for _ in range(3)]
for s in socks: s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in socks))'
}
read -r UP_PORT NGINX_PORT ROUTER_PORT < <(free_ports)

PORT=$UP_PORT taskset -c 0 "$HELLO" >"$WORK/hello.log" 2>&1 &
PIDS+=($!)
HELLO_PID=$!

mkdir -p "$WORK/nginx"
cat >"$WORK/nginx/nginx.conf" <<EOF
worker_processes 1;
daemon off;
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx/error.log warn;
events { worker_connections 1024; }
http {
    access_log off;
    client_body_temp_path $WORK/nginx/body;
    proxy_temp_path $WORK/nginx/proxy;
    fastcgi_temp_path $WORK/nginx/fastcgi;
    uwsgi_temp_path $WORK/nginx/uwsgi;
    scgi_temp_path $WORK/nginx/scgi;
    # The router never closes a kept-alive connection after a number of requests; nginx does
    # after 1000 unless told otherwise.
    keepalive_requests 1000000;
    upstream hello {
        server 127.0.0.1:$UP_PORT;
        keepalive 64;
        keepalive_requests 1000000;
        keepalive_timeout 4s;
    }
    server {
        listen 127.0.0.1:$NGINX_PORT;
        location / {
            proxy_pass http://hello;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host \$http_host;
            proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto \$scheme;
            proxy_set_header X-Forwarded-Host \$http_host;
            proxy_set_header X-Request-Id \$request_id;
            add_header X-Request-Id \$request_id always;
        }
    }
}
EOF
taskset -c 1 "$NGINX" -c "$WORK/nginx/nginx.conf" -p "$WORK/nginx/" &
PIDS+=($!)
NGINX_PID=$!

taskset -c 1 "$ROUTER" --listen "127.0.0.1:$ROUTER_PORT" --upstream "127.0.0.1:$UP_PORT" \
    --threads "$THREADS" 2>"$WORK/router.log" &
PIDS+=($!)
ROUTER_PID=$!

declare -A URL=(
    [direct]="http://127.0.0.1:$UP_PORT/"
    [nginx]="http://127.0.0.1:$NGINX_PORT/"
    [router]="http://127.0.0.1:$ROUTER_PORT/"
)
for target in direct nginx router; do
    for _ in $(seq 100); do
        curl -sf -o /dev/null -H "host: $HOST" "${URL[$target]}" && continue 2
        sleep 0.1
    done
    echo "$target did not answer at ${URL[$target]}" >&2
    cat "$WORK"/nginx/error.log "$WORK"/router.log >&2 || true
    exit 1
done

# The processes whose CPU is counted: nginx's master and its worker, the router's one process.
proxy_pids() {
    case $1 in
    nginx) echo "$NGINX_PID" $(pgrep -P "$NGINX_PID") ;;
    router) echo "$ROUTER_PID" ;;
    direct) echo "$HELLO_PID" ;;
    esac
}
# utime+stime in clock ticks, summed over the given processes (all their threads).
cpu_ticks() {
    local total=0 stat fields
    for pid in "$@"; do
        stat=$(<"/proc/$pid/stat")
        read -ra fields <<<"${stat##*) }"
        total=$((total + fields[11] + fields[12]))
    done
    echo "$total"
}

RESULTS="$WORK/results"
: >"$RESULTS"
order() { # round → the two proxies in this round's order
    if (($1 % 2)); then echo router nginx; else echo nginx router; fi
}

# Max requests/s with wrk; one line per run: max ROUND TARGET RPS REQUESTS CPU_TICKS
max_run() {
    local round=$1 target=$2 pids t0 t1 out
    pids=$(proxy_pids "$target")
    # `Host` capitalised: wrk adds its own unless it finds exactly that key, and nginx answers
    # a request with two Host headers 400.
    taskset -c 0 wrk -t1 -c32 -d1s -H "Host: $HOST" "${URL[$target]}" >/dev/null
    t0=$(cpu_ticks $pids)
    out=$(taskset -c 0 wrk -t1 -c32 -d"${MAX_SECONDS}s" -H "Host: $HOST" "${URL[$target]}")
    t1=$(cpu_ticks $pids)
    if grep -qE 'Non-2xx|Socket errors' <<<"$out"; then
        echo "wrk against $target saw errors:" >&2
        echo "$out" >&2
        exit 1
    fi
    local rps requests
    rps=$(awk '/^Requests\/sec:/ {print $2}' <<<"$out")
    requests=$(awk '/requests in/ {print $1}' <<<"$out")
    echo "max $round $target $rps $requests $((t1 - t0))" >>"$RESULTS"
    echo "  max  $target: $rps req/s" >&2
}

echo "== max requests/s: wrk -t1 -c32 -d${MAX_SECONDS}s, $ROUNDS rounds" >&2
for round in $(seq "$ROUNDS"); do
    for target in direct $(order "$round"); do
        max_run "$round" "$target"
    done
done

if [ -z "$RATE" ]; then
    RATE=$(python3 -c 'import statistics, sys
rps = [float(l.split()[3]) for l in open(sys.argv[1]) if l.split()[:1] == ["max"] and l.split()[2] == "nginx"]
print(max(500, round(statistics.median(rps) / 4 / 500) * 500))' "$RESULTS")
fi

# At RATE: one line per run: rate ROUND TARGET CPU_TICKS LOADGEN_JSON
rate_run() {
    local round=$1 target=$2 pids t0 t1 json
    pids=$(proxy_pids "$target")
    # Warms the proxy's pools and the upstream's threads; its requests are not counted.
    taskset -c 0 "$LOADGEN" --url "${URL[$target]}" --header "host: $HOST" --rate "$RATE" \
        --duration 1s --warmup 0s --json >/dev/null
    t0=$(cpu_ticks $pids)
    json=$(taskset -c 0 "$LOADGEN" --url "${URL[$target]}" --header "host: $HOST" \
        --rate "$RATE" --duration "${DURATION}s" --warmup 0s --json)
    t1=$(cpu_ticks $pids)
    echo "rate $round $target $((t1 - t0)) $json" >>"$RESULTS"
    echo "  rate $target: $json" >&2
}

echo "== fixed rate: $RATE req/s for ${DURATION}s, $ROUNDS rounds (direct, then both proxies)" >&2
for round in $(seq "$ROUNDS"); do
    for target in direct $(order "$round"); do
        rate_run "$round" "$target"
    done
done

python3 - "$RESULTS" "$RATE" "$DURATION" "$(getconf CLK_TCK)" <<'EOF'
import json, statistics, sys

path, rate, duration, hz = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])
maxes, rates = {}, {}
for line in open(path):
    kind, rnd, target, rest = line.split(" ", 3)
    if kind == "max":
        rps, requests, ticks = rest.split()
        maxes.setdefault(target, {})[int(rnd)] = (float(rps), int(requests), int(ticks))
    else:
        ticks, blob = rest.split(" ", 1)
        rates.setdefault(target, {})[int(rnd)] = (int(ticks), json.loads(blob))

expected = round(rate * duration)
bad = [(t, r, j["requests"], j["errors"]) for t, runs in rates.items()
       for r, (_, j) in runs.items() if j["errors"] or j["requests"] != expected]
if bad:
    sys.exit(f"incomplete fixed-rate runs (target, round, requests, errors), expected {expected}: {bad}")

def spread(values, fmt):
    values = sorted(values)
    return f"{fmt.format(statistics.median(values))} ({fmt.format(values[0])}–{fmt.format(values[-1])})"

rows = []
def row(name, fn, fmt):
    rows.append((name, spread(fn("nginx"), fmt), spread(fn("router"), fmt)))

row("max req/s (wrk -t1 -c32)", lambda t: [v[0] for v in maxes[t].values()], "{:,.0f}")
row("  proxy CPU at max (% of a core)",
    lambda t: [100 * (v[2] / hz) / (v[1] / v[0]) for v in maxes[t].values()], "{:.0f}")
row("  req per CPU-s at max", lambda t: [v[1] / (v[2] / hz) for v in maxes[t].values()], "{:,.0f}")
cpu_s = lambda t: [ticks / hz for ticks, _ in rates[t].values()]
row(f"req per CPU-s at {rate}/s", lambda t: [expected / c for c in cpu_s(t)], "{:,.0f}")
row("CPU-s per 10k req", lambda t: [c * 10_000 / expected for c in cpu_s(t)], "{:.3f}")
row("p50 (ms)", lambda t: [j["p50_ms"] for _, j in rates[t].values()], "{:.3f}")
row("p99 (ms)", lambda t: [j["p99_ms"] for _, j in rates[t].values()], "{:.3f}")
added = lambda t, q: [1000 * (j[q] - rates["direct"][r][1][q]) for r, (_, j) in rates[t].items()]
row("p50 added over direct (µs)", lambda t: added(t, "p50_ms"), "{:.0f}")
row("p99 added over direct (µs)", lambda t: added(t, "p99_ms"), "{:.0f}")

direct_max = [v[0] for v in maxes["direct"].values()]
direct = [j for _, j in rates["direct"].values()]
print(f"\nRouter vs nginx: {len(rates['nginx'])} rounds; fixed rate {rate} req/s for {duration:g} s "
      f"({expected} requests a run, all completed, 0 errors); median (min–max)")
w = max(len(r[0]) for r in rows)
print(f"{'':<{w}}  {'nginx':>26}  {'router':>26}")
for name, a, b in rows:
    print(f"{name:<{w}}  {a:>26}  {b:>26}")
print(f"direct to the upstream: max {spread(direct_max, '{:,.0f}')} req/s; at {rate}/s "
      f"p50 {spread([j['p50_ms'] for j in direct], '{:.3f}')} ms, "
      f"p99 {spread([j['p99_ms'] for j in direct], '{:.3f}')} ms")
eff = lambda t: statistics.median(expected / c for c in cpu_s(t))
per_round = sorted((rates["nginx"][r][0] / rates["router"][r][0]) for r in rates["router"])
print(f"router/nginx requests per CPU-second: {eff('router') / eff('nginx'):.2f} "
      f"(per round {per_round[0]:.2f}–{per_round[-1]:.2f}; target ≥ 1.2)")
EOF
