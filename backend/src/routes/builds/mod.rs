//! `/api/v1/teams/{team}/apps/{app}/builds` and `…/build-settings`: the builds of an app's
//! `git push`es (like `heroku builds`), cancelling one, and how pushes are built.

pub mod cancel;
pub mod get;
pub mod list;
pub mod settings;

use serde::Deserialize;

#[derive(Deserialize)]
pub struct NumberParam {
    number: u32,
}
