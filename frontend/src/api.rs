//! The dashboard's one REST client: typed calls to `/api/v1`, with the same request and response
//! types as the server (`gantry_common::api`). It runs in the browser only; pages call it from
//! local resources and actions, which the server never runs while rendering.
//!
//! Writes carry the session's CSRF token, kept here after login/sign-up and fetched from
//! `GET /api/v1/auth/csrf` after a page reload.

use gantry_common::api::{
    AddMember, ApiToken, App, AppSettings, ConfigVars, CreateApp, CreateToken, CreatedToken,
    Credentials, Me, Member, PatchConfig, SessionInfo, UpdateMember,
};
use gantry_common::cluster::Node;
use serde::de::DeserializeOwned;
use serde::Serialize;

/// What went wrong, in words a person can act on (the server's message when there is one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// HTTP status; 0 when the request never got an answer.
    pub status: u16,
    pub message: String,
}

impl ApiError {
    pub fn is_unauthorized(&self) -> bool {
        self.status == 401
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

pub type ApiResult<T> = Result<T, ApiError>;

#[derive(Clone, Copy)]
enum Method {
    Get,
    Post,
    Patch,
    Delete,
}

#[cfg(feature = "hydrate")]
mod transport {
    use std::cell::RefCell;

    use gloo_net::http::{Request, RequestBuilder, Response};

    use super::{ApiError, ApiResult, Method};

    thread_local! {
        static CSRF: RefCell<Option<String>> = const { RefCell::new(None) };
    }

    pub fn set_csrf(token: Option<String>) {
        CSRF.with(|c| *c.borrow_mut() = token);
    }

    async fn csrf() -> ApiResult<String> {
        if let Some(token) = CSRF.with(|c| c.borrow().clone()) {
            return Ok(token);
        }
        let res = Request::get("/api/v1/auth/csrf")
            .send()
            .await
            .map_err(network)?;
        let body: gantry_common::api::CsrfToken = decode(res).await?;
        set_csrf(Some(body.csrf_token.clone()));
        Ok(body.csrf_token)
    }

    fn network(e: gloo_net::Error) -> ApiError {
        ApiError {
            status: 0,
            message: format!("could not reach the server: {e}"),
        }
    }

    pub async fn call(
        method: Method,
        path: &str,
        body: Option<String>,
        csrf_needed: bool,
    ) -> ApiResult<Option<String>> {
        let builder: RequestBuilder = match method {
            Method::Get => Request::get(path),
            Method::Post => Request::post(path),
            Method::Patch => Request::patch(path),
            Method::Delete => Request::delete(path),
        };
        let builder = if csrf_needed && !matches!(method, Method::Get) {
            builder.header("x-csrf-token", &csrf().await?)
        } else {
            builder
        };
        let res = match body {
            Some(json) => {
                builder
                    .header("content-type", "application/json")
                    .body(json)
                    .map_err(network)?
                    .send()
                    .await
            }
            None => builder.send().await,
        }
        .map_err(network)?;
        if res.status() == 204 {
            return Ok(None);
        }
        let ok = res.ok();
        let status = res.status();
        let text = res.text().await.map_err(network)?;
        if ok {
            Ok(Some(text))
        } else {
            Err(error_from(status, &text))
        }
    }

    async fn decode<T: serde::de::DeserializeOwned>(res: Response) -> ApiResult<T> {
        let status = res.status();
        let text = res.text().await.map_err(network)?;
        if !(200..300).contains(&status) {
            return Err(error_from(status, &text));
        }
        serde_json::from_str(&text).map_err(|e| ApiError {
            status,
            message: format!("unexpected answer from the server: {e}"),
        })
    }

    fn error_from(status: u16, text: &str) -> ApiError {
        let message = serde_json::from_str::<gantry_common::ErrorBody>(text)
            .map(|b| b.error.message)
            .unwrap_or_else(|_| format!("the server answered {status}"));
        ApiError { status, message }
    }
}

#[cfg(not(feature = "hydrate"))]
mod transport {
    use super::{ApiError, ApiResult, Method};

    pub fn set_csrf(_token: Option<String>) {}

    /// The server renders pages without data; only the browser calls the API.
    pub async fn call(_: Method, _: &str, _: Option<String>, _: bool) -> ApiResult<Option<String>> {
        Err(ApiError {
            status: 0,
            message: "the API is called from the browser only".into(),
        })
    }
}

async fn request<T: DeserializeOwned>(
    method: Method,
    path: &str,
    body: Option<&impl Serialize>,
) -> ApiResult<T> {
    send(method, path, body, true).await
}

/// Like [`request`]; `csrf_needed` is false only for login and sign-up, which start a session.
async fn send<T: DeserializeOwned>(
    method: Method,
    path: &str,
    body: Option<&impl Serialize>,
    csrf_needed: bool,
) -> ApiResult<T> {
    let body = body.map(|b| serde_json::to_string(b).expect("request bodies serialize"));
    let text = transport::call(method, path, body, csrf_needed)
        .await?
        .unwrap_or_else(|| "null".into());
    serde_json::from_str(&text).map_err(|e| ApiError {
        status: 0,
        message: format!("unexpected answer from the server: {e}"),
    })
}

async fn get<T: DeserializeOwned>(path: &str) -> ApiResult<T> {
    request(Method::Get, path, None::<&()>).await
}

async fn empty(method: Method, path: &str) -> ApiResult<()> {
    transport::call(method, path, None, true).await.map(|_| ())
}

/// Path segments come from validated names or ids, but are encoded anyway.
fn seg(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            'a'..='z' | 'A'..='Z' | '0'..='9' | '-' | '_' | '.' => c.to_string(),
            other => other
                .to_string()
                .bytes()
                .map(|b| format!("%{b:02X}"))
                .collect(),
        })
        .collect()
}

