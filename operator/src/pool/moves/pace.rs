//! The copy's pace: at most the configured rate, and slower while the target's primary answers
//! its other tenants more slowly than before the copy began. The copy measures that with the
//! round trip of a trivial statement on the target's primary every few hundred KiB (the
//! statement neighbours' own queries queue with); while the smoothed round trip exceeds the
//! pre-copy value by more than the allowance, the rate halves (down to [`MIN_COPY_RATE`]),
//! otherwise it grows by a sixteenth of the ceiling (additive increase, multiplicative
//! decrease, as TCP finds a link's share).

use std::time::Duration;

/// The slowest pace the copy is held to: it always progresses.
pub const MIN_COPY_RATE: u64 = 256 << 10;

/// How much the latest round trip counts in the smoothed one.
const SMOOTHING: f64 = 0.3;

/// The copy's pace and what it has learned of the target's latency.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Pace {
    /// Bytes a second now (0: no limit).
    rate: u64,
    /// The configured ceiling (0: no limit, and nothing to follow).
    max: u64,
    /// How far above the baseline the round trip may rise, as a fraction (0: a fixed pace).
    allowance: f64,
    baseline: Option<Duration>,
    smoothed: Option<Duration>,
    /// When the bytes sent so far are due, from the copy's start.
    due: Duration,
}

impl Pace {
    /// A pace of at most `max` bytes a second, following the target's latency within
    /// `allowance` (0: keeping to `max`). One that follows starts at a quarter of `max`.
    pub fn new(max: u64, allowance: f64) -> Self {
        let follows = max > 0 && allowance > 0.0;
        Self {
            rate: if follows {
                (max / 4).max(MIN_COPY_RATE).min(max)
            } else {
                max
            },
            max,
            allowance: if follows { allowance } else { 0.0 },
            baseline: None,
            smoothed: None,
            due: Duration::ZERO,
        }
    }

    /// Bytes a second now (0: no limit).
    pub fn rate(&self) -> u64 {
        self.rate
    }

    /// Whether the pace follows the target's latency (and wants round trips measured).
    pub fn follows(&self) -> bool {
        self.allowance > 0.0
    }

    /// The round trip before the copy: the median of `samples`.
    pub fn set_baseline(&mut self, samples: &mut [Duration]) {
        samples.sort();
        self.baseline = samples.get(samples.len() / 2).copied();
    }

    /// Takes one round trip measured during the copy, and changes the rate.
    pub fn observe(&mut self, round_trip: Duration) {
        let smoothed = match self.smoothed {
            Some(s) => s.mul_f64(1.0 - SMOOTHING) + round_trip.mul_f64(SMOOTHING),
            None => round_trip,
        };
        self.smoothed = Some(smoothed);
        let Some(baseline) = self.baseline.filter(|_| self.follows()) else {
            return;
        };
        self.rate = if smoothed > baseline.mul_f64(1.0 + self.allowance) {
            (self.rate / 2).max(MIN_COPY_RATE).min(self.max)
        } else {
            self.rate.saturating_add(self.max / 16).min(self.max)
        };
    }

    /// How long to wait, `elapsed` after the copy began, having just sent `bytes` more: each
    /// byte is due `1 / rate` s after the one before, and time the copy fell behind is not
    /// made up later in a burst.
    pub fn delay(&mut self, bytes: u64, elapsed: Duration) -> Duration {
        if self.rate == 0 {
            return Duration::ZERO;
        }
        let due = self.due + Duration::from_secs_f64(bytes as f64 / self.rate as f64);
        self.due = due.max(elapsed);
        due.saturating_sub(elapsed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn a_fixed_pace_keeps_to_its_rate_without_bursts() {
        let mut pace = Pace::new(16 * MIB, 0.0);
        assert!(!pace.follows());
        assert_eq!(pace.rate(), 16 * MIB);
        // 8 MiB at 16 MiB/s are due at 500 ms: 200 ms in, the copy waits 300 ms.
        assert_eq!(pace.delay(8 * MIB, ms(200)), ms(300));
        // Behind its schedule (the next 8 MiB took until 2 s), it does not wait; nor is the
        // lost second made up: the 8 MiB after are due half a second later.
        assert_eq!(pace.delay(8 * MIB, ms(2000)), Duration::ZERO);
        assert_eq!(pace.delay(8 * MIB, ms(2000)), ms(500));
        pace.observe(ms(100));
        assert_eq!(pace.rate(), 16 * MIB);
        let mut unlimited = Pace::new(0, 0.2);
        assert!(!unlimited.follows());
        assert_eq!(unlimited.delay(8 * MIB, Duration::ZERO), Duration::ZERO);
    }

    #[test]
    fn the_pace_halves_while_the_target_is_slower_and_grows_back_after() {
        let mut pace = Pace::new(16 * MIB, 0.2);
        assert!(pace.follows());
        assert_eq!(pace.rate(), 4 * MIB);
        pace.set_baseline(&mut [ms(1), ms(9), ms(1), ms(1), ms(2)]);
        // Within 20 % of the 1 ms baseline: up by 1 MiB/s a step, to the ceiling.
        pace.observe(Duration::from_micros(1100));
        assert_eq!(pace.rate(), 5 * MIB);
        for _ in 0..20 {
            pace.observe(ms(1));
        }
        assert_eq!(pace.rate(), 16 * MIB);
        // One slow answer in the smoothed round trip: 0.7 ms + 0.3 × 3 ms = 1.6 ms, over.
        pace.observe(ms(3));
        assert_eq!(pace.rate(), 8 * MIB);
        // Still slow: halved again and again, never under the floor.
        for _ in 0..20 {
            pace.observe(ms(5));
        }
        assert_eq!(pace.rate(), MIN_COPY_RATE);
        // Quick again: the smoothed round trip comes down first, then the rate goes up.
        let mut steps = 0;
        while pace.rate() == MIN_COPY_RATE {
            pace.observe(ms(1));
            steps += 1;
            assert!(steps < 20, "the pace never grew back");
        }
        assert_eq!(pace.rate(), MIN_COPY_RATE + MIB);
    }

    #[test]
    fn without_a_baseline_the_pace_stays_where_it_started() {
        let mut pace = Pace::new(16 * MIB, 0.2);
        pace.observe(ms(50));
        assert_eq!(pace.rate(), 4 * MIB);
        pace.set_baseline(&mut []);
        pace.observe(ms(50));
        assert_eq!(pace.rate(), 4 * MIB);
    }

    #[test]
    fn a_low_ceiling_is_kept_below_the_floor() {
        let mut pace = Pace::new(100 << 10, 0.2);
        assert_eq!(pace.rate(), 100 << 10);
        pace.set_baseline(&mut [ms(1)]);
        pace.observe(ms(10));
        assert_eq!(pace.rate(), 100 << 10);
    }
}
