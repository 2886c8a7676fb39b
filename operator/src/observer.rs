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
//! time the current pod count was last needed (cooldown), and the dead-letter scan positions.
//! After an operator restart `status.autoscaling.desiredReplicas` restores the pod count, the
//! first measurement leaves no partition out, and the cooldown starts again (never scaling down
//! early); dead letters are counted again from the oldest retained record.

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
use crate::context::Context;
use crate::crd::{AutoscalingStatus, EventConsumer, EventConsumerStatus, LagStatus, PartitionLag};
use crate::kafka::KafkaAccess;
use crate::lag::{KafkaClients, KafkaOpError, Watermarks, partition_lag};

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
/// each read costs a short-lived Kafka client (about 150 ms on the local broker), and 1,000
/// consumers without pods should not cost 1,000 clients every interval. Catches a rewind of
/// such a group's offsets (by hand, with Kafka's tools) within 5 min.
const COMMITS_RECHECK: Duration = Duration::from_secs(5 * 60);
/// Expired commit caches dropped per round, oldest first: the rest wait for later rounds, so
/// 1,000 caches read in the same first round do not all expire into one 30 s round again
/// (64 reads at ~150 ms, 4 at a time, add about 2.5 s to a round).
const RECHECKS_PER_ROUND: usize = 64;

/// What the observer keeps per EventConsumer.
struct Target {
    valid: ValidConsumer,
    access: Option<(KafkaAccess, Instant)>,
    previous: Option<BTreeMap<Partition, Option<i64>>>,
    /// Set while the group had no lag: the end offsets and commits seen then, and when they
    /// were last read from Kafka.
    commits: Option<Commits>,
    workers_were_ready: bool,
    desired: Option<i32>,
    needed_since: Option<Timestamp>,
    last_write: Option<Instant>,
}

/// The committed offsets last read from Kafka. They cannot have moved, and are not read
/// again (until [`COMMITS_RECHECK`]), while no worker pod existed then and none exists now,
/// or while the group had caught up then and no record arrived since: the lag is then
/// computed from these commits and the current end offsets.
#[derive(Clone)]
struct Commits {
    offsets: BTreeMap<Partition, Option<i64>>,
    ends: BTreeMap<Partition, i64>,
    caught_up: bool,
    pods: i32,
    read_at: Instant,
}

impl Commits {
    fn still_valid(&self, pods: i32, marks: &BTreeMap<Partition, Watermarks>) -> bool {
        let same_partitions =
            self.offsets.len() == marks.len() && marks.keys().all(|p| self.offsets.contains_key(p));
        let no_workers = self.pods == 0 && pods == 0;
        let nothing_new =
            self.caught_up && marks.iter().all(|(p, m)| self.ends.get(p) == Some(&m.high));
        same_partitions && (no_workers || nothing_new)
    }
}

/// Counting position of one dead-letter partition.
#[derive(Default)]
struct PartitionScan {
    /// The low watermark when counting started: records below it were never counted.
    start: i64,
    next: i64,
    counts: BTreeMap<String, i64>,
}

#[derive(Default)]
struct DlqScan {
    groups: BTreeSet<String>,
    partitions: BTreeMap<i32, PartitionScan>,
}

/// The observer's state, shared with the reconciler through [`Context`].
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
}

/// What a round found for one consumer.
#[derive(Default)]
struct Measured {
    lag: Option<Result<BTreeMap<Partition, PartitionReading>, String>>,
    dead_letters: Option<i64>,
    /// `Some` in retryTopics mode once the topics were checked: `Err` names the failure.
    retry: Option<Result<(), String>>,
}

