//! Dead-letter records: the original message plus headers that say where it came from and
//! why it failed, and a writer that does not give up while the DLQ is unavailable.
//!
//! # Headers
//!
//! The record keeps the original key, value and headers (minus any `ec-dlt-*` headers
//! from an earlier dead-lettering, which are replaced, and the `ec-retry-*` headers of
//! `retryTopics` mode; `ec-redrive-count` and the like stay) and adds these (names from
//! [`eventconsumer_contract::headers`]), modelled on Spring
//! Kafka's `kafka_dlt-original-*` / `kafka_dlt-exception-*` and Kafka Connect's
//! `__connect.errors.*`. Values are UTF-8 text (numbers in decimal, times in RFC 3339 UTC
//! with milliseconds) so that `kcat -f '%h'` and humans can read them.
//!
//! | header                           | value                                                  |
//! |----------------------------------|--------------------------------------------------------|
//! | `ec-dlt-original-topic`          | source topic (never a retry topic)                     |
//! | `ec-dlt-original-partition`      | source partition                                       |
//! | `ec-dlt-original-offset`         | source offset                                          |
//! | `ec-dlt-original-timestamp`      | source record timestamp, ms since the epoch (if any)   |
//! | `ec-dlt-original-timestamp-type` | `CreateTime` or `LogAppendTime` (if any)               |
//! | `ec-dlt-consumer-group`          | consumer group id                                      |
//! | `ec-dlt-consumer-name`           | EventConsumer name                                     |
//! | `ec-dlt-handler`                 | handler, e.g. `order/payment`                          |
//! | `ec-dlt-attempts`                | attempts made in total (1 for a non-retryable error)   |
//! | `ec-dlt-error-class`             | one of `contract::values::ERROR_CLASSES`               |
//! | `ec-dlt-error-retryable`         | `true` (retries exhausted) or `false` (sent at once)   |
//! | `ec-dlt-error-message`           | the last error, truncated to 4 KiB                     |
//! | `ec-dlt-first-failure`           | time of the first failed attempt                       |
//! | `ec-dlt-last-failure`            | time of the last failed attempt                        |
//!
//! # Unavailable DLQ
//!
//! A missing DLQ topic (auto-creation is off on our brokers) or a refusing broker must not
//! lose the message (the same goes for retry topics, written by the same loop), and must not let the offset move past it. The writer retries with
//! backoff for as long as it takes (or until a revoke/shutdown cancels it, leaving the
//! offset unstored), and tells the partition to pause meanwhile so librdkafka stops
//! fetching it; other partitions keep going.

use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};
use chrono::{DateTime, SecondsFormat, Utc};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders, OwnedMessage, Timestamp};
use tokio_util::sync::CancellationToken;

use eventconsumer_contract::headers;

use super::retry::Failure;
use crate::metrics::Metrics;
use crate::producer::Producer;

/// Header names of a dead-letter record, from [`eventconsumer_contract::headers`] (the
/// operator reads them to count and redrive dead letters).
pub mod header {
    pub use eventconsumer_contract::headers::{
        DLT_ATTEMPTS as ATTEMPTS, DLT_CONSUMER_GROUP as CONSUMER_GROUP,
        DLT_CONSUMER_NAME as CONSUMER_NAME, DLT_ERROR_CLASS as ERROR_CLASS,
        DLT_ERROR_MESSAGE as ERROR_MESSAGE, DLT_ERROR_RETRYABLE as ERROR_RETRYABLE,
        DLT_FIRST_FAILURE as FIRST_FAILURE, DLT_HANDLER as HANDLER,
        DLT_LAST_FAILURE as LAST_FAILURE, DLT_ORIGINAL_OFFSET as ORIGINAL_OFFSET,
        DLT_ORIGINAL_PARTITION as ORIGINAL_PARTITION, DLT_ORIGINAL_TIMESTAMP as ORIGINAL_TIMESTAMP,
        DLT_ORIGINAL_TIMESTAMP_TYPE as ORIGINAL_TIMESTAMP_TYPE,
        DLT_ORIGINAL_TOPIC as ORIGINAL_TOPIC, DLT_PREFIX as PREFIX,
    };

