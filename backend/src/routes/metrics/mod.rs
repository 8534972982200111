//! An app's metrics: history (`GET …/metrics`) and the live stream (`GET …/metrics/stream`).

pub mod history;
pub mod stream;
