//! API tests against a real server and a real Postgres (one database per test).
//! Role, member and cross-tenant tests live in `tests/authz`.

mod support;

mod apps;
mod audit;
mod auth;
mod autoscaling;
mod builds;
mod cluster;
mod csrf;
mod errors;
mod fake_agent;
mod logs;
mod node_stream;
mod openapi;
mod progressive;
mod quotas;
mod releases;
mod tokens;
