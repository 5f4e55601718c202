//! Latency percentiles, one definition for the simulator, replay and the
//! benchmarks: an HDR histogram of microseconds (3 significant digits, so
//! every quantile is within 0.1 % of the true value) in fixed memory however
//! long the run, with the exact maximum kept beside it.

use std::time::Duration;

use hdrhistogram::Histogram;

/// Highest latency the histogram resolves (an hour); longer ones count as
/// an hour in the quantiles and exactly in the maximum.
const HIGHEST_MICROS: u64 = 3_600_000_000;

/// Latencies recorded so far.
#[derive(Clone, Debug)]
pub struct Latencies {
    micros: Histogram<u64>,
    max: Duration,
}

impl Default for Latencies {
    fn default() -> Latencies {
        Latencies {
            micros: Histogram::new_with_bounds(1, HIGHEST_MICROS, 3)
                .expect("static histogram bounds"),
            max: Duration::ZERO,
        }
    }
}

/// p50, p99 and the maximum of a set of latencies.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Latency {
    pub p50: Duration,
    pub p99: Duration,
    pub max: Duration,
}

impl Latencies {
    /// Records one latency.
    pub fn record(&mut self, latency: Duration) {
        self.max = self.max.max(latency);
        let micros = (latency.as_micros() as u64).clamp(1, HIGHEST_MICROS);
        self.micros.saturating_record(micros);
    }

    /// Adds every latency of `other`.
    pub fn merge(&mut self, other: &Latencies) {
        self.max = self.max.max(other.max);
        // Same bounds on both sides: adding cannot fail.
        let _ = self.micros.add(&other.micros);
    }

    /// How many were recorded.
    pub fn count(&self) -> u64 {
        self.micros.len()
    }

    /// The latency at quantile `q` (0.0 to 1.0). The histogram answers
    /// with the top of a value's bucket, which can lie just above the
    /// largest latency recorded: never more than the exact maximum.
    pub fn quantile(&self, q: f64) -> Duration {
        Duration::from_micros(self.micros.value_at_quantile(q)).min(self.max)
    }

    /// p50, p99 and the exact maximum; None when nothing was recorded.
    pub fn summary(&self) -> Option<Latency> {
        (self.count() > 0).then(|| Latency {
            p50: self.quantile(0.50),
            p99: self.quantile(0.99),
            max: self.max,
        })
    }
}

impl FromIterator<Duration> for Latencies {
    fn from_iter<I: IntoIterator<Item = Duration>>(iter: I) -> Latencies {
        let mut l = Latencies::default();
        for d in iter {
            l.record(d);
        }
        l
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_within_a_tenth_of_a_percent_and_the_exact_maximum() {
        let l: Latencies = (1..=200).rev().map(Duration::from_millis).collect();
        let close = |got: Duration, want_ms: u64| {
            let want = Duration::from_millis(want_ms).as_secs_f64();
            (got.as_secs_f64() - want).abs() <= want * 0.001
        };
        let s = l.summary().unwrap();
        assert!(close(s.p50, 100), "{:?}", s.p50);
        assert!(close(s.p99, 198), "{:?}", s.p99);
        assert_eq!(s.max, Duration::from_millis(200));
        let one: Latencies = [Duration::from_micros(7_777)].into_iter().collect();
        let s = one.summary().unwrap();
        assert_eq!((s.p50, s.p99), (s.max, s.max), "never above the maximum");
        assert_eq!(Latencies::default().summary(), None);
    }

    #[test]
    fn memory_is_fixed_and_merging_adds_counts() {
        let mut a = Latencies::default();
        let before = a.micros.distinct_values();
        for i in 0..2_000_000u64 {
            a.record(Duration::from_micros(i % 50_000));
        }
        assert_eq!(a.micros.distinct_values(), before);
        let mut b: Latencies = [Duration::from_secs(7200)].into_iter().collect();
        b.merge(&a);
        assert_eq!(b.count(), 2_000_001);
        assert_eq!(b.summary().unwrap().max, Duration::from_secs(7200));
    }
}
