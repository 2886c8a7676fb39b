//! The measuring loop: every `measure_interval` it reads each EventConsumer's lag and
//! dead-letter count from Kafka, lets the autoscaler decide, creates missing retry topics, and
//! writes the Kafka-side part of the status — off the reconcile path, so a slow or unreachable
//! cluster never delays a reconcile.
//!
//! Division of labour with the reconciler: the reconciler registers each valid consumer here
//! and builds the Deployment with [`Observer::replicas`]; the observer owns `status.lag`,
//! `status.deadLetters`, `status.autoscaling` and the `RetryTopicsReady` condition, applied
//! under its own field manager ([`OBSERVER_MANAGER`]) so the two writers never remove each
//! other's fields. A changed decision is written to `status.autoscaling`, and that status
//! change triggers the reconcile that scales the Deployment.
//!
//! Kept in memory across measurements: the previous committed offsets (stuck partitions), the
//! time the current pod count was last needed (cooldown), the dead-letter scan positions, and
//! the last committed offsets read with the Deployment the reconciler saw before that read:
//! those are reused only while the Deployment proves no pod existed since (see
//! [`lag::PodHistory`]), so no commit of a pod, however short-lived, is missed.
//! After an operator restart `status.autoscaling.desiredReplicas` restores the pod count, the
//! first measurement leaves no partition out, and the cooldown starts again (never scaling down
//! early); dead letters are counted again from the oldest retained record.
//!
//! One file per concern: `lag.rs` measures lag, `dead_letters.rs` counts dead letters,
//! `retry_topics.rs` provisions retry topics, `status.rs` writes the result; this module holds the
//! state and runs the rounds.

mod dead_letters;
mod lag;
mod retry_topics;
mod status;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::{Timestamp, Unit};
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Resource, ResourceExt};
use serde_json::json;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::autoscale::{self, Partition, PartitionReading};
use crate::config::ValidConsumer;
use crate::crd::{AutoscalingStatus, EventConsumer, EventConsumerStatus, LagStatus, PartitionLag};
use crate::kafka::KafkaAccess;
use crate::lag::{AccessProblem, KafkaClients, KafkaOpError, Watermarks, partition_lag};
use crate::metrics::Metrics;
use crate::status as conditions;
use dead_letters::DlqScan;
use lag::{Commits, PodHistory, lag_status};
use retry_topics::{newly_failed, retry_condition};

/// Field manager of the observer's status writes.
pub const OBSERVER_MANAGER: &str = "eventconsumer-operator-observer";
/// Condition the observer sets in `retryTopics` mode.
pub const RETRY_TOPICS_READY: &str = "RetryTopicsReady";
/// Reason of the condition and Warning Event when a retry topic cannot be created.
pub const RETRY_TOPIC_CREATE_FAILED: &str = "RetryTopicCreateFailed";
/// An unchanged measurement is written again (for `lag.measuredAt`) only this often, so 1,000
/// idle consumers do not cost 1,000 status writes every interval.
const REFRESH: Duration = Duration::from_secs(60);
/// Credentials read from Secrets are reused this long, then read again (picks up rotation
/// without one Secret read per consumer per interval).
const ACCESS_TTL: Duration = Duration::from_secs(5 * 60);
/// Clusters measured at once; each waits at most a few request timeouts when unreachable.
const CLUSTER_CONCURRENCY: usize = 4;
/// Consumers of one cluster whose committed offsets are queried at once (the Kafka semaphore
/// still bounds the clients alive).
const GROUP_CONCURRENCY: usize = 16;
/// Status writes in flight at once.
const WRITE_CONCURRENCY: usize = 8;
/// How long committed offsets that cannot have moved are trusted without reading them again:
/// each read costs a short-lived Kafka client, and 1,000 consumers without pods should not cost
/// 1,000 clients every interval. Catches a rewind of
/// such a group's offsets (by hand, with Kafka's tools) within 5 min.
const COMMITS_RECHECK: Duration = Duration::from_secs(5 * 60);
/// Expired commit caches dropped per round, oldest first: the rest wait for later rounds, so
/// 1,000 caches read in the same first round do not all expire into one slow round again.
const RECHECKS_PER_ROUND: usize = 64;

/// What the last lag measurement of a consumer says about the brokers' answer to its
/// credentials and ACLs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// Not measured since the operator started (or since the Kafka settings changed).
    Unknown,
    /// Measured, or failed for another reason (an outage): not refused.
    Clear,
    /// Refused: how, and the measurement's error (it never holds a credential).
    Refused(AccessProblem, String),
}

