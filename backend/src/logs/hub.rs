//! Live fan-out: one bounded broadcast channel per app that someone watches.
//!
//! Lines are published after they are stored. Each carries its JSON once, so a thousand
//! viewers share one encoding. A viewer that falls more than [`CAPACITY`] lines behind loses
//! the oldest ones and is told how many (tokio's `Lagged`); the channel's memory never grows
//! past its capacity, however slow a viewer is.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use gantry_common::logs::LogItem;
use tokio::sync::broadcast;
use uuid::Uuid;

/// Lines a viewer may be behind before it misses some.
pub const CAPACITY: usize = 2048;

/// A stored line on its way to live viewers.
#[derive(Debug)]
pub struct LiveLine {
    /// Its row id: tells a replayed line from the same line arriving live.
    pub id: i64,
    pub item: LogItem,
    /// `item` as JSON.
    pub json: Box<str>,
}

impl LiveLine {
    pub fn new(id: i64, item: LogItem) -> Self {
        let json = serde_json::to_string(&item)
            .expect("a log item always encodes")
            .into_boxed_str();
        LiveLine { id, item, json }
    }
}

#[derive(Default)]
pub struct LogHub {
    apps: Mutex<HashMap<Uuid, broadcast::Sender<Arc<LiveLine>>>>,
}

impl LogHub {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Uuid, broadcast::Sender<Arc<LiveLine>>>> {
        self.apps.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The app's new lines from now on.
    pub fn subscribe(&self, app: Uuid) -> broadcast::Receiver<Arc<LiveLine>> {
        self.lock()
            .entry(app)
            .or_insert_with(|| broadcast::channel(CAPACITY).0)
            .subscribe()
    }

    /// Hands stored lines to the app's viewers, if it has any.
    pub fn publish(&self, app: Uuid, lines: impl IntoIterator<Item = LiveLine>) {
        let mut apps = self.lock();
        let Some(tx) = apps.get(&app) else {
            return;
        };
        if tx.receiver_count() == 0 {
            apps.remove(&app);
            return;
        }
        for line in lines {
            let _ = tx.send(Arc::new(line));
        }
    }

    /// Apps with a channel (some may have lost their last viewer since).
    pub fn watched_apps(&self) -> usize {
        self.lock().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gantry_common::logs::LogStream;
    use time::OffsetDateTime;

    fn live(id: i64) -> LiveLine {
        LiveLine::new(
            id,
            LogItem {
                ts: OffsetDateTime::UNIX_EPOCH,
                instance: None,
                release: Some(1),
                stream: LogStream::Event,
                line: format!("line {id}"),
            },
        )
    }

    #[test]
    fn lines_reach_subscribers_of_their_app_only() {
        let hub = LogHub::default();
        let a = Uuid::from_u128(1);
        let b = Uuid::from_u128(2);
        let mut rx_a = hub.subscribe(a);
        let mut rx_b = hub.subscribe(b);
        hub.publish(a, [live(1), live(2)]);
        assert_eq!(rx_a.try_recv().unwrap().id, 1);
        assert_eq!(rx_a.try_recv().unwrap().id, 2);
        assert!(rx_b.try_recv().is_err());
        assert!(rx_a.try_recv().unwrap_err() == broadcast::error::TryRecvError::Empty);
        assert!(live(3).json.contains("\"line\":\"line 3\""));
    }

    #[test]
    fn a_slow_viewer_learns_how_many_it_missed_and_the_channel_stays_bounded() {
        let hub = LogHub::default();
        let a = Uuid::from_u128(1);
        let mut rx = hub.subscribe(a);
        hub.publish(a, (0..CAPACITY as i64 + 10).map(live));
        assert_eq!(
            rx.try_recv().unwrap_err(),
            broadcast::error::TryRecvError::Lagged(10)
        );
        assert_eq!(rx.try_recv().unwrap().id, 10);
    }

    #[test]
    fn an_app_nobody_watches_keeps_no_channel() {
        let hub = LogHub::default();
        let a = Uuid::from_u128(1);
        drop(hub.subscribe(a));
        hub.publish(a, [live(1)]);
        assert_eq!(hub.watched_apps(), 0);
    }
}
