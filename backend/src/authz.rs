//! Authorization: the one place that decides what a caller may do in a team.
//!
//! Every team-scoped route takes [`TeamAccess`] (or [`AppAccess`]), which derives the team from
//! the path and the caller's credentials, never from a body. A team the caller is not in, or an
//! app of such a team, is a 404: other tenants' objects are invisible, not forbidden.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use gantry_common::api::Team;
use gantry_common::releases::Strategy;
use gantry_common::{AppName, Permission, Role, TeamSlug};
use serde::Deserialize;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::auth::Caller;
use crate::error::{forbidden, not_found, ApiError, ApiResult};
use crate::extract::ApiPath;
use crate::state::{App, AppState};

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct TeamRow {
    pub id: Uuid,
    pub slug: String,
    pub name: String,
    pub created_at: OffsetDateTime,
}

impl TeamRow {
    pub fn to_api(&self) -> Team {
        Team {
            id: self.id,
            slug: TeamSlug::parse(&self.slug).expect("stored slug is valid"),
            name: self.name.clone(),
            created_at: self.created_at,
        }
    }
}

/// The caller, a team it belongs to, and its effective role there.
pub struct TeamAccess {
    pub caller: Caller,
    pub team: TeamRow,
    pub role: Role,
}

impl TeamAccess {
    /// 403 naming the role when the table in `gantry_common::roles` does not allow `permission`.
    pub fn require(&self, permission: Permission) -> ApiResult<()> {
        if self.role.allows(permission) {
            Ok(())
        } else {
            Err(forbidden(format!(
                "your role in team {} ({}) does not allow this",
                self.team.slug, self.role
            )))
        }
    }

    pub fn slug(&self) -> TeamSlug {
        TeamSlug::parse(&self.team.slug).expect("stored slug is valid")
    }
}

#[derive(Deserialize)]
struct TeamParam {
    team: String,
}

/// Resolves `slug` for `caller`: `None` when the team does not exist or the caller may not see it.
pub async fn resolve(
    state: &AppState,
    caller: Caller,
    slug: &str,
) -> ApiResult<Option<TeamAccess>> {
    if TeamSlug::parse(slug).is_err() {
        return Ok(None);
    }
    let row = sqlx::query_as::<_, (Uuid, String, String, OffsetDateTime, String)>(
        "SELECT t.id, t.slug, t.name, t.created_at, m.role
         FROM teams t JOIN memberships m ON m.team_id = t.id AND m.user_id = $2
         WHERE t.slug = $1",
    )
    .bind(slug)
    .bind(caller.user.id)
    .fetch_optional(&state.db)
    .await?;
    let Some((id, slug, name, created_at, member_role)) = row else {
        return Ok(None);
    };
    let member_role = member_role
        .parse::<Role>()
        .map_err(|e| ApiError::internal(format!("memberships.role: {e}")))?;
    let role = match caller.token() {
        // A token sees only its own team, with no more than its creator has today.
        Some(token) if token.team_id != id => return Ok(None),
        Some(token) => token.role.min(member_role),
        None => member_role,
    };
    Ok(Some(TeamAccess {
        caller,
        team: TeamRow {
            id,
            slug,
            name,
            created_at,
        },
        role,
    }))
}

impl FromRequestParts<AppState> for TeamAccess {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> ApiResult<Self> {
        let caller = Caller::from_request_parts(parts, state).await?;
        let ApiPath(TeamParam { team }) = ApiPath::from_request_parts(parts, state).await?;
        resolve(state, caller, &team)
            .await?
            .ok_or_else(|| not_found(&format!("team {team:?}")))
    }
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct AppRow {
    pub id: Uuid,
    pub name: String,
    pub port: Option<i32>,
    pub replicas: i32,
    pub cpu_millis: i32,
    pub memory_mib: i32,
    pub health_check_path: String,
    pub stop_grace_seconds: i32,
    pub progress_deadline_seconds: i32,
    pub deploy_on_push: Option<String>,
    pub strategy: sqlx::types::Json<Strategy>,
    /// The version of the release that serves.
    pub release: Option<i32>,
    /// The image of the release that serves, else of the newest release.
    pub image: Option<String>,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
}

/// The columns of [`AppRow`], for `SELECT` and `RETURNING` on `apps`.
pub const APP_COLUMNS: &str = "id, name, port, replicas, cpu_millis, memory_mib, \
    health_check_path, stop_grace_seconds, progress_deadline_seconds, deploy_on_push, strategy, \
    (SELECT r.version FROM releases r WHERE r.app_id = apps.id AND r.status = 'active') \
        AS release, \
    (SELECT r.image FROM releases r WHERE r.app_id = apps.id \
        ORDER BY (r.status = 'active') DESC, r.version DESC LIMIT 1) AS image, \
    created_at, updated_at";

impl AppRow {
    pub fn port(&self) -> Option<u16> {
        self.port.and_then(|p| u16::try_from(p).ok())
    }

    pub fn to_api(&self, team: TeamSlug, state: &App) -> gantry_common::api::App {
        let url = self
            .port
            .is_some()
            .then(|| state.app_url(team.as_str(), &self.name));
        gantry_common::api::App {
            id: self.id,
            name: AppName::parse(&self.name).expect("stored app name is valid"),
            team,
            port: self.port(),
            replicas: self.replicas.max(0) as u32,
            cpu_millis: self.cpu_millis.max(0) as u32,
            memory_mib: self.memory_mib.max(0) as u32,
            health_check_path: self.health_check_path.clone(),
            stop_grace_seconds: self.stop_grace_seconds.max(0) as u32,
            progress_deadline_seconds: self.progress_deadline_seconds.max(0) as u32,
            strategy: self.strategy.0.clone(),
            deploy_on_push: self.deploy_on_push.clone(),
            release: self.release.map(|v| v.max(0) as u32),
            image: self.image.clone(),
            url,
            created_at: self.created_at,
            updated_at: self.updated_at,
        }
    }
}

/// [`TeamAccess`] plus an app of that team named in the path.
pub struct AppAccess {
    pub access: TeamAccess,
    pub app: AppRow,
}

#[derive(Deserialize)]
struct AppParam {
    app: String,
}

impl FromRequestParts<AppState> for AppAccess {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> ApiResult<Self> {
        let access = TeamAccess::from_request_parts(parts, state).await?;
        let ApiPath(AppParam { app }) = ApiPath::from_request_parts(parts, state).await?;
        let missing = || not_found(&format!("app {app:?} in team {}", access.team.slug));
        if AppName::parse(&app).is_err() {
            return Err(missing());
        }
        let row = sqlx::query_as::<_, AppRow>(&format!(
            "SELECT {APP_COLUMNS} FROM apps WHERE team_id = $1 AND name = $2"
        ))
        .bind(access.team.id)
        .bind(&app)
        .fetch_optional(&state.db)
        .await?;
        match row {
            Some(app) => Ok(AppAccess { access, app }),
            None => Err(missing()),
        }
    }
}

/// The gate of platform-wide resources (worker nodes, join tokens): a platform admin, signed in
/// with a session. Team-bound API tokens are refused: a team's token must not reach the cluster.
pub struct PlatformAdmin(pub Caller);

impl FromRequestParts<AppState> for PlatformAdmin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> ApiResult<Self> {
        let caller = Caller::from_request_parts(parts, state).await?;
        caller.require_session("administer the platform (nodes, team quotas)")?;
        if !caller.user.is_platform_admin {
            return Err(forbidden(
                "only a platform admin (the first account of this Gantry) can manage nodes and team quotas",
            ));
        }
        Ok(PlatformAdmin(caller))
    }
}
