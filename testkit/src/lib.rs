//! Test helpers shared by the crates' integration and end-to-end tests.
//!
//! They find the local stack that `make dev-up` starts (Kafka at `$KAFKA_BOOTSTRAP`, the
//! Kubernetes API server through `$KUBECONFIG`) and never let a test skip silently: when
//! the stack is absent they panic with the command that starts it.
//!
//! Features: `kafka` adds [`create_topic`] and [`faults`] (broker faults of the three-broker
//! cluster); `kube` adds [`kube_client`]; `acl` adds [`acl`] (grant and revoke ACLs on the
//! local broker).
#![forbid(unsafe_code)]

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// What a test prints when the local stack is not running.
pub const START_THE_STACK: &str =
    "Run `make dev-up && . .dev/env`, or `make test`, which does both.";

/// The Kafka bootstrap address of the local stack, from `$KAFKA_BOOTSTRAP`.
///
/// # Panics
/// When `$KAFKA_BOOTSTRAP` is not set, saying how to start the stack.
pub fn kafka_bootstrap() -> String {
    match std::env::var("KAFKA_BOOTSTRAP") {
        Ok(v) if !v.trim().is_empty() => v,
        _ => {
            panic!("KAFKA_BOOTSTRAP is not set: the local stack is not running. {START_THE_STACK}")
        }
    }
}

/// A name that no other call, in this process or any other, returns: lowercase, a valid
/// DNS-1123 label (so usable as a Kafka topic, a consumer group or a Kubernetes object
/// name) and at most 63 characters. `prefix` is lowercased and cut to fit; characters
/// other than `[a-z0-9-]` become `-`.
pub fn unique_name(prefix: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    // Milliseconds since the epoch tell runs apart (the stack keeps its topics between
    // runs, and pids are reused); the pid tells concurrent processes apart; the counter
    // tells calls apart.
    let millis = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or_default();
    let suffix = format!(
        "{}-{}-{}",
        base36(millis),
        base36(u128::from(std::process::id())),
        base36(u128::from(n))
    );
    let mut p: String = prefix
        .chars()
        .map(|c| {
            let c = c.to_ascii_lowercase();
            if c.is_ascii_lowercase() || c.is_ascii_digit() {
                c
            } else {
                '-'
            }
        })
        .collect();
    p.truncate(63 - 1 - suffix.len());
    let p = p.trim_matches('-');
    if p.is_empty() {
        format!("t-{suffix}")
    } else {
        format!("{p}-{suffix}")
    }
}

fn base36(mut v: u128) -> String {
    const DIGITS: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut out = Vec::new();
    loop {
        out.push(DIGITS[(v % 36) as usize]);
        v /= 36;
        if v == 0 {
            break;
        }
    }
    out.reverse();
    String::from_utf8(out).unwrap_or_default()
}

/// Polls `check` every 100 ms until it returns `Some`, and returns that value.
///
/// # Panics
/// When `timeout` passes first, naming `what` was awaited.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        if tokio::time::Instant::now() >= deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[cfg(feature = "kafka")]
mod kafka;
#[cfg(feature = "kafka")]
pub use kafka::{create_topic, create_topic_with};
#[cfg(feature = "kafka")]
pub mod faults;
#[cfg(feature = "kafka")]
pub mod secure;

#[cfg(feature = "acl")]
pub mod acl;

#[cfg(feature = "kube")]
mod kube_client;
#[cfg(feature = "kube")]
pub use kube_client::kube_client;

#[cfg(test)]
mod tests {
    use super::*;

    fn is_dns1123_label(s: &str) -> bool {
        !s.is_empty()
            && s.len() <= 63
            && s.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
            && !s.starts_with('-')
            && !s.ends_with('-')
    }

    #[test]
    fn unique_names_are_dns_labels_and_never_repeat() {
        let names: Vec<String> = (0..1000).map(|_| unique_name("orders")).collect();
        let mut sorted = names.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), names.len());
        assert!(names.iter().all(|n| is_dns1123_label(n)), "{names:?}");
        assert!(names[0].starts_with("orders-"));
    }

    #[test]
    fn unique_name_cleans_and_shortens_any_prefix() {
        for prefix in ["Mixed_Case.Topic", "--", "", &"x".repeat(200), "ünïcode"] {
            let n = unique_name(prefix);
            assert!(is_dns1123_label(&n), "{prefix:?} gave {n:?}");
        }
    }

    #[tokio::test]
    async fn eventually_returns_the_first_value_found() {
        let mut calls = 0;
        let v = eventually("the third call", Duration::from_secs(5), || {
            calls += 1;
            let done = calls >= 3;
            async move { done.then_some(42) }
        })
        .await;
        assert_eq!(v, 42);
    }

    #[tokio::test]
    #[should_panic(expected = "timed out after")]
    async fn eventually_panics_naming_what_it_waited_for() {
        eventually::<(), _, _>("nothing", Duration::from_millis(200), || async { None }).await;
    }
}
