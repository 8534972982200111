//! Tag lists and the catalog, paginated with `n` and `last` and a `Link` to the next page.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use gantry_common::Permission;
use serde_json::json;

use super::auth::{existing_repo, Who};
use super::error::{RegistryError, RegistryResult};
use super::path::RepoName;
use super::Params;
use crate::state::AppState;

/// A page holds at most this many entries, whatever `n` asks.
const MAX_PAGE: i64 = 10_000;

/// `n` as a page size: absent → the maximum.
fn page_size(params: &Params) -> RegistryResult<i64> {
    match params.n.as_deref() {
        None | Some("") => Ok(MAX_PAGE),
        Some(n) => n
            .parse::<i64>()
            .ok()
            .filter(|n| *n >= 0)
            .map(|n| n.min(MAX_PAGE))
            .ok_or_else(|| {
                RegistryError::new(
                    StatusCode::BAD_REQUEST,
                    "PAGINATION_NUMBER_INVALID",
                    format!("n={n:?} is not a page size (a whole number, 0 or more)"),
                )
            }),
    }
}

/// Cuts one extra fetched row off and, when there was one, links the next page.
fn page(mut items: Vec<String>, n: i64, path: &str) -> (Vec<String>, Option<String>) {
    if items.len() as i64 <= n {
        return (items, None);
    }
    items.truncate(n as usize);
    let next = items
        .last()
        .map(|last| format!("<{path}?n={n}&last={}>; rel=\"next\"", encode(last)));
    (items, next)
}

/// Percent-encodes what a tag or repository name may hold beyond URL-safe characters.
fn encode(s: &str) -> String {
    s.replace('/', "%2F")
}

fn respond(body: serde_json::Value, link: Option<String>) -> Response {
    let mut res = Json(body).into_response();
    if let Some(link) = link.and_then(|l| HeaderValue::from_str(&l).ok()) {
        res.headers_mut().insert(header::LINK, link);
    }
    res
}

pub async fn tags(
    state: &AppState,
    caller: Who,
    repo: &RepoName,
    params: &Params,
) -> RegistryResult<Response> {
    let n = page_size(params)?;
    let repo_id = existing_repo(state, caller, repo, Permission::Read).await?;
    let tags: Vec<String> = sqlx::query_scalar(
        r#"SELECT tag FROM registry_tags
           WHERE repository_id = $1 AND ($2::text IS NULL OR tag COLLATE "C" > $2 COLLATE "C")
           ORDER BY tag COLLATE "C" LIMIT $3"#,
    )
    .bind(repo_id)
    .bind(params.last.as_deref())
    .bind(n + 1)
    .fetch_all(&state.db)
    .await?;
    let (tags, link) = page(tags, n, &format!("/v2/{repo}/tags/list"));
    Ok(respond(
        json!({"name": repo.to_string(), "tags": tags}),
        link,
    ))
}

/// The repositories of the caller's teams (a token's: its team's) only.
pub async fn catalog(state: &AppState, caller: Who, params: &Params) -> RegistryResult<Response> {
    let n = page_size(params)?;
    let Who::User(caller) = caller else {
        return Err(super::error::denied(
            "a pull secret only pulls its instance's image",
        ));
    };
    let repositories: Vec<String> = sqlx::query_scalar(
        r#"SELECT full_name FROM (
               SELECT t.slug || '/' || r.name AS full_name
               FROM registry_repositories r
               JOIN teams t ON t.id = r.team_id
               JOIN memberships m ON m.team_id = t.id AND m.user_id = $1
               WHERE $2::uuid IS NULL OR t.id = $2
           ) repos
           WHERE $3::text IS NULL OR full_name COLLATE "C" > $3 COLLATE "C"
           ORDER BY full_name COLLATE "C" LIMIT $4"#,
    )
    .bind(caller.user.id)
    .bind(caller.token().map(|t| t.team_id))
    .bind(params.last.as_deref())
    .bind(n + 1)
    .fetch_all(&state.db)
    .await?;
    let (repositories, link) = page(repositories, n, "/v2/_catalog");
    Ok(respond(json!({"repositories": repositories}), link))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_page_links_the_next_only_when_there_is_more() {
        let items = |n: usize| (0..n).map(|i| format!("t{i}")).collect::<Vec<_>>();
        assert_eq!(page(items(2), 2, "/v2/a/b/tags/list"), (items(2), None));
        let (shown, link) = page(items(3), 2, "/v2/a/b/tags/list");
        assert_eq!(shown, items(2));
        assert_eq!(
            link.as_deref(),
            Some("</v2/a/b/tags/list?n=2&last=t1>; rel=\"next\"")
        );
        assert_eq!(page(items(1), 0, "/x"), (vec![], None));
    }
}
