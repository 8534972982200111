//! What an app runs and how it is reached: `POST …/deploys` (a new image: a release),
//! `POST …/scale`, `PUT …/strategy`, `…/autoscaling`, and the views `GET …/instances` (like `kubectl get pods`),
//! `GET …/routes` (like `kubectl get endpoints`) and `GET …/rollouts/current` with
//! the actions on a rollout (promote, abort, pause, resume). The controllers do the
//! rest; these record the wish and wake them.

pub mod autoscaling;
pub mod deploy;
pub mod instances;
pub mod rollout_stream;
pub mod rollouts;
pub mod routes;
pub mod scale;
pub mod strategy;