    /// Every header the worker adds (the ones that can be absent last).
    pub const ALL: &[&str] = &[
        ORIGINAL_TOPIC,
        ORIGINAL_PARTITION,
        ORIGINAL_OFFSET,
        CONSUMER_GROUP,
        CONSUMER_NAME,
        HANDLER,
        ATTEMPTS,
        ERROR_CLASS,
        ERROR_RETRYABLE,
        ERROR_MESSAGE,
        FIRST_FAILURE,
        LAST_FAILURE,
        ORIGINAL_TIMESTAMP,
        ORIGINAL_TIMESTAMP_TYPE,
    ];
}

/// Longest error message kept in a header; broker limits are far above, readers are not.
const MAX_ERROR_MESSAGE: usize = 4096;

/// Who dead-letters: fixed for the life of the worker.
#[derive(Debug, Clone)]
pub struct Origin {
    pub group_id: String,
    pub consumer_name: String,
    pub handler: String,
}

fn time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

fn truncated(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut cut = max;
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    &text[..cut]
}

/// The record a failure is about, where it was first consumed from: the message itself in
/// `blocking` mode; in `retryTopics` mode the source record a retry-topic record is a copy of
/// (from its `ec-retry-original-*` headers), so the dead-letter record never names a retry
/// topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceRecord {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    /// Milliseconds since the epoch.
    pub timestamp: Option<i64>,
    /// `CreateTime` or `LogAppendTime`; unknown for a record that went through a retry topic
    /// (the retry headers carry the timestamp only).
    pub timestamp_type: Option<&'static str>,
}

impl SourceRecord {
    /// `msg` as its own source.
    pub fn of(msg: &OwnedMessage) -> SourceRecord {
        let (timestamp, timestamp_type) = match msg.timestamp() {
            Timestamp::CreateTime(t) => (Some(t), Some("CreateTime")),
            Timestamp::LogAppendTime(t) => (Some(t), Some("LogAppendTime")),
            Timestamp::NotAvailable => (None, None),
        };
        SourceRecord {
            topic: msg.topic().to_owned(),
            partition: msg.partition(),
            offset: msg.offset(),
            timestamp,
            timestamp_type,
        }
    }
}

/// The headers of `msg` without the ones the worker owns (`ec-dlt-*`, `ec-retry-*`): what a
/// dead-letter record keeps of the original, e.g. `ec-redrive-count` or a trace id.
pub fn foreign_headers(msg: &OwnedMessage) -> OwnedHeaders {
    let mut out = OwnedHeaders::new();
    if let Some(original) = msg.headers() {
        for h in original.iter() {
            if !h.key.starts_with(header::PREFIX) && !h.key.starts_with(headers::RETRY_PREFIX) {
                out = out.insert(Header {
                    key: h.key,
                    value: h.value,
                });
            }
        }
    }
    out
}

/// The headers of the dead-letter record for `msg`, which came from `source`.
pub fn headers(
    msg: &OwnedMessage,
    source: &SourceRecord,
    failure: &Failure,
    origin: &Origin,
) -> OwnedHeaders {
    let mut out = foreign_headers(msg);
    let mut added: Vec<(&str, String)> = Vec::with_capacity(header::ALL.len());
    let mut add = |key: &'static str, value: &str| added.push((key, value.to_owned()));
    add(header::ORIGINAL_TOPIC, &source.topic);
    add(header::ORIGINAL_PARTITION, &source.partition.to_string());
    add(header::ORIGINAL_OFFSET, &source.offset.to_string());
    if let Some(ts) = source.timestamp {
        add(header::ORIGINAL_TIMESTAMP, &ts.to_string());
    }
    if let Some(ts_type) = source.timestamp_type {
        add(header::ORIGINAL_TIMESTAMP_TYPE, ts_type);
    }
    add(header::CONSUMER_GROUP, &origin.group_id);
    add(header::CONSUMER_NAME, &origin.consumer_name);
    add(header::HANDLER, &origin.handler);
    add(header::ATTEMPTS, &failure.attempts.to_string());
    add(header::ERROR_CLASS, failure.error.class());
    add(
        header::ERROR_RETRYABLE,
        if failure.error.is_retryable() {
            "true"
        } else {
            "false"
        },
    );
    add(
        header::ERROR_MESSAGE,
        truncated(&failure.error.to_string(), MAX_ERROR_MESSAGE),
    );
    add(header::FIRST_FAILURE, &time(failure.first_failure));
    add(header::LAST_FAILURE, &time(failure.last_failure));
    for (key, value) in &added {
        out = out.insert(Header {
            key,
            value: Some(value.as_bytes()),
        });
    }
    out
}

