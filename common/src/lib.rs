//! Wire types shared by every Gantry crate and the browser.
//!
//! Nothing here depends on a server library, so the dashboard can compile it to wasm.
//!
//! # Layout
//! - [`names`]: validated names (`TeamSlug`, `AppName`, `Email`, `ConfigKey`, …). After parsing,
//!   the rest of the code cannot hold an invalid one.
//! - [`roles`]: team roles and the one permission table every crate consults.
//! - [`api`]: REST request and response bodies, shared by the server, the CLI and the dashboard.
//! - [`error`]: the single error body every API error uses.

pub mod api;
pub mod error;
pub mod names;
pub mod roles;

pub use error::{ErrorBody, ErrorDetail};
pub use names::{AppName, ConfigKey, Email, Label, NameError, Password, TeamSlug};
pub use roles::{Permission, Role};
