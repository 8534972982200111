//! `/api/v1/tokens`: API tokens for CI and scripts. Each acts for one team with a role no higher
//! than its creator's (checked at creation, and capped again on every use).

pub mod create;
pub mod list;
pub mod revoke;

use gantry_common::api::ApiToken;
use gantry_common::TeamSlug;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::error::{ApiError, ApiResult};

#[derive(sqlx::FromRow)]
struct TokenRow {
    id: Uuid,
    name: String,
    team_slug: String,
    role: String,
    prefix: String,
    created_at: OffsetDateTime,
    last_used_at: Option<OffsetDateTime>,
}

impl TokenRow {
    fn into_api(self) -> ApiResult<ApiToken> {
        Ok(ApiToken {
            id: self.id,
            name: self.name,
            team: TeamSlug::parse(&self.team_slug).map_err(ApiError::internal)?,
            role: self.role.parse().map_err(ApiError::internal)?,
            prefix: self.prefix,
            created_at: self.created_at,
            last_used_at: self.last_used_at,
        })
    }
}
