//! Apps deployed before releases existed kept their image in `apps.legacy_image`. At start, each
//! becomes that app's release v1, made from its image, settings and config vars as they are,
//! and rolled out like any release: the instances from before (which ran without their config
//! vars, and were not routed) are replaced by the release's own.

use gantry_common::cluster::ImageRef;
use gantry_common::releases::ImageSource;
use uuid::Uuid;

use super::create::{create, Change};
use crate::audit::Actor;
use crate::state::AppState;

/// Idempotent: an app is converted once (its `legacy_image` is cleared in the transaction that
/// makes v1).
pub async fn adopt_legacy_deploys(state: &AppState) -> anyhow::Result<()> {
    let apps: Vec<(Uuid, Uuid, String)> =
        sqlx::query_as("SELECT id, team_id, legacy_image FROM apps WHERE legacy_image IS NOT NULL")
            .fetch_all(&state.db)
            .await?;
    let actor = Actor {
        user_id: None,
        token_id: None,
        label: "gantry (upgrade to releases)".into(),
    };
    for (app_id, team_id, legacy_image) in apps {
        let mut tx = state.db.begin().await?;
        sqlx::query("UPDATE apps SET legacy_image = NULL WHERE id = $1")
            .bind(app_id)
            .execute(&mut *tx)
            .await?;
        // Stored images were checked on the way in; one that no longer parses is dropped.
        if let Ok(image) = ImageRef::parse(&legacy_image) {
            create(
                &mut tx,
                &state.sealer,
                app_id,
                team_id,
                &actor,
                Change::Deploy {
                    image: &image,
                    source: ImageSource::External,
                },
            )
            .await
            .map_err(|e| anyhow::anyhow!("{}", e.message))?;
            tracing::info!(app.id = %app_id, "app {app_id} was deployed before releases: {image} is now its release v1");
        }
        tx.commit().await?;
    }
    Ok(())
}
