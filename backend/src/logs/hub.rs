//! Live fan-out: per app that someone watches, two bounded broadcast channels.
//!
//! - **Frames**, for viewers without a filter (the common case, and the one with many
//!   viewers): a batcher task per app gathers the lines stored within [`BATCH_WINDOW`] and
//!   encodes them once as a `lines` frame, which every such viewer sends as it is. A thousand
//!   viewers cost one encoding and one timer, not a thousand.
//! - **Lines**, for viewers with a filter, who build their own frames.
//!
//! Lines are published after they are stored, each with its JSON made once. A viewer that
//! falls behind loses the oldest frames or lines and is told how many lines it missed (frames
//! carry the number of their first line); the channels' memory never grows past their
//! capacity, however slow a viewer is.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::ws::Utf8Bytes;
use gantry_common::logs::LogItem;
use tokio::sync::{broadcast, Notify};
use uuid::Uuid;

/// Lines a filtering viewer may be behind before it misses some.
pub const CAPACITY: usize = 2048;
/// Frames an unfiltered viewer may be behind before it misses some.
const FRAME_CAPACITY: usize = 64;
/// New lines wait at most this long to share a frame.
pub const BATCH_WINDOW: Duration = Duration::from_millis(20);
/// The most lines in one frame.
pub const MAX_FRAME_LINES: usize = 500;

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

/// Lines of one app, encoded once as a `lines` frame.
#[derive(Debug)]
pub struct Frame {
    /// How many lines the app published before this frame's first: a viewer whose next frame
    /// starts later than it expected missed the difference.
    pub first: u64,
    pub lines: Vec<Arc<LiveLine>>,
    pub json: Utf8Bytes,
}

