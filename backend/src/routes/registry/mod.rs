//! The built-in registry's administration (the registry itself is at `/v2/`, see
//! `crate::registry`).

pub mod gc;
pub mod images;
pub mod usage;
