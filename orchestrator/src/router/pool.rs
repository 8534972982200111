//! One upstream endpoint (a ready instance): its count of requests in flight and its pool of idle
//! keep-alive connections, on hyper's `client::conn::http1` directly.
//!
//! Why not hyper-util's legacy `Client`: it keys its pool by URI authority and hides when a
//! connection goes back to the pool, while the router needs per-instance state that survives
//! route-table swaps, an in-flight count the drain logic can trust, and `try_send_request` to
//! resend a request that a stale pooled connection handed back unsent.
//!
//! The pool is a LIFO stack behind a short `Mutex`: the most recently used connection is the
//! least likely to have been closed by the app, and since connections are pushed in the order
//! they became idle, the stack is sorted by idle time, so expiry is a prefix cut.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use hyper::body::Incoming;
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use uuid::Uuid;

/// The sending half of one upstream connection; the request body is the client's, streamed.
pub(crate) type Sender = SendRequest<Incoming>;

/// Idle connections kept per endpoint at most; more than this many idle at once means a burst
/// that has passed, and the extras would only hold the app's sockets open.
const MAX_IDLE: usize = 256;

/// A ready instance the router sends requests to.
#[derive(Debug)]
pub(crate) struct Upstream {
    pub(crate) instance: Uuid,
    pub(crate) addr: SocketAddr,
    in_flight: AtomicU32,
    /// Set once the instance left the route table: its connections are no longer kept, so a
    /// draining instance is left with no idle sockets from the router.
    retired: AtomicBool,
    idle: Mutex<Vec<Idle>>,
}

#[derive(Debug)]
struct Idle {
    sender: Sender,
    since: Instant,
}

/// Why no connection could be opened. Nothing was sent in either case, so the request may go
/// to another instance.
#[derive(Debug)]
pub(crate) enum ConnectError {
    /// Refused, unreachable, or the HTTP handshake failed.
    Failed(std::io::Error),
    TimedOut,
}

impl std::fmt::Display for ConnectError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConnectError::Failed(err) => write!(f, "connect failed: {err}"),
            ConnectError::TimedOut => f.write_str("connect timed out"),
        }
    }
}

impl Upstream {
    pub(crate) fn new(instance: Uuid, addr: SocketAddr) -> Self {
        Self {
            instance,
            addr,
            in_flight: AtomicU32::new(0),
            retired: AtomicBool::new(false),
            idle: Mutex::new(Vec::new()),
        }
    }

    pub(crate) fn in_flight(&self) -> u32 {
        self.in_flight.load(Ordering::SeqCst)
    }

    /// Counts a request as sent to this instance. `SeqCst` because the router pairs it with a
    /// `SeqCst` read of the table generation (see `Router::pick`), so that a drain that swapped
    /// the table and then reads `in_flight` either sees this request or makes it pick again.
    pub(crate) fn acquire(&self) {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
    }

    pub(crate) fn release(&self) {
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
    }

    pub(crate) fn is_retired(&self) -> bool {
        self.retired.load(Ordering::Relaxed)
    }

    /// Marks the instance as gone from (or back in) the table; retiring drops its idle
    /// connections at once.
    pub(crate) fn set_retired(&self, retired: bool) {
        self.retired.store(retired, Ordering::Relaxed);
        if retired {
            let idle = std::mem::take(&mut *self.lock());
            drop(idle);
        }
    }

    /// The most recently idled connection that is still open and younger than `max_idle`.
    pub(crate) fn take_idle(&self, now: Instant, max_idle: Duration) -> Option<Sender> {
        let mut idle = self.lock();
        while let Some(conn) = idle.pop() {
            if now.saturating_duration_since(conn.since) > max_idle {
                // The newest is too old, so all are.
                idle.clear();
                return None;
            }
            if !conn.sender.is_closed() {
                return Some(conn.sender);
            }
        }
        None
    }

    /// Returns a connection whose last response body was read to its end.
    pub(crate) fn put_idle(&self, sender: Sender, now: Instant, max_idle: Duration) {
        if sender.is_closed() || self.is_retired() {
            return;
        }
        let mut idle = self.lock();
        expire(&mut idle, now, max_idle);
        if idle.len() < MAX_IDLE {
            idle.push(Idle { sender, since: now });
        }
    }

