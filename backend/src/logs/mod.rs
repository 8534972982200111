//! Apps' logs and platform events: agents ship their containers' lines ([`store`]), the
//! platform records what it does to an app ([`events`]); both land in one day-partitioned
//! table ([`partitions`] creates and expires the days), are searched page by page
//! ([`history`], by the words [`search`] indexes per stored batch) and fanned out live to
//! websocket viewers ([`hub`]).

pub mod events;
pub mod history;
pub mod hub;
pub mod partitions;
pub mod search;
pub mod store;

pub use hub::LogHub;

/// What the server holds for logs, in its shared state.
pub struct Logs {
    /// Shared with the cluster, whose events (instances, nodes) go to the same viewers.
    pub hub: std::sync::Arc<LogHub>,
    /// Days lines are kept (the platform's setting; a team may keep less).
    pub retention_days: u32,
    /// One writer per node at a time (see [`store::Writers`]).
    pub writers: store::Writers,
}

impl Logs {
    pub fn new(hub: std::sync::Arc<LogHub>, retention_days: u32) -> Self {
        Logs {
            hub,
            retention_days,
            writers: store::Writers::default(),
        }
    }
}

/// Postgres text cannot hold NUL: a line that has one keeps a replacement character instead.
pub fn storable(line: &str) -> std::borrow::Cow<'_, str> {
    if line.contains('\0') {
        std::borrow::Cow::Owned(line.replace('\0', "\u{FFFD}"))
    } else {
        std::borrow::Cow::Borrowed(line)
    }
}
