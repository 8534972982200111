//! What an app runs: `POST …/deploys` (an image), `POST …/scale` (a replica count) and
//! `GET …/instances`. The reconciler does the rest; these only record the wish and wake it.

pub mod deploy;
pub mod instances;
pub mod scale;

use gantry_common::cluster::{ImageRef, Workload};

use crate::authz::AppRow;

fn workload(app: &AppRow) -> Workload {
    Workload {
        // Stored images were parsed on the way in.
        image: app.image.as_deref().and_then(|i| ImageRef::parse(i).ok()),
        replicas: app.replicas.max(0) as u32,
    }
}
