//! The `analytics` handler: counts user events in tumbling windows (default 5 s, as in
//! the seed) — `page_view`s per path and all events per type — and publishes each
//! window's counts to the output topic when the window ends.
//!
//! **Offsets move with the published counts.** Counting a message does not finish it: the
//! handler keeps the message's [`Ack`] in the window and releases all of them only after
//! the window's report is acknowledged by the broker. A crash therefore never loses a
//! count; the price is that a crash (or a lost partition) after a report was published but
//! before its offsets were committed makes the next owner count those messages again, so
//! **a window can be counted twice after a crash**. A clean shutdown or a revoke flushes
//! the open window first (a report with `closed_early: true`), stores and commits, so
//! nothing is counted twice then — unless that flush cannot be published in time (output
//! topic down): then the report is kept with its acks for a later window, the revoked
//! partitions' messages are counted again by their next owner, and a window can be counted
//! twice as after a crash. A report that fails is never dropped with its acks, which would
//! stall the commits of partitions this worker still owns.
//!
//! **Memory stays bounded while reports cannot be published.** Counted messages keep their
//! acks until a report carrying them is published; while publishing fails (output topic
//! down), [`AnalyticsHandler::wait_for_room`] holds the partition tasks once the open window
//! holds [`MAX_HELD_WHILE_FAILING`] acks, so their queues fill and the partitions pause
//! instead of growing the window without limit. The first successful publish lets them go.
//!
//! Windows follow processing time and are aligned to multiples of the window length since
//! the Unix epoch. Each worker publishes its own report per window (keyed by consumer
//! name); with several workers in a group, readers add up the reports of a window, and
//! the same window can have an early and a regular report.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};
use chrono::{DateTime, TimeDelta, Utc};
use rdkafka::message::OwnedMessage;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use super::{HandlerError, Outcome, payload};
use crate::events::{self, UserEvent};
use crate::offsets::Ack;
use crate::producer::Producer;

/// Counts of one window.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WindowCounts {
    /// All events counted.
    pub events: u64,
    /// `page_view` events per `payload.path`.
    pub page_views: BTreeMap<String, u64>,
    /// All events per `type`.
    pub events_by_type: BTreeMap<String, u64>,
}

impl WindowCounts {
    pub fn add(&mut self, event: &UserEvent) {
        self.events += 1;
        *self.events_by_type.entry(event.kind.clone()).or_default() += 1;
        if let Some(path) = event.page_path() {
            *self.page_views.entry(path.to_owned()).or_default() += 1;
        }
    }

    pub fn is_empty(&self) -> bool {
        self.events == 0
    }

    /// Adds `other`'s counts to these.
    pub fn merge(&mut self, other: WindowCounts) {
        self.events += other.events;
        for (path, n) in other.page_views {
            *self.page_views.entry(path).or_default() += n;
        }
        for (kind, n) in other.events_by_type {
            *self.events_by_type.entry(kind).or_default() += n;
        }
    }
}

/// The record published per window to the output topic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WindowReport {
    /// The worker that counted (several workers of a group each report their share).
    pub consumer: String,
    /// RFC 3339 start of the window.
    pub window_start: String,
    /// RFC 3339 end of the window (the flush time for an early report).
    pub window_end: String,
    /// Published before the window ended, because of a shutdown or a rebalance.
    pub closed_early: bool,
    #[serde(flatten)]
    pub counts: WindowCounts,
}

/// The start of the tumbling window of length `len` that contains `now`.
pub fn window_start(now: DateTime<Utc>, len: Duration) -> DateTime<Utc> {
    let len_ms = i64::try_from(len.as_millis()).unwrap_or(i64::MAX).max(1);
    let ms = now.timestamp_millis();
    DateTime::from_timestamp_millis(ms - ms.rem_euclid(len_ms)).unwrap_or(now)
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

#[derive(Default)]
struct Window {
    counts: WindowCounts,
    acks: Vec<Ack>,
}

/// A window taken out of the handler to be published. Unless it was published, dropping it
/// puts its counts and acks back into the open window: after a failed publish, and also when
/// a caller's timeout cancels the publish. Dropping the acks instead would leave their
/// offsets unfinished for good, so partitions this worker still owns would never commit
/// again; put back, they are published (and released) with a later window.
struct Taken<'a> {
    handler: &'a AnalyticsHandler,
    window: Option<Window>,
}

