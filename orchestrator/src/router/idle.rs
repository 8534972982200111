//! The idle clock of one downstream connection, behind `client_idle_timeout`.
//!
//! The timeout bounds the time from the end of one response (or from the accept) to the end of
//! the next request head, which covers both a kept-alive connection with nothing to say and a
//! client that sends its head too slowly; it does not run while a request is served, so slow
//! upstreams and long bodies are not cut. hyper's `header_read_timeout` bounds exactly that, but
//! it allocates a boxed timer and registers it with tokio's timer wheel for every request head,
//! then drops it. Here each connection has one timer, re-armed only when it fires; requests
//! only mark the clock busy when they start and idle when their response ends (two relaxed
//! stores and the time the response path reads anyway).
//!
//! The connection's task also waits for shutdown; [`Gated`] keeps both waits from being polled
//! every time a request wakes the task.
//!
//! Times are `std` instants, as the rest of the request path reads them; the connection's
//! `tokio::time::Sleep` takes them through `tokio::time::Instant::from_std`.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed, Ordering::SeqCst};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};

use futures_util::task::AtomicWaker;

/// `idle_since` while a request is being served.
const BUSY: u64 = u64::MAX;

#[derive(Debug)]
pub(crate) struct IdleClock {
    epoch: Instant,
    /// Nanoseconds from `epoch` to the end of the last response (0 before the first request),
    /// or [`BUSY`].
    idle_since: AtomicU64,
}

impl IdleClock {
    /// A clock for a connection accepted at `epoch`: idle from then on.
    pub(crate) fn new(epoch: Instant) -> Self {
        Self {
            epoch,
            idle_since: AtomicU64::new(0),
        }
    }

    /// A request head was read: the connection is busy until its response ends.
    pub(crate) fn busy(&self) {
        self.idle_since.store(BUSY, Relaxed);
    }

    /// A response ended at `now`: the connection waits for its next request from then on.
    pub(crate) fn idle(&self, now: Instant) {
        let since = now.saturating_duration_since(self.epoch).as_nanos();
        self.idle_since
            .store(u64::try_from(since).unwrap_or(BUSY - 1), Relaxed);
    }

    /// When the connection is to be closed unless a request arrives before; `None` while a
    /// request is being served.
    pub(crate) fn deadline(&self, timeout: Duration) -> Option<Instant> {
        match self.idle_since.load(Relaxed) {
            BUSY => None,
            since => Some(self.epoch + Duration::from_nanos(since) + timeout),
        }
    }

    /// What the connection's timer does when it fires at `now`.
    pub(crate) fn on_timer(&self, now: Instant, timeout: Duration) -> Timer {
        match self.deadline(timeout) {
            Some(deadline) if deadline <= now => Timer::Expired,
            Some(deadline) => Timer::RearmAt(deadline),
            // Looked at again a whole timeout later: the request may take long, and once it
            // ends, its connection gets the whole timeout anyway.
            None => Timer::RearmAt(now + timeout),
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Timer {
    /// Idle for the whole timeout: close the connection.
    Expired,
    RearmAt(Instant),
}

/// A future that is polled only when its own wakers fired, however often the task it runs in
/// wakes up. A connection's task wakes a few times per request; `tokio::select!` would poll the
/// shutdown signal and the idle timer each time (a lock and a registration for the signal,
/// a timer state check), when they only change once a minute or once a life.
pub(crate) struct Gated<F> {
    inner: Pin<Box<F>>,
    gate: Arc<Gate>,
    /// The waker handed to `inner`: wakes `gate`.
    waker: Waker,
}

struct Gate {
    /// Set when `inner` was woken (and at first, so that it is polled once to register).
    woken: AtomicBool,
    /// The task to wake then.
    task: AtomicWaker,
}

impl Wake for Gate {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.store(true, SeqCst);
        self.task.wake();
    }
}

impl<F: Future> Gated<F> {
    pub(crate) fn new(inner: F) -> Self {
        let gate = Arc::new(Gate {
            woken: AtomicBool::new(true),
            task: AtomicWaker::new(),
        });
        Self {
            inner: Box::pin(inner),
            waker: Waker::from(gate.clone()),
            gate,
        }
    }
}

impl<F: Future> Future for Gated<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.get_mut();
        // Registered before the flag is read, so a wake-up in between is not lost.
        this.gate.task.register(cx.waker());
        if !this.gate.woken.swap(false, SeqCst) {
            return Poll::Pending;
        }
        this.inner
            .as_mut()
            .poll(&mut Context::from_waker(&this.waker))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Duration = Duration::from_secs(60);

    #[test]
    fn a_new_connection_gets_the_timeout_from_its_accept() {
        let t0 = Instant::now();
        let clock = IdleClock::new(t0);
        assert_eq!(clock.deadline(T), Some(t0 + T));
        assert_eq!(clock.on_timer(t0 + T, T), Timer::Expired);
        assert_eq!(
            clock.on_timer(t0 + T / 2, T),
            Timer::RearmAt(t0 + T),
            "a timer that fires early is moved to the deadline"
        );
    }

    #[test]
    fn a_busy_connection_never_expires_and_an_ended_response_restarts_the_timeout() {
        let t0 = Instant::now();
        let clock = IdleClock::new(t0);
        clock.busy();
        assert_eq!(clock.deadline(T), None);
        // A request that outlives the timeout is not cut.
        let late = t0 + 3 * T;
        assert_eq!(clock.on_timer(late, T), Timer::RearmAt(late + T));

        let ended = t0 + Duration::from_millis(3_500);
        clock.idle(ended);
        assert_eq!(clock.deadline(T), Some(ended + T));
        assert_eq!(clock.on_timer(t0 + T, T), Timer::RearmAt(ended + T));
        assert_eq!(clock.on_timer(ended + T, T), Timer::Expired);
    }

    #[test]
    fn a_gated_future_is_polled_only_when_its_own_waker_fires() {
        use std::sync::atomic::AtomicUsize;
        use std::sync::Mutex;

        let polls = Arc::new(AtomicUsize::new(0));
        let registered: Arc<Mutex<Option<Waker>>> = Arc::default();
        let done = Arc::new(AtomicBool::new(false));
        let inner = {
            let (polls, registered, done) = (polls.clone(), registered.clone(), done.clone());
            std::future::poll_fn(move |cx| {
                polls.fetch_add(1, SeqCst);
                *registered.lock().unwrap() = Some(cx.waker().clone());
                match done.load(SeqCst) {
                    true => Poll::Ready("done"),
                    false => Poll::Pending,
                }
            })
        };
        let mut gated = Gated::new(inner);
        let mut cx = Context::from_waker(Waker::noop());
        let mut poll = || Pin::new(&mut gated).poll(&mut cx);

        assert_eq!(poll(), Poll::Pending);
        assert_eq!(polls.load(SeqCst), 1, "polled at first, to register");
        for _ in 0..3 {
            assert_eq!(poll(), Poll::Pending);
        }
        assert_eq!(
            polls.load(SeqCst),
            1,
            "the task's other wake-ups do not reach it"
        );

        registered.lock().unwrap().take().unwrap().wake();
        assert_eq!(poll(), Poll::Pending);
        assert_eq!(polls.load(SeqCst), 2);

        done.store(true, SeqCst);
        registered.lock().unwrap().take().unwrap().wake();
        assert_eq!(poll(), Poll::Ready("done"));
    }
}
