//! `retryTopics` delivery mode: a failed message waits for its next attempt in a retry
//! topic instead of holding its partition.
//!
//! A source record gets one attempt. A retryable failure with attempts left copies it (key,
//! value, headers) to `<group>.retry.<attempt - 1>` ([`eventconsumer_contract::retry_topic`])
//! with `ec-retry-*` headers saying which attempt it waits for, when it is due (now + that
//! retry's backoff, jitter included), when it first failed and which source record it is; the
//! source offset is released only once that write is acknowledged. A record read from a
//! retry topic waits until it is due, gets one attempt, and goes on to the next retry topic
//! or, exhausted or non-retryable, to the DLQ, whose `ec-dlt-original-*` headers name the
//! source record, never a retry topic.
//!
//! Why: in `blocking` mode one slow-failing message stops its whole partition for the sum of
//! its backoffs; here the partition moves on at once. The price is per-key order: a retried
//! message is handled after later messages of the same key.
//!
//! The retry state travels in the record's headers, so a restart or a rebalance continues
//! the count where it was. A retry-topic record with missing or garbled `ec-retry-*` headers
//! is neither dropped nor fatal: its attempt comes from the topic it is in, it is due at
//! once, and a warning names the bad headers.

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use eventconsumer_contract::headers;
use rdkafka::message::{Header, Headers, Message, OwnedHeaders, OwnedMessage};

use super::dlq::SourceRecord;

/// Where a record stands in its retries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryState {
    /// The attempt this record is for (1 for a source record).
    pub attempt: u32,
    /// When it may be tried, ms since the epoch (`None`: at once).
    pub due_ms: Option<i64>,
    /// When its first attempt failed (`None` for a source record).
    pub first_failure: Option<DateTime<Utc>>,
    /// The source record it is, or is a copy of.
    pub source: SourceRecord,
}

fn header_text<'a>(msg: &'a OwnedMessage, key: &str) -> Option<&'a str> {
    let h = msg.headers()?;
    // The last one wins, as in Kafka clients that read a single value.
    h.iter()
        .filter(|h| h.key == key)
        .last()
        .and_then(|h| std::str::from_utf8(h.value?).ok())
}

/// The value of `r`, or `None` with the bad header's name added to `bad`.
fn note<T>(bad: &mut Vec<&'static str>, r: Result<T, &'static str>) -> Option<T> {
    r.map_err(|key| bad.push(key)).ok()
}