/// One `lines` frame (`{"type":"lines","items":[…]}`) from lines already encoded.
pub fn lines_frame(lines: &[Arc<LiveLine>]) -> String {
    let mut frame = String::from(r#"{"type":"lines","items":["#);
    for (i, line) in lines.iter().enumerate() {
        if i > 0 {
            frame.push(',');
        }
        frame.push_str(&line.json);
    }
    frame.push_str("]}");
    frame
}

/// What the batcher of one app shares with the publishers.
#[derive(Default)]
struct Pending {
    lines: Vec<Arc<LiveLine>>,
    /// Lines handed to the batcher so far.
    published: u64,
}

struct Channel {
    lines: broadcast::Sender<Arc<LiveLine>>,
    frames: broadcast::Sender<Arc<Frame>>,
    pending: Arc<Mutex<Pending>>,
    wake: Arc<Notify>,
    /// A batcher task runs for this app.
    batching: Arc<AtomicBool>,
}

impl Channel {
    fn new() -> Self {
        Channel {
            lines: broadcast::channel(CAPACITY).0,
            frames: broadcast::channel(FRAME_CAPACITY).0,
            pending: Arc::default(),
            wake: Arc::default(),
            batching: Arc::default(),
        }
    }

    fn watched(&self) -> bool {
        self.lines.receiver_count() > 0 || self.frames.receiver_count() > 0
    }

    /// Starts the batcher unless one runs.
    fn batch(&self) {
        if self.batching.swap(true, Ordering::SeqCst) {
            return;
        }
        let (frames, pending, wake, batching) = (
            self.frames.clone(),
            self.pending.clone(),
            self.wake.clone(),
            self.batching.clone(),
        );
        tokio::spawn(batch_forever(frames, pending, wake, batching));
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Gathers an app's lines for [`BATCH_WINDOW`] after the first, encodes them once, hands the
/// frame to every unfiltered viewer; ends when the app has none left.
async fn batch_forever(
    frames: broadcast::Sender<Arc<Frame>>,
    pending: Arc<Mutex<Pending>>,
    wake: Arc<Notify>,
    batching: Arc<AtomicBool>,
) {
    loop {
        let woken = tokio::time::timeout(Duration::from_secs(5), wake.notified()).await;
        if woken.is_ok() {
            tokio::time::sleep(BATCH_WINDOW).await;
            let (lines, first) = {
                let mut p = lock(&pending);
                let lines = std::mem::take(&mut p.lines);
                let first = p.published - lines.len() as u64;
                (lines, first)
            };
            let mut first = first;
            for chunk in lines.chunks(MAX_FRAME_LINES) {
                let frame = Frame {
                    first,
                    lines: chunk.to_vec(),
                    json: lines_frame(chunk).into(),
                };
                first += chunk.len() as u64;
                let _ = frames.send(Arc::new(frame));
            }
        }
        if frames.receiver_count() == 0 {
            batching.store(false, Ordering::SeqCst);
            // A viewer that came meanwhile found a batcher running: stay for it.
            if frames.receiver_count() == 0 || batching.swap(true, Ordering::SeqCst) {
                return;
            }
        }
    }
}

#[derive(Default)]
pub struct LogHub {
    apps: Mutex<HashMap<Uuid, Channel>>,
}

impl LogHub {
    /// The app's new lines from now on, one by one (for a viewer with a filter).
    pub fn subscribe(&self, app: Uuid) -> broadcast::Receiver<Arc<LiveLine>> {
        lock(&self.apps)
            .entry(app)
            .or_insert_with(Channel::new)
            .lines
            .subscribe()
    }

    /// The app's new lines from now on, in shared frames (for a viewer without a filter).
    pub fn subscribe_frames(&self, app: Uuid) -> broadcast::Receiver<Arc<Frame>> {
        let mut apps = lock(&self.apps);
        let channel = apps.entry(app).or_insert_with(Channel::new);
        let rx = channel.frames.subscribe();
        channel.batch();
        rx
    }

    /// Hands stored lines to the app's viewers, if it has any.
    pub fn publish(&self, app: Uuid, lines: impl IntoIterator<Item = LiveLine>) {
        let mut apps = lock(&self.apps);
        let Some(channel) = apps.get(&app) else {
            return;
        };
        if !channel.watched() {
            apps.remove(&app);
            return;
        }
        let framed = channel.frames.receiver_count() > 0;
        let mut pending = lock(&channel.pending);
        for line in lines {
            let line = Arc::new(line);
            if framed {
                pending.lines.push(line.clone());
                pending.published += 1;
            }
            let _ = channel.lines.send(line);
        }
        // A batcher that cannot keep up would let this grow: beyond a frame channel's worth
        // the oldest go (the viewers learn it from the frames' numbers).
        let most = FRAME_CAPACITY * MAX_FRAME_LINES;
        if pending.lines.len() > most {
            let extra = pending.lines.len() - most;
            pending.lines.drain(..extra);
        }
        drop(pending);
        if framed {
            channel.wake.notify_one();
        }
    }

    /// Apps with a channel (some may have lost their last viewer since).
    pub fn watched_apps(&self) -> usize {
        lock(&self.apps).len()
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
                build: None,
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

    #[tokio::test]
    async fn unfiltered_viewers_share_one_frame_per_window_numbered_by_line() {
        let hub = LogHub::default();
        let a = Uuid::from_u128(1);
        let mut one = hub.subscribe_frames(a);
        let mut two = hub.subscribe_frames(a);
        hub.publish(a, [live(1), live(2)]);
        hub.publish(a, [live(3)]);
        let f1 = one.recv().await.unwrap();
        let f2 = two.recv().await.unwrap();
        assert!(Arc::ptr_eq(&f1, &f2), "one frame for both");
        assert_eq!(f1.first, 0);
        assert_eq!(f1.lines.iter().map(|l| l.id).collect::<Vec<_>>(), [1, 2, 3]);
        let parsed: gantry_common::logs::LogFrame = serde_json::from_str(f1.json.as_str()).unwrap();
        assert!(
            matches!(parsed, gantry_common::logs::LogFrame::Lines { items } if items.len() == 3)
        );
        hub.publish(a, [live(4)]);
        assert_eq!(one.recv().await.unwrap().first, 3);
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