impl Observer {
    /// Records the consumer's latest valid spec; measuring starts with the next round.
    pub fn register(&self, ec: &EventConsumer, valid: &ValidConsumer) {
        let Ok(mut targets) = self.targets.lock() else {
            return;
        };
        let key = ObjectRef::from_obj(ec);
        match targets.get_mut(&key) {
            Some(target) => {
                if target.valid.kafka != valid.kafka {
                    target.access = None;
                    target.previous = None;
                    target.commits = None;
                }
                target.valid = valid.clone();
            }
            None => {
                targets.insert(
                    key,
                    Target {
                        valid: valid.clone(),
                        access: None,
                        previous: None,
                        commits: None,
                        workers_were_ready: false,
                        desired: None,
                        needed_since: None,
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
    pub async fn run(
        ctx: Arc<Context>,
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
                _ = ctx.observer.round(&ctx, &store) => {}
            }
            debug!(took = ?started.elapsed(), "measurement round done");
        }
        info!("lag observer stopped");
    }

    async fn round(&self, ctx: &Context, store: &Store<EventConsumer>) {
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
        futures::stream::iter(measured.into_iter().chain(unreachable))
            .for_each_concurrent(WRITE_CONCURRENCY, |(job, measured)| {
                self.apply(ctx, job, measured)
            })
            .await;
    }

    /// The consumers to measure, pruning those that no longer exist.
    async fn jobs(&self, ctx: &Context, store: &Store<EventConsumer>) -> Vec<Job> {
        type Snapshot = (
            ObjectRef<EventConsumer>,
            ValidConsumer,
            Option<KafkaAccess>,
            Option<Commits>,
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
                    ctx.metrics
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
                    (key.clone(), t.valid.clone(), access, commits)
                })
                .collect()
        };
        let mut jobs = Vec::with_capacity(snapshot.len());
        for (key, valid, access, commits) in snapshot {
            let Some(ec) = store.get(&key) else { continue };
            let access = match access {
                Some(access) => Ok(access),
                None => {
                    match KafkaAccess::resolve(&ctx.client, &valid.namespace, &valid.kafka).await {
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
                let error = error.to_string();
                return jobs
                    .into_iter()
                    .map(|job| {
                        let measured = Measured {
                            lag: Some(Err(error.clone())),
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
                    let lag = Some(self.lag_of(access, &job, marks).await);
                    let retry = self.ensure_retry_topics(access, &job.valid, marks).await;
                    let dead_letters = dead_letters
                        .get(&(
                            job.valid.delivery.dead_letter_topic.clone(),
                            job.valid.kafka.group_id.clone(),
                        ))
                        .copied();
                    let measured = Measured {
                        lag,
                        dead_letters,
                        retry,
                    };
                    (job, measured)
                }
            })
            .buffer_unordered(GROUP_CONCURRENCY)
            .collect()
            .await
    }

    async fn lag_of(
        &self,
        access: &KafkaAccess,
        job: &Job,
        marks: &BTreeMap<String, Result<BTreeMap<i32, Watermarks>, KafkaOpError>>,
    ) -> Result<BTreeMap<Partition, PartitionReading>, String> {
        let valid = &job.valid;
        let mut partitions = BTreeMap::new();
        for topic in &valid.kafka.topics {
            let Some(found) = marks.get(topic) else {
                return Err(format!("topic {topic:?} was not looked up"));
            };
            let found = found.as_ref().map_err(ToString::to_string)?;
            for (partition, watermarks) in found {
                partitions.insert((topic.clone(), *partition), *watermarks);
            }
        }
        let pods = job.ec.status.as_ref().map_or(0, |s| s.replicas);
        let committed = match &job.commits {
            Some(commits) if commits.still_valid(pods, &partitions) => commits.offsets.clone(),
            _ => {
                let read = self
                    .clients
                    .committed(
                        access,
                        &valid.kafka.group_id,
                        partitions.keys().cloned().collect(),
                    )
                    .await
                    .map_err(|e| e.to_string())?;
                let offsets: BTreeMap<Partition, Option<i64>> = partitions
                    .keys()
                    .map(|p| (p.clone(), read.get(p).copied().flatten()))
                    .collect();
                let commits = Commits {
                    caught_up: partitions.iter().all(|(p, m)| {
                        let committed = offsets.get(p).copied().flatten();
                        partition_lag(*m, committed, valid.kafka.initial_offset) == 0
                    }),
                    offsets: offsets.clone(),
                    ends: partitions
                        .iter()
                        .map(|(p, m)| (p.clone(), m.high))
                        .collect(),
                    pods,
                    read_at: Instant::now(),
                };
                if let Ok(mut targets) = self.targets.lock()
                    && let Some(target) = targets.get_mut(&job.key)
                {
                    target.commits = Some(commits);
                }
                offsets
            }
        };
        Ok(partitions
            .into_iter()
            .map(|(partition, watermarks)| {
                let committed = committed.get(&partition).copied().flatten();
                let lag = partition_lag(watermarks, committed, valid.kafka.initial_offset);
                let end = watermarks.high;
                (
                    partition,
                    PartitionReading {
                        lag,
                        committed,
                        end,
                    },
                )
            })
            .collect())
    }

    /// Creates the retry topics that do not exist yet, with the partition count of the
    /// largest source topic.
    async fn ensure_retry_topics(
        &self,
        access: &KafkaAccess,
        valid: &ValidConsumer,
        marks: &BTreeMap<String, Result<BTreeMap<i32, Watermarks>, KafkaOpError>>,
    ) -> Option<Result<(), String>> {
        let retry = &valid.delivery.retry_topics;
        if retry.is_empty() {
            return None;
        }
        let missing: Vec<String> = retry
            .iter()
            .filter(|t| matches!(marks.get(*t), Some(Err(KafkaOpError::TopicMissing { .. }))))
            .cloned()
            .collect();
        if missing.is_empty() {
            return Some(Ok(()));
        }
        let partitions = valid
            .kafka
            .topics
            .iter()
            .filter_map(|t| marks.get(t)?.as_ref().ok().map(BTreeMap::len))
            .max();
        let Some(partitions) = partitions.and_then(|p| i32::try_from(p).ok()) else {
            return Some(Err(format!(
                "cannot create retry topic {:?}: no source topic exists to take the partition count from",
                missing[0]
            )));
        };
        info!(topics = ?missing, partitions, "creating retry topics");
        Some(
            self.clients
                .create_topics(access, missing, partitions)
                .await
                .map_err(|e| e.to_string()),
        )
    }

    /// Advances the dead-letter scans of this cluster; the count per (DLQ topic, group).
    async fn count_dead_letters(
        &self,
        access: &KafkaAccess,
        jobs: &[Job],
        marks: &BTreeMap<String, Result<BTreeMap<i32, Watermarks>, KafkaOpError>>,
    ) -> BTreeMap<(String, String), i64> {
        let mut groups_by_topic: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for job in jobs {
            groups_by_topic
                .entry(job.valid.delivery.dead_letter_topic.clone())
                .or_default()
                .insert(job.valid.kafka.group_id.clone());
        }
        let mut out = BTreeMap::new();
        for (topic, groups) in groups_by_topic {
            let partitions = match marks.get(&topic) {
                Some(Ok(partitions)) => partitions,
                Some(Err(KafkaOpError::TopicMissing { .. })) => {
                    // No dead-letter topic: nothing dead-lettered is retained.
                    for group in groups {
                        out.insert((topic.clone(), group), 0);
                    }
                    continue;
                }
                _ => continue,
            };
            let key = (access.clone(), topic.clone());
            // Plan the reads under the lock, scan without it.
            let from: BTreeMap<i32, i64> = {
                let Ok(mut scans) = self.scans.lock() else {
                    continue;
                };
                let scan = scans.entry(key.clone()).or_default();
                if !groups.is_subset(&scan.groups) {
                    // A group joined: its records were skipped so far; count again.
                    scan.partitions.clear();
                }
                scan.groups = groups.clone();
                scan.partitions.retain(|p, _| partitions.contains_key(p));
                for (partition, marks) in partitions {
                    let entry = scan.partitions.entry(*partition).or_insert(PartitionScan {
                        start: marks.low,
                        next: marks.low,
                        counts: BTreeMap::new(),
                    });
                    if marks.low > entry.start || entry.next > marks.high {
                        // Retention removed counted records (or the topic was recreated):
                        // the counts are no longer the retained ones; count again.
                        *entry = PartitionScan {
                            start: marks.low,
                            next: marks.low,
                            counts: BTreeMap::new(),
                        };
                    }
                }
                scan.partitions
                    .iter()
                    .filter(|(p, s)| partitions.get(p).is_some_and(|m| s.next < m.high))
                    .map(|(p, s)| (*p, s.next))
                    .collect()
            };
            if !from.is_empty() {
                match self
                    .clients
                    .scan_dead_letters(access, &topic, from, groups.clone())
                    .await
                {
                    Ok((next, counts)) => {
                        if let Ok(mut scans) = self.scans.lock()
                            && let Some(scan) = scans.get_mut(&key)
                        {
                            for (partition, offset) in next {
                                if let Some(p) = scan.partitions.get_mut(&partition) {
                                    p.next = offset;
                                }
                            }
                            for ((partition, group), n) in counts {
                                if let Some(p) = scan.partitions.get_mut(&partition) {
                                    *p.counts.entry(group).or_insert(0) += n;
                                }
                            }
                        }
                    }
                    Err(error) => {
                        warn!(%topic, %error, "counting dead letters failed");
                        continue;
                    }
                }
            }
            if let Ok(scans) = self.scans.lock()
                && let Some(scan) = scans.get(&key)
            {
                for group in &groups {
                    let total = scan
                        .partitions
                        .values()
                        .filter_map(|p| p.counts.get(group))
                        .sum();
                    out.insert((topic.clone(), group.clone()), total);
                }
            }
        }
        out
    }

    /// Decides, updates metrics and memory, and writes the status part when it changed.
    async fn apply(&self, ctx: &Context, job: Job, measured: Measured) {
        let now = Timestamp::now();
        let now = now.round(Unit::Second).unwrap_or(now);
        let old = job.ec.status.clone().unwrap_or_default();
        let ready_now = old.ready_replicas > 0;
        let (namespace, name) = (job.valid.namespace.clone(), job.valid.name.clone());

        let mut new = ObserverPart::of(&old);
        let mut desired_now = None;
        let last_write = if let Ok(mut targets) = self.targets.lock()
            && let Some(target) = targets.get_mut(&job.key)
        {
            match &measured.lag {
                Some(Ok(partitions)) => {
                    new.lag = Some(lag_status(partitions, now));
                    match &job.valid.autoscaling {
                        Some(config) => {
                            let current = target
                                .desired
                                .or(old.autoscaling.as_ref().map(|a| a.desired_replicas))
                                .unwrap_or(old.replicas);
                            let decision = autoscale::decide(&autoscale::Input {
                                config,
                                paused: job.valid.paused,
                                partitions,
                                previous: target.previous.as_ref(),
                                workers_ran: target.workers_were_ready && ready_now,
                                current,
                                needed_since: target.needed_since,
                                now,
                            });
                            if decision.scaled {
                                info!(%namespace, %name, from = current, to = decision.desired, reason = %decision.reason, "autoscaling");
                            }
                            let last_scale_time = if decision.scaled {
                                Some(now.to_string())
                            } else {
                                old.autoscaling
                                    .as_ref()
                                    .and_then(|a| a.last_scale_time.clone())
                            };
                            target.desired = Some(decision.desired);
                            target.needed_since = Some(decision.needed_since);
                            new.autoscaling = Some(AutoscalingStatus {
                                desired_replicas: decision.desired,
                                last_scale_time,
                                scaling_lag: decision.scaling_lag,
                                stuck_partitions: decision.stuck,
                                reason: Some(decision.reason),
                            });
                            desired_now = Some(decision.desired);
                        }
                        None => {
                            target.desired = None;
                            target.needed_since = None;
                            new.autoscaling = None;
                        }
                    }
                    target.previous = Some(
                        partitions
                            .iter()
                            .map(|(p, r)| (p.clone(), r.committed))
                            .collect(),
                    );
                    target.workers_were_ready = ready_now;
                }
                Some(Err(error)) => {
                    let mut lag = new.lag.take().unwrap_or_default();
                    lag.error = Some(error.clone());
                    new.lag = Some(lag);
                    if job.valid.autoscaling.is_none() {
                        new.autoscaling = None;
                    }
                }
                None => {}
            }
            target.last_write
        } else {
            return;
        };
        if measured.dead_letters.is_some() {
            new.dead_letters = measured.dead_letters;
        }
        let old_retry = new.retry.clone();
        match &measured.retry {
            Some(result) => {
                new.retry = Some(retry_condition(result, old_retry.as_ref(), &job.ec, now))
            }
            None if job.valid.delivery.retry_topics.is_empty() => new.retry = None,
            None => {}
        }

        ctx.metrics.observe_consumer(
            &namespace,
            &name,
            new.lag.as_ref().and_then(|l| l.total),
            new.lag
                .as_ref()
                .and_then(|l| l.max_partition.as_ref())
                .map_or(0, |p| p.lag),
            new.dead_letters,
            desired_now.or(new.autoscaling.as_ref().map(|a| a.desired_replicas)),
        );

        if let (Some(Err(message)), true) = (
            &measured.retry,
            newly_failed(old_retry.as_ref(), new.retry.as_ref()),
        ) {
            warn!(%namespace, %name, %message, "retry topic creation failed");
            ctx.publish_warning(&job.ec, RETRY_TOPIC_CREATE_FAILED, message.clone())
                .await;
        }

        let stale = last_write.is_none_or(|at| at.elapsed() >= REFRESH);
        if !new.same_as(&ObserverPart::of(&old), stale) {
            match write(ctx, &job.ec, &new).await {
                Ok(()) => {
                    if let Ok(mut targets) = self.targets.lock()
                        && let Some(target) = targets.get_mut(&job.key)
                    {
                        target.last_write = Some(Instant::now());
                    }
                }
                Err(error) => debug!(%namespace, %name, %error, "writing the lag status failed"),
            }
        }
    }
}

/// The part of the status the observer owns.
#[derive(Clone, Debug, Default, PartialEq)]
struct ObserverPart {
    lag: Option<LagStatus>,
    dead_letters: Option<i64>,
    autoscaling: Option<AutoscalingStatus>,
    retry: Option<Condition>,
}

impl ObserverPart {
    fn of(status: &EventConsumerStatus) -> Self {
        Self {
            lag: status.lag.clone(),
            dead_letters: status.dead_letters,
            autoscaling: status.autoscaling.clone(),
            retry: status
                .conditions
                .iter()
                .find(|c| c.type_ == RETRY_TOPICS_READY)
                .cloned(),
        }
    }

    /// Equal, ignoring `lag.measuredAt` unless the last write is `stale`.
    fn same_as(&self, other: &Self, stale: bool) -> bool {
        if stale {
            return self == other;
        }
        let strip = |part: &Self| {
            let mut part = part.clone();
            if let Some(lag) = part.lag.as_mut() {
                lag.measured_at = None;
            }
            part
        };
        strip(self) == strip(other)
    }
}

fn lag_status(partitions: &BTreeMap<Partition, PartitionReading>, now: Timestamp) -> LagStatus {
    let total = partitions
        .values()
        .map(|r| r.lag)
        .fold(0i64, i64::saturating_add);
    let max_partition = partitions
        .iter()
        .filter(|(_, r)| r.lag > 0)
        .max_by_key(|(_, r)| r.lag)
        .map(|((topic, partition), r)| PartitionLag {
            topic: topic.clone(),
            partition: *partition,
            lag: r.lag,
        });
    LagStatus {
        total: Some(total),
        max_partition,
        measured_at: Some(now.to_string()),
        error: None,
    }
}

fn retry_condition(
    result: &Result<(), String>,
    old: Option<&Condition>,
    ec: &EventConsumer,
    now: Timestamp,
) -> Condition {
    let (status, reason, message) = match result {
        Ok(()) => ("True", "TopicsExist", "every retry topic exists".to_owned()),
        Err(message) => ("False", RETRY_TOPIC_CREATE_FAILED, message.clone()),
    };
    let last_transition_time = old
        .filter(|c| c.status == status)
        .map(|c| c.last_transition_time.clone())
        .unwrap_or(Time(now));
    Condition {
        type_: RETRY_TOPICS_READY.to_owned(),
        status: status.to_owned(),
        reason: reason.to_owned(),
        message,
        observed_generation: ec.metadata.generation,
        last_transition_time,
    }
}

fn newly_failed(old: Option<&Condition>, new: Option<&Condition>) -> bool {
    let parts = |c: &Condition| (c.status.clone(), c.message.clone());
    new.is_some_and(|n| n.status == "False") && old.map(parts) != new.map(parts)
}

async fn write(ctx: &Context, ec: &EventConsumer, part: &ObserverPart) -> Result<(), kube::Error> {
    let (Some(namespace), name) = (ec.namespace(), ec.name_any()) else {
        return Ok(());
    };
    let mut status = serde_json::Map::new();
    if let Some(lag) = &part.lag {
        status.insert("lag".into(), json!(lag));
    }
    if let Some(dead_letters) = part.dead_letters {
        status.insert("deadLetters".into(), json!(dead_letters));
    }
    if let Some(autoscaling) = &part.autoscaling {
        status.insert("autoscaling".into(), json!(autoscaling));
    }
    if let Some(retry) = &part.retry {
        status.insert("conditions".into(), json!([retry]));
    }
    let patch = json!({
        "apiVersion": EventConsumer::api_version(&()),
        "kind": EventConsumer::kind(&()),
        "status": status,
    });
    let api: Api<EventConsumer> = Api::namespaced(ctx.client.clone(), &namespace);
    api.patch_status(
        &name,
        &PatchParams::apply(OBSERVER_MANAGER).force(),
        &Patch::Apply(&patch),
    )
    .await
    .map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn marks(highs: &[i64]) -> BTreeMap<Partition, Watermarks> {
        highs
            .iter()
            .enumerate()
            .map(|(i, high)| {
                (
                    ("t".to_owned(), i32::try_from(i).unwrap()),
                    Watermarks {
                        low: 0,
                        high: *high,
                    },
                )
            })
            .collect()
    }

    fn commits(highs: &[i64], caught_up: bool, pods: i32) -> Commits {
        let marks = marks(highs);
        Commits {
            offsets: marks.keys().map(|p| (p.clone(), Some(0))).collect(),
            ends: marks.iter().map(|(p, m)| (p.clone(), m.high)).collect(),
            caught_up,
            pods,
            read_at: Instant::now(),
        }
    }

    #[test]
    fn commits_are_reused_only_while_they_cannot_have_moved() {
        // No pods then or now: new records change the lag, not the commits.
        assert!(commits(&[5, 5], false, 0).still_valid(0, &marks(&[9, 5])));
        // A pod exists now (or existed then): it may have committed.
        assert!(!commits(&[5, 5], false, 0).still_valid(1, &marks(&[5, 5])));
        assert!(!commits(&[5, 5], false, 2).still_valid(0, &marks(&[5, 5])));
        // Caught up with workers: valid until a record arrives.
        assert!(commits(&[5, 5], true, 2).still_valid(2, &marks(&[5, 5])));
        assert!(!commits(&[5, 5], true, 2).still_valid(2, &marks(&[5, 6])));
        // A partition was added: read again.
        assert!(!commits(&[5, 5], false, 0).still_valid(0, &marks(&[5, 5, 0])));
    }

    #[test]
    fn an_unchanged_measurement_is_rewritten_only_when_stale() {
        let lag = |total, at: &str| ObserverPart {
            lag: Some(LagStatus {
                total: Some(total),
                measured_at: Some(at.to_owned()),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert!(lag(5, "t1").same_as(&lag(5, "t0"), false));
        assert!(!lag(5, "t1").same_as(&lag(5, "t0"), true));
        assert!(!lag(6, "t1").same_as(&lag(5, "t0"), false));
    }
}
