//! Team quotas: `GET /api/v1/teams/{team}/quota` for the team, and the platform admin's
//! `PUT`/`DELETE /api/v1/platform/teams/{slug}/quota`.

pub mod get;
pub mod set;
