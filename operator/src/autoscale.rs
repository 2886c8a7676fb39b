//! The lag autoscaler's decision, as a pure function of one measurement and the state kept
//! from the previous ones, so every rule of the CRD documentation is a row in a table test.
//!
//! The rules (see `spec.autoscaling` in [`crate::crd`]): the wanted pod count is
//! ceil(lag / lagThreshold), clamped to [minReplicas, maxReplicas] and to the number of source
//! partitions; up at once; down only after `cooldown` during which nothing needed the current
//! count; with minReplicas 0 a lag below `activationLag` means idle (zero pods) and a lag at or
//! above it wakes the consumer; a partition whose committed offset did not move since the last
//! measurement while workers ran is left out (more pods would not unstick it — KEDA's
//! `excludePersistentLag`), except while no partition of the group moves at all, for up to
//! [`STALL_GRACE`]: that is the whole group stalled (its commits failing while a broker is cut
//! off or its coordinator moves), which proves nothing about the pods needed, so the count is
//! held rather than scaled down; `paused` wins over everything.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::jiff::Timestamp;

use crate::config::AutoscalingConfig;

/// How long a group whose committed offsets all stand still keeps its pod count before its
/// unmoved partitions count as stuck. Longer than Kafka takes to shrink an ISR past a cut-off
/// replica (`replica.lag.time.max.ms`, 30 s by default) or to move a group coordinator, after
/// which commits go through again; short against how long a poison record holds a partition.
pub const STALL_GRACE: Duration = Duration::from_secs(60);

/// A partition of a source topic.
pub type Partition = (String, i32);

/// One partition as measured.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartitionReading {
    pub lag: i64,
    /// The group's committed offset; `None` when the group has none for the partition.
    pub committed: Option<i64>,
    /// The partition's end offset (high watermark).
    pub end: i64,
}

/// Everything [`decide`] looks at.
#[derive(Clone, Debug)]
pub struct Input<'a> {
    pub config: &'a AutoscalingConfig,
    pub paused: bool,
    /// Lag and committed offset of every source partition.
    pub partitions: &'a BTreeMap<Partition, PartitionReading>,
    /// Committed offsets at the previous measurement; `None` at the first one (after a start
    /// or an operator restart), which then leaves nothing out.
    pub previous: Option<&'a BTreeMap<Partition, Option<i64>>>,
    /// Workers were ready at the previous measurement and still are: only then can a
    /// partition that did not move count as stuck.
    pub workers_ran: bool,
    /// Pods the autoscaler wanted so far (the Deployment's count).
    pub current: i32,
    /// Last time the current count was needed (by a scale or a measurement that asked for at
    /// least as many pods); `None` counts as now.
    pub needed_since: Option<Timestamp>,
    /// Last measurement at which a committed offset of the group moved or nothing was stuck;
    /// `None` counts as now.
    pub moved_at: Option<Timestamp>,
    pub now: Timestamp,
}

/// What the autoscaler wants.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    pub desired: i32,
    /// Lag that counted: the total minus the stuck partitions.
    pub scaling_lag: i64,
    /// Stuck partitions as `topic/partition`.
    pub stuck: Vec<String>,
    pub reason: String,
    /// The count changed: the scale time moves to now.
    pub scaled: bool,
    /// The new "needed since": now when the count is needed (or changed), else unchanged.
    pub needed_since: Timestamp,
    /// The new "moved at".
    pub moved_at: Timestamp,
}

