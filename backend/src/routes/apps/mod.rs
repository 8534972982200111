//! `/api/v1/teams/{team}/apps`: app definitions (deploying them comes with the orchestrator).

pub mod create;
pub mod delete;
pub mod get;
pub mod list;
pub mod update;
