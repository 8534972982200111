//! `/api/v1/teams`: the caller's teams.

pub mod create;
pub mod get;
pub mod list;
