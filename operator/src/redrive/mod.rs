//! Declarative redrive of dead letters: the `DeadLetterRedrive` resource and the part of the
//! operator that carries it out.
//!
//! [`run`] watches DeadLetterRedrives (on the leader only: [`crate::manager::run`] starts it
//! beside the EventConsumer controller) and keeps one task per unfinished redrive. A task
//! reads the EventConsumer, validates it with [`crate::config::validate`], resolves its Kafka
//! credentials with [`KafkaAccess`], then hands over to [`replay::run`] on a blocking thread,
//! which takes the end offsets of the dead-letter topic and replays the selected records
//! ([`select`]) in Kafka transactions. A missing EventConsumer or Secret keeps the redrive
//! Pending and is checked again every [`RECHECK`]; Kafka errors are retried with backoff;
//! both are shown in the `Blocked` condition. Deleting a redrive, losing leadership or
//! shutting down stops its task; progress is in Kafka, so the next leader resumes it.

pub mod replay;
pub mod resource;
pub mod select;
pub mod status;

use std::collections::HashMap;
use std::future::Future;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{ObjectReference, Secret};
use k8s_openapi::jiff::Timestamp;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource, ResourceExt};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::config::{self, SecretFacts};
use crate::context::{FIELD_MANAGER, Scope};
use crate::crd::EventConsumer;
use crate::kafka::KafkaAccess;
use replay::{Ended, Job};
pub use resource::{DeadLetterRedrive, DeadLetterRedriveSpec, DeadLetterRedriveStatus, Phase};
use select::Selection;
use status::{BLOCKED, COMPLETE, StatusWriter, Written};

/// How soon a redrive waiting for its EventConsumer (or a Secret of it) checks again: the
/// operator does not watch them for redrives, and a user who just created the consumer
/// should not wait long.
pub const RECHECK: Duration = Duration::from_secs(10);
/// First retry after a Kafka or API error; doubles with each consecutive failure.
const BACKOFF_START: Duration = Duration::from_secs(1);
/// Cap of the error backoff: an outage of the brokers is noticed to be over within a minute.
const BACKOFF_MAX: Duration = Duration::from_secs(60);

struct Task {
    cancel: CancellationToken,
    handle: JoinHandle<()>,
}

/// Runs redrives in `scope` until `shutdown` resolves; then stops their tasks and waits for
/// them. Dropping the future (a crash of the caller) cancels the tasks as well.
/// `identity` names this operator replica in the Events it publishes.
pub async fn run(
    client: Client,
    scope: Scope,
    identity: String,
    shutdown: impl Future<Output = ()>,
) {
    let recorder = Recorder::new(
        client.clone(),
        Reporter {
            controller: FIELD_MANAGER.to_owned(),
            instance: Some(identity),
        },
    );
    let api: Api<DeadLetterRedrive> = scope.api(client.clone());
    let all = CancellationToken::new();
    let _cancel_on_drop = all.clone().drop_guard();
    let mut tasks: HashMap<String, Task> = HashMap::new();
    let events = watcher(api, watcher::Config::default()).default_backoff();
    tokio::pin!(events);
    tokio::pin!(shutdown);
    info!(?scope, "redrives starting");
    loop {
        let event = tokio::select! {
            () = &mut shutdown => break,
            event = events.next() => event,
        };
        match event {
            None => break,
            Some(Ok(watcher::Event::Apply(dlr) | watcher::Event::InitApply(dlr))) => {
                let Some(uid) = dlr.uid() else { continue };
                tasks.retain(|_, t| !t.handle.is_finished());
                let finished = dlr
                    .status
                    .as_ref()
                    .and_then(|s| s.phase)
                    .is_some_and(Phase::is_finished);
                if finished || tasks.contains_key(&uid) {
                    continue;
                }
                let Some(namespace) = dlr.namespace() else {
                    continue;
                };
                let cancel = all.child_token();
                let handle = tokio::spawn(run_one(
                    client.clone(),
                    recorder.clone(),
                    namespace,
                    dlr.name_any(),
                    uid.clone(),
                    cancel.clone(),
                ));
                tasks.insert(uid, Task { cancel, handle });
            }
            Some(Ok(watcher::Event::Delete(dlr))) => {
                if let Some(task) = dlr.uid().and_then(|uid| tasks.remove(&uid)) {
                    task.cancel.cancel();
                }
            }
            Some(Ok(_)) => {}
            // Also when the DeadLetterRedrive CRD is not installed: the watcher retries.
            Some(Err(error)) => warn!(%error, "watching DeadLetterRedrives"),
        }
    }
    all.cancel();
    for (_, task) in tasks {
        let _ = task.handle.await;
    }
    info!("redrives stopped");
}

