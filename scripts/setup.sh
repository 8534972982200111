# Sourced by scripts/up and scripts/test: installs what Gantry needs when it is missing.
# Idempotent and quick when everything is present. Uses Debian/Ubuntu packages (apt-get).

log() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

as_root() {
    if [ "$(id -u)" = 0 ]; then "$@"
    elif command -v sudo >/dev/null; then sudo "$@"
    else echo "need root to run: $*" >&2; return 1
    fi
}

APT_UPDATED=
apt_install() {
    if ! command -v apt-get >/dev/null; then
        echo "missing: $* — install it with your system's package manager" >&2
        return 1
    fi
    if [ -z "$APT_UPDATED" ]; then
        as_root apt-get update -qq
        APT_UPDATED=1
    fi
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@"
}

# PostgreSQL's server binaries (initdb, pg_ctl): `gantry up` and the tests run a private server.
ensure_postgres() {
    if command -v initdb >/dev/null && command -v pg_ctl >/dev/null; then return 0; fi
    if ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then return 0; fi
    log "installing PostgreSQL server binaries"
    apt_install postgresql
    # Debian starts a cluster of its own on port 5432; Gantry does not use it.
}

ensure_rust() {
    if command -v cargo >/dev/null; then return 0; fi
    echo "cargo is missing: install Rust from your package manager or rustup" >&2
    return 1
}

ensure_all() {
    ensure_rust
    ensure_postgres
}
