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

# The wasm32 target for the dashboard, with the standard library's source: the browser build
# compiles std itself, for size (see scripts/build-dashboard). First choice: rustup's target and
# rust-src. Where they cannot be downloaded, Debian's rustc-web/rust-web-src/lld route.
WASM_ROUTE=
ensure_wasm_toolchain() {
    local sysroot
    sysroot=$(rustc --print sysroot)
    if ls "$sysroot"/lib/rustlib/wasm32-unknown-unknown/lib/libstd-*.rlib >/dev/null 2>&1 &&
        [ -d "$sysroot/lib/rustlib/src/rust/library" ]; then
        WASM_ROUTE=rustup; return 0
    fi
    if command -v rustup >/dev/null && timeout 300 rustup target add wasm32-unknown-unknown &&
        timeout 300 rustup component add rust-src; then
        WASM_ROUTE=rustup; return 0
    fi
    log "rustup's wasm32 target is unavailable: using Debian's rustc-web and its std source"
    [ -x /usr/bin/rustc ] && [ -d /usr/lib/rustlib/src/rust ] && command -v wasm-ld-22 >/dev/null ||
        apt_install rustc-web cargo-web rust-web-src lld-22
    WASM_ROUTE=debian
}

# `cargo …` for the wasm build, on whichever route ensure_wasm_toolchain chose. Both build std
# from source, which needs unstable cargo flags: RUSTC_BOOTSTRAP=1 allows them on a stable
# compiler (the same opt-in Leptos' size guide makes with a nightly one).
wasm_cargo() {
    if [ "$WASM_ROUTE" = debian ]; then
        RUSTC=/usr/bin/rustc RUSTC_BOOTSTRAP=1 CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_LINKER=wasm-ld-22 \
            /usr/bin/cargo "$@" -Zbuild-std=std,panic_abort
    else
        RUSTC_BOOTSTRAP=1 cargo "$@" -Zbuild-std=std,panic_abort
    fi
}

# wasm-bindgen-cli must match the wasm-bindgen crate in Cargo.lock exactly.
ensure_wasm_bindgen() {
    local want
    want=$(awk '/^name = "wasm-bindgen"$/ { getline; gsub(/version = |"/, ""); print }' Cargo.lock)
    if [ "$(wasm-bindgen --version 2>/dev/null | awk '{print $2}')" = "$want" ]; then return 0; fi
    log "installing wasm-bindgen-cli $want (once; takes a couple of minutes)"
    cargo install -q wasm-bindgen-cli --version "=$want"
}

ensure_compressors() {
    command -v gzip >/dev/null || apt_install gzip
    command -v brotli >/dev/null || apt_install brotli
}

# Headless Chromium and its WebDriver, for the dashboard's browser tests.
ensure_chromium() {
    if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then return 0; fi
    log "installing Chromium and chromedriver"
    apt_install chromium chromium-driver
}

# git: apps' remotes run git's own `http-backend`, and the tests push with the git CLI.
ensure_git() {
    if command -v git >/dev/null; then return 0; fi
    log "installing git"
    apt_install git
}

ensure_all() {
    ensure_rust
    ensure_postgres
    ensure_git
}