// ---- accounts ----

pub async fn me() -> ApiResult<Me> {
    get("/api/v1/me").await
}

pub async fn login(credentials: &Credentials) -> ApiResult<SessionInfo> {
    let info: SessionInfo =
        send(Method::Post, "/api/v1/auth/login", Some(credentials), false).await?;
    transport::set_csrf(Some(info.csrf_token.clone()));
    Ok(info)
}

pub async fn signup(credentials: &Credentials) -> ApiResult<SessionInfo> {
    let info: SessionInfo = send(
        Method::Post,
        "/api/v1/auth/signup",
        Some(credentials),
        false,
    )
    .await?;
    transport::set_csrf(Some(info.csrf_token.clone()));
    Ok(info)
}

pub async fn logout() -> ApiResult<()> {
    let result = empty(Method::Post, "/api/v1/auth/logout").await;
    transport::set_csrf(None);
    result
}

// ---- apps ----

pub async fn apps(team: &str) -> ApiResult<Vec<App>> {
    get(&format!("/api/v1/teams/{}/apps", seg(team))).await
}

pub async fn create_app(team: &str, body: &CreateApp) -> ApiResult<App> {
    request(
        Method::Post,
        &format!("/api/v1/teams/{}/apps", seg(team)),
        Some(body),
    )
    .await
}

pub async fn app(team: &str, app: &str) -> ApiResult<App> {
    get(&format!("/api/v1/teams/{}/apps/{}", seg(team), seg(app))).await
}

pub async fn update_app(team: &str, app: &str, body: &AppSettings) -> ApiResult<App> {
    let path = format!("/api/v1/teams/{}/apps/{}", seg(team), seg(app));
    request(Method::Patch, &path, Some(body)).await
}

pub async fn delete_app(team: &str, app: &str) -> ApiResult<()> {
    empty(
        Method::Delete,
        &format!("/api/v1/teams/{}/apps/{}", seg(team), seg(app)),
    )
    .await
}

pub async fn config(team: &str, app: &str) -> ApiResult<ConfigVars> {
    get(&format!(
        "/api/v1/teams/{}/apps/{}/config",
        seg(team),
        seg(app)
    ))
    .await
}

pub async fn patch_config(team: &str, app: &str, body: &PatchConfig) -> ApiResult<ConfigVars> {
    let path = format!("/api/v1/teams/{}/apps/{}/config", seg(team), seg(app));
    request(Method::Patch, &path, Some(body)).await
}

// ---- cluster ----

/// The columns the dashboard shows of an instance (`gantry_common::cluster::Instance` has more):
/// deserializing only these keeps the wasm smaller.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct InstanceRow {
    pub state: String,
    pub node: Option<String>,
    pub endpoint: Option<String>,
    pub restarts: u32,
    pub last_exit_code: Option<i64>,
    /// RFC 3339, in UTC.
    pub started_at: Option<String>,
    pub reason: Option<String>,
}

pub async fn instances(team: &str, app: &str) -> ApiResult<Vec<InstanceRow>> {
    let path = format!("/api/v1/teams/{}/apps/{}/instances", seg(team), seg(app));
    get(&path).await
}

/// Platform admins only; others get the server's 403.
pub async fn nodes() -> ApiResult<Vec<Node>> {
    get("/api/v1/nodes").await
}

// ---- members ----

pub async fn members(team: &str) -> ApiResult<Vec<Member>> {
    get(&format!("/api/v1/teams/{}/members", seg(team))).await
}

pub async fn add_member(team: &str, body: &AddMember) -> ApiResult<Member> {
    request(
        Method::Post,
        &format!("/api/v1/teams/{}/members", seg(team)),
        Some(body),
    )
    .await
}

pub async fn update_member(team: &str, user_id: &str, body: &UpdateMember) -> ApiResult<Member> {
    let path = format!("/api/v1/teams/{}/members/{}", seg(team), seg(user_id));
    request(Method::Patch, &path, Some(body)).await
}

pub async fn remove_member(team: &str, user_id: &str) -> ApiResult<()> {
    let path = format!("/api/v1/teams/{}/members/{}", seg(team), seg(user_id));
    empty(Method::Delete, &path).await
}

// ---- tokens ----

pub async fn tokens() -> ApiResult<Vec<ApiToken>> {
    get("/api/v1/tokens").await
}

pub async fn create_token(body: &CreateToken) -> ApiResult<CreatedToken> {
    request(Method::Post, "/api/v1/tokens", Some(body)).await
}

pub async fn revoke_token(id: &str) -> ApiResult<()> {
    empty(Method::Delete, &format!("/api/v1/tokens/{}", seg(id))).await
}

#[cfg(test)]
mod tests {
    #[test]
    fn path_segments_are_encoded() {
        assert_eq!(super::seg("hello-1"), "hello-1");
        assert_eq!(super::seg("a/b c"), "a%2Fb%20c");
        assert_eq!(super::seg("é"), "%C3%A9");
    }
}
