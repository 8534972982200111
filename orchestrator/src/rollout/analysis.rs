//! Canary analysis: the router's counters of one release set, sampled over time, give its
//! figures over a sliding window; the figures are judged against the strategy's absolute
//! thresholds.

use gantry_common::releases::{Analysis, WindowFigures};

use crate::router::quantile_ms;

/// The router's cumulative counters of one release set at one moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sample {
    pub requests: u64,
    pub server_errors: u64,
    /// Cumulative latency bucket counts, as the router lists them.
    pub buckets: Vec<u64>,
}

/// What the analysis says now.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// Too few requests in the window for a verdict.
    Waiting(String),
    Ok,
    /// A threshold is crossed: why, with the figures.
    Breach(String),
}

impl Verdict {
    pub fn text(&self) -> String {
        match self {
            Verdict::Waiting(why) => why.clone(),
            Verdict::Ok => "ok".into(),
            Verdict::Breach(why) => why.clone(),
        }
    }
}

/// The figures between two samples of the same set (`older` taken first). Counters that went
/// backwards (the set left the table and came back) count from zero.
pub fn figures(older: &Sample, newer: &Sample) -> WindowFigures {
    let (base, base_errors, base_buckets) = if newer.requests >= older.requests {
        (older.requests, older.server_errors, &older.buckets)
    } else {
        (0, 0, &Vec::new())
    };
    let requests = newer.requests - base;
    let errors = newer.server_errors.saturating_sub(base_errors);
    let buckets: Vec<u64> = newer
        .buckets
        .iter()
        .enumerate()
        .map(|(i, &n)| n.saturating_sub(base_buckets.get(i).copied().unwrap_or(0)))
        .collect();
    WindowFigures {
        requests,
        error_percent: (requests > 0).then(|| errors as f64 * 100.0 / requests as f64),
        p99_ms: if requests > 0 {
            quantile_ms(&buckets, 0.99)
        } else {
            None
        },
    }
}

/// Judges the canary's figures over the window.
///
/// # Guarantees
/// No verdict (`Waiting`) below `min_requests`; a threshold is breached only when strictly
/// exceeded.
pub fn judge(analysis: &Analysis, canary: &WindowFigures) -> Verdict {
    let window = analysis.window_seconds;
    if canary.requests < u64::from(analysis.min_requests) {
        return Verdict::Waiting(format!(
            "waiting for {} canary requests in {window} s ({} so far)",
            analysis.min_requests, canary.requests
        ));
    }
    if let (Some(max), Some(share)) = (analysis.max_error_percent, canary.error_percent) {
        if share > max {
            return Verdict::Breach(format!(
                "canary 5xx {} % > {} % over last {window} s, {} requests",
                round(share),
                round(max),
                canary.requests
            ));
        }
    }
    if let (Some(max), Some(p99)) = (analysis.max_p99_ms, canary.p99_ms) {
        if p99 > f64::from(max) {
            return Verdict::Breach(format!(
                "canary p99 {} ms > {max} ms over last {window} s, {} requests",
                round(p99),
                canary.requests
            ));
        }
    }
    Verdict::Ok
}

/// Whole numbers as such, others to one decimal: `48`, `2.5`.
fn round(x: f64) -> String {
    let r = (x * 10.0).round() / 10.0;
    if r.fract() == 0.0 {
        format!("{r:.0}")
    } else {
        format!("{r:.1}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::router::BOUNDS_US;

    fn sample(requests: u64, errors: u64, fast: u64) -> Sample {
        // `fast` requests under 5 ms, the rest around 1 s.
        let mut buckets = vec![0; BOUNDS_US.len() + 1];
        for (i, b) in buckets.iter_mut().enumerate() {
            let bound = BOUNDS_US.get(i).copied().unwrap_or(u64::MAX);
            *b = if bound >= 1_000_000 {
                requests
            } else if bound >= 5_000 {
                fast
            } else {
                0
            };
        }
        Sample {
            requests,
            server_errors: errors,
            buckets,
        }
    }

    fn analysis() -> Analysis {
        Analysis {
            max_error_percent: Some(5.0),
            max_p99_ms: Some(500),
            window_seconds: 10,
            min_requests: 20,
        }
    }

    #[test]
    fn figures_are_the_difference_of_two_samples() {
        let f = figures(&sample(100, 10, 100), &sample(312, 112, 312));
        assert_eq!(f.requests, 212);
        assert!((f.error_percent.unwrap() - 48.1).abs() < 0.1);
        assert!(f.p99_ms.unwrap() <= 5.0);
        let none = figures(&sample(5, 0, 5), &sample(5, 0, 5));
        assert_eq!(
            (none.requests, none.error_percent, none.p99_ms),
            (0, None, None)
        );
        // Counters that restarted count from zero.
        assert_eq!(figures(&sample(50, 0, 50), &sample(7, 0, 7)).requests, 7);
    }

    #[test]
    fn the_verdict_waits_for_enough_requests_then_judges_each_threshold() {
        let a = analysis();
        let f = |requests, errors, fast| figures(&sample(0, 0, 0), &sample(requests, errors, fast));
        assert_eq!(
            judge(&a, &f(19, 19, 19)),
            Verdict::Waiting("waiting for 20 canary requests in 10 s (19 so far)".into())
        );
        assert_eq!(judge(&a, &f(212, 0, 212)), Verdict::Ok);
        assert_eq!(
            judge(&a, &f(212, 102, 212)),
            Verdict::Breach("canary 5xx 48.1 % > 5 % over last 10 s, 212 requests".into())
        );
        // Exactly at the threshold is not a breach.
        assert_eq!(judge(&a, &f(100, 5, 100)), Verdict::Ok);
        let slow = judge(&a, &f(100, 0, 90));
        assert!(
            matches!(&slow, Verdict::Breach(why) if why.starts_with("canary p99 ") && why.contains("> 500 ms")),
            "{slow:?}"
        );
        let errors_only = Analysis {
            max_p99_ms: None,
            ..a
        };
        assert_eq!(judge(&errors_only, &f(100, 0, 90)), Verdict::Ok);
    }
}
