//! Serving the dashboard: server-side rendering of the Leptos pages, and the browser build
//! (wasm, JS glue, stylesheet) embedded in the binary at compile time (see `build.rs`).
//!
//! Assets live under `/pkg/<content hash>/`, so they are cached for a year and a new build gets
//! new URLs. Each is stored pre-compressed (brotli and gzip) and sent in the best encoding the
//! browser accepts.

use axum::extract::{Path, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use gantry_frontend::{shell, App, OUTPUT_NAME};
use leptos::prelude::LeptosOptions;
use leptos_axum::{generate_route_list, LeptosRoutes};

/// Changes whenever an asset's content changes.
pub const ASSETS_HASH: &str = env!("GANTRY_DASHBOARD_HASH");

struct Asset {
    name: &'static str,
    content_type: &'static str,
    identity: &'static [u8],
    gzip: &'static [u8],
    brotli: &'static [u8],
}

macro_rules! asset {
    ($name:literal, $type:literal) => {
        Asset {
            name: $name,
            content_type: $type,
            identity: include_bytes!(concat!(env!("GANTRY_DASHBOARD_DIR"), "/", $name)),
            gzip: include_bytes!(concat!(env!("GANTRY_DASHBOARD_DIR"), "/", $name, ".gz")),
            brotli: include_bytes!(concat!(env!("GANTRY_DASHBOARD_DIR"), "/", $name, ".br")),
        }
    };
}

static ASSETS: [Asset; 3] = [
    asset!("gantry.js", "text/javascript; charset=utf-8"),
    asset!("gantry_bg.wasm", "application/wasm"),
    asset!("gantry.css", "text/css; charset=utf-8"),
];

fn options() -> LeptosOptions {
    LeptosOptions::builder()
        .output_name(OUTPUT_NAME)
        .site_pkg_dir(format!("pkg/{ASSETS_HASH}"))
        .build()
}

/// The dashboard's pages and assets.
pub fn router() -> Router {
    let options = options();
    let routes = generate_route_list(App);
    Router::new()
        .leptos_routes(&options, routes, {
            let options = options.clone();
            move || shell(options.clone())
        })
        .route("/pkg/{hash}/{file}", get(asset))
        .with_state(options)
}

/// Renders the dashboard's "page not found" for an unknown browser URL, with status 404.
pub async fn not_found_page(req: Request) -> Response {
    let options = options();
    let render = leptos_axum::render_app_to_stream(move || shell(options.clone()));
    let mut res = render(req).await.into_response();
    *res.status_mut() = StatusCode::NOT_FOUND;
    res
}

async fn asset(
    State(_): State<LeptosOptions>,
    Path((hash, file)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let Some(asset) = ASSETS.iter().find(|a| a.name == file) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    if hash != ASSETS_HASH {
        // An old page asking for an old build: do not let this answer be cached.
        return (StatusCode::NOT_FOUND, [(header::CACHE_CONTROL, "no-store")]).into_response();
    }
    let (body, encoding) = match best_encoding(&headers) {
        Encoding::Brotli => (asset.brotli, Some("br")),
        Encoding::Gzip => (asset.gzip, Some("gzip")),
        Encoding::Identity => (asset.identity, None),
    };
    let mut res = body.into_response();
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(asset.content_type),
    );
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=31536000, immutable"),
    );
    h.insert(header::VARY, HeaderValue::from_static("accept-encoding"));
    if let Some(enc) = encoding {
        h.insert(header::CONTENT_ENCODING, HeaderValue::from_static(enc));
    }
    res
}

#[derive(Debug, PartialEq, Eq)]
enum Encoding {
    Brotli,
    Gzip,
    Identity,
}

/// Picks brotli, then gzip, among the codings the client accepts (ignoring those with `q=0`).
fn best_encoding(headers: &HeaderMap) -> Encoding {
    let accept = headers
        .get(header::ACCEPT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let accepts = |coding: &str| {
        accept.split(',').any(|part| {
            let mut pieces = part.trim().split(';');
            let name = pieces.next().unwrap_or_default().trim();
            let refused = pieces.any(|p| {
                p.trim()
                    .strip_prefix("q=")
                    .and_then(|q| q.parse::<f32>().ok())
                    .is_some_and(|q| q == 0.0)
            });
            name.eq_ignore_ascii_case(coding) && !refused
        })
    };
    if accepts("br") {
        Encoding::Brotli
    } else if accepts("gzip") {
        Encoding::Gzip
    } else {
        Encoding::Identity
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(accept: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::ACCEPT_ENCODING, accept.parse().unwrap());
        h
    }

    #[test]
    fn encoding_negotiation() {
        assert_eq!(
            best_encoding(&with("gzip, deflate, br, zstd")),
            Encoding::Brotli
        );
        assert_eq!(best_encoding(&with("gzip")), Encoding::Gzip);
        assert_eq!(best_encoding(&with("br;q=0, gzip;q=0.8")), Encoding::Gzip);
        assert_eq!(best_encoding(&with("identity")), Encoding::Identity);
        assert_eq!(best_encoding(&HeaderMap::new()), Encoding::Identity);
    }

    #[test]
    fn every_asset_is_embedded_in_three_encodings() {
        for a in &ASSETS {
            assert!(!a.identity.is_empty(), "{}", a.name);
            assert!(a.gzip.starts_with(&[0x1f, 0x8b]), "{} gzip", a.name);
            assert!(!a.brotli.is_empty(), "{}", a.name);
            assert!(
                a.brotli.len() < a.identity.len(),
                "{} brotli is smaller",
                a.name
            );
        }
    }
}