impl Refusal {
    /// The `Degraded` reason a refusal calls for (`None` when there is none, or not known).
    pub fn reason(&self) -> Option<&'static str> {
        match self {
            Refusal::Refused(AccessProblem::Authentication, _) => {
                Some(conditions::KAFKA_AUTHENTICATION_FAILED)
            }
            Refusal::Refused(AccessProblem::Authorization, _) => {
                Some(conditions::KAFKA_AUTHORIZATION_FAILED)
            }
            Refusal::Unknown | Refusal::Clear => None,
        }
    }
}

/// What the observer keeps per EventConsumer.
struct Target {
    valid: ValidConsumer,
    access: Option<(KafkaAccess, Instant)>,
    previous: Option<BTreeMap<Partition, Option<i64>>>,
    /// The committed offsets last read, with what proves whether they can have moved since.
    commits: Option<Commits>,
    /// The consumer's Deployment as the reconciler last saw it (`None`: not seen yet).
    pods: Option<PodHistory>,
    workers_were_ready: bool,
    desired: Option<i32>,
    needed_since: Option<Timestamp>,
    /// Last measurement at which the group's commits moved ([`autoscale::Input::moved_at`]).
    moved_at: Option<Timestamp>,
    /// Whether the brokers refused the last lag measurement.
    refused: Refusal,
    last_write: Option<Instant>,
}

/// What the observer needs from the operator around it: the API client, the metrics, its own
/// state and a way to publish Warning Events. [`crate::context::Context`] provides it; the
/// observer does not import the context, so the modules form a tree.
pub trait Host: Send + Sync + 'static {
    fn client(&self) -> &kube::Client;
    fn metrics(&self) -> &Metrics;
    fn observer(&self) -> &Observer;
    /// Publishes a Warning Event about `ec`, best effort.
    fn publish_warning(
        &self,
        ec: &EventConsumer,
        reason: &str,
        message: String,
    ) -> impl std::future::Future<Output = ()> + Send;
}

/// The observer's state, shared with the reconciler through [`crate::context::Context`].
#[derive(Default)]
pub struct Observer {
    targets: Mutex<HashMap<ObjectRef<EventConsumer>, Target>>,
    clients: KafkaClients,
    scans: Mutex<HashMap<(KafkaAccess, String), DlqScan>>,
}

/// One consumer to measure in a round.
struct Job {
    key: ObjectRef<EventConsumer>,
    ec: Arc<EventConsumer>,
    valid: ValidConsumer,
    access: Result<KafkaAccess, String>,
    commits: Option<Commits>,
    pods: Option<PodHistory>,
}

/// What a round found for one consumer.
#[derive(Default)]
struct Measured {
    lag: Option<Result<BTreeMap<Partition, PartitionReading>, String>>,
    /// The count, or why it failed this round.
    dead_letters: Option<Result<i64, String>>,
    /// `Some` in retryTopics mode once the topics were checked: `Err` names the failure.
    retry: Option<Result<(), String>>,
    /// The lag could not be measured because the brokers refused the client.
    refused: Option<AccessProblem>,
}

impl Observer {
    /// Records the consumer's latest valid spec and its Deployment as just read (`live`);
    /// measuring starts with the next round.
    pub fn register(&self, ec: &EventConsumer, valid: &ValidConsumer, live: Option<&Deployment>) {
        let pods = live.and_then(PodHistory::of);
        let Ok(mut targets) = self.targets.lock() else {
            return;
        };
        let key = ObjectRef::from_obj(ec);
        match targets.get_mut(&key) {
            Some(target) => {
                if target.valid.kafka != valid.kafka {
                    target.access = None;
                    target.previous = None;
                    target.moved_at = None;
                    target.refused = Refusal::Unknown;
                    target.commits = None;
                }
                target.valid = valid.clone();
                target.pods = pods;
            }
            None => {
                targets.insert(
                    key,
                    Target {
                        valid: valid.clone(),
                        access: None,
                        previous: None,
                        commits: None,
                        pods,
                        workers_were_ready: false,
                        desired: None,
                        needed_since: None,
                        moved_at: None,
                        refused: Refusal::Unknown,
                        last_write: None,
                    },
                );
            }
        }
    }

    /// Stops measuring a consumer whose spec is no longer valid.
    pub fn forget(&self, ec: &EventConsumer) {
        if let Ok(mut targets) = self.targets.lock() {
            targets.remove(&ObjectRef::from_obj(ec));
        }
    }

