//! Image references that name this server's registry: they must be the deploying team's own,
//! and are pinned to a digest when the release is made (so a later push to the tag never
//! changes what the release runs).

use gantry_common::cluster::ImageRef;
use gantry_common::releases::ImageSource;
use uuid::Uuid;

use super::path::RepoName;
use crate::error::{invalid, ApiResult};
use crate::state::AppState;

/// What a release runs.
#[derive(Debug)]
pub struct Resolved {
    pub image: ImageRef,
    pub source: ImageSource,
}

/// `host[:port]` of the registry as nodes and clients reach it: the public URL's.
pub fn registry_host(state: &AppState) -> &str {
    authority(&state.public_url)
}

fn authority(url: &str) -> &str {
    url.split_once("://").map_or(url, |(_, rest)| rest)
}

/// Does `host` (of an image reference) name this server's registry? Its public `host[:port]`,
/// or a loopback name with the port the server listens on.
pub fn names_this_registry(host: &str, public_authority: &str, listen_port: u16) -> bool {
    if host.eq_ignore_ascii_case(public_authority) {
        return true;
    }
    let Some((name, port)) = host.rsplit_once(':') else {
        return false;
    };
    let loopback = name.eq_ignore_ascii_case("localhost")
        || name == "[::1]"
        || name
            .parse::<std::net::Ipv4Addr>()
            .is_ok_and(|ip| ip.is_loopback());
    loopback && port.parse::<u16>() == Ok(listen_port)
}

/// Checks and pins an image for a deploy of team `team_slug`.
pub async fn resolve(
    state: &AppState,
    team_id: Uuid,
    team_slug: &str,
    image: &ImageRef,
) -> ApiResult<Resolved> {
    let parts = image.parts();
    let ours = parts
        .host
        .is_some_and(|host| names_this_registry(host, registry_host(state), state.listen.port()));
    if !ours {
        return Ok(Resolved {
            image: image.clone(),
            source: ImageSource::External,
        });
    }
    let host = parts.host.unwrap_or_default();
    // Another team's repository gets the same answer as one that does not exist.
    let not_ours = || {
        invalid(format!(
            "{image} is not an image of team {team_slug} in this server's registry: push it to \
             {host}/{team_slug}/<name> first"
        ))
    };
    let repo = RepoName::parse(parts.path)
        .filter(|r| r.team == team_slug)
        .ok_or_else(not_ours)?;
    let repo_id: Uuid =
        sqlx::query_scalar("SELECT id FROM registry_repositories WHERE team_id = $1 AND name = $2")
            .bind(team_id)
            .bind(&repo.name)
            .fetch_optional(&state.db)
            .await?
            .ok_or_else(not_ours)?;
    let digest: Option<String> =
        match parts.digest {
            Some(digest) => sqlx::query_scalar(
                "SELECT digest FROM registry_manifests WHERE repository_id = $1 AND digest = $2",
            )
            .bind(repo_id)
            .bind(digest)
            .fetch_optional(&state.db)
            .await?,
            None => {
                sqlx::query_scalar(
                    "SELECT digest FROM registry_tags WHERE repository_id = $1 AND tag = $2",
                )
                .bind(repo_id)
                .bind(parts.tag.unwrap_or("latest"))
                .fetch_optional(&state.db)
                .await?
            }
        };
    let digest = digest.ok_or_else(|| {
        invalid(format!(
            "{image} is not in this server's registry: push it first (tags of {repo}: GET /v2/{repo}/tags/list)"
        ))
    })?;
    let pinned = ImageRef::parse(&format!("{host}/{repo}@{digest}")).map_err(invalid)?;
    Ok(Resolved {
        image: pinned,
        source: ImageSource::Registry,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_registry_is_its_public_host_or_a_loopback_name_with_its_port() {
        let cases = [
            ("gantry.example.com", "gantry.example.com", 8080, true),
            ("Gantry.Example.com", "gantry.example.com", 8080, true),
            ("127.0.0.1:8080", "127.0.0.1:8080", 8080, true),
            ("localhost:8080", "127.0.0.1:8080", 8080, true),
            ("127.0.0.2:8080", "gantry.example.com", 8080, true),
            ("[::1]:8080", "gantry.example.com", 8080, true),
            ("localhost:5000", "127.0.0.1:8080", 8080, false),
            ("ghcr.io", "gantry.example.com", 8080, false),
            ("10.0.0.5:8080", "gantry.example.com", 8080, false),
        ];
        for (host, public, port, want) in cases {
            assert_eq!(names_this_registry(host, public, port), want, "{host}");
        }
        assert_eq!(
            authority("https://gantry.example.com"),
            "gantry.example.com"
        );
    }
}
