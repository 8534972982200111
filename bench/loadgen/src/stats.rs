//! Latency percentiles over a sorted list of samples.

/// Nearest-rank percentile of `sorted` (ascending), for `p` in `0.0..=100.0`.
///
/// Returns the smallest sample such that at least `p` percent of all samples are
/// less than or equal to it, or `None` when there are no samples.
pub fn percentile(sorted: &[u64], p: f64) -> Option<u64> {
    let n = sorted.len();
    if n == 0 {
        return None;
    }
    // The epsilon absorbs float noise such as 99.9 / 100 * 1000 = 999.0000000000001,
    // which would otherwise round the rank up by one.
    let rank = ((p / 100.0) * n as f64 - 1e-9).ceil() as usize;
    Some(sorted[rank.clamp(1, n) - 1])
}

#[cfg(test)]
mod tests {
    use super::percentile;

    #[test]
    fn empty_has_no_percentile() {
        assert_eq!(percentile(&[], 50.0), None);
    }

    #[test]
    fn single_sample_is_every_percentile() {
        for p in [0.0, 50.0, 99.9, 100.0] {
            assert_eq!(percentile(&[7], p), Some(7));
        }
    }

    #[test]
    fn nearest_rank_on_one_to_thousand() {
        let samples: Vec<u64> = (1..=1000).collect();
        assert_eq!(percentile(&samples, 0.0), Some(1));
        assert_eq!(percentile(&samples, 50.0), Some(500));
        assert_eq!(percentile(&samples, 90.0), Some(900));
        assert_eq!(percentile(&samples, 99.0), Some(990));
        assert_eq!(percentile(&samples, 99.9), Some(999));
        assert_eq!(percentile(&samples, 100.0), Some(1000));
    }

    #[test]
    fn nearest_rank_rounds_up() {
        // Classic example: p30 of five samples is the 2nd, p40 the 2nd, p50 the 3rd.
        let samples = [15, 20, 35, 40, 50];
        assert_eq!(percentile(&samples, 5.0), Some(15));
        assert_eq!(percentile(&samples, 30.0), Some(20));
        assert_eq!(percentile(&samples, 40.0), Some(20));
        assert_eq!(percentile(&samples, 50.0), Some(35));
        assert_eq!(percentile(&samples, 100.0), Some(50));
    }
}
