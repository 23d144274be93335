//! The CPU time the layer spends per present and acquire: a histogram
//! whose recording is one relaxed add, and the timer that feeds it.

use std::sync::atomic::{AtomicU64, Ordering};

use serde_json::{json, Value};

/// A log-linear histogram of nanoseconds: 8 buckets per power of two, so a
/// percentile read from it is within 1/8 of the true value. Recording is one
/// relaxed add.
pub struct Histogram {
    buckets: [AtomicU64; BUCKETS],
}

const SUB_BITS: u32 = 3;
const SUB: usize = 1 << SUB_BITS;
/// Powers of two up to 2^47 ns (39 hours).
const BUCKETS: usize = 48 * SUB;

impl Histogram {
    pub const fn new() -> Self {
        Self {
            buckets: [const { AtomicU64::new(0) }; BUCKETS],
        }
    }

    fn index(ns: u64) -> usize {
        if ns < SUB as u64 {
            return ns as usize;
        }
        let e = 63 - ns.leading_zeros();
        let sub = (ns >> (e - SUB_BITS)) as usize & (SUB - 1);
        ((e as usize) * SUB + sub).min(BUCKETS - 1)
    }

    /// The middle of bucket `i`, in ns.
    fn value(i: usize) -> u64 {
        if i < SUB {
            return i as u64;
        }
        let e = (i / SUB) as u32;
        let width = 1u64 << (e - SUB_BITS);
        (1u64 << e) + (i % SUB) as u64 * width + width / 2
    }

    #[inline(always)]
    pub fn record(&self, ns: u64) {
        self.buckets[Self::index(ns)].fetch_add(1, Ordering::Relaxed);
    }

    /// Its count, p50 and p99, as the statistics report them.
    pub fn summary(&self) -> Value {
        let counts: Vec<u64> = self
            .buckets
            .iter()
            .map(|b| b.load(Ordering::Relaxed))
            .collect();
        let total: u64 = counts.iter().sum();
        let percentile = |p: u64| -> u64 {
            if total == 0 {
                return 0;
            }
            // The smallest value with at least p% of the samples at or below it.
            let rank = (total * p).div_ceil(100).max(1);
            let mut seen = 0;
            for (i, c) in counts.iter().enumerate() {
                seen += c;
                if seen >= rank {
                    return Self::value(i);
                }
            }
            0
        };
        json!({ "count": total, "p50": percentile(50), "p99": percentile(99) })
    }
}

pub static PRESENT_CPU: Histogram = Histogram::new();

pub static ACQUIRE_CPU: Histogram = Histogram::new();

/// This thread's CPU time in ns. `CLOCK_THREAD_CPUTIME_ID` counts only the
/// time the thread ran, so waits inside the driver do not count.
#[inline(always)]
pub fn thread_cpu_ns() -> u64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    (t.tv_sec as u64)
        .wrapping_mul(1_000_000_000)
        .wrapping_add(t.tv_nsec as u64)
}

/// Measures the thread CPU time from its creation to its drop into a
/// histogram.
pub struct CpuTimer {
    start: u64,
    into: &'static Histogram,
}

impl CpuTimer {
    #[inline(always)]
    pub fn start(into: &'static Histogram) -> Self {
        Self {
            start: thread_cpu_ns(),
            into,
        }
    }
}

impl Drop for CpuTimer {
    #[inline(always)]
    fn drop(&mut self) {
        self.into.record(thread_cpu_ns().saturating_sub(self.start));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_within_an_eighth() {
        for ns in [
            0u64,
            1,
            7,
            8,
            9,
            15,
            16,
            100,
            1_000,
            12_345,
            999_999,
            1 << 40,
        ] {
            let v = Histogram::value(Histogram::index(ns));
            let err = v.abs_diff(ns);
            assert!(err * 8 <= ns.max(1), "{ns} -> {v}");
        }
    }

    #[test]
    fn percentiles() {
        let h = Histogram::new();
        for ns in 1..=100u64 {
            h.record(ns * 1000);
        }
        let s = h.summary();
        assert_eq!(s["count"], 100);
        let p50 = s["p50"].as_u64().unwrap();
        let p99 = s["p99"].as_u64().unwrap();
        assert!((44_000..=56_000).contains(&p50), "{s}");
        assert!((87_000..=112_000).contains(&p99), "{s}");
        assert_eq!(Histogram::new().summary()["p99"], 0);
    }
}