/// Backoff of a failing DLQ or retry-topic write: it retries without limit, at most every
/// 10 s (a topic an operator is about to create should be picked up within seconds, and
/// a down broker should not be hammered).
fn write_backoff() -> ExponentialBuilder {
    ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(250))
        .with_max_delay(Duration::from_secs(10))
        .with_jitter()
        .without_max_times()
}

/// Where a must-not-be-lost record goes; only changes what the logs say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Destination {
    DeadLetter,
    Retry,
}

/// A copy of `msg` on its way to a retry or dead-letter topic.
pub struct Outgoing<'a> {
    pub destination: Destination,
    pub topic: &'a str,
    pub msg: &'a OwnedMessage,
    pub headers: OwnedHeaders,
}

/// Sends `value` with `msg`'s key and `headers` to `topic`, retrying until it is
/// acknowledged (`true`) or `cancel` fires (`false`; the offset must then stay unstored).
/// `abandon_waits` (revoke, SIGTERM) ends a wait between two tries at once, also with
/// `false`. `blocked(true)` is called after the first failure (pause the partition),
/// `blocked(false)` once written after that; `failed` counts each failed try.
pub async fn send_until_acked(
    producer: &Producer,
    record: Outgoing<'_>,
    cancel: &CancellationToken,
    abandon_waits: &CancellationToken,
    blocked: impl Fn(bool),
    failed: impl Fn(),
) -> bool {
    let Outgoing {
        destination,
        topic,
        msg,
        headers,
    } = record;
    let value = msg.payload().unwrap_or_default();
    let mut delays = write_backoff().build();
    let mut was_blocked = false;
    loop {
        let sent = tokio::select! {
            biased;
            _ = cancel.cancelled() => return false,
            r = producer.send(topic, msg.key(), value, Some(headers.clone())) => r,
        };
        match sent {
            Ok(()) => {
                if was_blocked {
                    match destination {
                        Destination::DeadLetter => {
                            tracing::info!(dlq = %topic, topic = msg.topic(), partition = msg.partition(), offset = msg.offset(), "dead-letter topic available again; partition resumes")
                        }
                        Destination::Retry => {
                            tracing::info!(retry_topic = %topic, topic = msg.topic(), partition = msg.partition(), offset = msg.offset(), "retry topic available again; partition resumes")
                        }
                    }
                    blocked(false);
                }
                return true;
            }
            Err(e) => {
                failed();
                let delay = delays.next().unwrap_or(Duration::from_secs(10));
                let retry_in_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
                match destination {
                    Destination::DeadLetter => tracing::warn!(
                        dlq = %topic, topic = msg.topic(), partition = msg.partition(),
                        offset = msg.offset(), error = %e, retry_in_ms,
                        "dead-letter write failed; partition paused, offset not stored"
                    ),
                    Destination::Retry => tracing::warn!(
                        retry_topic = %topic, topic = msg.topic(), partition = msg.partition(),
                        offset = msg.offset(), error = %e, retry_in_ms,
                        "retry-topic write failed; partition paused, offset not stored"
                    ),
                }
                if !was_blocked {
                    was_blocked = true;
                    blocked(true);
                }
                tokio::select! {
                    biased;
                    _ = cancel.cancelled() => return false,
                    _ = abandon_waits.cancelled() => return false,
                    _ = tokio::time::sleep(delay) => {}
                }
            }
        }
    }
}

