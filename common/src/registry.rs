//! The built-in registry's REST views (the registry itself speaks the distribution spec).

use serde::{Deserialize, Serialize};

/// What one garbage collection removed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct GcReport {
    /// Upload sessions untouched for a day, and their bytes.
    pub uploads_expired: u64,
    /// Blobs repositories no longer serve: no manifest of theirs names them.
    pub links_removed: u64,
    /// Blob files no repository has any more.
    pub blobs_deleted: u64,
    pub bytes_freed: u64,
}