/// What one attempt at a redrive came to.
enum Step {
    /// Nothing more to do (finished earlier, deleted, cancelled).
    Done,
    /// The redrive just succeeded.
    Succeeded { replayed: i64, skipped: i64 },
    /// Waiting for another object; check again after [`RECHECK`].
    Wait {
        reason: &'static str,
        message: String,
    },
}

/// Drives one redrive to its end, retrying what can be retried.
async fn run_one(
    client: Client,
    recorder: Recorder,
    namespace: String,
    name: String,
    uid: String,
    cancel: CancellationToken,
) {
    let api: Api<DeadLetterRedrive> = Api::namespaced(client.clone(), &namespace);
    let writer = StatusWriter::new(api.clone(), &name, &uid);
    let events = Events {
        recorder,
        object: ObjectReference {
            api_version: Some(DeadLetterRedrive::api_version(&()).into_owned()),
            kind: Some(DeadLetterRedrive::kind(&()).into_owned()),
            name: Some(name.clone()),
            namespace: Some(namespace.clone()),
            uid: Some(uid.clone()),
            ..Default::default()
        },
    };
    let mut failures: u32 = 0;
    let mut last_reason: Option<&'static str> = None;
    info!(%namespace, %name, "redrive task starting");
    loop {
        if cancel.is_cancelled() {
            return;
        }
        let (reason, message, delay) = match attempt(&client, &api, &writer, &uid, &cancel).await {
            Ok(Step::Done) => return,
            Ok(Step::Succeeded { replayed, skipped }) => {
                let note = format!("replayed {replayed} dead letters, skipped {skipped}");
                events.publish(EventType::Normal, "Succeeded", note).await;
                return;
            }
            Ok(Step::Wait { reason, message }) => {
                failures = 0;
                (reason, message, RECHECK)
            }
            Err(error) if error.is_permanent() => {
                fail(&api, &writer, error.reason(), &error.to_string()).await;
                events
                    .publish(EventType::Warning, "Failed", error.to_string())
                    .await;
                return;
            }
            Err(error) => {
                failures = failures.saturating_add(1);
                warn!(%namespace, %name, %error, "redrive blocked; retrying");
                (error.reason(), error.to_string(), backoff(failures))
            }
        };
        if cancel.is_cancelled() || block(&api, &writer, reason, &message).await == Written::Gone {
            return;
        }
        if last_reason != Some(reason) {
            events
                .publish(EventType::Warning, reason, message.clone())
                .await;
            last_reason = Some(reason);
        }
        tokio::select! {
            () = cancel.cancelled() => return,
            () = tokio::time::sleep(delay) => {}
        }
    }
}

/// Events about one redrive, best effort.
struct Events {
    recorder: Recorder,
    object: ObjectReference,
}

impl Events {
    async fn publish(&self, type_: EventType, reason: &str, note: String) {
        let event = Event {
            type_,
            reason: reason.to_owned(),
            note: Some(note),
            action: "Redrive".to_owned(),
            secondary: None,
        };
        // An Event that cannot be published must not stop the redrive: status has the same.
        if let Err(error) = self.recorder.publish(&event, &self.object).await {
            warn!(%error, "publishing an Event failed");
        }
    }
}

