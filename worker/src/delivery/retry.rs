//! Attempts with a per-attempt timeout, and exponential backoff with jitter between them.
//!
//! The retry rule itself (retry or give up, and the delay: capped exponential, jitter inside
//! `backoff.max`) is [`eventconsumer_contract::retry::RetryPolicy`], shared by both delivery
//! modes; this module only adds what the delivery loop needs around it: the jitter draw, the
//! timeout that turns a hung attempt into a retryable failure, classification (non-retryable
//! errors stop at once), the first and last failure times the dead-letter record carries, and
//! cancellation during a backoff sleep (a revoke or the shutdown deadline must not wait for a
//! 10 s backoff).

use std::future::Future;
use std::task::Poll;
use std::time::Duration;

use chrono::{DateTime, Utc};
use eventconsumer_contract::retry::RetryPolicy as Rule;
use tokio_util::sync::CancellationToken;

use crate::config::RetrySettings;
use crate::handlers::HandlerError;
use crate::offsets::Outcome;

/// How often and how patiently a message is tried.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    pub max_attempts: u32,
    pub attempt_timeout: Duration,
    rule: Rule,
    /// The longest delay [`RetryPolicy::next`] can give: `backoff.max`.
    pub longest_delay: Duration,
}

impl RetryPolicy {
    pub fn new(settings: &RetrySettings) -> RetryPolicy {
        RetryPolicy {
            max_attempts: settings.max_attempts,
            attempt_timeout: settings.attempt_timeout,
            rule: Rule {
                max_attempts: settings.max_attempts,
                initial: settings.backoff_initial,
                max: settings.backoff_max,
                multiplier: f64::from(settings.backoff_multiplier),
            },
            longest_delay: settings.backoff_max,
        }
    }

    /// The one retry-or-give-up rule, for both delivery modes: after failed attempt `attempt`
    /// (1 for the first try), the delay before the next attempt (jitter drawn here, never
    /// above `backoff.max`), or `None` when the message is to be dead-lettered (the error is
    /// not retryable, or that was the last attempt).
    pub fn next(&self, error: &HandlerError, attempt: u32) -> Option<Duration> {
        self.rule
            .next(attempt, error.is_retryable(), fastrand::f64())
    }
}

/// A message that failed for good.
#[derive(Debug, Clone)]
pub struct Failure {
    pub error: HandlerError,
    pub attempts: u32,
    pub first_failure: DateTime<Utc>,
    pub last_failure: DateTime<Utc>,
}

/// How trying a message ended.
#[derive(Debug)]
pub enum Attempted {
    Succeeded(Outcome),
    /// Non-retryable, or retries exhausted: dead-letter it.
    Failed(Failure),
    /// Stopped by a revoke or the shutdown deadline: leave the offset unstored.
    Cancelled,
}

/// One attempt under the policy's timeout, abandoned if `cancel` fires while it waits
/// (`retryTopics` mode tries a record once and parks it in a retry topic rather than
/// looping; `run` loops over it). `None` when `cancel` fired first: the attempt is then not
/// polled at all.
///
/// Most attempts finish without waiting (no output topic, no sink): they need neither the
/// timer nor a wait on the token, whose making and registering (a lock to register, another
/// to unregister) cost ~1,000 instructions a message (callgrind). So the attempt is polled
/// once first; one that waits is timed from then on.
pub async fn attempt_once<Fut>(
    policy: &RetryPolicy,
    cancel: &CancellationToken,
    attempt: Fut,
) -> Option<Result<Outcome, HandlerError>>
where
    Fut: Future<Output = Result<Outcome, HandlerError>>,
{
    if cancel.is_cancelled() {
        return None;
    }
    let mut attempt = std::pin::pin!(attempt);
    if let Poll::Ready(result) = futures::poll!(attempt.as_mut()) {
        return Some(result);
    }
    tokio::select! {
        biased;
        r = tokio::time::timeout(policy.attempt_timeout, attempt) => Some(match r {
            Ok(result) => result,
            Err(_elapsed) => Err(HandlerError::Timeout(policy.attempt_timeout)),
        }),
        _ = cancel.cancelled() => None,
    }
}

