//! Log shipping: the agent follows its containers' stdout and stderr through the engine and
//! sends the lines to the server in batches over the agent websocket.
//!
//! Nothing is lost or repeated across restarts of either side:
//! - each instance's lines are numbered (`seq`), and the server skips numbers it already holds;
//! - the agent keeps every line it sent until the server acknowledges it, and sends the rest
//!   again after a reconnect ([`LogBuffer::rewind`]);
//! - a restarted agent starts reading each container where the server's last line of that
//!   instance ends (the server sends these [`LogCursor`]s after `welcome`), and the engine kept
//!   the lines in between in the container's log file.
//!
//! Bounded: while the server is unreachable the buffer holds at most its byte cap; beyond it
//! the oldest lines go, and how many is reported with the next batch. While the server is
//! reachable but slower than a container, the followers wait for room instead (the engine's
//! log file, itself capped, holds the lines meanwhile): nothing is dropped for mere slowness.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use futures_util::StreamExt;
use gantry_common::agent::{
    cut_line, LogCursor, ShippedLine, MAX_LOG_BATCH_BYTES, MAX_LOG_BATCH_LINES, MAX_LOG_LINE_BYTES,
};
use gantry_common::logs::LogStream;
use time::OffsetDateTime;
use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;
use uuid::Uuid;

use crate::runtime::{ContainerInfo, ContainerRuntime, ContainerStatus, OutputLine};

use super::plan;

/// Batches sent and not yet acknowledged, at most: enough to keep the link busy while the
/// server writes one.
pub const MAX_BATCHES_IN_FLIGHT: usize = 2;
/// What a buffered line costs beyond its text (ids, numbers, queue slot).
const LINE_OVERHEAD: usize = 64;

/// The lines read and not yet acknowledged, oldest first. Pure: no I/O.
#[derive(Debug)]
pub struct LogBuffer {
    lines: VecDeque<ShippedLine>,
    bytes: usize,
    cap_bytes: usize,
    /// The first `sent` lines went out in the `batches` batches in flight.
    sent: usize,
    batches: usize,
    /// Lines dropped for room since the last batch, per instance.
    dropped: BTreeMap<Uuid, u64>,
}

/// One batch to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    pub lines: Vec<ShippedLine>,
    pub dropped: BTreeMap<Uuid, u64>,
}

fn cost(line: &ShippedLine) -> usize {
    line.line.len() + LINE_OVERHEAD
}

impl LogBuffer {
    pub fn new(cap_bytes: usize) -> Self {
        LogBuffer {
            lines: VecDeque::new(),
            bytes: 0,
            cap_bytes,
            sent: 0,
            batches: 0,
            dropped: BTreeMap::new(),
        }
    }

    pub fn len(&self) -> usize {
        self.lines.len()
    }

    pub fn is_empty(&self) -> bool {
        self.lines.is_empty()
    }

    /// So near its byte cap that the longest line might not fit without dropping the oldest.
    /// (Not `bytes >= cap`: a push evicts until it is just under the cap, so that test would
    /// let a reader that waits for room push — and evict — forever.)
    pub fn full(&self) -> bool {
        self.bytes + MAX_LOG_LINE_BYTES + LINE_OVERHEAD > self.cap_bytes
    }

    /// Adds a line; makes room by dropping the oldest lines (sent or not), and counts them.
    pub fn push(&mut self, line: ShippedLine) {
        self.bytes += cost(&line);
        self.lines.push_back(line);
        while self.bytes > self.cap_bytes {
            let Some(old) = self.lines.pop_front() else {
                break;
            };
            self.bytes -= cost(&old);
            *self.dropped.entry(old.instance).or_default() += 1;
            if self.sent > 0 {
                self.sent -= 1;
            }
        }
    }

    /// Whether another batch may go out before an acknowledgement comes back.
    pub fn room_in_flight(&self) -> bool {
        self.batches < MAX_BATCHES_IN_FLIGHT
    }

