//! The three handlers the worker can run, behind one enum so the delivery loop stays
//! generic, plus the error type that decides whether a failure is retried.
//!
//! A handler sees one message at a time per partition and answers with an [`Outcome`]:
//! `Done` (everything the message caused is durable, its offset may be stored) or
//! `Deferred` (the handler kept the message's [`Ack`] and will release it later — the
//! analytics window does this so that offsets move only once the window's counts are
//! published).

pub mod analytics;
pub mod fault;
pub mod order;
pub mod sink;
pub mod video;

use std::time::Duration;

use rdkafka::message::{Message, OwnedMessage};

use crate::config::{HandlerSettings, RetrySettings};
use crate::events::EventError;
use crate::offsets::Ack;
pub use crate::offsets::Outcome;
use crate::producer::{Producer, PublishError};

/// Why one attempt failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum HandlerError {
    /// Bad bytes or a broken rule: retrying cannot help.
    #[error(transparent)]
    Event(#[from] EventError),
    /// The outcome event was not acknowledged.
    #[error(transparent)]
    Publish(#[from] PublishError),
    /// The HTTP sink answered with a status that is not 2xx.
    #[error("sink answered HTTP {status}: {body}")]
    SinkStatus { status: u16, body: String },
    /// The HTTP sink could not be reached or did not answer.
    #[error("sink request failed: {0}")]
    SinkTransport(String),
    /// The attempt took longer than `--attempt-timeout`.
    #[error("attempt timed out after {}", humantime::format_duration(*.0))]
    Timeout(Duration),
    /// A failure injected by `--fault-fail-percent` (a testing aid).
    #[error("injected failure {failure} of {times} (--fault-fail-percent)")]
    Injected { failure: u32, times: u32 },
}

/// Whether an HTTP status from the sink is retryable; `None` for success.
///
/// 408 (timeout), 429 (throttled) and 5xx are the sink's temporary trouble; any other
/// non-2xx means the request itself is wrong and would fail again.
pub fn sink_status_retryable(status: u16) -> Option<bool> {
    match status {
        200..=299 => None,
        408 | 429 | 500..=599 => Some(true),
        _ => Some(false),
    }
}

impl HandlerError {
    /// A short, stable name: metrics label and the DLQ error-class header.
    pub fn class(&self) -> &'static str {
        match self {
            HandlerError::Event(e) => e.class(),
            HandlerError::Publish(_) => "publish",
            HandlerError::SinkStatus { status, .. } => {
                if sink_status_retryable(*status) == Some(true) {
                    "sink-unavailable"
                } else {
                    "sink-rejected"
                }
            }
            HandlerError::SinkTransport(_) => "sink-unreachable",
            HandlerError::Timeout(_) => "timeout",
            HandlerError::Injected { .. } => "injected",
        }
    }

    /// Retryable failures get backoff and more attempts; the others go to the DLQ at once.
    pub fn is_retryable(&self) -> bool {
        match self {
            HandlerError::Event(_) => false,
            HandlerError::SinkStatus { status, .. } => sink_status_retryable(*status) == Some(true),
            HandlerError::Publish(_)
            | HandlerError::SinkTransport(_)
            | HandlerError::Timeout(_)
            | HandlerError::Injected { .. } => true,
        }
    }
}

/// The payload of a message, or a decode error for a tombstone.
pub(crate) fn payload(msg: &OwnedMessage) -> Result<&[u8], EventError> {
    msg.payload()
        .ok_or_else(|| EventError::Decode("the message has no value".to_owned()))
}

/// The handler a worker runs, with the fault injector of `--fault-fail-percent` (a testing
/// aid) in front of it when configured.
pub struct Handler {
    kind: Kind,
    fault: Option<fault::FaultInjector>,
}

enum Kind {
    Order(order::OrderHandler),
    Analytics(analytics::AnalyticsHandler),
    Video(video::VideoHandler),
}

impl Handler {
    /// Builds the configured handler around `producer` (outcome events).
    pub fn new(
        settings: &HandlerSettings,
        output_topic: &str,
        consumer_name: &str,
        retry: &RetrySettings,
        producer: Producer,
    ) -> Result<Handler, sink::SinkSetupError> {
        let (settings, fault) = settings.split_fault();
        let kind = match settings {
            HandlerSettings::Order {
                action,
                sink_url,
                publish,
            } => Kind::Order(order::OrderHandler::new(
                *action,
                publish.then_some(output_topic),
                sink_url.as_ref(),
                retry.attempt_timeout,
                producer,
            )?),
            HandlerSettings::Analytics { window } => Kind::Analytics(
                analytics::AnalyticsHandler::new(*window, output_topic, consumer_name, producer),
            ),
            HandlerSettings::Video {
                stage,
                transcode_bytes_per_sec,
            } => Kind::Video(video::VideoHandler::new(
                *stage,
                output_topic,
                *transcode_bytes_per_sec,
                producer,
            )),
            HandlerSettings::Faulty { .. } => unreachable!("split_fault unwraps every layer"),
        };
        Ok(Handler {
            kind,
            fault: fault.map(fault::FaultInjector::new),
        })
    }

    /// One attempt at `msg`. `ack` releases the message's offset; only deferring handlers
    /// keep it.
    pub async fn handle(&self, msg: &OwnedMessage, ack: &Ack) -> Result<Outcome, HandlerError> {
        if let Some(fault) = &self.fault {
            fault.check(msg)?;
        }
        self.run(msg, ack).await
    }

