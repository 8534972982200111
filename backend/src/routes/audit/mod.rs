//! `/api/v1/teams/{team}/audit`: the team's audit log, for admins and owners.

pub mod list;