    /// Whether the brokers refused the last lag measurement of `ec`. The reconciler reports
    /// a refusal as `Degraded`: the observer's status write that carries the error (or
    /// clears it) triggers that reconcile.
    pub fn refusal(&self, ec: &EventConsumer) -> Refusal {
        let Ok(targets) = self.targets.lock() else {
            return Refusal::Unknown;
        };
        targets
            .get(&ObjectRef::from_obj(ec))
            .map_or(Refusal::Unknown, |t| t.refused.clone())
    }

    /// The pod count for `valid`: 0 when paused, `spec.replicas` without autoscaling, else the
    /// autoscaler's latest decision (from memory, or from status after a restart), clamped to
    /// the current [minReplicas, maxReplicas].
    pub fn replicas(
        &self,
        ec: &EventConsumer,
        valid: &ValidConsumer,
        live: Option<&Deployment>,
    ) -> i32 {
        if valid.paused {
            return 0;
        }
        let Some(config) = &valid.autoscaling else {
            return valid.replicas;
        };
        let remembered = self.targets.lock().ok().and_then(|targets| {
            targets
                .get(&ObjectRef::from_obj(ec))
                .and_then(|t| t.desired)
        });
        remembered
            .or_else(|| {
                ec.status
                    .as_ref()
                    .and_then(|s| s.autoscaling.as_ref())
                    .map(|a| a.desired_replicas)
            })
            .or_else(|| live.and_then(|d| d.spec.replicas))
            .unwrap_or(config.min_replicas)
            .clamp(config.min_replicas, config.max_replicas)
    }

