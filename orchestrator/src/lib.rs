//! Gantry's own container orchestrator: where app replicas run and the node agent that runs
//! them. The server-side loop that drives it (Postgres, the agent hub) lives in the backend's
//! `cluster` module; everything it decides with is a pure function here.
//!
//! # Layout
//! - [`scheduler`]: pure placement of instances on nodes (filter, then score), with the reason
//!   an instance cannot be placed.
//! - [`reconcile`]: pure per-app plan: how many instances to create and which to stop, for
//!   scaling, lost nodes, drains and new images (replacements first).
//! - [`agent`]: the node agent (`gantry agent`): websocket session with the server, and the
//!   converger that makes the container engine match the desired set.
//! - [`runtime`]: the `ContainerRuntime` trait, its Docker implementation (bollard) and an
//!   in-memory fake for tests.

pub mod agent;
pub mod reconcile;
pub mod runtime;
pub mod scheduler;