impl Drop for Taken<'_> {
    fn drop(&mut self) {
        if let Some(window) = self.window.take() {
            let mut open = self.handler.open();
            open.counts.merge(window.counts);
            open.acks.extend(window.acks);
        }
    }
}

pub struct AnalyticsHandler {
    len: Duration,
    output_topic: String,
    consumer: String,
    producer: Producer,
    open: Mutex<Window>,
    /// Reports are published one at a time, so a worker's reports stay in order.
    publishing: tokio::sync::Mutex<()>,
    /// The latest publish attempt failed.
    failing: AtomicBool,
    /// Woken by every successful publish.
    published: tokio::sync::Notify,
}

/// Acks the open window may hold while reports fail before partition tasks wait: counted
/// messages are cheap (an ack and a tracker entry, ~100 bytes), so 50,000 is ~5 MB, and a
/// healthy window is never held back because the limit only applies while publishing fails.
pub const MAX_HELD_WHILE_FAILING: usize = 50_000;

/// Backoff of a failed report publish: quick first retry, then at most every 5 s so a
/// broker that comes back is noticed soon.
fn report_backoff() -> ExponentialBuilder {
    ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(200))
        .with_max_delay(Duration::from_secs(5))
        .with_jitter()
        .without_max_times()
}

/// Attempts of an early (revoke or shutdown) flush; the caller bounds the time too.
const EARLY_FLUSH_ATTEMPTS: usize = 3;

impl AnalyticsHandler {
    pub fn new(
        len: Duration,
        output_topic: &str,
        consumer: &str,
        producer: Producer,
    ) -> AnalyticsHandler {
        AnalyticsHandler {
            len,
            output_topic: output_topic.to_owned(),
            consumer: consumer.to_owned(),
            producer,
            open: Mutex::new(Window::default()),
            publishing: tokio::sync::Mutex::new(()),
            failing: AtomicBool::new(false),
            published: tokio::sync::Notify::new(),
        }
    }

    /// Reports are failing and the open window holds [`MAX_HELD_WHILE_FAILING`] acks.
    pub fn is_full(&self) -> bool {
        self.failing.load(Ordering::Acquire) && self.open().acks.len() >= MAX_HELD_WHILE_FAILING
    }

    /// Returns at once unless reports are failing and the open window already holds
    /// [`MAX_HELD_WHILE_FAILING`] acks; then waits for the next successful publish.
    pub async fn wait_for_room(&self) {
        let mut warned = false;
        loop {
            // Registered before the check, so a publish between the check and the await
            // still wakes this waiter.
            let published = self.published.notified();
            if !self.is_full() {
                return;
            }
            let held = self.open().acks.len();
            if !warned {
                tracing::warn!(
                    held,
                    "analytics reports are failing and the open window is full; holding partitions until a report is published"
                );
                warned = true;
            }
            published.await;
        }
    }

    fn open(&self) -> std::sync::MutexGuard<'_, Window> {
        self.open.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Counts the event into the open window and keeps its ack there.
    pub fn handle(&self, msg: &OwnedMessage, ack: &Ack) -> Result<Outcome, HandlerError> {
        let event: UserEvent = events::decode(payload(msg)?)?;
        event.validate()?;
        let mut open = self.open();
        open.counts.add(&event);
        open.acks.push(ack.clone());
        Ok(Outcome::Deferred)
    }

