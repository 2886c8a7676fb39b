//! Leader election on a `coordination.k8s.io/v1` Lease, so that of several operator replicas
//! exactly one reconciles at a time.
//!
//! kube 5 has no elector, and the maintained crates (kube-leader-election, kube-coordinate) still
//! depend on older kube releases, so this is a small loop modelled on client-go's
//! `leaderelection` package:
//! - A candidate takes the Lease when it has no holder, or when the holder's record has not
//!   changed for `lease_duration` *as measured by the candidate's own clock* (so clock skew
//!   between nodes does not matter).
//! - Every write is a `replace` carrying the `resourceVersion` it read, so two candidates racing
//!   for an expired Lease cannot both win: the loser gets a 409 Conflict.
//! - The leader renews every `retry_period`. When it has not renewed for `renew_deadline`
//!   (shorter than `lease_duration`), it stops its work before anyone else may take over.
//! - On shutdown the leader releases the Lease so a standby takes over at once.

use std::future::Future;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::Api;
use kube::api::PostParams;
use tokio::time::{Instant, sleep, timeout};
use tokio_util::sync::CancellationToken;
use tokio_util::task::AbortOnDropHandle;
use tracing::{info, warn};

use crate::metrics::Metrics;

/// Timings of the election. The defaults are client-go's, which Kubernetes' own controllers use.
#[derive(Clone, Copy, Debug)]
pub struct Timings {
    /// How long a Lease record must stay unchanged before another candidate may take it.
    pub lease_duration: Duration,
    /// How long the leader keeps leading without a successful renewal. Shorter than
    /// `lease_duration`, so it stops before a standby can take over.
    pub renew_deadline: Duration,
    /// Pause between two attempts to acquire or renew.
    pub retry_period: Duration,
}

impl Default for Timings {
    fn default() -> Self {
        Self {
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
        }
    }
}

/// One candidate for the Lease.
pub struct Elector {
    api: Api<Lease>,
    lease_name: String,
    identity: String,
    timings: Timings,
    /// The holder record last seen and when (by our clock) it last changed.
    observed: Option<(LeaseRecord, Instant)>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct LeaseRecord {
    holder: Option<String>,
    renew_time: Option<MicroTime>,
    transitions: i32,
}

impl Elector {
    pub fn new(api: Api<Lease>, lease_name: &str, identity: &str, timings: Timings) -> Self {
        Self {
            api,
            lease_name: lease_name.to_owned(),
            identity: identity.to_owned(),
            timings,
            observed: None,
        }
    }

    /// Campaigns for the Lease until `shutdown` is cancelled. Each time this replica becomes the
    /// leader it runs `lead(token)`; the token is cancelled when leadership is lost or on
    /// shutdown, and `lead` gets a short grace to return before it is aborted.
    pub async fn run<F, Fut>(mut self, mut lead: F, metrics: Metrics, shutdown: CancellationToken)
    where
        F: FnMut(CancellationToken) -> Fut,
        Fut: Future<Output = ()> + Send + 'static,
    {
        loop {
            // Follower: try until the Lease is ours.
            loop {
                if shutdown.is_cancelled() {
                    return;
                }
                if self.try_acquire_or_renew().await {
                    break;
                }
                tokio::select! {
                    () = sleep(self.timings.retry_period) => {}
                    () = shutdown.cancelled() => return,
                }
            }

            info!(identity = %self.identity, lease = %self.lease_name, "became the leader");
            metrics.leader.set(1);
            let leading = shutdown.child_token();
            // Aborted if this elector is dropped: no work may outlive the loop that renews
            // the Lease it depends on.
            let mut work = AbortOnDropHandle::new(tokio::spawn(lead(leading.clone())));
            let mut last_renewal = Instant::now();

            // Leader: renew until shutdown, loss, or the work ending on its own.
            // Neither the pause nor a renewal may run past the renew deadline: a slow API
            // server must not keep this replica leading after a standby may have taken over.
            let lost = loop {
                let deadline = last_renewal + self.timings.renew_deadline;
                tokio::select! {
                    () = sleep(self.timings.retry_period.min(deadline.saturating_duration_since(Instant::now()))) => {}
                    () = shutdown.cancelled() => break false,
                    _ = &mut work => break false,
                }
                let left = deadline.saturating_duration_since(Instant::now());
                let renewed = timeout(left, self.try_acquire_or_renew()).await;
                if matches!(renewed, Ok(true)) {
                    last_renewal = Instant::now();
                } else if self.held_by_other() || Instant::now() >= deadline {
                    break true;
                }
            };

            leading.cancel();
            metrics.leader.set(0);
            // The margin between renew_deadline and lease_duration is what the work may use to
            // stop: after it, a standby may already lead.
            let stop_grace = self
                .timings
                .lease_duration
                .saturating_sub(self.timings.renew_deadline);
            if !work.is_finished() && timeout(stop_grace, &mut work).await.is_err() {
                warn!("leader work did not stop in time; aborting it");
                work.abort();
            }
            if lost {
                warn!(identity = %self.identity, lease = %self.lease_name, "lost the leadership");
                continue;
            }
            self.release().await;
            return;
        }
    }