    /// Measures every `interval` until `stop` is cancelled.
    pub async fn run<H: Host>(
        ctx: Arc<H>,
        store: Store<EventConsumer>,
        interval: Duration,
        stop: CancellationToken,
    ) {
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        info!(?interval, "lag observer starting");
        loop {
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = ticker.tick() => {}
            }
            let started = Instant::now();
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = ctx.observer().round(&*ctx, &store) => {}
            }
            debug!(took = ?started.elapsed(), "measurement round done");
        }
        info!("lag observer stopped");
    }

    async fn round<H: Host>(&self, ctx: &H, store: &Store<EventConsumer>) {
        let jobs = self.jobs(ctx, store).await;
        let mut clusters: HashMap<KafkaAccess, Vec<Job>> = HashMap::new();
        let mut unreachable = Vec::new();
        for job in jobs {
            match &job.access {
                Ok(access) => clusters.entry(access.clone()).or_default().push(job),
                Err(error) => {
                    let error = error.clone();
                    unreachable.push((
                        job,
                        Measured {
                            lag: Some(Err(error)),
                            ..Default::default()
                        },
                    ))
                }
            }
        }
        let used: HashSet<&KafkaAccess> = clusters.keys().collect();
        self.clients.retain(&used);
        if let Ok(mut scans) = self.scans.lock() {
            scans.retain(|(access, _), _| used.contains(access));
        }
        let measured: Vec<(Job, Measured)> = futures::stream::iter(clusters)
            .map(|(access, jobs)| self.measure_cluster(access, jobs))
            .buffer_unordered(CLUSTER_CONCURRENCY)
            .flat_map(futures::stream::iter)
            .collect()
            .await;
        // A failed measurement may be a rotated credential (the broker refusing the old
        // password or certificate): read the Secrets again next round instead of after
        // ACCESS_TTL, so fixing a Secret shows at once. One Secret read per failing consumer
        // per interval.
        let failed: Vec<ObjectRef<EventConsumer>> = measured
            .iter()
            .filter(|(_, m)| matches!(m.lag, Some(Err(_))))
            .map(|(job, _)| job.key.clone())
            .collect();
        if !failed.is_empty()
            && let Ok(mut targets) = self.targets.lock()
        {
            for key in failed {
                if let Some(t) = targets.get_mut(&key) {
                    t.access = None;
                }
            }
        }
        futures::stream::iter(measured.into_iter().chain(unreachable))
            .for_each_concurrent(WRITE_CONCURRENCY, |(job, measured)| {
                self.apply(ctx, job, measured)
            })
            .await;
    }

    /// The consumers to measure, pruning those that no longer exist.
    async fn jobs<H: Host>(&self, ctx: &H, store: &Store<EventConsumer>) -> Vec<Job> {
        type Snapshot = (
            ObjectRef<EventConsumer>,
            ValidConsumer,
            Option<KafkaAccess>,
            Option<Commits>,
            Option<PodHistory>,
        );
        let snapshot: Vec<Snapshot> = {
            let Ok(mut targets) = self.targets.lock() else {
                return Vec::new();
            };
            targets.retain(|key, target| {
                let alive = store
                    .get(key)
                    .is_some_and(|ec| ec.metadata.deletion_timestamp.is_none());
                if !alive {
                    ctx.metrics()
                        .forget_consumer(&target.valid.namespace, &target.valid.name);
                }
                alive
            });
            let mut expired: Vec<(Instant, &ObjectRef<EventConsumer>)> = targets
                .iter()
                .filter_map(|(key, t)| {
                    let read_at = t.commits.as_ref()?.read_at;
                    (read_at.elapsed() >= COMMITS_RECHECK).then_some((read_at, key))
                })
                .collect();
            expired.sort_by_key(|(read_at, _)| *read_at);
            let recheck: HashSet<ObjectRef<EventConsumer>> = expired
                .into_iter()
                .take(RECHECKS_PER_ROUND)
                .map(|(_, key)| key.clone())
                .collect();
            targets
                .iter()
                .map(|(key, t)| {
                    let access = t
                        .access
                        .as_ref()
                        .filter(|(_, at)| at.elapsed() < ACCESS_TTL)
                        .map(|(a, _)| a.clone());
                    let commits = t
                        .commits
                        .as_ref()
                        .filter(|_| !recheck.contains(key))
                        .cloned();
                    (
                        key.clone(),
                        t.valid.clone(),
                        access,
                        commits,
                        t.pods.clone(),
                    )
                })
                .collect()
        };
        let mut jobs = Vec::with_capacity(snapshot.len());
        for (key, valid, access, commits, pods) in snapshot {
            let Some(ec) = store.get(&key) else { continue };
            let access = match access {
                Some(access) => Ok(access),
                None => {
                    match KafkaAccess::resolve(ctx.client(), &valid.namespace, &valid.kafka).await {
                        Ok(access) => {
                            if let Ok(mut targets) = self.targets.lock()
                                && let Some(t) = targets.get_mut(&key)
                            {
                                t.access = Some((access.clone(), Instant::now()));
                            }
                            Ok(access)
                        }
                        Err(error) => Err(error.to_string()),
                    }
                }
            };
            jobs.push(Job {
                key,
                ec,
                valid,
                access,
                commits,
                pods,
            });
        }
        jobs
    }

    async fn measure_cluster(&self, access: KafkaAccess, jobs: Vec<Job>) -> Vec<(Job, Measured)> {
        let mut topics = BTreeSet::new();
        for job in &jobs {
            let delivery = &job.valid.delivery;
            topics.extend(job.valid.kafka.topics.iter().cloned());
            topics.insert(delivery.dead_letter_topic.clone());
            topics.extend(delivery.retry_topics.iter().cloned());
        }
        let marks = match self
            .clients
            .topics(&access, topics.into_iter().collect())
            .await
        {
            Ok(marks) => marks,
            Err(error) => {
                warn!(servers = %access.bootstrap_servers, %error, "Kafka cluster unreachable");
                let refused = error.access_problem();
                let error = error.to_string();
                return jobs
                    .into_iter()
                    .map(|job| {
                        let measured = Measured {
                            lag: Some(Err(error.clone())),
                            dead_letters: Some(Err(error.clone())),
                            refused,
                            ..Default::default()
                        };
                        (job, measured)
                    })
                    .collect();
            }
        };
        let dead_letters = self.count_dead_letters(&access, &jobs, &marks).await;

        futures::stream::iter(jobs)
            .map(|job| {
                let access = &access;
                let marks = &marks;
                let dead_letters = &dead_letters;
                async move {
                    let lag = self.lag_of(access, &job, marks).await;
                    let refused = lag.as_ref().err().and_then(KafkaOpError::access_problem);
                    let lag = Some(lag.map_err(|e| e.to_string()));
                    let retry = self.ensure_retry_topics(access, &job.valid, marks).await;
                    let dead_letters = dead_letters
                        .get(&(
                            job.valid.delivery.dead_letter_topic.clone(),
                            job.valid.kafka.group_id.clone(),
                        ))
                        .cloned();
                    let measured = Measured {
                        lag,
                        dead_letters,
                        retry,
                        refused,
                    };
                    (job, measured)
                }
            })
            .buffer_unordered(GROUP_CONCURRENCY)
            .collect()
            .await
    }
}
