//! Deploying an image, from the deploy route or from a push to the built-in registry.

use gantry_common::cluster::ImageRef;
use serde_json::json;
use uuid::Uuid;

use super::create::{create, Change};
use super::ReleaseRow;
use crate::audit::{self, Actor};
use crate::authz::{TeamAccess, TeamRow};
use crate::error::{ApiError, ApiResult};
use crate::registry::images;
use crate::state::AppState;

/// How a deploy came about, for the audit log.
#[derive(Debug, Clone, Copy)]
pub enum Via<'a> {
    Api,
    /// A `docker push` of the app's `deploy_on_push` tag.
    Push,
    /// Build `number` of a `git push` of `commit`.
    Build {
        number: u32,
        commit: &'a str,
    },
}

/// Makes `image` the app's next release and wakes the rollout controller. An image of this
/// server's registry must be the team's own and is pinned to its digest first.
pub async fn deploy(
    state: &AppState,
    team: &TeamRow,
    app_id: Uuid,
    app_name: &str,
    actor: Actor,
    image: &ImageRef,
    via: Via<'_>,
) -> ApiResult<ReleaseRow> {
    let team_id = team.id;
    let resolved = images::resolve(state, team_id, &team.slug, image).await?;
    let mut tx = state.db.begin().await?;
    let change = match via {
        Via::Build { number, commit } => Change::Build {
            image: &resolved.image,
            source: resolved.source,
            number,
            commit,
        },
        Via::Api | Via::Push => Change::Deploy {
            image: &resolved.image,
            source: resolved.source,
        },
    };
    let release = create(&mut tx, &state.sealer, app_id, team_id, &actor, change)
        .await?
        .ok_or_else(|| ApiError::internal("a deploy always makes a release"))?;
    let mut details = json!({"image": resolved.image, "release": release.version()});
    if resolved.image != *image {
        details["requested"] = json!(image);
    }
    match via {
        Via::Api => {}
        Via::Push => details["via"] = json!("push"),
        Via::Build { number, commit } => {
            details["via"] = json!("git push");
            details["build"] = json!(number);
            details["commit"] = json!(commit);
        }
    }
    audit::record(
        &mut tx,
        audit::Event {
            team_id,
            action: "app.deploy",
            target: format!("app:{app_name}"),
            details,
            actor,
        },
    )
    .await?;
    tx.commit().await?;
    state.rollouts.notify_one();
    Ok(release)
}

/// After a push of `<team>/<name>:<tag>`: deploys app `<name>` when its `deploy_on_push` tag is
/// `tag` and the pusher may change apps. The push has succeeded whatever happens here; a
/// failure is logged.
pub async fn on_push(state: &AppState, access: &TeamAccess, name: &str, tag: &str, digest: &str) {
    if !access.role.allows(gantry_common::Permission::WriteApps) {
        return;
    }
    let app: Result<Option<(Uuid, String)>, _> = sqlx::query_as(
        "SELECT id, name FROM apps WHERE team_id = $1 AND name = $2 AND deploy_on_push = $3",
    )
    .bind(access.team.id)
    .bind(name)
    .bind(tag)
    .fetch_optional(&state.db)
    .await;
    let (app_id, app_name) = match app {
        Ok(Some(app)) => app,
        Ok(None) => return,
        Err(e) => {
            tracing::error!(error = %e, "deploy on push: failed to look up the app");
            return;
        }
    };
    let pinned = format!(
        "{}/{}/{name}@{digest}",
        images::registry_host(state),
        access.team.slug
    );
    let result = match ImageRef::parse(&pinned) {
        Ok(image) => {
            deploy(
                state,
                &access.team,
                app_id,
                &app_name,
                Actor::from(&access.caller),
                &image,
                Via::Push,
            )
            .await
        }
        Err(e) => Err(ApiError::internal(e)),
    };
    match result {
        Ok(release) => tracing::info!(
            app.id = %app_id,
            release.version = release.version(),
            "a push of {tag} deploys {app_name} as v{}",
            release.version()
        ),
        Err(e) => tracing::error!(app.id = %app_id, error = %e.message, "deploy on push failed"),
    }
}
