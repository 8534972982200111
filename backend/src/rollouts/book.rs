//! What the rollout controller keeps in memory between passes: samples of the router's
//! counters for the release sets under canary analysis (the sliding windows), and, for the
//! API, the latest analysis figures and what each rollout waits for.
//!
//! None of it needs to survive a restart: a window refills within its length, and the rest is
//! recomputed on the next pass.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use gantry_common::releases::{AnalysisFigures, WindowFigures};
use gantry_orchestrator::rollout::analysis::{figures, Sample};
use uuid::Uuid;

#[derive(Default)]
pub struct Book {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    /// Per (app, release version): samples, oldest first.
    samples: HashMap<(Uuid, u32), VecDeque<(Instant, Sample)>>,
    /// Per release id.
    figures: HashMap<Uuid, AnalysisFigures>,
    waiting: HashMap<Uuid, String>,
}

impl Book {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds `sample` of a set (when the router has the set) and returns the set's figures over
    /// the last `window`: from the newest sample at least `window` old (or the oldest there is,
    /// while the window fills) to this one.
    pub fn window(
        &self,
        set: (Uuid, u32),
        sample: Option<Sample>,
        window: Duration,
        now: Instant,
    ) -> WindowFigures {
        let mut inner = self.lock();
        let samples = inner.samples.entry(set).or_default();
        if let Some(sample) = sample {
            samples.push_back((now, sample));
        }
        let edge = now.checked_sub(window).unwrap_or(now);
        while samples.len() > 2 && samples[1].0 <= edge {
            samples.pop_front();
        }
        match (samples.front(), samples.back()) {
            (Some((_, oldest)), Some((_, newest))) => figures(oldest, newest),
            _ => WindowFigures::default(),
        }
    }

    /// Forgets the samples of every set not in `watched`.
    pub fn retain(&self, watched: &HashSet<(Uuid, u32)>) {
        self.lock().samples.retain(|set, _| watched.contains(set));
    }

    /// Replaces what the rollouts wait for and their analysis figures with this pass's.
    pub fn publish(&self, waiting: HashMap<Uuid, String>, figures: HashMap<Uuid, AnalysisFigures>) {
        let mut inner = self.lock();
        inner.waiting = waiting;
        // An ended rollout keeps its last figures (they show why it was aborted).
        inner.figures.extend(figures);
        if inner.figures.len() > 1_000 {
            inner.figures.clear();
        }
    }

    pub fn waiting(&self, release: Uuid) -> Option<String> {
        self.lock().waiting.get(&release).cloned()
    }

    pub fn figures(&self, release: Uuid) -> Option<AnalysisFigures> {
        self.lock().figures.get(&release).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(requests: u64) -> Option<Sample> {
        Some(Sample {
            requests,
            server_errors: 0,
            buckets: vec![requests; 15],
        })
    }

    #[test]
    fn the_window_slides_over_the_samples() {
        let book = Book::default();
        let set = (Uuid::nil(), 2);
        let t0 = Instant::now();
        let w = Duration::from_secs(10);
        let at = |s: u64| t0 + Duration::from_secs(s);
        assert_eq!(book.window(set, sample(0), w, at(0)).requests, 0);
        assert_eq!(book.window(set, sample(50), w, at(5)).requests, 50);
        assert_eq!(book.window(set, sample(100), w, at(10)).requests, 100);
        // 15 s: the base is the sample of 5 s (the newest at least 10 s old).
        assert_eq!(book.window(set, sample(120), w, at(15)).requests, 70);
        assert_eq!(book.window(set, sample(120), w, at(30)).requests, 0);
        // No sample this time (the set left the table): the window still answers.
        assert_eq!(book.window(set, None, w, at(31)).requests, 0);
        book.retain(&HashSet::new());
        assert_eq!(book.window(set, None, w, at(32)), WindowFigures::default());
    }
}