/// Writes dead-letter records.
pub struct DlqWriter {
    pub topic: String,
    pub origin: Origin,
    pub producer: Producer,
    pub metrics: Metrics,
}

impl DlqWriter {
    /// Writes the record for `msg` (which came from `source`) with [`send_until_acked`].
    pub async fn write(
        &self,
        msg: &OwnedMessage,
        source: &SourceRecord,
        failure: &Failure,
        cancel: &CancellationToken,
        abandon_waits: &CancellationToken,
        blocked: impl Fn(bool),
    ) -> bool {
        send_until_acked(
            &self.producer,
            Outgoing {
                destination: Destination::DeadLetter,
                topic: &self.topic,
                msg,
                headers: headers(msg, source, failure, &self.origin),
            },
            cancel,
            abandon_waits,
            blocked,
            || {
                self.metrics
                    .dlq_write_failures
                    .get_or_create(&self.metrics.labels())
                    .inc();
            },
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::EventError;
    use crate::handlers::HandlerError;
    use rdkafka::message::Timestamp;

    fn header_map(h: &OwnedHeaders) -> Vec<(String, String)> {
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
    fn a_dead_letter_record_carries_every_documented_header_and_the_original_ones() {
        let original = OwnedHeaders::new()
            .insert(Header {
                key: "trace-id",
                value: Some("abc"),
            })
            .insert(Header {
                key: header::ERROR_CLASS,
                value: Some("stale"),
            })
            .insert(Header {
                key: headers::RETRY_ATTEMPT,
                value: Some("2"),
            })
            .insert(Header {
                key: headers::REDRIVE_COUNT,
                value: Some("1"),
            });
        let msg = OwnedMessage::new(
            Some(b"{}".to_vec()),
            Some(b"k".to_vec()),
            "order.placed".into(),
            Timestamp::CreateTime(1_700_000_000_000),
            3,
            42,
            Some(original),
        );
        let t0 = DateTime::parse_from_rfc3339("2026-11-26T10:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let failure = Failure {
            error: HandlerError::Event(EventError::Decode("x".repeat(5000))),
            attempts: 1,
            first_failure: t0,
            last_failure: t0,
        };
        let origin = Origin {
            group_id: "payment-service".into(),
            consumer_name: "payment".into(),
            handler: "order/payment".into(),
        };
        let h = header_map(&headers(&msg, &SourceRecord::of(&msg), &failure, &origin));
        let get = |k: &str| {
            h.iter()
                .find(|(key, _)| key == k)
                .map(|(_, v)| v.clone())
                .unwrap_or_else(|| panic!("missing {k} in {h:?}"))
        };
        for name in header::ALL {
            get(name);
        }
        assert_eq!(get("trace-id"), "abc");
        assert_eq!(get(headers::REDRIVE_COUNT), "1", "redrive count kept");
        assert!(
            !h.iter().any(|(k, _)| k.starts_with(headers::RETRY_PREFIX)),
            "no retry headers on a dead letter: {h:?}"
        );
        assert_eq!(
            h.iter().filter(|(k, _)| k == header::ERROR_CLASS).count(),
            1
        );
        assert_eq!(get(header::ERROR_CLASS), "decode");
        assert_eq!(get(header::ERROR_RETRYABLE), "false");
        assert_eq!(get(header::ORIGINAL_TOPIC), "order.placed");
        assert_eq!(get(header::ORIGINAL_PARTITION), "3");
        assert_eq!(get(header::ORIGINAL_OFFSET), "42");
        assert_eq!(get(header::ORIGINAL_TIMESTAMP), "1700000000000");
        assert_eq!(get(header::ORIGINAL_TIMESTAMP_TYPE), "CreateTime");
        assert_eq!(get(header::CONSUMER_GROUP), "payment-service");
        assert_eq!(get(header::HANDLER), "order/payment");
        assert_eq!(get(header::ATTEMPTS), "1");
        assert_eq!(get(header::FIRST_FAILURE), "2026-11-26T10:00:00.000Z");
        assert_eq!(get(header::ERROR_MESSAGE).len(), MAX_ERROR_MESSAGE);
    }
}