    /// One attempt to take or renew the Lease; true when this candidate holds it afterwards.
    /// Errors count as "not held" and are logged; the caller retries.
    pub async fn try_acquire_or_renew(&mut self) -> bool {
        // A hung request must not outlive the renew deadline.
        match timeout(self.timings.renew_deadline, self.attempt()).await {
            Ok(Ok(held)) => held,
            Ok(Err(error)) => {
                warn!(%error, lease = %self.lease_name, "leader election request failed");
                false
            }
            Err(_) => {
                warn!(lease = %self.lease_name, "leader election request timed out");
                false
            }
        }
    }

    async fn attempt(&mut self) -> Result<bool, kube::Error> {
        let now = MicroTime(Timestamp::now());
        let Some(mut lease) = self.api.get_opt(&self.lease_name).await? else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.lease_name.clone()),
                    ..Default::default()
                },
                spec: Some(LeaseSpec {
                    holder_identity: Some(self.identity.clone()),
                    lease_duration_seconds: Some(self.lease_duration_secs()),
                    acquire_time: Some(now.clone()),
                    renew_time: Some(now),
                    lease_transitions: Some(0),
                    ..Default::default()
                }),
            };
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(created) => {
                    self.observe(&created);
                    Ok(true)
                }
                Err(kube::Error::Api(status)) if status.code == 409 => Ok(false),
                Err(error) => Err(error),
            };
        };

        self.observe(&lease);
        let spec = lease.spec.clone().unwrap_or_default();
        let holder = spec.holder_identity.clone().filter(|h| !h.is_empty());
        let mine = holder.as_deref() == Some(self.identity.as_str());
        if holder.is_some() && !mine && !self.observed_expired(&spec) {
            return Ok(false);
        }

        let mut new_spec = spec.clone();
        if !mine {
            new_spec.acquire_time = Some(now.clone());
            new_spec.lease_transitions =
                Some(spec.lease_transitions.unwrap_or(0).saturating_add(1));
            new_spec.holder_identity = Some(self.identity.clone());
        }
        new_spec.renew_time = Some(now);
        new_spec.lease_duration_seconds = Some(self.lease_duration_secs());
        lease.spec = Some(new_spec);
        // `lease.metadata.resourceVersion` is the one read above: a concurrent writer makes
        // this fail with 409 instead of both believing they lead.
        match self
            .api
            .replace(&self.lease_name, &PostParams::default(), &lease)
            .await
        {
            Ok(updated) => {
                self.observe(&updated);
                Ok(true)
            }
            Err(kube::Error::Api(status)) if status.code == 409 => Ok(false),
            Err(error) => Err(error),
        }
    }

    /// Gives the Lease up so a standby does not wait for it to expire.
    async fn release(&mut self) {
        let Ok(Some(mut lease)) = self.api.get_opt(&self.lease_name).await else {
            return;
        };
        let spec = lease.spec.get_or_insert_with(Default::default);
        if spec.holder_identity.as_deref() != Some(self.identity.as_str()) {
            return;
        }
        let now = MicroTime(Timestamp::now());
        spec.holder_identity = None;
        spec.lease_duration_seconds = Some(1);
        spec.renew_time = Some(now.clone());
        spec.acquire_time = Some(now);
        match self
            .api
            .replace(&self.lease_name, &PostParams::default(), &lease)
            .await
        {
            Ok(_) => {
                info!(identity = %self.identity, lease = %self.lease_name, "released the leadership")
            }
            Err(error) => {
                warn!(%error, "releasing the Lease failed; standbys take over when it expires")
            }
        }
    }

    fn observe(&mut self, lease: &Lease) {
        let spec = lease.spec.clone().unwrap_or_default();
        let record = LeaseRecord {
            holder: spec.holder_identity,
            renew_time: spec.renew_time,
            transitions: spec.lease_transitions.unwrap_or(0),
        };
        match &self.observed {
            Some((seen, _)) if *seen == record => {}
            _ => self.observed = Some((record, Instant::now())),
        }
    }

    fn observed_expired(&self, spec: &LeaseSpec) -> bool {
        let duration = spec
            .lease_duration_seconds
            .and_then(|s| u64::try_from(s).ok())
            .map(Duration::from_secs)
            .unwrap_or(self.timings.lease_duration);
        self.observed
            .as_ref()
            .is_none_or(|(_, since)| since.elapsed() >= duration)
    }

    fn held_by_other(&self) -> bool {
        self.observed.as_ref().is_some_and(|(record, _)| {
            record
                .holder
                .as_deref()
                .is_some_and(|h| !h.is_empty() && h != self.identity)
        })
    }

    fn lease_duration_secs(&self) -> i32 {
        i32::try_from(self.timings.lease_duration.as_secs()).unwrap_or(i32::MAX)
    }
}
