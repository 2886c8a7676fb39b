//! The retry rule of `spec.delivery`: whether a failed attempt is tried again, and how long
//! it waits first. One definition for both delivery modes (`blocking` sleeps for the delay,
//! `retryTopics` writes it into the record's due time) and for the CRD text that documents it.
//!
//! Invariants, for every attempt and every jitter draw:
//! - the delay never exceeds `max` (`backoff.max` is the longest delay between two attempts);
//! - the delay is never below half of the attempt's capped exponential delay, so jitter
//!   spreads retries of records that failed together without collapsing the backoff;
//! - no retry follows the last of `max_attempts` attempts, nor a non-retryable failure.

use std::time::Duration;

/// Share of the capped exponential delay that jitter may take off: the delay before a retry
/// is uniform in `(1 - JITTER_SHARE, 1]` × the capped delay. A half ("equal jitter") keeps
/// the retries of a burst of failures spread over a window as wide as half the delay, while
/// the shortest wait stays within a factor of two of the documented one.
pub const JITTER_SHARE: f64 = 0.5;

/// How often a message is attempted and how long it waits between attempts.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryPolicy {
    /// Attempts in all, the first one included (`spec.delivery.maxAttempts`).
    pub max_attempts: u32,
    /// Capped exponential delay before the first retry (`backoff.initial`).
    pub initial: Duration,
    /// Longest delay between two attempts (`backoff.max`), jitter included.
    pub max: Duration,
    /// Growth of the delay per failed attempt (`backoff.multiplier`, at least 1).
    pub multiplier: f64,
}

impl RetryPolicy {
    /// The capped exponential delay before `attempt` (2 for the first retry):
    /// `min(initial * multiplier^(attempt - 2), max)`, without jitter. For attempt 1 or
    /// below (no wait happens before a first attempt) it is `initial`.
    pub fn ceiling(&self, attempt: u32) -> Duration {
        let retry = attempt.saturating_sub(2);
        let exponent = i32::try_from(retry).unwrap_or(i32::MAX);
        let factor = self.multiplier.max(1.0).powi(exponent);
        let secs = self.initial.as_secs_f64() * factor;
        if !secs.is_finite() || secs >= self.max.as_secs_f64() {
            return self.max;
        }
        Duration::from_secs_f64(secs).min(self.max)
    }

    /// The delay before `attempt` for a jitter draw `unit` in `[0, 1)` (values outside are
    /// clamped): the [`ceiling`](Self::ceiling) minus up to [`JITTER_SHARE`] of it.
    pub fn delay_before(&self, attempt: u32, unit: f64) -> Duration {
        let unit = if unit.is_finite() {
            unit.clamp(0.0, 1.0)
        } else {
            0.0
        };
        self.ceiling(attempt).mul_f64(1.0 - JITTER_SHARE * unit)
    }

    /// After failed attempt `attempt` (1 for the first try): the delay before the next
    /// attempt, or `None` when the message is to be dead-lettered — the failure is not
    /// `retryable`, or that was attempt `max_attempts`. `unit` is the jitter draw in `[0, 1)`.
    pub fn next(&self, attempt: u32, retryable: bool, unit: f64) -> Option<Duration> {
        (retryable && attempt < self.max_attempts)
            .then(|| self.delay_before(attempt.saturating_add(1), unit))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> RetryPolicy {
        // The settings the issue measured with: 3 s, doubling, capped at 6 s.
        RetryPolicy {
            max_attempts: 5,
            initial: Duration::from_secs(3),
            max: Duration::from_secs(6),
            multiplier: 2.0,
        }
    }

    #[test]
    fn the_jitter_share_is_the_half_the_crd_documents() {
        // `spec.delivery.backoff` says "less a random jitter of up to half of that".
        assert_eq!(JITTER_SHARE, 0.5);
    }

    #[test]
    fn the_ceiling_grows_by_the_multiplier_and_stops_at_max() {
        let p = policy();
        assert_eq!(p.ceiling(2), Duration::from_secs(3));
        assert_eq!(p.ceiling(3), Duration::from_secs(6));
        assert_eq!(p.ceiling(4), Duration::from_secs(6));
        assert_eq!(p.ceiling(100), Duration::from_secs(6));
        let huge = RetryPolicy {
            multiplier: 10.0,
            max_attempts: u32::MAX,
            ..p
        };
        assert_eq!(huge.ceiling(u32::MAX), huge.max, "no overflow");
    }

    #[test]
    fn no_jitter_draw_takes_a_delay_above_max_or_below_half_its_ceiling() {
        let p = policy();
        for attempt in 2..=p.max_attempts {
            for step in 0..=1000 {
                let unit = f64::from(step) / 1000.0;
                let d = p.delay_before(attempt, unit);
                assert!(d <= p.max, "attempt {attempt}, draw {unit}: {d:?}");
                assert!(
                    d >= p.ceiling(attempt) / 2,
                    "attempt {attempt}, draw {unit}: {d:?}"
                );
            }
        }
        assert_eq!(p.delay_before(3, 0.0), Duration::from_secs(6));
        assert_eq!(p.delay_before(3, 1.0), Duration::from_secs(3));
        assert_eq!(p.delay_before(3, f64::NAN), Duration::from_secs(6));
        assert_eq!(p.delay_before(3, -4.0), Duration::from_secs(6));
    }

    #[test]
    fn next_retries_a_retryable_failure_until_the_last_attempt_and_nothing_else() {
        let p = RetryPolicy {
            max_attempts: 3,
            ..policy()
        };
        assert_eq!(p.next(1, true, 0.0), Some(Duration::from_secs(3)));
        assert_eq!(p.next(2, true, 0.0), Some(Duration::from_secs(6)));
        assert_eq!(p.next(3, true, 0.0), None, "that was the last attempt");
        assert_eq!(p.next(1, false, 0.0), None, "never retried");
    }
}
