//! `/api/v1/teams/{team}/apps/{app}/releases` and `…/rollback`: an app's numbered releases, like
//! `heroku releases` and `heroku rollback`.

pub mod get;
pub mod list;
pub mod rollback;