#[derive(Debug, thiserror::Error)]
enum AttemptError {
    #[error("reading {what}: {source}")]
    Api {
        what: String,
        #[source]
        source: kube::Error,
    },
    #[error(transparent)]
    Replay(#[from] replay::ReplayError),
    #[error("the redrive task ended unexpectedly: {0}")]
    Join(#[from] tokio::task::JoinError),
    #[error("{field}: {value:?} is not an RFC 3339 time")]
    BadTime { field: &'static str, value: String },
}

impl AttemptError {
    fn reason(&self) -> &'static str {
        match self {
            AttemptError::Api { .. } => "ApiError",
            AttemptError::Replay(error) => error.reason(),
            AttemptError::Join(_) => "TaskFailed",
            AttemptError::BadTime { .. } => "InvalidSpec",
        }
    }

    /// True when retrying cannot help: the redrive fails.
    fn is_permanent(&self) -> bool {
        match self {
            AttemptError::Replay(error) => error.is_permanent(),
            // The spec is immutable, so a bad time stays bad.
            AttemptError::BadTime { .. } => true,
            AttemptError::Api { .. } | AttemptError::Join(_) => false,
        }
    }
}

fn api_error(what: impl Into<String>) -> impl FnOnce(kube::Error) -> AttemptError {
    let what = what.into();
    move |source| AttemptError::Api { what, source }
}

async fn attempt(
    client: &Client,
    api: &Api<DeadLetterRedrive>,
    writer: &StatusWriter,
    uid: &str,
    cancel: &CancellationToken,
) -> Result<Step, AttemptError> {
    let name = writer.name().to_owned();
    let Some(dlr) = api
        .get_opt(&name)
        .await
        .map_err(api_error("the DeadLetterRedrive"))?
    else {
        return Ok(Step::Done);
    };
    if dlr.uid().as_deref() != Some(uid) {
        return Ok(Step::Done);
    }
    let status = dlr.status.clone().unwrap_or_default();
    if status.phase.is_some_and(Phase::is_finished) {
        return Ok(Step::Done);
    }
    let namespace = dlr.namespace().unwrap_or_default();
    let consumers: Api<EventConsumer> = Api::namespaced(client.clone(), &namespace);
    let consumer = &dlr.spec.consumer;
    let Some(ec) = consumers
        .get_opt(consumer)
        .await
        .map_err(api_error(format!("EventConsumer {consumer:?}")))?
    else {
        return Ok(Step::Wait {
            reason: "ConsumerNotFound",
            message: format!(
                "EventConsumer {consumer:?} not found in namespace {namespace:?}; the redrive starts once it exists"
            ),
        });
    };
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &namespace);
    let mut facts = SecretFacts::default();
    for secret in config::referenced_secrets(&ec) {
        if let Some(found) = secrets
            .get_opt(&secret)
            .await
            .map_err(api_error(format!("Secret {secret:?}")))?
        {
            facts.insert(&found);
        }
    }
    let valid = match config::validate(&ec, &facts) {
        Ok(valid) => valid,
        Err(error) => {
            return Ok(Step::Wait {
                reason: "ConsumerUnusable",
                message: format!("EventConsumer {consumer:?} cannot be used: {error}"),
            });
        }
    };
    let access = match KafkaAccess::resolve(client, &namespace, &valid.kafka).await {
        Ok(access) => access,
        Err(error) => {
            return Ok(Step::Wait {
                reason: "CredentialsUnavailable",
                message: format!("Kafka credentials of EventConsumer {consumer:?}: {error}"),
            });
        }
    };
    let selection = Selection {
        group: valid.kafka.group_id.clone(),
        source_topics: valid.kafka.topics.iter().map(|t| (t.clone(), 0)).collect(),
        since_ms: millis("spec.since", dlr.spec.since.as_deref())?,
        until_ms: millis("spec.until", dlr.spec.until.as_deref())?,
        error_class: dlr.spec.error_class.as_ref().map(|c| c.0.clone()),
        max_redrives: u32::try_from(dlr.spec.max_redrives.max(1)).unwrap_or(1),
        redrive_name: format!("{namespace}/{name}"),
    };
    let job = Job {
        access,
        uid: uid.to_owned(),
        dead_letter_topic: valid.delivery.dead_letter_topic.clone(),
        selection,
        status,
    };
    let writer = writer.clone();
    let cancel = cancel.clone();
    let ended = tokio::task::spawn_blocking(move || replay::run(job, &writer, &cancel)).await??;
    match ended {
        Ended::Succeeded { replayed, skipped } => {
            info!(%namespace, %name, replayed, skipped, "redrive succeeded");
            Ok(Step::Succeeded { replayed, skipped })
        }
        Ended::Stopped => {
            debug!(%namespace, %name, "redrive stopped");
            Ok(Step::Done)
        }
    }
}

/// Milliseconds since the epoch of the RFC 3339 time in `field`. The API server checks the
/// format already; a time it accepts that does not parse here must not widen the window.
fn millis(field: &'static str, time: Option<&str>) -> Result<Option<i64>, AttemptError> {
    time.map(|t| {
        t.parse::<Timestamp>()
            .map(Timestamp::as_millisecond)
            .map_err(|_| AttemptError::BadTime {
                field,
                value: t.to_owned(),
            })
    })
    .transpose()
}

fn backoff(failures: u32) -> Duration {
    let factor = 2u32.saturating_pow(failures.saturating_sub(1).min(16));
    BACKOFF_START.saturating_mul(factor).min(BACKOFF_MAX)
}

/// Marks the redrive blocked (keeping its phase, Pending if it has none) with the reason.
async fn block(
    api: &Api<DeadLetterRedrive>,
    writer: &StatusWriter,
    reason: &str,
    message: &str,
) -> Written {
    let Ok(Some(dlr)) = api.get_opt(writer.name()).await else {
        return Written::Done;
    };
    let mut status = dlr.status.unwrap_or_default();
    if status.phase.is_some_and(Phase::is_finished) {
        return Written::Done;
    }
    let before = status.clone();
    status.phase.get_or_insert(Phase::Pending);
    status.message = Some(message.to_owned());
    status::set_condition(&mut status, BLOCKED, true, reason, message);
    if status == before {
        return Written::Done;
    }
    writer.write_async(&status).await.unwrap_or(Written::Done)
}

/// Marks the redrive Failed with `reason` and `message`.
async fn fail(api: &Api<DeadLetterRedrive>, writer: &StatusWriter, reason: &str, message: &str) {
    let Ok(Some(dlr)) = api.get_opt(writer.name()).await else {
        return;
    };
    let mut status = dlr.status.unwrap_or_default();
    status.phase = Some(Phase::Failed);
    status.completed_at = Some(Timestamp::now().to_string());
    status.message = Some(message.to_owned());
    status::set_condition(&mut status, BLOCKED, true, reason, message);
    status::set_condition(&mut status, COMPLETE, false, "Failed", message);
    if let Err(error) = writer.write_async(&status).await {
        warn!(%error, "writing the Failed status");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_backoff_doubles_up_to_a_minute() {
        assert_eq!(backoff(1), Duration::from_secs(1));
        assert_eq!(backoff(2), Duration::from_secs(2));
        assert_eq!(backoff(4), Duration::from_secs(8));
        assert_eq!(backoff(30), BACKOFF_MAX);
    }

    #[test]
    fn rfc3339_times_become_epoch_millis() {
        let at = |t| millis("spec.since", Some(t)).unwrap();
        assert_eq!(at("1970-01-01T00:00:01.5Z"), Some(1_500));
        assert_eq!(at("2026-11-26T10:00:00+01:00"), at("2026-11-26T09:00:00Z"));
        assert_eq!(millis("spec.since", None).unwrap(), None);
    }

    #[test]
    fn a_time_that_does_not_parse_fails_the_redrive_naming_the_field() {
        let error = millis("spec.until", Some("yesterday")).unwrap_err();
        assert!(error.is_permanent());
        assert_eq!(
            error.to_string(),
            "spec.until: \"yesterday\" is not an RFC 3339 time"
        );
    }
}