    /// Attempt `attempt.number` at `msg`, a copy (in a retry topic) of the source record
    /// `attempt` names, or that record itself. The fault injector chooses and counts by the
    /// source record and the attempt number, so a retried message fails the same attempts
    /// whichever topic and process it is tried in.
    pub async fn handle_attempt(
        &self,
        msg: &OwnedMessage,
        ack: &Ack,
        attempt: &fault::AttemptOf<'_>,
    ) -> Result<Outcome, HandlerError> {
        if let Some(fault) = &self.fault {
            fault.check_attempt(attempt)?;
        }
        self.run(msg, ack).await
    }

    async fn run(&self, msg: &OwnedMessage, ack: &Ack) -> Result<Outcome, HandlerError> {
        match &self.kind {
            Kind::Order(h) => h.handle(msg).await,
            Kind::Analytics(h) => h.handle(msg, ack),
            Kind::Video(h) => h.handle(msg).await,
        }
    }

    /// Publishes any deferred work now (before a revoke or shutdown) and releases its
    /// acks; `false` if that failed (the offsets then stay unstored).
    pub async fn flush(&self) -> bool {
        match &self.kind {
            Kind::Analytics(h) => h.flush_now().await,
            Kind::Order(_) | Kind::Video(_) => true,
        }
    }

    /// True when [`Handler::wait_for_room`] would wait now.
    pub fn is_full(&self) -> bool {
        match &self.kind {
            Kind::Analytics(h) => h.is_full(),
            Kind::Order(_) | Kind::Video(_) => false,
        }
    }

    /// Waits while the handler cannot take more messages without unbounded memory (the
    /// analytics handler while its reports fail); returns at once otherwise.
    pub async fn wait_for_room(&self) {
        if let Kind::Analytics(h) = &self.kind {
            h.wait_for_room().await;
        }
    }

    /// The analytics handler, for the loop to run its window timer.
    pub fn as_analytics(&self) -> Option<&analytics::AnalyticsHandler> {
        match &self.kind {
            Kind::Analytics(h) => Some(h),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sink_statuses_are_classified_as_the_issue_says() {
        for ok in [200, 201, 202, 204] {
            assert_eq!(sink_status_retryable(ok), None, "{ok}");
        }
        for retry in [408, 429, 500, 502, 503, 504] {
            assert_eq!(sink_status_retryable(retry), Some(true), "{retry}");
        }
        for reject in [400, 401, 403, 404, 409, 413, 422] {
            assert_eq!(sink_status_retryable(reject), Some(false), "{reject}");
        }
    }

    /// One error of every variant; the match without a wildcard makes a new variant a
    /// compile error here until it is added.
    fn one_of_each() -> Vec<HandlerError> {
        let all = vec![
            HandlerError::Event(EventError::Decode("x".into())),
            HandlerError::Event(EventError::Invalid {
                field: "total".into(),
                reason: "x".into(),
            }),
            HandlerError::Publish(PublishError {
                topic: "t".into(),
                reason: "x".into(),
            }),
            HandlerError::SinkStatus {
                status: 503,
                body: String::new(),
            },
            HandlerError::SinkStatus {
                status: 422,
                body: String::new(),
            },
            HandlerError::SinkTransport("x".into()),
            HandlerError::Timeout(Duration::from_secs(1)),
            HandlerError::Injected {
                failure: 1,
                times: 1,
            },
        ];
        for e in &all {
            match e {
                HandlerError::Event(EventError::Decode(_) | EventError::Invalid { .. })
                | HandlerError::Publish(_)
                | HandlerError::SinkStatus { .. }
                | HandlerError::SinkTransport(_)
                | HandlerError::Timeout(_)
                | HandlerError::Injected { .. } => {}
            }
        }
        all
    }

    #[test]
    fn every_error_class_the_worker_writes_is_one_the_contract_lists() {
        let classes: std::collections::BTreeSet<_> =
            one_of_each().iter().map(HandlerError::class).collect();
        for class in &classes {
            assert!(
                eventconsumer_contract::values::ERROR_CLASSES.contains(class),
                "{class:?} is not in contract::values::ERROR_CLASSES"
            );
        }
        assert_eq!(
            classes.len(),
            eventconsumer_contract::values::ERROR_CLASSES.len(),
            "the contract lists a class the worker never writes: {classes:?}"
        );
    }

    #[test]
    fn decode_and_validation_errors_are_not_retried_and_transient_ones_are() {
        let decode = HandlerError::from(EventError::Decode("x".into()));
        assert!(!decode.is_retryable());
        assert_eq!(decode.class(), "decode");
        let timeout = HandlerError::Timeout(Duration::from_secs(1));
        assert!(timeout.is_retryable());
        assert_eq!(timeout.class(), "timeout");
        assert_eq!(timeout.to_string(), "attempt timed out after 1s");
        let rejected = HandlerError::SinkStatus {
            status: 422,
            body: String::new(),
        };
        assert!(!rejected.is_retryable());
        assert_eq!(rejected.class(), "sink-rejected");
        let busy = HandlerError::SinkStatus {
            status: 503,
            body: String::new(),
        };
        assert!(busy.is_retryable());
        assert!(HandlerError::SinkTransport("refused".into()).is_retryable());
    }
}
