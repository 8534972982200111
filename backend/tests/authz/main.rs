//! Authorization tests against a real server and a real Postgres (one database per test): the
//! role table over HTTP, cross-tenant isolation, and member management. The harness is the one of
//! `tests/api`.

#[path = "../api/support.rs"]
#[allow(dead_code)]
mod support;

mod common;
mod members;
mod roles;
mod tenancy;
