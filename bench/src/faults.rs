//! Broker faults during a chaos run on the three-broker cluster: a plan of `kill -9`s of
//! partition leaders (found from metadata when they fire), hung brokers and network cuts,
//! fired at fractions of the committed progress like the worker kills, one at a time, each
//! undone by `hack/kafka-fault.sh` itself (see [`testkit::faults`]).

use std::process::Child;
use std::time::{Duration, Instant};

use rand::Rng;
use rand::rngs::StdRng;
use testkit::faults::{self, CLUSTER_BROKERS, Fault};

/// Which broker faults a run injects, and for how long each lasts.
#[derive(Debug, Clone)]
pub struct BrokerFaults {
    /// `kill -9` of the leader of a random input or output partition.
    pub leader_kills: u32,
    /// `kill -9` of the leader of the dead-letter topic's partition 0.
    pub dlq_leader_kills: u32,
    /// `SIGSTOP` of a random broker, longer than the brokers' session timeout.
    pub hangs: u32,
    /// Broker 3's link down.
    pub cuts: u32,
    /// How long a killed broker stays down before it is restarted.
    pub down: Duration,
    pub hang_for: Duration,
    pub cut_for: Duration,
}

impl Default for BrokerFaults {
    /// None; the lengths are the ones the results in `bench/results/` were measured with.
    fn default() -> Self {
        BrokerFaults {
            leader_kills: 0,
            dlq_leader_kills: 0,
            hangs: 0,
            cuts: 0,
            // Long enough that the workers write through new leaders for a while.
            down: Duration::from_secs(10),
            // Above the brokers' 9 s session timeout: the cluster fences the hung broker.
            hang_for: Duration::from_secs(15),
            // Above the session timeout too, so the cut broker is fenced and its
            // partitions move, and the clients' requests to it time out meanwhile.
            cut_for: Duration::from_secs(20),
        }
    }
}

impl BrokerFaults {
    pub fn any(&self) -> bool {
        self.leader_kills + self.dlq_leader_kills + self.hangs + self.cuts > 0
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Planned {
    LeaderKill,
    DlqLeaderKill,
    Hang,
    Cut,
}

/// The topics a fault can pick a partition leader of.
pub struct FaultTopics<'a> {
    pub input: &'a str,
    pub output: &'a str,
    pub dlq: &'a str,
    pub partitions: i32,
}

/// Counts of what fired, and one line per fault.
#[derive(Debug, Clone, Default)]
pub struct FaultLog {
    pub leader_kills: u32,
    pub hangs: u32,
    pub cuts: u32,
    pub lines: Vec<String>,
}

/// Fires the planned faults as the run progresses.
pub struct FaultDriver {
    plan: Vec<(f64, Planned)>,
    next: usize,
    current: Option<(String, Child, Instant)>,
    lengths: BrokerFaults,
    pub log: FaultLog,
}

impl FaultDriver {
    /// Spreads the leader kills over 15–85 % of the progress, the hangs and cuts between
    /// them (hangs from 30 %, cuts from 55 %), the DLQ leader kills from 25 %.
    pub fn new(faults: &BrokerFaults) -> FaultDriver {
        let spread = |n: u32, from: f64, to: f64| -> Vec<f64> {
            (0..n)
                .map(|k| from + (to - from) * f64::from(k) / f64::from(n.max(1)))
                .collect()
        };
        let mut plan: Vec<(f64, Planned)> = Vec::new();
        for (n, from, to, kind) in [
            (faults.leader_kills, 0.15, 0.85, Planned::LeaderKill),
            (faults.dlq_leader_kills, 0.25, 0.75, Planned::DlqLeaderKill),
            (faults.hangs, 0.30, 0.80, Planned::Hang),
            (faults.cuts, 0.55, 0.90, Planned::Cut),
        ] {
            plan.extend(spread(n, from, to).into_iter().map(|f| (f, kind)));
        }
        plan.sort_by(|a, b| a.0.total_cmp(&b.0));
        FaultDriver {
            plan,
            next: 0,
            current: None,
            log: FaultLog::default(),
            lengths: faults.clone(),
        }
    }

    /// At progress `f`: reaps a finished fault, then starts the next one that is due.
    pub fn tick(
        &mut self,
        f: f64,
        bootstrap: &str,
        topics: &FaultTopics<'_>,
        rng: &mut StdRng,
    ) -> anyhow::Result<()> {
        if let Some((what, child, started)) = &mut self.current {
            match child.try_wait()? {
                None => return Ok(()),
                Some(status) => {
                    anyhow::ensure!(
                        status.success(),
                        "{what}: hack/kafka-fault.sh failed: {status}"
                    );
                    self.log.lines.push(format!(
                        "{what}: cluster whole again after {:.0}s",
                        started.elapsed().as_secs_f64()
                    ));
                    self.current = None;
                }
            }
        }
        let Some((at, planned)) = self.plan.get(self.next).copied() else {
            return Ok(());
        };
        if f < at {
            return Ok(());
        }
        let (fault, length, target) = match planned {
            Planned::LeaderKill | Planned::DlqLeaderKill => {
                let (topic, partition) = match planned {
                    Planned::DlqLeaderKill => (topics.dlq, 0),
                    _ if rng.random_bool(0.5) => {
                        (topics.input, rng.random_range(0..topics.partitions))
                    }
                    _ => (topics.output, rng.random_range(0..topics.partitions)),
                };
                // A partition in the middle of an election has no leader for a moment:
                // the fault waits for the next round.
                let Ok(leader) = faults::leader(bootstrap, topic, partition) else {
                    return Ok(());
                };
                self.log.leader_kills += 1;
                (
                    Fault::Kill(leader),
                    self.lengths.down,
                    format!(" (leader of {topic}/{partition})"),
                )
            }
            Planned::Hang => {
                self.log.hangs += 1;
                let broker = rng.random_range(1..=i32::try_from(CLUSTER_BROKERS)?);
                (Fault::Hang(broker), self.lengths.hang_for, String::new())
            }
            Planned::Cut => {
                self.log.cuts += 1;
                (Fault::Cut, self.lengths.cut_for, String::new())
            }
        };
        let what = format!(
            "{:.0}%: {fault}{target} for {}s",
            f * 100.0,
            length.as_secs()
        );
        eprintln!("chaos: {what}");
        let child = faults::start(fault, length).map_err(anyhow::Error::msg)?;
        self.current = Some((what, child, Instant::now()));
        self.next += 1;
        Ok(())
    }

    /// Waits for the fault in progress to be over.
    pub fn finish(&mut self) -> anyhow::Result<()> {
        if let Some((what, mut child, started)) = self.current.take() {
            let status = child.wait()?;
            anyhow::ensure!(
                status.success(),
                "{what}: hack/kafka-fault.sh failed: {status}"
            );
            self.log.lines.push(format!(
                "{what}: cluster whole again after {:.0}s",
                started.elapsed().as_secs_f64()
            ));
        }
        Ok(())
    }

    /// Planned faults that never fired (the run ended first).
    pub fn unfired(&self) -> usize {
        self.plan.len() - self.next
    }
}

impl Drop for FaultDriver {
    fn drop(&mut self) {
        // The fault ends by itself (its watchdog); only wait so the next run finds the
        // cluster whole.
        if let Some((_, child, _)) = &mut self.current {
            let _ = child.wait();
        }
    }
}
