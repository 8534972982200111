//! Embeds the dashboard's browser build (made by `scripts/build-dashboard` into
//! `target/dashboard/`, or `$GANTRY_DASHBOARD_DIR`) into the `gantry` binary, so that one binary
//! serves everything. Also derives a content hash that versions the asset URLs, which lets
//! browsers cache them for a year.

use std::path::PathBuf;

/// Every file the server serves under `/pkg/<hash>/`, each also as `.gz` and `.br`.
const FILES: [&str; 3] = ["gantry.js", "gantry_bg.wasm", "gantry.css"];

fn main() {
    println!("cargo:rerun-if-env-changed=GANTRY_DASHBOARD_DIR");
    let dir = std::env::var_os("GANTRY_DASHBOARD_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap()).join("../target/dashboard")
        });
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325; // FNV-1a
    for name in FILES {
        for suffix in ["", ".gz", ".br"] {
            let path = dir.join(format!("{name}{suffix}"));
            println!("cargo:rerun-if-changed={}", path.display());
            let bytes = std::fs::read(&path).unwrap_or_else(|_| {
                panic!(
                    "\n\nThe dashboard has not been built: {} is missing.\n\
                     Run scripts/build-dashboard (scripts/up and scripts/test run it for you).\n\n",
                    path.display()
                )
            });
            if suffix.is_empty() {
                for b in bytes {
                    hash = (hash ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
                }
            }
        }
    }
    let dir = dir.canonicalize().expect("dashboard directory resolves");
    println!("cargo:rustc-env=GANTRY_DASHBOARD_DIR={}", dir.display());
    println!("cargo:rustc-env=GANTRY_DASHBOARD_HASH={:012x}", hash >> 16);
}
