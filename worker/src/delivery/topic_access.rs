//! Which subscribed topics the brokers refuse to let this principal read.
//!
//! A consumer's `TopicAuthorizationFailed` does not say which topic it is about, and a group
//! that may read some of its topics goes on with those: in `retryTopics` mode a missing Read
//! on the retry topics leaves the source flowing while every retried record waits. Metadata
//! cannot tell either (Write implies Describe). So on such an error a separate, group-less
//! client fetches from the end of each subscribed topic, one topic at a time, and the
//! refused ones are named (`Read on topic …`, the ACL row the README lists); the worker is
//! not ready while any is refused. It asks again every [`RECHECK`] until none is, so a
//! granted ACL makes the worker ready again without a restart.

use std::collections::BTreeSet;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::types::RDKafkaErrorCode;

/// How often refused topics are asked about again: the metadata refresh of `retryTopics`
/// mode, so readiness comes back about when librdkafka starts reading the topic.
pub const RECHECK: Duration = Duration::from_secs(5);
/// How long one topic's fetch is waited for: the end of a readable partition answers at
/// once (partition EOF), a refusal about as fast; a broker that says nothing in this time is
/// not counted as refusing.
const FETCH_WAIT: Duration = Duration::from_secs(5);

/// The subscribed topics, and those the brokers refused the last time they were asked.
pub struct TopicAccess {
    topics: Vec<String>,
    /// The worker's connection settings (brokers, credentials) and group id, which
    /// librdkafka wants for `assign` (the client never joins the group nor commits).
    config: ClientConfig,
    /// Made at the first check and kept, so later checks skip the TLS and SASL handshakes.
    client: Mutex<Option<BaseConsumer>>,
    refused: Mutex<BTreeSet<String>>,
    /// An authorization error was seen since the last check.
    suspected: AtomicBool,
    /// Whether a check runs now (they run on a blocking thread, one at a time) and when the
    /// last one ended, under one lock so claiming a check is one step.
    checks: Mutex<Checks>,
}

#[derive(Debug, Clone, Copy)]
enum Checks {
    /// None runs; the last one ended then (`None`: never checked).
    Idle(Option<Instant>),
    Running,
}

/// What a check found, against what was known before it.
#[derive(Debug, PartialEq, Eq)]
pub enum Change {
    /// Nothing new.
    Same,
    /// These topics are refused now (all of them, not only the new ones).
    Refused(Vec<String>),
    /// Every topic is readable again.
    Cleared,
}

impl TopicAccess {
    pub fn new(topics: Vec<String>, config: ClientConfig) -> TopicAccess {
        TopicAccess {
            topics,
            config,
            client: Mutex::new(None),
            refused: Mutex::new(BTreeSet::new()),
            suspected: AtomicBool::new(false),
            checks: Mutex::new(Checks::Idle(None)),
        }
    }

    /// A `TopicAuthorizationFailed` was seen: check at the next chance.
    pub fn suspect(&self) {
        self.suspected.store(true, Relaxed);
    }

    pub fn any_refused(&self) -> bool {
        !lock(&self.refused).is_empty()
    }

    /// Whether a check is due now (suspected, or topics refused and [`RECHECK`] passed), and
    /// if so claims it: the caller must then run [`TopicAccess::check`].
    pub fn claim(&self, now: Instant) -> bool {
        let refused = self.any_refused();
        let mut checks = lock(&self.checks);
        let Checks::Idle(last) = *checks else {
            return false;
        };
        let recheck = refused && last.is_none_or(|at| now.duration_since(at) >= RECHECK);
        let due = self.suspected.load(Relaxed) || recheck;
        if due {
            *checks = Checks::Running;
        }
        due
    }

    /// Asks the brokers about every subscribed topic (blocking: run it off the runtime).
    pub fn check(&self) -> Change {
        self.suspected.store(false, Relaxed);
        let change = match self.refused_now() {
            Ok(refused) => self.record(refused),
            Err(e) => {
                tracing::warn!(error = %e, "cannot check which topics this worker may read");
                Change::Same
            }
        };
        *lock(&self.checks) = Checks::Idle(Some(Instant::now()));
        change
    }

    fn refused_now(&self) -> Result<BTreeSet<String>, KafkaError> {
        let mut client = lock(&self.client);
        let client = match &mut *client {
            Some(c) => c,
            empty => empty.insert(
                self.config
                    .clone()
                    .set("enable.partition.eof", "true")
                    .set("enable.auto.commit", "false")
                    .create()?,
            ),
        };
        let mut refused = BTreeSet::new();
        for topic in &self.topics {
            if refuses(client, topic)? {
                refused.insert(topic.clone());
            }
        }
        client.assign(&TopicPartitionList::new())?;
        Ok(refused)
    }

    fn record(&self, refused: BTreeSet<String>) -> Change {
        let mut known = lock(&self.refused);
        if *known == refused {
            return Change::Same;
        }
        *known = refused;
        if known.is_empty() {
            Change::Cleared
        } else {
            Change::Refused(known.iter().cloned().collect())
        }
    }
}

/// Whether the brokers refuse a fetch from the end of `topic`'s partition 0.
fn refuses(client: &BaseConsumer, topic: &str) -> Result<bool, KafkaError> {
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, Offset::End)?;
    client.assign(&tpl)?;
    let deadline = Instant::now() + FETCH_WAIT;
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        match client.poll(left) {
            None => break,
            Some(Err(e))
                if e.rdkafka_error_code() == Some(RDKafkaErrorCode::TopicAuthorizationFailed) =>
            {
                return Ok(true);
            }
            Some(Err(KafkaError::PartitionEOF(_)) | Ok(_)) => return Ok(false),
            Some(Err(e)) => tracing::debug!(topic, error = %e, "read check"),
        }
    }
    Ok(false)
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(topics: &[&str]) -> BTreeSet<String> {
        topics.iter().map(|t| (*t).to_owned()).collect()
    }

    #[test]
    fn a_change_is_reported_once_and_clearing_is_reported() {
        let access = TopicAccess::new(vec!["in".into(), "g.retry.1".into()], ClientConfig::new());
        assert_eq!(access.record(set(&[])), Change::Same);
        assert_eq!(
            access.record(set(&["g.retry.1"])),
            Change::Refused(vec!["g.retry.1".into()])
        );
        assert!(access.any_refused());
        assert_eq!(access.record(set(&["g.retry.1"])), Change::Same);
        assert_eq!(access.record(set(&[])), Change::Cleared);
        assert!(!access.any_refused());
    }

    #[test]
    fn a_check_is_due_when_suspected_or_while_refused_and_runs_one_at_a_time() {
        let access = TopicAccess::new(vec!["in".into()], ClientConfig::new());
        let t0 = Instant::now();
        assert!(!access.claim(t0), "nothing suspected, nothing refused");
        access.suspect();
        assert!(access.claim(t0));
        assert!(!access.claim(t0), "one check at a time");
        access.suspected.store(false, Relaxed);
        access.record(set(&["in"]));
        *lock(&access.checks) = Checks::Idle(Some(t0));
        assert!(!access.claim(t0), "refused, but checked just now");
        assert!(access.claim(t0 + RECHECK), "refused: checked again");
    }
}
