//! `/api/v1/auth/…` and `/api/v1/me`: accounts and sessions.

pub mod csrf;
pub mod login;
pub mod logout;
pub mod me;
pub mod signup;