/// Runs `attempt(n)` (n from 1) until it succeeds, fails non-retryably, runs out of
/// attempts, or `cancel` fires. `abandon_waits` (a revoke or SIGTERM) lets the attempt in
/// progress finish but ends a wait for the next retry at once: the message is left
/// unstored for the partition's next owner instead of holding up the rebalance or the
/// shutdown for a backoff. `on_failure(error, attempt, next_delay)` is told about each
/// failed attempt (`next_delay` is `None` when no retry follows).
pub async fn run<F, Fut>(
    policy: &RetryPolicy,
    cancel: &CancellationToken,
    abandon_waits: &CancellationToken,
    mut attempt: F,
    mut on_failure: impl FnMut(&HandlerError, u32, Option<Duration>),
) -> Attempted
where
    F: FnMut(u32) -> Fut,
    Fut: Future<Output = Result<Outcome, HandlerError>>,
{
    let mut first_failure = None;
    let mut n = 0;
    loop {
        n += 1;
        let error = match attempt_once(policy, cancel, attempt(n)).await {
            None => return Attempted::Cancelled,
            Some(Ok(outcome)) => return Attempted::Succeeded(outcome),
            Some(Err(e)) => e,
        };
        let now = Utc::now();
        let first = *first_failure.get_or_insert(now);
        let next = policy.next(&error, n);
        on_failure(&error, n, next);
        let Some(delay) = next else {
            return Attempted::Failed(Failure {
                error,
                attempts: n,
                first_failure: first,
                last_failure: now,
            });
        };
        tokio::select! {
            biased;
            _ = cancel.cancelled() => return Attempted::Cancelled,
            _ = abandon_waits.cancelled() => return Attempted::Cancelled,
            _ = tokio::time::sleep(delay) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::EventError;
    use std::sync::atomic::{AtomicU32, Ordering};

    fn policy(max_attempts: u32) -> RetryPolicy {
        RetryPolicy::new(&RetrySettings {
            max_attempts,
            backoff_initial: Duration::from_millis(1),
            backoff_max: Duration::from_millis(4),
            backoff_multiplier: 2.0,
            attempt_timeout: Duration::from_millis(200),
        })
    }

    fn transient() -> HandlerError {
        HandlerError::SinkStatus {
            status: 503,
            body: String::new(),
        }
    }

    #[test]
    fn every_delay_stays_within_backoff_max_jitter_included() {
        let p = RetryPolicy::new(&RetrySettings {
            max_attempts: 6,
            backoff_initial: Duration::from_millis(100),
            backoff_max: Duration::from_millis(500),
            backoff_multiplier: 2.0,
            attempt_timeout: Duration::from_secs(1),
        });
        assert_eq!(p.longest_delay, Duration::from_millis(500));
        for _ in 0..1000 {
            for attempt in 1..6 {
                let d = p.next(&transient(), attempt).expect("a retry");
                assert!(
                    d >= Duration::from_millis(50) && d <= p.longest_delay,
                    "{d:?}"
                );
            }
        }
    }

    /// Pins the retry-or-give-up rule both delivery modes use.
    #[test]
    fn next_retries_a_retryable_failure_until_the_last_attempt_and_nothing_else() {
        let p = policy(3);
        let permanent: HandlerError = EventError::Decode("bad".into()).into();
        assert!(p.next(&transient(), 1).is_some());
        assert!(p.next(&transient(), 2).is_some());
        assert_eq!(p.next(&transient(), 3), None, "that was the last attempt");
        assert_eq!(p.next(&permanent, 1), None, "never retried");
        let delay = p.next(&transient(), 1).unwrap();
        // At most backoff.initial (1 ms) before the first retry, at least half of it.
        assert!(delay >= Duration::from_micros(500) && delay <= Duration::from_millis(1));
    }

    #[tokio::test]
    async fn one_attempt_that_hangs_times_out_as_a_retryable_failure() {
        let r = attempt_once(&policy(2), &CancellationToken::new(), async {
            tokio::time::sleep(Duration::from_secs(60)).await;
            Ok(Outcome::Done)
        })
        .await;
        let Some(Err(e)) = r else {
            panic!("expected a timeout, got {r:?}")
        };
        assert!(e.is_retryable());
        assert_eq!(e.class(), "timeout");
    }

    #[tokio::test]
    async fn a_transient_failure_is_retried_until_it_succeeds() {
        let calls = AtomicU32::new(0);
        let mut seen = vec![];
        let result = run(
            &policy(5),
            &CancellationToken::new(),
            &CancellationToken::new(),
            |n| {
                calls.fetch_add(1, Ordering::SeqCst);
                async move {
                    if n < 3 {
                        Err(transient())
                    } else {
                        Ok(Outcome::Done)
                    }
                }
            },
            |_, n, next| seen.push((n, next.is_some())),
        )
        .await;
        assert!(matches!(result, Attempted::Succeeded(Outcome::Done)));
        assert_eq!(calls.load(Ordering::SeqCst), 3);
        assert_eq!(seen, vec![(1, true), (2, true)]);
    }

    #[tokio::test]
    async fn retries_stop_at_max_attempts_with_the_failure_times() {
        let result = run(
            &policy(3),
            &CancellationToken::new(),
            &CancellationToken::new(),
            |_| async { Err(transient()) },
            |_, _, _| {},
        )
        .await;
        let Attempted::Failed(f) = result else {
            panic!("expected failure, got {result:?}")
        };
        assert_eq!(f.attempts, 3);
        assert!(f.first_failure <= f.last_failure);
        assert_eq!(f.error.class(), "sink-unavailable");
    }

    #[tokio::test]
    async fn a_validation_error_fails_at_once_without_retry() {
        let result = run(
            &policy(5),
            &CancellationToken::new(),
            &CancellationToken::new(),
            |_| async { Err(EventError::Decode("bad".into()).into()) },
            |_, _, next| assert!(next.is_none()),
        )
        .await;
        let Attempted::Failed(f) = result else {
            panic!("expected failure")
        };
        assert_eq!((f.attempts, f.error.class()), (1, "decode"));
    }

    #[tokio::test]
    async fn a_hung_attempt_times_out_and_counts_as_retryable() {
        let result = run(
            &policy(2),
            &CancellationToken::new(),
            &CancellationToken::new(),
            |_| async {
                tokio::time::sleep(Duration::from_secs(60)).await;
                Ok(Outcome::Done)
            },
            |_, _, _| {},
        )
        .await;
        let Attempted::Failed(f) = result else {
            panic!("expected failure")
        };
        assert_eq!((f.attempts, f.error.class()), (2, "timeout"));
    }

    #[tokio::test]
    async fn cancellation_interrupts_a_backoff_sleep() {
        let cancel = CancellationToken::new();
        let slow = RetryPolicy::new(&RetrySettings {
            max_attempts: 5,
            backoff_initial: Duration::from_secs(30),
            backoff_max: Duration::from_secs(30),
            backoff_multiplier: 2.0,
            attempt_timeout: Duration::from_secs(1),
        });
        let c = cancel.clone();
        let result = run(
            &slow,
            &cancel,
            &CancellationToken::new(),
            |_| async { Err(transient()) },
            move |_, _, _| c.cancel(),
        )
        .await;
        assert!(matches!(result, Attempted::Cancelled));
    }

    #[tokio::test]
    async fn a_hard_stop_starts_no_attempt_and_abandons_one_that_waits() {
        let cancel = CancellationToken::new();
        cancel.cancel();
        let started = AtomicU32::new(0);
        let result = run(
            &policy(3),
            &cancel,
            &CancellationToken::new(),
            |_| async {
                started.fetch_add(1, Ordering::SeqCst);
                Ok(Outcome::Done)
            },
            |_, _, _| {},
        )
        .await;
        assert!(matches!(result, Attempted::Cancelled));
        assert_eq!(
            started.load(Ordering::SeqCst),
            0,
            "no attempt after the stop"
        );
        assert!(
            attempt_once(&policy(3), &cancel, async { Ok(Outcome::Done) })
                .await
                .is_none()
        );

        // An attempt that waits (within its 200 ms timeout) is abandoned when the stop
        // comes, not timed out.
        let cancel = CancellationToken::new();
        let c = cancel.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(20)).await;
            c.cancel();
        });
        let result = run(
            &policy(3),
            &cancel,
            &CancellationToken::new(),
            |_| std::future::pending(),
            |_, _, _| panic!("not a failure"),
        )
        .await;
        assert!(matches!(result, Attempted::Cancelled));
        let c = CancellationToken::new();
        let stopper = c.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(20)).await;
            stopper.cancel();
        });
        assert!(
            attempt_once(&policy(3), &c, std::future::pending())
                .await
                .is_none()
        );
    }

    #[tokio::test]
    async fn a_soft_stop_abandons_a_retry_wait_but_not_an_attempt_in_progress() {
        let soft = CancellationToken::new();
        let slow = RetryPolicy::new(&RetrySettings {
            max_attempts: 5,
            backoff_initial: Duration::from_secs(30),
            backoff_max: Duration::from_secs(30),
            backoff_multiplier: 2.0,
            attempt_timeout: Duration::from_secs(5),
        });
        // Cancelled during the first attempt: that attempt still completes…
        let s = soft.clone();
        let result = run(
            &slow,
            &CancellationToken::new(),
            &soft,
            move |_| {
                s.cancel();
                async {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    Ok(Outcome::Done)
                }
            },
            |_, _, _| {},
        )
        .await;
        assert!(matches!(result, Attempted::Succeeded(Outcome::Done)));
        // …but a failed one does not wait 30 s for its retry.
        let started = std::time::Instant::now();
        let result = run(
            &slow,
            &CancellationToken::new(),
            &soft,
            |_| async { Err(transient()) },
            |_, _, _| {},
        )
        .await;
        assert!(matches!(result, Attempted::Cancelled));
        assert!(started.elapsed() < Duration::from_secs(1));
    }
}
