#!/usr/bin/env bash
# Gantry's registry against the reference registry (Debian's `docker-registry`, CNCF
# distribution 2.8) in the same run (issue #9): push and pull of a small image, a ~100 MB image
# and an image of 20 layers, with the docker CLI and with `skopeo copy` to and from a local
# directory (which leaves out dockerd's own layer extraction). Wall time of each operation and,
# for the server, its CPU time (utime+stime from /proc) and peak RSS (VmHWM, reset before each
# operation through /proc/PID/clear_refs) during it. Alternating order (ABAB, swapped every
# round), medians over ROUNDS.
#
# Both registries run on loopback with their storage on the same disk. The reference registry
# runs without auth (its htpasswd auth would cost it a bcrypt per request); Gantry checks an API
# token on every request, as it always does. Images are built FROM scratch with fresh random
# bytes every round, so every push uploads every layer (no registry has any of them yet) and
# every pull downloads every layer (the engine has none of them: each image is removed first).
#
# Usage: bench/registry.sh [ROUNDS]   (default 3; env KEEP_WORK=1 keeps the temp dir)
# Results are recorded by hand in bench/RESULTS.md.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
command -v docker-registry >/dev/null || missing+=(docker-registry)
command -v skopeo >/dev/null || missing+=(skopeo)
if [ ${#missing[@]} -gt 0 ]; then
    SUDO=$([ "$(id -u)" = 0 ] || echo sudo)
    $SUDO apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >&2
fi
docker info >/dev/null

scripts/build-dashboard >&2
cargo build --release --locked -p gantry-backend --bin gantry >&2
exec python3 bench/registry.py "${1:-3}"
