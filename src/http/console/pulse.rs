//! The console's live figures: answers, degraded answers and events in the last
//! seconds, and answer latency percentiles, from a ring of per-second slots counted
//! with atomics (a request adds to its second's slot; no lock on the serving path).

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

/// Seconds the ring holds.
const SLOTS: usize = 64;
/// Latency buckets: bucket `b` holds latencies below `BASE_US * 2^(b/4)` µs (four a
/// doubling, from 10 µs to about 10 s).
const BUCKETS: usize = 80;
const BASE_US: f64 = 10.0;

struct Slot {
    second: AtomicI64,
    answers: AtomicU64,
    degraded: AtomicU64,
    events: AtomicU64,
    latency: [AtomicU64; BUCKETS],
}

impl Slot {
    fn new() -> Self {
        Self {
            second: AtomicI64::new(i64::MIN),
            answers: AtomicU64::new(0),
            degraded: AtomicU64::new(0),
            events: AtomicU64::new(0),
            latency: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }
}

pub struct Pulse {
    slots: Box<[Slot]>,
}

impl Default for Pulse {
    fn default() -> Self {
        Self {
            slots: (0..SLOTS).map(|_| Slot::new()).collect(),
        }
    }
}

/// The figures over a window.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct Figures {
    pub window_s: u64,
    pub answers_per_s: f64,
    pub events_per_s: f64,
    /// Degraded answers over answers (`None`: no answer in the window).
    pub degraded_share: Option<f64>,
    /// Answer latency percentiles, in milliseconds (the upper bound of their bucket:
    /// within 19% above the true figure).
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
}

fn bucket(us: u64) -> usize {
    let x = (us.max(1) as f64 / BASE_US).log2() * 4.0;
    if x <= 0.0 {
        0
    } else {
        (x.floor() as usize + 1).min(BUCKETS - 1)
    }
}

fn upper_ms(b: usize) -> f64 {
    BASE_US * 2f64.powf(b as f64 / 4.0) / 1000.0
}

impl Pulse {
    /// The slot of second `now`, emptied first if it last held an older second.
    fn slot(&self, now: i64) -> &Slot {
        let slot = &self.slots[now.rem_euclid(SLOTS as i64) as usize];
        let held = slot.second.load(Ordering::Acquire);
        if held != now
            && slot
                .second
                .compare_exchange(held, now, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        {
            slot.answers.store(0, Ordering::Relaxed);
            slot.degraded.store(0, Ordering::Relaxed);
            slot.events.store(0, Ordering::Relaxed);
            for b in &slot.latency {
                b.store(0, Ordering::Relaxed);
            }
        }
        slot
    }

    /// An answer at second `now` that took `us` microseconds.
    pub fn answer(&self, now: i64, us: u64, degraded: bool) {
        let slot = self.slot(now);
        slot.answers.fetch_add(1, Ordering::Relaxed);
        slot.degraded
            .fetch_add(u64::from(degraded), Ordering::Relaxed);
        slot.latency[bucket(us)].fetch_add(1, Ordering::Relaxed);
    }

    /// `n` events accepted at second `now`.
    pub fn events(&self, now: i64, n: u64) {
        self.slot(now).events.fetch_add(n, Ordering::Relaxed);
    }

    /// The figures over the `window_s` whole seconds before `now`.
    pub fn figures(&self, now: i64, window_s: u64) -> Figures {
        let window = window_s.clamp(1, SLOTS as u64 - 2);
        let (mut answers, mut degraded, mut events) = (0u64, 0u64, 0u64);
        let mut latency = [0u64; BUCKETS];
        for s in (now - window as i64)..now {
            let slot = &self.slots[s.rem_euclid(SLOTS as i64) as usize];
            if slot.second.load(Ordering::Acquire) != s {
                continue;
            }
            answers += slot.answers.load(Ordering::Relaxed);
            degraded += slot.degraded.load(Ordering::Relaxed);
            events += slot.events.load(Ordering::Relaxed);
            for (sum, b) in latency.iter_mut().zip(&slot.latency) {
                *sum += b.load(Ordering::Relaxed);
            }
        }
        let percentile = |q: f64| {
            let total: u64 = latency.iter().sum();
            if total == 0 {
                return None;
            }
            let rank = ((q * total as f64).ceil() as u64).max(1);
            let mut seen = 0;
            latency.iter().enumerate().find_map(|(b, n)| {
                seen += n;
                (seen >= rank).then(|| upper_ms(b))
            })
        };
        Figures {
            window_s: window,
            answers_per_s: answers as f64 / window as f64,
            events_per_s: events as f64 / window as f64,
            degraded_share: (answers > 0).then(|| degraded as f64 / answers as f64),
            p50_ms: percentile(0.5),
            p99_ms: percentile(0.99),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn figures_cover_the_whole_seconds_of_the_window() {
        let pulse = Pulse::default();
        for i in 0..100 {
            // 99 answers of about 1 ms, one of 50 ms, one degraded in ten.
            let us = if i == 0 { 50_000 } else { 1_000 };
            pulse.answer(1_000, us, i % 10 == 0);
        }
        pulse.events(1_001, 30);
        pulse.answer(1_002, 1_000, false); // the current second: not yet counted
        let f = pulse.figures(1_002, 10);
        assert_eq!(f.answers_per_s, 10.0);
        assert_eq!(f.events_per_s, 3.0);
        assert_eq!(f.degraded_share, Some(0.1));
        let p50 = f.p50_ms.unwrap();
        assert!((1.0..1.2).contains(&p50), "{p50}");
        let p99 = f.p99_ms.unwrap();
        assert!((1.0..1.2).contains(&p99), "{p99}");
        // The slowest answer is past the 99th percentile of 100 answers only at p100.
        assert!(upper_ms(bucket(50_000)) >= 50.0);
        // A slot reused a ring later holds only its new second.
        pulse.answer(1_000 + SLOTS as i64, 1_000, false);
        let later = pulse.figures(1_001 + SLOTS as i64, 1);
        assert_eq!(later.answers_per_s, 1.0);
        assert_eq!(
            pulse.figures(1_050, 10),
            Figures {
                window_s: 10,
                ..Figures::default()
            }
        );
    }
}
