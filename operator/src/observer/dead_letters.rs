//! Counting dead letters: each cluster's dead-letter topics are scanned forward once, and the
//! records are counted per consumer group from their `ec-dlt-consumer-group` header.

use super::*;

/// Counting position of one dead-letter partition.
#[derive(Default)]
pub(super) struct PartitionScan {
    /// The low watermark when counting started: records below it were never counted.
    pub(super) start: i64,
    pub(super) next: i64,
    pub(super) counts: BTreeMap<String, i64>,
}

#[derive(Default)]
pub(super) struct DlqScan {
    pub(super) groups: BTreeSet<String>,
    pub(super) partitions: BTreeMap<i32, PartitionScan>,
}

impl Observer {
    /// Advances the dead-letter scans of this cluster; the count per (DLQ topic, group), or
    /// why the topic could not be read this round.
    pub(super) async fn count_dead_letters(
        &self,
        access: &KafkaAccess,
        jobs: &[Job],
        marks: &BTreeMap<String, Result<BTreeMap<i32, Watermarks>, KafkaOpError>>,
    ) -> BTreeMap<(String, String), Result<i64, String>> {
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
                        out.insert((topic.clone(), group), Ok(0));
                    }
                    continue;
                }
                Some(Err(error)) => {
                    let error = format!("counting dead letters: {error}");
                    for group in groups {
                        out.insert((topic.clone(), group), Err(error.clone()));
                    }
                    continue;
                }
                None => continue,
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
                        let error = format!("counting dead letters: {error}");
                        for group in groups {
                            out.insert((topic.clone(), group), Err(error.clone()));
                        }
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
                    out.insert((topic.clone(), group.clone()), Ok(total));
                }
            }
        }
        out
    }
}