    /// Drops connections idle for longer than `max_idle` or closed by the app, for endpoints
    /// that see no traffic to do it as a side effect.
    pub(crate) fn sweep(&self, now: Instant, max_idle: Duration) {
        let mut idle = self.lock();
        expire(&mut idle, now, max_idle);
        idle.retain(|conn| !conn.sender.is_closed());
    }

    #[cfg(test)]
    fn idle_count(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Idle>> {
        // The critical sections cannot panic half-way, so a poisoned lock holds a valid Vec.
        self.idle
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

fn expire(idle: &mut Vec<Idle>, now: Instant, max_idle: Duration) {
    // Runs on every `put_idle`: the usual answer, "the oldest is fresh, so all are", takes one
    // comparison instead of a binary search with a clock subtraction per step.
    let Some(cutoff) = now.checked_sub(max_idle) else {
        return;
    };
    if idle.first().is_none_or(|oldest| oldest.since >= cutoff) {
        return;
    }
    let stale = idle.partition_point(|conn| conn.since < cutoff);
    idle.drain(..stale);
}

/// Opens a new connection to `addr` (with `TCP_NODELAY`: requests and responses are small
/// writes that must not wait for an ACK) and spawns its connection task.
pub(crate) async fn connect(addr: SocketAddr, timeout: Duration) -> Result<Sender, ConnectError> {
    let stream = match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
        Ok(Ok(stream)) => stream,
        Ok(Err(err)) => return Err(ConnectError::Failed(err)),
        Err(_) => return Err(ConnectError::TimedOut),
    };
    stream.set_nodelay(true).map_err(ConnectError::Failed)?;
    let (sender, conn) = http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|err| ConnectError::Failed(std::io::Error::other(err)))?;
    tokio::spawn(async move {
        // Upgrades enabled on every connection: any request may turn out to be a websocket.
        if let Err(err) = conn.with_upgrades().await {
            tracing::debug!(upstream.addr = %addr, error = %err, "upstream connection ended with an error");
        }
    });
    Ok(sender)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn idle_connections_expire_and_closed_ones_are_skipped() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        // Accepts and holds connections open, never answering: only the pool is exercised.
        let held = tokio::spawn(async move {
            let mut conns = Vec::new();
            while let Ok((stream, _)) = listener.accept().await {
                conns.push(stream);
            }
        });
        let upstream = Upstream::new(Uuid::nil(), addr);
        let max_idle = Duration::from_secs(4);
        let t0 = Instant::now();
        let a = connect(addr, Duration::from_secs(5)).await.unwrap();
        let b = connect(addr, Duration::from_secs(5)).await.unwrap();
        upstream.put_idle(a, t0, max_idle);
        upstream.put_idle(b, t0 + Duration::from_secs(2), max_idle);
        assert_eq!(upstream.idle_count(), 2);

        // At t0+5 s the first is expired; sweeping drops it and keeps the second.
        upstream.sweep(t0 + Duration::from_secs(5), max_idle);
        assert_eq!(upstream.idle_count(), 1);
        assert!(upstream
            .take_idle(t0 + Duration::from_secs(5), max_idle)
            .is_some());
        assert!(upstream
            .take_idle(t0 + Duration::from_secs(5), max_idle)
            .is_none());

        // The newest being too old empties the whole stack.
        let c = connect(addr, Duration::from_secs(5)).await.unwrap();
        upstream.put_idle(c, t0, max_idle);
        assert!(upstream
            .take_idle(t0 + Duration::from_secs(10), max_idle)
            .is_none());
        assert_eq!(upstream.idle_count(), 0);

        // Retiring drops idle connections and refuses new ones.
        let d = connect(addr, Duration::from_secs(5)).await.unwrap();
        upstream.put_idle(d, t0, max_idle);
        upstream.set_retired(true);
        assert_eq!(upstream.idle_count(), 0);
        let e = connect(addr, Duration::from_secs(5)).await.unwrap();
        upstream.put_idle(e, t0, max_idle);
        assert_eq!(upstream.idle_count(), 0);
        held.abort();
    }

    #[tokio::test]
    async fn a_refused_connection_is_a_connect_failure() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let err = connect(addr, Duration::from_secs(5)).await.unwrap_err();
        assert!(matches!(err, ConnectError::Failed(_)), "{err:?}");
    }
}