    fn take(&self) -> Taken<'_> {
        Taken {
            handler: self,
            window: Some(std::mem::take(&mut *self.open())),
        }
    }

    async fn publish(&self, report: &WindowReport) -> Result<(), HandlerError> {
        let body = serde_json::to_vec(report)
            .map_err(|e| events::EventError::Decode(format!("cannot encode the report: {e}")))?;
        self.producer
            .send(
                &self.output_topic,
                Some(self.consumer.as_bytes()),
                &body,
                None,
            )
            .await?;
        Ok(())
    }

    /// Publishes `taken` with retries (at most `attempts`, or until `stop`), then releases
    /// its acks. Returns whether it was published; if not, `taken` goes back to the open
    /// window when dropped.
    async fn publish_window(
        &self,
        mut taken: Taken<'_>,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
        closed_early: bool,
        attempts: Option<usize>,
        stop: &CancellationToken,
    ) -> bool {
        let Some(counts) = taken.window.as_ref().map(|w| w.counts.clone()) else {
            return true;
        };
        if counts.is_empty() {
            return true;
        }
        let report = WindowReport {
            consumer: self.consumer.clone(),
            window_start: rfc3339(start),
            window_end: rfc3339(end),
            closed_early,
            counts,
        };
        let mut delays = report_backoff().build();
        let mut attempt = 0;
        loop {
            attempt += 1;
            // exactlyOnce: the report and its events' offsets commit together.
            let hold = self.producer.enter().await;
            match self.publish(&report).await {
                Ok(()) => {
                    for ack in taken.window.take().map(|w| w.acks).unwrap_or_default() {
                        ack.release();
                    }
                    drop(hold);
                    self.failing.store(false, Ordering::Release);
                    self.published.notify_waiters();
                    tracing::info!(
                        window_start = %report.window_start,
                        events = report.counts.events,
                        closed_early,
                        "analytics window published"
                    );
                    return true;
                }
                Err(e) => {
                    drop(hold);
                    self.failing.store(true, Ordering::Release);
                    tracing::warn!(error = %e, attempt, "analytics report not published");
                    if attempts.is_some_and(|max| attempt >= max) {
                        return false;
                    }
                    let delay = delays.next().unwrap_or(Duration::from_secs(5));
                    tokio::select! {
                        _ = stop.cancelled() => return false,
                        _ = tokio::time::sleep(delay) => {}
                    }
                }
            }
        }
    }

    /// Publishes the open window now as an early report (revoke, shutdown).
    pub async fn flush_now(&self) -> bool {
        let _one_at_a_time = self.publishing.lock().await;
        let window = self.take();
        let now = Utc::now();
        self.publish_window(
            window,
            window_start(now, self.len),
            now,
            true,
            Some(EARLY_FLUSH_ATTEMPTS),
            &CancellationToken::new(),
        )
        .await
    }

    /// Closes a window at every boundary until `stop`. A report that cannot be published
    /// is retried until it is (its offsets stay unstored meanwhile) or until `stop`.
    pub async fn run_windows(&self, stop: CancellationToken) {
        loop {
            let now = Utc::now();
            let start = window_start(now, self.len);
            let end = start + TimeDelta::from_std(self.len).unwrap_or(TimeDelta::seconds(5));
            let wait = (end - now).to_std().unwrap_or_default();
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(wait) => {}
            }
            let _one_at_a_time = self.publishing.lock().await;
            let window = self.take();
            if !self
                .publish_window(window, start, end, false, None, &stop)
                .await
            {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(kind: &str, path: Option<&str>) -> UserEvent {
        UserEvent {
            kind: kind.into(),
            user_id: "u".into(),
            session_id: "s".into(),
            payload: path
                .map(|p| BTreeMap::from([("path".to_owned(), p.to_owned())]))
                .unwrap_or_default(),
            timestamp: String::new(),
        }
    }

    #[tokio::test]
    async fn partitions_wait_for_room_only_while_reports_fail_and_the_window_is_full() {
        use crate::offsets::tests::Recorder;
        use crate::offsets::{PartitionOffsets, SharedOffsets};
        use std::sync::Arc;

        let mut base = rdkafka::ClientConfig::new();
        base.set("bootstrap.servers", "127.0.0.1:9");
        let producer = Producer::new(&base, Duration::from_secs(1)).unwrap();
        let h = Arc::new(AnalyticsHandler::new(
            Duration::from_secs(5),
            "counts",
            "test",
            producer,
        ));
        let offsets: SharedOffsets = Arc::new(Mutex::new(PartitionOffsets::new("events", 0)));
        let recorder = Arc::new(Recorder::default());
        for offset in 0..i64::try_from(MAX_HELD_WHILE_FAILING).unwrap() {
            let ack = Ack::begin(&offsets, offset, recorder.clone());
            h.open().acks.push(ack);
        }
        let soon = Duration::from_millis(50);
        assert!(
            tokio::time::timeout(soon, h.wait_for_room()).await.is_ok(),
            "a full window is fine while reports are published"
        );
        h.failing.store(true, Ordering::Release);
        assert!(h.is_full());
        let waiter = tokio::spawn({
            let h = h.clone();
            async move { h.wait_for_room().await }
        });
        tokio::time::sleep(soon).await;
        assert!(!waiter.is_finished(), "held while failing and full");
        // What a successful publish does.
        h.failing.store(false, Ordering::Release);
        h.published.notify_waiters();
        tokio::time::timeout(Duration::from_secs(1), waiter)
            .await
            .expect("released by the publish")
            .unwrap();
    }

    #[tokio::test]
    async fn a_window_whose_publish_fails_or_is_cancelled_goes_back_with_its_acks() {
        use crate::offsets::tests::Recorder;
        use crate::offsets::{PartitionOffsets, SharedOffsets, lock};
        use std::sync::Arc;

        // Nothing listens on the discard port: every publish times out after 1 s.
        let mut base = rdkafka::ClientConfig::new();
        base.set("bootstrap.servers", "127.0.0.1:9");
        let producer = Producer::new(&base, Duration::from_secs(1)).unwrap();
        let h = AnalyticsHandler::new(Duration::from_secs(5), "counts", "test", producer);
        let offsets: SharedOffsets = Arc::new(Mutex::new(PartitionOffsets::new("events", 0)));
        let recorder = Arc::new(Recorder::default());
        for offset in 0..2 {
            let ack = Ack::begin(&offsets, offset, recorder.clone());
            let mut open = h.open();
            open.counts.add(&event("page_view", Some("/a")));
            open.acks.push(ack);
        }

        // Cancelled by the caller's timeout, as a revoke's bounded drain does.
        let cancelled = tokio::time::timeout(Duration::from_millis(100), h.flush_now()).await;
        assert!(cancelled.is_err(), "the publish cannot finish in 100 ms");
        assert_eq!(h.open().acks.len(), 2, "acks back in the open window");
        assert_eq!(h.open().counts.events, 2);

        // Failed after its attempts.
        assert!(!h.flush_now().await);
        assert_eq!(h.open().acks.len(), 2, "acks back in the open window");
        assert_eq!(h.open().counts.page_views["/a"], 2, "counted once each");
        assert!(recorder.0.lock().unwrap().is_empty(), "no offset stored");
        assert_eq!(lock(&offsets).pending(), 2);
    }

    #[test]
    fn counts_merge_by_key() {
        let mut a = WindowCounts::default();
        a.add(&event("page_view", Some("/a")));
        let mut b = WindowCounts::default();
        b.add(&event("page_view", Some("/a")));
        b.add(&event("click", None));
        a.merge(b);
        assert_eq!(a.events, 3);
        assert_eq!(a.page_views["/a"], 2);
        assert_eq!(a.events_by_type["click"], 1);
    }

    #[test]
    fn a_window_counts_page_views_per_path_and_events_per_type() {
        let mut c = WindowCounts::default();
        c.add(&event("page_view", Some("/")));
        c.add(&event("page_view", Some("/cart")));
        c.add(&event("page_view", Some("/")));
        c.add(&event("click", None));
        assert_eq!(c.events, 4);
        assert_eq!(
            c.page_views,
            BTreeMap::from([("/".into(), 2), ("/cart".into(), 1)])
        );
        assert_eq!(
            c.events_by_type,
            BTreeMap::from([("click".into(), 1), ("page_view".into(), 3)])
        );
    }

    #[test]
    fn windows_are_aligned_to_multiples_of_their_length() {
        let t = DateTime::parse_from_rfc3339("2026-11-26T10:00:07.300Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(
            rfc3339(window_start(t, Duration::from_secs(5))),
            "2026-11-26T10:00:05.000Z"
        );
        assert_eq!(
            rfc3339(window_start(t, Duration::from_secs(60))),
            "2026-11-26T10:00:00.000Z"
        );
    }

    #[test]
    fn a_report_flattens_its_counts_into_one_json_object() {
        let mut counts = WindowCounts::default();
        counts.add(&event("page_view", Some("/")));
        let report = WindowReport {
            consumer: "c".into(),
            window_start: "a".into(),
            window_end: "b".into(),
            closed_early: false,
            counts,
        };
        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(json["page_views"]["/"], 1);
        assert_eq!(json["events"], 1);
        let back: WindowReport = serde_json::from_value(json).unwrap();
        assert_eq!(back, report);
    }
}