    /// The next batch to send, if there is something to send and room in flight.
    pub fn next_batch(&mut self) -> Option<Batch> {
        let unsent = self.lines.len() - self.sent;
        if !self.room_in_flight() || (unsent == 0 && self.dropped.is_empty()) {
            return None;
        }
        let mut take = 0;
        let mut bytes = 0;
        for line in self.lines.range(self.sent..).take(MAX_LOG_BATCH_LINES) {
            bytes += line.line.len();
            if take > 0 && bytes > MAX_LOG_BATCH_BYTES {
                break;
            }
            take += 1;
        }
        let lines: Vec<ShippedLine> = self
            .lines
            .range(self.sent..self.sent + take)
            .cloned()
            .collect();
        self.sent += take;
        self.batches += 1;
        Some(Batch {
            lines,
            dropped: std::mem::take(&mut self.dropped),
        })
    }

    /// The server holds, per instance, every line up to its cursor: those leave the buffer.
    /// Acknowledged lines are always at its front (batches go out and are answered in order).
    pub fn ack(&mut self, held: &BTreeMap<Uuid, LogCursor>) {
        self.batches = self.batches.saturating_sub(1);
        while let Some(front) = self.lines.front() {
            let acknowledged = held
                .get(&front.instance)
                .is_some_and(|c| c.seq >= front.seq);
            if !acknowledged {
                break;
            }
            self.bytes -= cost(front);
            self.lines.pop_front();
            self.sent = self.sent.saturating_sub(1);
        }
    }

    /// After a reconnect: everything not acknowledged goes out again.
    pub fn rewind(&mut self) {
        self.sent = 0;
        self.batches = 0;
    }
}

/// Where reading stands, shared by the followers and the connection.
#[derive(Debug)]
struct Shared {
    buffer: LogBuffer,
    /// The last line read of each instance (its number, and the latest stamp read).
    read: HashMap<Uuid, LogCursor>,
    /// The latest stamp read of each instance's stdout and of its stderr: a line not newer
    /// than it is one read already (the engine's follower repeats lines when it starts again or
    /// when a log file rotates under a slow reader; each stream's stamps only go up).
    latest: HashMap<(Uuid, LogStream), OffsetDateTime>,
    /// The server's cursors have arrived since this agent started: reading may begin.
    cursors_known: bool,
    /// A session with the server is up: a full buffer makes readers wait, not drop.
    connected: bool,
}

/// The agent's log shipping: followers write into it, the connection takes batches from it.
#[derive(Debug, Clone)]
pub struct LogShipper {
    shared: Arc<Mutex<Shared>>,
    /// Lines were added, or room opened in flight.
    pub wake: Arc<Notify>,
    /// Tells the follower manager that cursors arrived.
    cursors: watch::Sender<bool>,
    /// Lines were acknowledged (room in the buffer), or the connection went down.
    room: Arc<Notify>,
}

