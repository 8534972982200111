//! Refuses cross-site writes: a mutating request that is not bearer-authenticated must not come
//! from a foreign `Origin` (or a `Sec-Fetch-Site: cross-site` context). Together with the CSRF
//! token checked in [`super::caller`], this is defence in depth against cross-site request forgery.

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::caller::is_safe;
use crate::error::forbidden;
use crate::state::AppState;

pub async fn guard(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let bearer = req.headers().contains_key(header::AUTHORIZATION);
    if !is_safe(req.method()) && !bearer && is_cross_site(req.headers(), &state.public_url) {
        return forbidden("cross-origin request refused: this API only accepts writes from its own pages or with an API token")
            .into_response();
    }
    next.run(req).await
}

/// Pure decision: does this request come from another site?
pub fn is_cross_site(headers: &HeaderMap, public_url: &str) -> bool {
    let fetch_site = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok());
    if fetch_site == Some("cross-site") {
        return true;
    }
    let Some(origin) = headers.get(header::ORIGIN) else {
        return false;
    };
    let Ok(origin) = origin.to_str() else {
        return true;
    };
    if origin.eq_ignore_ascii_case(public_url) {
        return false;
    }
    // Same origin as the address the request was sent to (e.g. localhost vs 127.0.0.1).
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
    let origin_host = origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"));
    !matches!((origin_host, host), (Some(o), Some(h)) if o.eq_ignore_ascii_case(h))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn origin_table() {
        let public = "http://127.0.0.1:8080";
        let cases = [
            (vec![], false),
            (vec![("origin", "http://127.0.0.1:8080")], false),
            (
                vec![
                    ("origin", "http://localhost:8080"),
                    ("host", "localhost:8080"),
                ],
                false,
            ),
            (
                vec![
                    ("origin", "https://evil.example"),
                    ("host", "127.0.0.1:8080"),
                ],
                true,
            ),
            (vec![("origin", "null"), ("host", "127.0.0.1:8080")], true),
            (vec![("sec-fetch-site", "cross-site")], true),
            (vec![("sec-fetch-site", "same-origin")], false),
        ];
        for (pairs, cross) in cases {
            assert_eq!(is_cross_site(&headers(&pairs), public), cross, "{pairs:?}");
        }
    }
}