/// Decides the pod count; see the module documentation.
pub fn decide(input: &Input<'_>) -> Decision {
    let config = input.config;
    let now = input.now;
    let needed_since = input.needed_since.unwrap_or(now);
    let stuck: Vec<String> = match input.previous {
        Some(previous) if input.workers_ran => input
            .partitions
            .iter()
            .filter(|(partition, reading)| {
                reading.lag > 0
                    && previous
                        .get(*partition)
                        .is_some_and(|before| *before == reading.committed)
            })
            .map(|((topic, partition), _)| format!("{topic}/{partition}"))
            .collect(),
        _ => Vec::new(),
    };
    let scaling_lag: i64 = input
        .partitions
        .iter()
        .filter(|((topic, partition), _)| !stuck.contains(&format!("{topic}/{partition}")))
        .map(|(_, reading)| reading.lag.max(0))
        .fold(0i64, i64::saturating_add);
    let moved = !input.workers_ran
        || input.previous.is_none_or(|previous| {
            input
                .partitions
                .iter()
                .any(|(partition, reading)| previous.get(partition) != Some(&reading.committed))
        });
    let moved_at = if moved || stuck.is_empty() {
        now
    } else {
        input.moved_at.unwrap_or(now)
    };
    let stalled_for = Duration::try_from(now.duration_since(moved_at)).unwrap_or(Duration::ZERO);
    let stalled = !stuck.is_empty() && !moved && stalled_for < STALL_GRACE;

    if input.paused {
        return Decision {
            desired: 0,
            scaling_lag,
            stuck,
            reason: "spec.paused is true: paused wins over autoscaling".to_owned(),
            scaled: input.current != 0,
            needed_since: now,
            moved_at,
        };
    }

    let partitions = i32::try_from(input.partitions.len()).unwrap_or(i32::MAX);
    // No partitions known (topics not created yet): only maxReplicas caps.
    let upper = if partitions > 0 {
        config.max_replicas.min(partitions)
    } else {
        config.max_replicas
    };
    let lower = config.min_replicas.min(upper);
    let idle = scaling_lag < config.activation_lag;
    let need = if idle {
        0
    } else {
        // ceil(lag / threshold) for positive values, without overflow near i64::MAX.
        let pods = (scaling_lag / config.lag_threshold
            + i64::from(scaling_lag % config.lag_threshold != 0))
        .max(1);
        i32::try_from(pods).unwrap_or(i32::MAX)
    };
    let target = need.clamp(lower, upper);
    let why = |verb: &str| {
        let mut text = if idle {
            format!(
                "{verb} {target}: lag {scaling_lag} is below activationLag {}",
                config.activation_lag
            )
        } else {
            format!(
                "{verb} {target}: lag {scaling_lag} / lagThreshold {} wants {need}",
                config.lag_threshold
            )
        };
        if target != need {
            text.push_str(&format!(", clamped to [{lower}, {upper}]"));
        }
        if !stuck.is_empty() {
            text.push_str(&format!("; {} stuck partition(s) left out", stuck.len()));
        }
        text
    };

    if target > input.current {
        return Decision {
            desired: target,
            scaling_lag,
            reason: why("scaled up to"),
            stuck,
            scaled: true,
            needed_since: now,
            moved_at,
        };
    }
    if target == input.current {
        return Decision {
            desired: target,
            scaling_lag,
            reason: why("keeps"),
            stuck,
            scaled: false,
            needed_since: now,
            moved_at,
        };
    }
    if stalled {
        let mut reason = why("wants");
        reason.push_str(&format!(
            "; keeps {}: no committed offset of the group moved for {}s (its commits failing \
             or its coordinator moving), held for up to {}s before a partition counts as stuck",
            input.current,
            stalled_for.as_secs(),
            STALL_GRACE.as_secs()
        ));
        return Decision {
            desired: input.current,
            scaling_lag,
            reason,
            stuck,
            scaled: false,
            // Unchanged: a stall proves no need, so once commits move again the cooldown
            // counts from the last real one.
            needed_since,
            moved_at,
        };
    }
    let waited = now.duration_since(needed_since);
    let cooldown = Duration::try_from(waited).unwrap_or(Duration::ZERO);
    if cooldown >= config.cooldown {
        Decision {
            desired: target,
            scaling_lag,
            reason: why("scaled down to"),
            stuck,
            scaled: true,
            needed_since: now,
            moved_at,
        }
    } else {
        let left = config.cooldown.saturating_sub(cooldown);
        let mut reason = why("wants");
        reason.push_str(&format!(
            "; keeps {} until the cooldown ends in {}s",
            input.current,
            left.as_secs()
        ));
        Decision {
            desired: input.current,
            scaling_lag,
            reason,
            stuck,
            scaled: false,
            needed_since,
            moved_at,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(min: i32, max: i32) -> AutoscalingConfig {
        AutoscalingConfig {
            min_replicas: min,
            max_replicas: max,
            lag_threshold: 100,
            activation_lag: 10,
            cooldown: Duration::from_secs(60),
        }
    }

    fn t(seconds: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + seconds).unwrap()
    }

    /// `lags[i]` is partition i of topic `t`, committed at offset `committed[i]`.
    fn readings(lags: &[i64], committed: &[i64]) -> BTreeMap<Partition, PartitionReading> {
        lags.iter()
            .zip(committed)
            .enumerate()
            .map(|(i, (lag, c))| {
                (
                    ("t".to_owned(), i32::try_from(i).unwrap()),
                    PartitionReading {
                        lag: *lag,
                        committed: Some(*c),
                        end: *c + *lag,
                    },
                )
            })
            .collect()
    }

    fn offsets(committed: &[i64]) -> BTreeMap<Partition, Option<i64>> {
        committed
            .iter()
            .enumerate()
            .map(|(i, c)| (("t".to_owned(), i32::try_from(i).unwrap()), Some(*c)))
            .collect()
    }

    struct Row {
        what: &'static str,
        config: AutoscalingConfig,
        paused: bool,
        lags: Vec<i64>,
        committed: Vec<i64>,
        previous: Option<Vec<i64>>,
        workers_ran: bool,
        current: i32,
        needed_since: i64,
        moved_at: Option<i64>,
        now: i64,
        desired: i32,
        stuck: usize,
    }

    fn row(what: &'static str) -> Row {
        Row {
            what,
            config: config(1, 10),
            paused: false,
            lags: vec![0; 4],
            committed: vec![0; 4],
            previous: None,
            workers_ran: true,
            current: 1,
            needed_since: 0,
            moved_at: None,
            now: 15,
            desired: 1,
            stuck: 0,
        }
    }

    #[test]
    fn the_decision_follows_every_documented_rule() {
        let rows = vec![
            Row {
                lags: vec![150, 100, 0, 0],
                desired: 3,
                ..row("scales up at once to ceil(lag / threshold)")
            },
            Row {
                lags: vec![5000, 5000, 5000, 5000],
                config: config(1, 3),
                desired: 3,
                ..row("clamps to maxReplicas")
            },
            Row {
                lags: vec![5000, 5000, 5000, 5000],
                config: config(1, 10),
                desired: 4,
                ..row("clamps to the number of partitions")
            },
            Row {
                lags: vec![0, 0, 0, 0],
                config: config(2, 10),
                current: 0,
                desired: 2,
                ..row("never goes below minReplicas")
            },
            Row {
                lags: vec![50, 0, 0, 0],
                current: 4,
                needed_since: 0,
                now: 30,
                desired: 4,
                ..row("waits for the cooldown before scaling down")
            },
            Row {
                lags: vec![50, 0, 0, 0],
                current: 4,
                needed_since: 0,
                now: 60,
                desired: 1,
                ..row("scales down once the cooldown has passed")
            },
            Row {
                lags: vec![5, 0, 0, 0],
                config: config(0, 10),
                current: 1,
                needed_since: 0,
                now: 61,
                desired: 0,
                ..row("scales to zero after the cooldown below activationLag")
            },
            Row {
                lags: vec![5, 0, 0, 0],
                config: config(0, 10),
                current: 1,
                needed_since: 0,
                now: 30,
                desired: 1,
                ..row("does not scale to zero before the cooldown")
            },
            Row {
                lags: vec![9, 0, 0, 0],
                config: config(0, 10),
                current: 0,
                workers_ran: false,
                desired: 0,
                ..row("stays at zero below activationLag")
            },
            Row {
                lags: vec![10, 0, 0, 0],
                config: config(0, 10),
                current: 0,
                workers_ran: false,
                desired: 1,
                ..row("wakes from zero at activationLag")
            },
            Row {
                lags: vec![900, 0, 0, 0],
                committed: vec![7, 0, 0, 0],
                previous: Some(vec![7, 0, 0, 0]),
                current: 1,
                desired: 1,
                stuck: 1,
                ..row("a stuck partition does not drive a scale-up")
            },
            Row {
                lags: vec![900, 300, 0, 0],
                committed: vec![7, 50, 0, 0],
                previous: Some(vec![7, 20, 0, 0]),
                current: 1,
                desired: 3,
                stuck: 1,
                ..row("moving partitions still scale while a stuck one is left out")
            },
            Row {
                lags: vec![900, 900, 900, 0],
                committed: vec![7, 7, 7, 0],
                previous: Some(vec![7, 7, 7, 0]),
                current: 3,
                needed_since: 0,
                moved_at: Some(0),
                now: 59,
                desired: 3,
                stuck: 3,
                ..row("a group whose commits all stand still keeps its pods through the grace")
            },
            Row {
                lags: vec![900, 900, 900, 0],
                committed: vec![7, 7, 7, 0],
                previous: Some(vec![7, 7, 7, 0]),
                current: 3,
                needed_since: 0,
                moved_at: Some(0),
                now: 60,
                desired: 1,
                stuck: 3,
                ..row("after the grace the unmoved partitions count as stuck")
            },
            Row {
                lags: vec![900, 0, 0, 0],
                committed: vec![7, 0, 0, 0],
                previous: Some(vec![7, 0, 0, 0]),
                current: 3,
                needed_since: 0,
                moved_at: None,
                now: 100,
                desired: 3,
                stuck: 1,
                ..row("a stall starts its grace at the first measurement that sees it")
            },
            Row {
                lags: vec![900, 300, 0, 0],
                committed: vec![7, 50, 0, 0],
                previous: Some(vec![7, 20, 0, 0]),
                current: 4,
                needed_since: 0,
                moved_at: Some(0),
                now: 100,
                desired: 3,
                stuck: 1,
                ..row("a partition moving elsewhere in the group ends the grace at once")
            },
            Row {
                lags: vec![900, 0, 0, 0],
                committed: vec![7, 0, 0, 0],
                previous: None,
                current: 1,
                desired: 4,
                ..row("the first measurement leaves nothing out")
            },
            Row {
                lags: vec![900, 0, 0, 0],
                committed: vec![7, 0, 0, 0],
                previous: Some(vec![7, 0, 0, 0]),
                workers_ran: false,
                current: 1,
                desired: 4,
                ..row("a partition nobody consumed is not stuck")
            },
            Row {
                lags: vec![5000, 0, 0, 0],
                paused: true,
                current: 3,
                desired: 0,
                ..row("paused wins over any lag")
            },
        ];
        for r in rows {
            let partitions = readings(&r.lags, &r.committed);
            let previous = r.previous.as_deref().map(offsets);
            let decision = decide(&Input {
                config: &r.config,
                paused: r.paused,
                partitions: &partitions,
                previous: previous.as_ref(),
                workers_ran: r.workers_ran,
                current: r.current,
                needed_since: Some(t(r.needed_since)),
                moved_at: r.moved_at.map(t),
                now: t(r.now),
            });
            assert_eq!(
                decision.desired, r.desired,
                "{}: {}",
                r.what, decision.reason
            );
            assert_eq!(
                decision.stuck.len(),
                r.stuck,
                "{}: {:?}",
                r.what,
                decision.stuck
            );
            assert_eq!(decision.scaled, decision.desired != r.current, "{}", r.what);
        }
    }

    #[test]
    fn once_a_stall_ends_the_cooldown_counts_from_the_last_real_need() {
        let config = config(1, 10);
        let still = offsets(&[7, 7, 7, 0]);
        let step = |partitions: &BTreeMap<Partition, PartitionReading>, since, moved, now| {
            decide(&Input {
                config: &config,
                paused: false,
                partitions,
                previous: Some(&still),
                workers_ran: true,
                current: 3,
                needed_since: Some(since),
                moved_at: Some(moved),
                now,
            })
        };
        let stalled = step(
            &readings(&[900, 900, 900, 0], &[7, 7, 7, 0]),
            t(0),
            t(50),
            t(70),
        );
        assert_eq!(stalled.desired, 3, "{}", stalled.reason);
        assert_eq!((stalled.needed_since, stalled.moved_at), (t(0), t(50)));
        // Partition 1 moves (to 40 short of its end): the other two count as stuck now, and
        // the cooldown has long passed since 3 pods were last needed.
        let moving = readings(&[900, 40, 900, 0], &[7, 867, 7, 0]);
        let after = step(&moving, stalled.needed_since, stalled.moved_at, t(75));
        assert_eq!(
            (after.desired, after.moved_at),
            (1, t(75)),
            "{}",
            after.reason
        );
    }

    #[test]
    fn the_crd_and_the_readme_document_the_stall_grace_the_decision_applies() {
        let crd = crate::crd::crd_yaml().unwrap();
        let promise = format!("held for up to {} seconds", STALL_GRACE.as_secs());
        assert!(crd.contains(&promise), "the CRD should say {promise:?}");
        let readme = include_str!("../../README.md").replace("\n  ", " ");
        let promise = format!("held for up to {} s", STALL_GRACE.as_secs());
        assert!(
            readme.contains(&promise),
            "the README should say {promise:?}"
        );
    }

    #[test]
    fn a_higher_need_during_the_cooldown_restarts_it() {
        let config = config(1, 10);
        let low = readings(&[50, 0, 0, 0], &[0; 4]);
        let high = readings(&[400, 0, 0, 0], &[0; 4]);
        let step = |partitions: &BTreeMap<Partition, PartitionReading>, since, now| {
            decide(&Input {
                config: &config,
                paused: false,
                partitions,
                previous: None,
                workers_ran: true,
                current: 4,
                needed_since: Some(since),
                moved_at: None,
                now,
            })
        };
        let first = step(&low, t(0), t(40));
        assert_eq!((first.desired, first.needed_since), (4, t(0)));
        let need = step(&high, first.needed_since, t(50));
        assert_eq!((need.desired, need.needed_since), (4, t(50)));
        let later = step(&low, need.needed_since, t(100));
        assert_eq!(later.desired, 4, "{}", later.reason);
        let after = step(&low, later.needed_since, t(110));
        assert_eq!(after.desired, 1, "{}", after.reason);
    }
}
