//! Housekeeping: abandoned uploads expire, and blobs no manifest uses are collected.
//!
//! A blob stays in a repository while a manifest of that repository names it; a blob file
//! stays while some repository has it. Nothing younger than [`GRACE`] is collected, so a push in
//! progress (its layers uploaded, its manifest not yet) keeps what it uploaded; and a blob
//! stored again while a collection runs is never deleted under it (see [`Storage`] locking).
//!
//! [`Storage`]: super::storage::Storage

use std::time::Duration;

use gantry_common::registry::GcReport;

use super::error::RegistryResult;
use crate::state::AppState;

/// A blob or a repository's link to it younger than this is never collected.
pub const GRACE: Duration = Duration::from_secs(3600);
/// An upload session untouched this long is abandoned.
pub const UPLOAD_TTL: Duration = Duration::from_secs(24 * 3600);
/// How often the server collects by itself.
const EVERY: Duration = Duration::from_secs(24 * 3600);

/// One collection: expired uploads, then unused links, then unused blobs and their files.
pub async fn collect(state: &AppState) -> RegistryResult<GcReport> {
    let seconds = |d: Duration| d.as_secs() as f64;
    let expired: Vec<uuid::Uuid> = sqlx::query_scalar(
        "DELETE FROM registry_uploads WHERE updated_at < now() - make_interval(secs => $1)
         RETURNING id",
    )
    .bind(seconds(UPLOAD_TTL))
    .fetch_all(&state.db)
    .await?;
    for id in &expired {
        state.registry.storage.discard(*id).await?;
    }
    let unlinked = sqlx::query(
        "DELETE FROM registry_repository_blobs rb
         WHERE rb.created_at < now() - make_interval(secs => $1)
           AND NOT EXISTS (SELECT 1 FROM registry_manifests m
                           WHERE m.repository_id = rb.repository_id AND rb.digest = ANY (m.blobs))",
    )
    .bind(seconds(GRACE))
    .execute(&state.db)
    .await?
    .rows_affected();
    // While blobs are deleted, no upload may commit one (it could be the same digest).
    let _exclusive = state.registry.storage.collecting().await;
    let deleted: Vec<(String, i64)> = sqlx::query_as(
        "DELETE FROM registry_blobs b
         WHERE b.created_at < now() - make_interval(secs => $1)
           AND NOT EXISTS (SELECT 1 FROM registry_repository_blobs rb WHERE rb.digest = b.digest)
         RETURNING digest, size",
    )
    .bind(seconds(GRACE))
    .fetch_all(&state.db)
    .await?;
    let mut bytes_freed = 0u64;
    for (digest, size) in &deleted {
        if let Some(digest) = super::path::Digest::parse(digest) {
            state.registry.storage.delete_blob(&digest).await?;
            bytes_freed += *size as u64;
        }
    }
    let report = GcReport {
        uploads_expired: expired.len() as u64,
        links_removed: unlinked,
        blobs_deleted: deleted.len() as u64,
        bytes_freed,
    };
    tracing::info!(?report, "registry: garbage collected");
    Ok(report)
}

/// Collects once a day, the first time an hour after start.
pub async fn run_daily(state: AppState) {
    tokio::time::sleep(GRACE).await;
    loop {
        if let Err(e) = collect(&state).await {
            tracing::error!(error = %e.message, "registry: garbage collection failed");
        }
        tokio::time::sleep(EVERY).await;
    }
}