impl LogShipper {
    pub fn new(buffer_bytes: usize) -> Self {
        LogShipper {
            shared: Arc::new(Mutex::new(Shared {
                buffer: LogBuffer::new(buffer_bytes),
                read: HashMap::new(),
                latest: HashMap::new(),
                cursors_known: false,
                connected: false,
            })),
            wake: Arc::new(Notify::new()),
            room: Arc::new(Notify::new()),
            cursors: watch::channel(false).0,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Shared> {
        self.shared.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The server's last line of each instance. Reading starts at the later of it and what
    /// this agent already read (after a server restart the agent may be ahead).
    pub fn set_cursors(&self, held: BTreeMap<Uuid, LogCursor>) {
        let mut shared = self.lock();
        for (instance, cursor) in held {
            // Both streams from the server's latest stamp (it does not keep one per stream).
            for stream in [LogStream::Stdout, LogStream::Stderr] {
                let latest = shared.latest.entry((instance, stream)).or_insert(cursor.ts);
                *latest = (*latest).max(cursor.ts);
            }
            let read = shared.read.entry(instance).or_insert(cursor);
            if read.seq < cursor.seq {
                *read = cursor;
            }
        }
        shared.cursors_known = true;
        drop(shared);
        self.cursors.send_replace(true);
    }

    pub fn next_batch(&self) -> Option<Batch> {
        self.lock().buffer.next_batch()
    }

    pub fn ack(&self, held: &BTreeMap<Uuid, LogCursor>) {
        self.lock().buffer.ack(held);
        self.wake.notify_one();
        self.room.notify_waiters();
    }

    /// A session starts: everything not acknowledged goes out again.
    pub fn connected(&self) {
        let mut shared = self.lock();
        shared.buffer.rewind();
        shared.connected = true;
        drop(shared);
        self.wake.notify_one();
    }

    /// The session ended: readers stop waiting for room (the oldest lines go instead).
    pub fn disconnected(&self) {
        self.lock().connected = false;
        self.room.notify_waiters();
    }

    /// Waits while the buffer is full and the server is reachable.
    async fn wait_for_room(&self) {
        loop {
            let room = self.room.notified();
            {
                let shared = self.lock();
                if !(shared.connected && shared.buffer.full()) {
                    return;
                }
            }
            // Re-checked now and then: a notification between the check and the wait is not
            // lost (`notified` was created before the check), but a stuck session might be.
            let _ = tokio::time::timeout(std::time::Duration::from_secs(1), room).await;
        }
    }

    /// Lines waiting for the server (sent or not).
    pub fn buffered(&self) -> usize {
        self.lock().buffer.len()
    }

    /// Takes a line an instance wrote.
    fn take(&self, instance: Uuid, out: OutputLine) {
        let mut shared = self.lock();
        let latest = shared
            .latest
            .entry((instance, out.stream))
            .or_insert(out.ts - MOMENT);
        if out.ts <= *latest {
            return; // read already
        }
        *latest = out.ts;
        let read = shared.read.get(&instance).copied();
        let seq = read.map_or(1, |r| r.seq + 1);
        let ts = read.map_or(out.ts, |r| r.ts.max(out.ts));
        shared.read.insert(instance, LogCursor { seq, ts });
        shared.buffer.push(ShippedLine {
            instance,
            seq,
            ts: out.ts,
            stream: out.stream,
            line: cut_line(out.text),
        });
        // The connection can send only with room in flight; without it, the next
        // acknowledgement wakes it. (Waking it for every line read cost more CPU than reading.)
        let can_send = shared.buffer.room_in_flight();
        drop(shared);
        if can_send {
            self.wake.notify_one();
        }
    }

    /// Where a follower of `instance` starts: the latest stamp read, if any (the engine is
    /// asked from its second on; [`Self::take`] skips what was read).
    fn last_read(&self, instance: Uuid) -> Option<OffsetDateTime> {
        self.lock().read.get(&instance).map(|r| r.ts)
    }
}

/// Less than any two lines' stamps apart.
const MOMENT: time::Duration = time::Duration::nanoseconds(1);

/// One follower per container: started when the container is seen, again when it was
/// restarted (a new start time) or its stream broke while it runs.
struct Follower {
    started_at: Option<OffsetDateTime>,
    task: JoinHandle<()>,
}

/// Whether a container needs a (new) follower. Pure.
fn needs_follower(
    container: &ContainerInfo,
    current: Option<(Option<OffsetDateTime>, bool)>,
) -> bool {
    match current {
        None => true,
        Some((_, running_task)) if running_task => false,
        Some((started_at, _)) => {
            started_at != container.started_at || container.status == ContainerStatus::Running
        }
    }
}

/// Follows the output of every container of the node as `containers` reports them (the
/// converger's view), once the server's cursors are known. Runs until dropped.
pub async fn follow_containers<R: ContainerRuntime>(
    runtime: Arc<R>,
    shipper: LogShipper,
    mut containers: watch::Receiver<Vec<ContainerInfo>>,
) {
    let mut cursors = shipper.cursors.subscribe();
    if cursors.wait_for(|known| *known).await.is_err() {
        return;
    }
    let mut followers: HashMap<String, Follower> = HashMap::new();
    // Also look again every few seconds: a stream that broke while the container runs.
    let mut retry = tokio::time::interval(std::time::Duration::from_secs(2));
    loop {
        let seen = containers.borrow_and_update().clone();
        followers.retain(|id, f| {
            let present = seen.iter().any(|c| &c.id == id);
            if !present {
                f.task.abort();
            }
            present || !f.task.is_finished()
        });
        for c in &seen {
            let Some(instance) = plan::instance_of(c) else {
                continue;
            };
            let current = followers
                .get(&c.id)
                .map(|f| (f.started_at, !f.task.is_finished()));
            if !needs_follower(c, current) {
                continue;
            }
            let runtime = runtime.clone();
            let shipper = shipper.clone();
            let id = c.id.clone();
            let task = tokio::spawn(async move {
                let since = shipper
                    .last_read(instance)
                    .map_or(0, OffsetDateTime::unix_timestamp);
                let mut output = runtime.follow_output(&id, since);
                while let Some(line) = output.next().await {
                    match line {
                        Ok(line) => {
                            shipper.wait_for_room().await;
                            shipper.take(instance, line);
                        }
                        Err(e) => {
                            tracing::debug!(instance.id = %instance, "log stream of {id} ended: {e}");
                            break;
                        }
                    }
                }
            });
            followers.insert(
                c.id.clone(),
                Follower {
                    started_at: c.started_at,
                    task,
                },
            );
        }
        tokio::select! {
            changed = containers.changed() => if changed.is_err() { break },
            _ = retry.tick() => {}
        }
    }
    for f in followers.into_values() {
        f.task.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(instance: Uuid, seq: u64, text: &str) -> ShippedLine {
        ShippedLine {
            instance,
            seq,
            ts: OffsetDateTime::UNIX_EPOCH + time::Duration::seconds(seq as i64),
            stream: LogStream::Stdout,
            line: text.to_owned(),
        }
    }

    fn held(pairs: &[(Uuid, u64)]) -> BTreeMap<Uuid, LogCursor> {
        pairs
            .iter()
            .map(|&(i, seq)| {
                (
                    i,
                    LogCursor {
                        seq,
                        ts: OffsetDateTime::UNIX_EPOCH,
                    },
                )
            })
            .collect()
    }

    #[test]
    fn batches_go_out_in_order_and_leave_once_acknowledged() {
        let a = Uuid::from_u128(1);
        let mut buf = LogBuffer::new(1 << 20);
        for seq in 1..=3 {
            buf.push(line(a, seq, "x"));
        }
        let first = buf.next_batch().unwrap();
        assert_eq!(
            first.lines.iter().map(|l| l.seq).collect::<Vec<_>>(),
            [1, 2, 3]
        );
        assert!(buf.next_batch().is_none(), "nothing new to send");
        buf.push(line(a, 4, "y"));
        let second = buf.next_batch().unwrap();
        assert_eq!(second.lines.len(), 1);
        buf.push(line(a, 5, "z"));
        assert!(buf.next_batch().is_none(), "two batches in flight at most");
        buf.ack(&held(&[(a, 3)]));
        assert_eq!(buf.len(), 2);
        assert_eq!(buf.next_batch().unwrap().lines[0].seq, 5);
    }

    #[test]
    fn a_batch_holds_at_most_its_lines_and_its_bytes() {
        let a = Uuid::from_u128(1);
        let mut buf = LogBuffer::new(64 << 20);
        for seq in 1..=(MAX_LOG_BATCH_LINES as u64 + 5) {
            buf.push(line(a, seq, "short"));
        }
        assert_eq!(buf.next_batch().unwrap().lines.len(), MAX_LOG_BATCH_LINES);
        assert_eq!(buf.next_batch().unwrap().lines.len(), 5);

        let mut buf = LogBuffer::new(64 << 20);
        let long = "x".repeat(MAX_LOG_LINE_BYTES);
        let fit = MAX_LOG_BATCH_BYTES / MAX_LOG_LINE_BYTES;
        for seq in 1..=(fit as u64 + 3) {
            buf.push(line(a, seq, &long));
        }
        assert_eq!(buf.next_batch().unwrap().lines.len(), fit);
        assert_eq!(buf.next_batch().unwrap().lines.len(), 3);
    }

    #[test]
    fn a_reconnect_sends_everything_unacknowledged_again() {
        let a = Uuid::from_u128(1);
        let b = Uuid::from_u128(2);
        let mut buf = LogBuffer::new(1 << 20);
        buf.push(line(a, 1, "a1"));
        buf.push(line(b, 1, "b1"));
        buf.push(line(a, 2, "a2"));
        let sent = buf.next_batch().unwrap();
        assert_eq!(sent.lines.len(), 3);
        buf.rewind();
        let again = buf.next_batch().unwrap();
        assert!(!buf.full());
        assert_eq!(again.lines, sent.lines);
        // The server holds a1 only: the front goes, b1 (unacknowledged) stops the sweep.
        buf.ack(&held(&[(a, 1)]));
        assert_eq!(buf.len(), 2);
    }

    #[test]
    fn full_means_the_next_line_might_not_fit_so_a_waiting_reader_never_evicts() {
        let a = Uuid::from_u128(1);
        let cap = 4 * (MAX_LOG_LINE_BYTES + LINE_OVERHEAD);
        let mut buf = LogBuffer::new(cap);
        let long = "x".repeat(MAX_LOG_LINE_BYTES);
        let mut seq = 0;
        // A reader that waits for room while `full()`: it never makes the buffer drop a line.
        while !buf.full() {
            seq += 1;
            buf.push(line(a, seq, &long));
        }
        assert_eq!(
            buf.len(),
            4,
            "exactly as many longest lines as the cap holds"
        );
        assert!(buf.dropped.is_empty(), "nothing dropped: {:?}", buf.dropped);
    }

    #[test]
    fn a_full_buffer_drops_the_oldest_and_counts_them_per_instance() {
        let a = Uuid::from_u128(1);
        let b = Uuid::from_u128(2);
        let one = cost(&line(a, 1, "0123456789"));
        let mut buf = LogBuffer::new(one * 3);
        buf.push(line(a, 1, "0123456789"));
        buf.push(line(b, 1, "0123456789"));
        let sent = buf.next_batch().unwrap();
        assert_eq!(sent.lines.len(), 2);
        buf.push(line(a, 2, "0123456789"));
        buf.push(line(a, 3, "0123456789"));
        buf.push(line(a, 4, "0123456789"));
        assert_eq!(buf.len(), 3);
        buf.rewind();
        let batch = buf.next_batch().unwrap();
        assert_eq!(
            batch
                .lines
                .iter()
                .map(|l| (l.instance, l.seq))
                .collect::<Vec<_>>(),
            [(a, 2), (a, 3), (a, 4)]
        );
        assert_eq!(batch.dropped, BTreeMap::from([(a, 1), (b, 1)]));
        // Counted once.
        buf.rewind();
        assert!(buf.next_batch().unwrap().dropped.is_empty());
    }

    #[test]
    fn lines_are_numbered_per_instance_and_rereads_are_skipped() {
        let shipper = LogShipper::new(1 << 20);
        let a = Uuid::from_u128(1);
        let at = |s: i64| OffsetDateTime::UNIX_EPOCH + time::Duration::seconds(s);
        shipper.set_cursors(BTreeMap::from([(
            a,
            LogCursor {
                seq: 7,
                ts: at(100),
            },
        )]));
        assert_eq!(shipper.last_read(a), Some(at(100)));
        for (ts, text) in [
            (99, "old"),
            (100, "same second, read"),
            (101, "new"),
            (102, "newer"),
        ] {
            shipper.take(
                a,
                OutputLine {
                    stream: LogStream::Stderr,
                    ts: at(ts),
                    text: text.into(),
                },
            );
        }
        let batch = shipper.next_batch().unwrap();
        assert_eq!(
            batch
                .lines
                .iter()
                .map(|l| (l.seq, l.line.as_str()))
                .collect::<Vec<_>>(),
            [(8, "new"), (9, "newer")]
        );
        // A server that restarted and knows less does not move reading back.
        shipper.set_cursors(BTreeMap::from([(
            a,
            LogCursor {
                seq: 7,
                ts: at(100),
            },
        )]));
        assert_eq!(shipper.last_read(a), Some(at(102)));
    }

    #[test]
    fn the_connection_is_woken_for_a_line_only_when_a_batch_can_go_out() {
        use futures_util::FutureExt;
        let shipper = LogShipper::new(1 << 20);
        let a = Uuid::from_u128(1);
        // Whether the connection task would wake now (consumes the wake-up).
        let woken = |s: &LogShipper| s.wake.notified().now_or_never().is_some();
        let read = |s: &LogShipper, n: i64| {
            s.take(
                a,
                OutputLine {
                    stream: LogStream::Stdout,
                    ts: OffsetDateTime::UNIX_EPOCH + time::Duration::seconds(n),
                    text: format!("line {n}"),
                },
            )
        };
        shipper.connected();
        assert!(woken(&shipper), "a new session sends what is waiting");
        for n in 1..=MAX_BATCHES_IN_FLIGHT as i64 {
            read(&shipper, n);
            assert!(woken(&shipper), "room in flight: line {n} wakes it");
            assert!(shipper.next_batch().is_some());
        }
        read(&shipper, 100);
        assert!(
            !woken(&shipper),
            "no room in flight: nothing to do until an ack"
        );
        shipper.ack(&held(&[(a, 1)]));
        assert!(
            woken(&shipper),
            "the acknowledgement opens room and wakes it"
        );
        assert_eq!(shipper.next_batch().unwrap().lines.len(), 1);
    }

    #[test]
    fn lines_the_engine_repeats_are_read_once_per_stream() {
        let shipper = LogShipper::new(1 << 20);
        let a = Uuid::from_u128(1);
        let at = |ms: i64| OffsetDateTime::UNIX_EPOCH + time::Duration::milliseconds(ms);
        let out = |stream, ms, text: &str| OutputLine {
            stream,
            ts: at(ms),
            text: text.into(),
        };
        use LogStream::{Stderr, Stdout};
        // A rotation under a slow reader repeats 2 and 3; stderr's stamps interleave with
        // stdout's and count on their own.
        for line in [
            out(Stdout, 10, "1"),
            out(Stdout, 20, "2"),
            out(Stderr, 15, "e1"),
            out(Stdout, 30, "3"),
            out(Stdout, 20, "2"),
            out(Stdout, 30, "3"),
            out(Stdout, 40, "4"),
            out(Stderr, 15, "e1"),
            out(Stderr, 35, "e2"),
        ] {
            shipper.take(a, line);
        }
        let batch = shipper.next_batch().unwrap();
        let lines: Vec<&str> = batch.lines.iter().map(|l| l.line.as_str()).collect();
        assert_eq!(lines, ["1", "2", "e1", "3", "4", "e2"]);
        let seqs: Vec<u64> = batch.lines.iter().map(|l| l.seq).collect();
        assert_eq!(seqs, [1, 2, 3, 4, 5, 6]);
    }

    #[test]
    fn long_lines_are_cut_at_a_character_boundary() {
        let long = "é".repeat(MAX_LOG_LINE_BYTES);
        let cut = cut_line(long);
        assert!(cut.len() <= MAX_LOG_LINE_BYTES && cut.len() >= MAX_LOG_LINE_BYTES - 1);
        assert!(cut.chars().all(|c| c == 'é'));
    }

    #[test]
    fn followers_start_for_new_restarted_or_broken_streams_only() {
        let at = |s: i64| Some(OffsetDateTime::UNIX_EPOCH + time::Duration::seconds(s));
        let container = |status, started_at| ContainerInfo {
            id: "c1".into(),
            name: "gantry-x".into(),
            labels: BTreeMap::new(),
            status,
            host_port: None,
            started_at,
            image_id: None,
        };
        let running = container(ContainerStatus::Running, at(1));
        let exited = container(ContainerStatus::Exited { code: 1 }, at(1));
        assert!(needs_follower(&running, None));
        assert!(
            needs_follower(&exited, None),
            "an exited container's last words"
        );
        assert!(!needs_follower(&running, Some((at(1), true))));
        assert!(
            !needs_follower(&exited, Some((at(1), false))),
            "read to its end"
        );
        assert!(
            needs_follower(&running, Some((at(1), false))),
            "a broken stream"
        );
        let restarted = container(ContainerStatus::Running, at(5));
        assert!(needs_follower(&restarted, Some((at(1), false))));
    }
}
