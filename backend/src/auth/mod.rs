//! Who is calling: passwords, login throttling, sessions with their CSRF token, API tokens, and
//! the [`Caller`] extractor that every authenticated route goes through.

pub mod basic;
pub mod caller;
pub mod origin;
pub mod password;
pub mod session;
pub mod throttle;
pub mod tokens;

pub use caller::{Caller, TokenGrant, UserRow, Via};