/// Parses header `key` of `msg`; `Err(key)` when it is missing or garbled.
fn parsed<T: std::str::FromStr>(msg: &OwnedMessage, key: &'static str) -> Result<T, &'static str> {
    header_text(msg, key)
        .and_then(|v| v.trim().parse().ok())
        .ok_or(key)
}

impl RetryState {
    /// A record read from a source topic: its first attempt.
    pub fn fresh(msg: &OwnedMessage) -> RetryState {
        RetryState {
            attempt: 1,
            due_ms: None,
            first_failure: None,
            source: SourceRecord::of(msg),
        }
    }

    /// A record read from the retry topic of `topic_attempt`. Missing or garbled headers
    /// fall back (attempt from the topic, due now, first failure unknown, the record itself
    /// as source) and are returned by name so the caller can warn.
    pub fn from_retry_record(
        msg: &OwnedMessage,
        topic_attempt: u32,
    ) -> (RetryState, Vec<&'static str>) {
        let mut bad = Vec::new();
        let attempt = note(
            &mut bad,
            parsed::<u32>(msg, headers::RETRY_ATTEMPT).and_then(|a| {
                if a >= 2 {
                    Ok(a)
                } else {
                    Err(headers::RETRY_ATTEMPT)
                }
            }),
        )
        .unwrap_or(topic_attempt);
        let due_ms = note(&mut bad, parsed::<i64>(msg, headers::RETRY_DUE));
        let first_failure = note(
            &mut bad,
            header_text(msg, headers::RETRY_FIRST_FAILURE)
                .and_then(|t| DateTime::parse_from_rfc3339(t.trim()).ok())
                .map(|t| t.with_timezone(&Utc))
                .ok_or(headers::RETRY_FIRST_FAILURE),
        );
        let topic = note(
            &mut bad,
            header_text(msg, headers::RETRY_ORIGINAL_TOPIC)
                .filter(|t| !t.is_empty())
                .ok_or(headers::RETRY_ORIGINAL_TOPIC),
        );
        let partition = note(
            &mut bad,
            parsed::<i32>(msg, headers::RETRY_ORIGINAL_PARTITION),
        );
        let offset = note(&mut bad, parsed::<i64>(msg, headers::RETRY_ORIGINAL_OFFSET));
        // Absent when the source record had no timestamp; only a garbled value is bad.
        let timestamp = match header_text(msg, headers::RETRY_ORIGINAL_TIMESTAMP) {
            None => None,
            Some(_) => note(
                &mut bad,
                parsed::<i64>(msg, headers::RETRY_ORIGINAL_TIMESTAMP),
            ),
        };
        let source = match (topic, partition, offset) {
            (Some(topic), Some(partition), Some(offset)) => SourceRecord {
                topic: topic.to_owned(),
                partition,
                offset,
                timestamp,
                timestamp_type: None,
            },
            _ => SourceRecord::of(msg),
        };
        (
            RetryState {
                attempt,
                due_ms,
                first_failure,
                source,
            },
            bad,
        )
    }

    /// How long to wait from `now_ms` until due, at most `longest` (a due time far in the
    /// future is garbled or from a skewed clock; the longest backoff bounds the harm).
    pub fn wait(&self, now_ms: i64, longest: Duration) -> Duration {
        let Some(due) = self.due_ms else {
            return Duration::ZERO;
        };
        let ms = u64::try_from(due.saturating_sub(now_ms)).unwrap_or(0);
        Duration::from_millis(ms).min(longest)
    }
}

/// The headers of the copy of `msg` that waits for `next_attempt` in a retry topic: `msg`'s
/// own headers except `ec-retry-*`, which are replaced.
pub fn retry_headers(
    msg: &OwnedMessage,
    state: &RetryState,
    next_attempt: u32,
    due_ms: i64,
    first_failure: DateTime<Utc>,
) -> OwnedHeaders {
    let mut out = OwnedHeaders::new();
    if let Some(original) = msg.headers() {
        for h in original.iter() {
            if !h.key.starts_with(headers::RETRY_PREFIX) {
                out = out.insert(Header {
                    key: h.key,
                    value: h.value,
                });
            }
        }
    }
    let source = &state.source;
    let mut added = vec![
        (headers::RETRY_ATTEMPT, next_attempt.to_string()),
        (headers::RETRY_DUE, due_ms.to_string()),
        (
            headers::RETRY_FIRST_FAILURE,
            first_failure.to_rfc3339_opts(SecondsFormat::Millis, true),
        ),
        (headers::RETRY_ORIGINAL_TOPIC, source.topic.clone()),
        (
            headers::RETRY_ORIGINAL_PARTITION,
            source.partition.to_string(),
        ),
        (headers::RETRY_ORIGINAL_OFFSET, source.offset.to_string()),
    ];
    if let Some(ts) = source.timestamp {
        added.push((headers::RETRY_ORIGINAL_TIMESTAMP, ts.to_string()));
    }
    for (key, value) in &added {
        out = out.insert(Header {
            key,
            value: Some(value.as_bytes()),
        });
    }
    out
}

/// The group's retry topics and the attempt each one holds.
#[derive(Debug, Clone, Default)]
pub struct RetryTopics {
    attempts: HashMap<String, u32>,
    group_id: String,
}

impl RetryTopics {
    /// `topics` are the retry topics of attempts 2, 3, … in order (see
    /// [`crate::config::Settings::retry_topics`]).
    pub fn new(group_id: &str, topics: &[String]) -> RetryTopics {
        RetryTopics {
            attempts: topics
                .iter()
                .zip(2u32..)
                .map(|(t, a)| (t.clone(), a))
                .collect(),
            group_id: group_id.to_owned(),
        }
    }

    /// The attempt records of `topic` wait for, if it is one of ours.
    pub fn attempt_of(&self, topic: &str) -> Option<u32> {
        self.attempts.get(topic).copied()
    }

    /// The topic where a record waits for `attempt`.
    pub fn topic_for(&self, attempt: u32) -> String {
        eventconsumer_contract::retry_topic(&self.group_id, attempt)
    }
}

/// Milliseconds since the epoch of `t`.
pub fn epoch_ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rdkafka::Timestamp;

    fn record(topic: &str, offset: i64, hs: &[(&str, &str)]) -> OwnedMessage {
        let mut h = OwnedHeaders::new();
        for (key, value) in hs {
            h = h.insert(Header {
                key,
                value: Some(*value),
            });
        }
        OwnedMessage::new(
            Some(b"{}".to_vec()),
            Some(b"k".to_vec()),
            topic.into(),
            Timestamp::CreateTime(1_700_000_000_000),
            1,
            offset,
            Some(h),
        )
    }

    fn text(h: &OwnedHeaders) -> Vec<(String, String)> {
        h.iter()
            .map(|h| {
                (
                    h.key.to_owned(),
                    String::from_utf8_lossy(h.value.unwrap_or_default()).into_owned(),
                )
            })
            .collect()
    }

    #[test]
    fn retry_headers_round_trip_and_keep_foreign_headers_once() {
        let source = record(
            "order.placed",
            42,
            &[(headers::REDRIVE_COUNT, "2"), ("trace-id", "t")],
        );
        let t0 = DateTime::parse_from_rfc3339("2026-11-26T10:00:00.5Z")
            .unwrap()
            .with_timezone(&Utc);
        let first = retry_headers(&source, &RetryState::fresh(&source), 2, 123, t0);
        let copy = OwnedMessage::new(
            Some(b"{}".to_vec()),
            Some(b"k".to_vec()),
            "g.retry.1".into(),
            Timestamp::CreateTime(1_800_000_000_000),
            0,
            7,
            Some(first),
        );
        let (state, bad) = RetryState::from_retry_record(&copy, 2);
        assert!(bad.is_empty(), "{bad:?}");
        assert_eq!(state.attempt, 2);
        assert_eq!(state.due_ms, Some(123));
        assert_eq!(state.first_failure, Some(t0));
        assert_eq!(
            (state.source.topic.as_str(), state.source.partition),
            ("order.placed", 1)
        );
        assert_eq!(state.source.offset, 42);
        assert_eq!(state.source.timestamp, Some(1_700_000_000_000));
        // The next hop replaces the retry headers rather than piling them up.
        let second = text(&retry_headers(&copy, &state, 3, 456, t0));
        let count = |k: &str| second.iter().filter(|(key, _)| key == k).count();
        assert_eq!(count(headers::RETRY_ATTEMPT), 1);
        assert_eq!(count(headers::REDRIVE_COUNT), 1, "foreign headers kept");
        assert_eq!(count("trace-id"), 1);
        assert!(second.contains(&(headers::RETRY_ATTEMPT.to_owned(), "3".to_owned())));
        assert!(second.contains(&(headers::RETRY_ORIGINAL_OFFSET.to_owned(), "42".to_owned())));
    }

    #[test]
    fn a_retry_record_with_garbled_headers_takes_its_attempt_from_the_topic_and_is_due_now() {
        let msg = record(
            "g.retry.2",
            9,
            &[(headers::RETRY_ATTEMPT, "two"), (headers::RETRY_DUE, "")],
        );
        let (state, bad) = RetryState::from_retry_record(&msg, 3);
        assert_eq!(state.attempt, 3, "from the topic name");
        assert_eq!(state.wait(0, Duration::from_secs(60)), Duration::ZERO);
        assert_eq!(state.first_failure, None);
        assert_eq!(state.source, SourceRecord::of(&msg), "itself as source");
        for key in [
            headers::RETRY_ATTEMPT,
            headers::RETRY_DUE,
            headers::RETRY_FIRST_FAILURE,
            headers::RETRY_ORIGINAL_TOPIC,
        ] {
            assert!(bad.contains(&key), "{key} not reported in {bad:?}");
        }
    }

    #[test]
    fn a_due_time_far_ahead_waits_at_most_the_longest_backoff() {
        let msg = record("g.retry.1", 0, &[(headers::RETRY_DUE, "99999999999999")]);
        let (state, _) = RetryState::from_retry_record(&msg, 2);
        assert_eq!(
            state.wait(1_000, Duration::from_secs(20)),
            Duration::from_secs(20)
        );
        let due_soon = RetryState {
            due_ms: Some(1_500),
            ..state
        };
        assert_eq!(
            due_soon.wait(1_000, Duration::from_secs(20)),
            Duration::from_millis(500)
        );
        assert_eq!(
            due_soon.wait(2_000, Duration::from_secs(20)),
            Duration::ZERO
        );
    }

    #[test]
    fn the_retry_topics_map_to_their_attempts() {
        let t = RetryTopics::new("g", &["g.retry.1".to_owned(), "g.retry.2".to_owned()]);
        assert_eq!(t.attempt_of("g.retry.1"), Some(2));
        assert_eq!(t.attempt_of("g.retry.2"), Some(3));
        assert_eq!(t.attempt_of("order.placed"), None);
        assert_eq!(t.topic_for(3), "g.retry.2");
    }
}
