//! Measuring lag: the group's committed offsets against the source topics' end offsets,
//! with committed offsets that cannot have moved reused instead of read again.

use super::*;

/// What the Deployment of a consumer shows about its pods, as the reconciler last saw it.
///
/// `quiet` proves that no worker pod of this Deployment exists, terminating ones included:
/// it wants none, its controller has acted on its current generation, and it counts no pod
/// at all. Any pod created later needs a spec change first, which moves the generation (or,
/// for a recreated Deployment, the uid): so two equal quiet snapshots prove that no pod of
/// the Deployment existed between them, however short-lived.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct PodHistory {
    pub(super) uid: String,
    pub(super) generation: i64,
    pub(super) quiet: bool,
}

impl PodHistory {
    pub(super) fn of(deployment: &Deployment) -> Option<PodHistory> {
        let uid = deployment.metadata.uid.clone()?;
        let generation = deployment.metadata.generation?;
        let status = deployment.status.as_ref();
        // `terminatingReplicas` is absent where the API server does not count terminating
        // pods (Kubernetes before 1.35 by default): then nothing proves they are gone.
        let quiet = deployment.spec.replicas == Some(0)
            && status.and_then(|s| s.observed_generation) == Some(generation)
            && status.and_then(|s| s.replicas).unwrap_or(0) == 0
            && status.and_then(|s| s.terminating_replicas) == Some(0);
        Some(PodHistory {
            uid,
            generation,
            quiet,
        })
    }
}

/// The committed offsets last read from Kafka. They cannot have moved, and are not read
/// again (until [`COMMITS_RECHECK`]), while the Deployment has been quiet ([`PodHistory`]) and
/// unchanged since the read, or while the group had caught up then and no record arrived
/// since: the lag is then computed from these commits and the current end offsets.
#[derive(Clone)]
pub(super) struct Commits {
    pub(super) offsets: BTreeMap<Partition, Option<i64>>,
    pub(super) ends: BTreeMap<Partition, i64>,
    pub(super) caught_up: bool,
    /// The Deployment as last seen before the read.
    pub(super) pods: Option<PodHistory>,
    pub(super) read_at: Instant,
}

impl Commits {
    pub(super) fn still_valid(
        &self,
        pods: Option<&PodHistory>,
        marks: &BTreeMap<Partition, Watermarks>,
    ) -> bool {
        let same_partitions =
            self.offsets.len() == marks.len() && marks.keys().all(|p| self.offsets.contains_key(p));
        let no_workers =
            self.pods.as_ref().is_some_and(|then| then.quiet) && self.pods.as_ref() == pods;
        let nothing_new =
            self.caught_up && marks.iter().all(|(p, m)| self.ends.get(p) == Some(&m.high));
        same_partitions && (no_workers || nothing_new)
    }
}

impl Observer {
    pub(super) async fn lag_of(
        &self,
        access: &KafkaAccess,
        job: &Job,
        marks: &BTreeMap<String, Result<BTreeMap<i32, Watermarks>, KafkaOpError>>,
    ) -> Result<BTreeMap<Partition, PartitionReading>, KafkaOpError> {
        let valid = &job.valid;
        let mut partitions = BTreeMap::new();
        for topic in &valid.kafka.topics {
            let Some(found) = marks.get(topic) else {
                return Err(KafkaOpError::Task(format!(
                    "topic {topic:?} was not looked up"
                )));
            };
            let found = found.as_ref().map_err(Clone::clone)?;
            for (partition, watermarks) in found {
                partitions.insert((topic.clone(), *partition), *watermarks);
            }
        }
        let pods = job.pods.clone();
        let committed = match &job.commits {
            Some(commits) if commits.still_valid(pods.as_ref(), &partitions) => {
                commits.offsets.clone()
            }
            _ => {
                let read = self
                    .clients
                    .committed(
                        access,
                        &valid.kafka.group_id,
                        partitions.keys().cloned().collect(),
                    )
                    .await?;
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
}

pub(super) fn lag_status(
    partitions: &BTreeMap<Partition, PartitionReading>,
    now: Timestamp,
) -> LagStatus {
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
