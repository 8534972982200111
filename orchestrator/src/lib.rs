//! Gantry's own container orchestrator: where app replicas run, and (in later slices) the
//! reconciler that makes it so, the node agents, the Docker runtime and the router.
//!
//! # Layout
//! - [`scheduler`]: pure placement of instances on nodes (filter, then score), with the reason
//!   an instance cannot be placed. No I/O: the reconciler feeds it a snapshot and persists the
//!   decisions.
//!
//! The backend will reach all of this through a `Cluster` trait (embedded orchestrator or
//! Kubernetes), as the design in the README describes.

pub mod scheduler;
