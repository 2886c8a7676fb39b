//! The status an EventConsumer reports, computed from what the reconciler observed.
//!
//! Conditions follow the Kubernetes API conventions: a fixed set of types (`Ready`,
//! `Progressing`, `Degraded`), each with a CamelCase `reason`, a sentence for humans in
//! `message`, the `observedGeneration` it describes, and a `lastTransitionTime` that only moves
//! when `status` flips. The computation is pure, so the reconciler can compare the result with
//! the current status and skip the write when nothing changed.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;

use crate::crd::{EventConsumer, EventConsumerStatus};
use crate::deployment::selector_string;

pub const READY: &str = "Ready";
pub const PROGRESSING: &str = "Progressing";
pub const DEGRADED: &str = "Degraded";
/// `Degraded` reasons of a refusal by the brokers, which the observer finds and the reconciler
/// reports: the credentials or the TLS handshake were refused, or an ACL is missing.
pub const KAFKA_AUTHENTICATION_FAILED: &str = "KafkaAuthenticationFailed";
pub const KAFKA_AUTHORIZATION_FAILED: &str = "KafkaAuthorizationFailed";
pub const KAFKA_REFUSALS: [&str; 2] = [KAFKA_AUTHENTICATION_FAILED, KAFKA_AUTHORIZATION_FAILED];

/// The condition types the reconciler writes.
const OWN: [&str; 3] = [READY, PROGRESSING, DEGRADED];

const TRUE: &str = "True";
const FALSE: &str = "False";

/// What the reconciler found.
#[derive(Clone, Copy, Debug)]
pub enum Observation<'a> {
    /// The spec is valid and the Deployment was built from it (applied or already matching).
    Deployed {
        deployment: &'a Deployment,
        paused: bool,
        /// The brokers refuse the consumer's Kafka access: the `Degraded` reason (one of
        /// [`KAFKA_REFUSALS`]) and message.
        refused: Option<(&'a str, &'a str)>,
    },
    /// The spec cannot be carried out; `reason` and `message` say why. Any Deployment left from
    /// an earlier generation still counts for the replica numbers.
    Blocked {
        reason: &'a str,
        message: &'a str,
        deployment: Option<&'a Deployment>,
    },
}

/// The status for `ec` given `observation`, keeping the `lastTransitionTime` of every condition
/// whose status did not change.
pub fn compute(
    ec: &EventConsumer,
    observation: Observation<'_>,
    now: Timestamp,
) -> EventConsumerStatus {
    let generation = ec.metadata.generation;
    let deployment = match observation {
        Observation::Deployed { deployment, .. } => Some(deployment),
        Observation::Blocked { deployment, .. } => deployment,
    };
    let counts = deployment.map(Counts::of).unwrap_or_default();

    let conditions = match observation {
        Observation::Deployed {
            paused, refused, ..
        } => deployed_conditions(&counts, paused, refused),
        Observation::Blocked {
            reason, message, ..
        } => [
            (
                READY,
                FALSE,
                reason.to_owned(),
                format!("not running this spec: {message}"),
            ),
            (
                PROGRESSING,
                FALSE,
                reason.to_owned(),
                "waiting for the problem reported by Degraded to be fixed".to_owned(),
            ),
            (DEGRADED, TRUE, reason.to_owned(), message.to_owned()),
        ],
    };

    let old = ec
        .status
        .as_ref()
        .map(|s| s.conditions.as_slice())
        .unwrap_or_default();
    let now = Time(now.round(k8s_openapi::jiff::Unit::Second).unwrap_or(now));
    let conditions: Vec<Condition> = conditions
        .into_iter()
        .map(|(type_, status, reason, message)| {
            let last_transition_time = old
                .iter()
                .find(|c| c.type_ == type_ && c.status == status)
                .map(|c| c.last_transition_time.clone())
                .unwrap_or_else(|| now.clone());
            Condition {
                type_: type_.to_owned(),
                status: status.to_owned(),
                reason,
                message,
                observed_generation: generation,
                last_transition_time,
            }
        })
        .collect();

    // Conditions of other types (the observer's `RetryTopicsReady`) are kept as they are.
    let conditions = conditions
        .into_iter()
        .chain(
            old.iter()
                .filter(|c| !OWN.contains(&c.type_.as_str()))
                .cloned(),
        )
        .collect();

    EventConsumerStatus {
        conditions,
        observed_generation: generation,
        replicas: counts.replicas,
        ready_replicas: counts.ready,
        selector: Some(selector_string(&ec.name_any())),
        // Kafka-side observations are owned by the observer; keep what was last written.
        lag: ec.status.as_ref().and_then(|s| s.lag.clone()),
        dead_letters: ec.status.as_ref().and_then(|s| s.dead_letters),
        dead_letters_error: ec
            .status
            .as_ref()
            .and_then(|s| s.dead_letters_error.clone()),
        autoscaling: ec.status.as_ref().and_then(|s| s.autoscaling.clone()),
    }
}

/// The part of `status` the reconciler writes: without the Kafka-side fields and conditions
/// owned by [`crate::observer`], which server-side apply then leaves to their writer.
pub fn reconciler_part(status: &EventConsumerStatus) -> EventConsumerStatus {
    EventConsumerStatus {
        conditions: status
            .conditions
            .iter()
            .filter(|c| OWN.contains(&c.type_.as_str()))
            .cloned()
            .collect(),
        lag: None,
        dead_letters: None,
        dead_letters_error: None,
        autoscaling: None,
        ..status.clone()
    }
}

/// The condition with `type_`, if present.
pub fn condition<'a>(status: &'a EventConsumerStatus, type_: &str) -> Option<&'a Condition> {
    status.conditions.iter().find(|c| c.type_ == type_)
}

#[derive(Clone, Debug, Default)]
struct Counts {
    desired: i32,
    replicas: i32,
    ready: i32,
    updated: i32,
    /// The Deployment controller has seen the Deployment's latest generation.
    synced: bool,
    /// The Deployment controller gave up on the rollout: its message.
    stuck: Option<String>,
    /// Pods cannot be created (quota, admission): the message.
    replica_failure: Option<String>,
}

impl Counts {
    fn of(deployment: &Deployment) -> Self {
        let desired = deployment.spec.replicas.unwrap_or(1);
        let status = deployment.status.clone().unwrap_or_default();
        let synced = match (deployment.metadata.generation, status.observed_generation) {
            (Some(generation), Some(observed)) => observed >= generation,
            (Some(_), None) => false,
            (None, _) => true,
        };
        let conditions = status.conditions.unwrap_or_default();
        let stuck = conditions
            .iter()
            .find(|c| {
                c.type_.as_deref() == Some("Progressing")
                    && c.status.as_deref() == Some(FALSE)
                    && c.reason.as_deref() == Some("ProgressDeadlineExceeded")
            })
            .map(|c| c.message.clone().unwrap_or_default());
        let replica_failure = conditions
            .iter()
            .find(|c| {
                c.type_.as_deref() == Some("ReplicaFailure") && c.status.as_deref() == Some(TRUE)
            })
            .map(|c| c.message.clone().unwrap_or_default());
        Self {
            desired,
            replicas: status.replicas.unwrap_or(0),
            ready: status.ready_replicas.unwrap_or(0),
            updated: status.updated_replicas.unwrap_or(0),
            synced,
            stuck,
            replica_failure,
        }
    }

    fn rollout_done(&self) -> bool {
        self.synced
            && self.updated >= self.desired
            && self.replicas == self.desired
            && self.ready >= self.desired
    }
}

type ConditionParts = (&'static str, &'static str, String, String);

fn deployed_conditions(
    counts: &Counts,
    paused: bool,
    refused: Option<(&str, &str)>,
) -> [ConditionParts; 3] {
    let Counts {
        desired,
        replicas,
        ready,
        updated,
        ..
    } = *counts;

    let ready_condition = if paused {
        (
            READY,
            FALSE,
            "Paused".to_owned(),
            "spec.paused is true: the workers are scaled to 0 and the group's offsets are kept"
                .to_owned(),
        )
    } else if desired == 0 {
        (
            READY,
            FALSE,
            "ScaledToZero".to_owned(),
            "0 replicas wanted (spec.replicas, or the autoscaler at minReplicas 0): no worker is consuming".to_owned(),
        )
    } else if counts.synced && ready >= desired {
        (
            READY,
            TRUE,
            "AllReplicasReady".to_owned(),
            format!("{ready}/{desired} replicas ready"),
        )
    } else {
        (
            READY,
            FALSE,
            "ReplicasNotReady".to_owned(),
            format!("{ready}/{desired} replicas ready"),
        )
    };

    let progressing = if let Some(message) = &counts.stuck {
        (
            PROGRESSING,
            FALSE,
            "ProgressDeadlineExceeded".to_owned(),
            message.clone(),
        )
    } else if counts.rollout_done() {
        let reason = if paused { "Paused" } else { "RolloutComplete" };
        (
            PROGRESSING,
            FALSE,
            reason.to_owned(),
            format!("{desired} replicas up to date"),
        )
    } else {
        (
            PROGRESSING,
            TRUE,
            "RollingOut".to_owned(),
            format!(
                "{updated}/{desired} replicas updated, {ready}/{desired} ready, {replicas} in total"
            ),
        )
    };

    let degraded = if let Some(message) = &counts.stuck {
        (
            DEGRADED,
            TRUE,
            "ProgressDeadlineExceeded".to_owned(),
            message.clone(),
        )
    } else if let Some(message) = &counts.replica_failure {
        (DEGRADED, TRUE, "ReplicaFailure".to_owned(), message.clone())
    } else if let Some((reason, message)) = refused {
        (DEGRADED, TRUE, reason.to_owned(), message.to_owned())
    } else {
        (
            DEGRADED,
            FALSE,
            "AsExpected".to_owned(),
            "the Deployment matches the spec".to_owned(),
        )
    };

    [ready_condition, progressing, degraded]
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::apps::v1::{DeploymentCondition, DeploymentSpec, DeploymentStatus};
    use k8s_openapi::jiff::SignedDuration;

    use super::*;
    use crate::test_fixtures::order_consumer;

    fn deployment(desired: i32, replicas: i32, ready: i32, updated: i32) -> Deployment {
        let mut d = Deployment {
            spec: DeploymentSpec {
                replicas: Some(desired),
                ..Default::default()
            },
            status: Some(DeploymentStatus {
                observed_generation: Some(1),
                replicas: Some(replicas),
                ready_replicas: Some(ready),
                updated_replicas: Some(updated),
                ..Default::default()
            }),
            ..Default::default()
        };
        d.metadata.generation = Some(1);
        d
    }

    fn parts(status: &EventConsumerStatus, type_: &str) -> (String, String) {
        let c = condition(status, type_).expect(type_);
        (c.status.clone(), c.reason.clone())
    }

    fn t0() -> Timestamp {
        Timestamp::from_second(1_800_000_000).unwrap()
    }

    #[test]
    fn all_replicas_ready_means_ready_and_done() {
        let ec = order_consumer();
        let d = deployment(3, 3, 3, 3);
        let status = compute(
            &ec,
            Observation::Deployed {
                deployment: &d,
                paused: false,
                refused: None,
            },
            t0(),
        );
        assert_eq!(
            parts(&status, READY),
            ("True".into(), "AllReplicasReady".into())
        );
        assert_eq!(
            parts(&status, PROGRESSING),
            ("False".into(), "RolloutComplete".into())
        );
        assert_eq!(
            parts(&status, DEGRADED),
            ("False".into(), "AsExpected".into())
        );
        assert_eq!((status.replicas, status.ready_replicas), (3, 3));
        assert_eq!(status.observed_generation, Some(1));
        assert_eq!(
            condition(&status, READY).unwrap().message,
            "3/3 replicas ready"
        );
        assert_eq!(
            status.selector.as_deref(),
            Some(
                "app.kubernetes.io/instance=inventory,app.kubernetes.io/name=eventconsumer-worker"
            )
        );
    }

    #[test]
    fn starting_pods_are_progressing_and_not_ready() {
        let ec = order_consumer();
        let d = deployment(3, 3, 1, 3);
        let status = compute(
            &ec,
            Observation::Deployed {
                deployment: &d,
                paused: false,
                refused: None,
            },
            t0(),
        );
        assert_eq!(
            parts(&status, READY),
            ("False".into(), "ReplicasNotReady".into())
        );
        assert_eq!(
            parts(&status, PROGRESSING),
            ("True".into(), "RollingOut".into())
        );
    }

    #[test]
    fn a_deployment_not_yet_seen_by_its_controller_is_not_ready() {
        let ec = order_consumer();
        let mut d = deployment(1, 1, 1, 1);
        d.metadata.generation = Some(2);
        let status = compute(
            &ec,
            Observation::Deployed {
                deployment: &d,
                paused: false,
                refused: None,
            },
            t0(),
        );
        assert_eq!(parts(&status, READY).0, "False");
        assert_eq!(parts(&status, PROGRESSING).0, "True");
    }

    #[test]
    fn paused_consumers_say_paused() {
        let ec = order_consumer();
        let d = deployment(0, 0, 0, 0);
        let status = compute(
            &ec,
            Observation::Deployed {
                deployment: &d,
                paused: true,
                refused: None,
            },
            t0(),
        );
        assert_eq!(parts(&status, READY), ("False".into(), "Paused".into()));
        assert_eq!(
            parts(&status, PROGRESSING),
            ("False".into(), "Paused".into())
        );
    }

    #[test]
    fn a_stuck_rollout_is_degraded_with_the_deployment_message() {
        let ec = order_consumer();
        let mut d = deployment(1, 1, 0, 1);
        if let Some(status) = d.status.as_mut() {
            status.conditions = Some(vec![DeploymentCondition {
                type_: Some("Progressing".into()),
                status: Some("False".into()),
                reason: Some("ProgressDeadlineExceeded".into()),
                message: Some("ReplicaSet \"x\" has timed out progressing.".into()),
                ..Default::default()
            }]);
        }
        let status = compute(
            &ec,
            Observation::Deployed {
                deployment: &d,
                paused: false,
                refused: None,
            },
            t0(),
        );
        assert_eq!(
            parts(&status, DEGRADED),
            ("True".into(), "ProgressDeadlineExceeded".into())
        );
        assert!(
            condition(&status, DEGRADED)
                .unwrap()
                .message
                .contains("timed out")
        );
    }

    #[test]
    fn a_blocked_spec_is_degraded_with_the_reason_and_message() {
        let ec = order_consumer();
        let status = compute(
            &ec,
            Observation::Blocked {
                reason: "SecretNotFound",
                message: "spec.kafka.sasl.secretRef.name: Secret \"creds\" not found",
                deployment: None,
            },
            t0(),
        );
        assert_eq!(
            parts(&status, DEGRADED),
            ("True".into(), "SecretNotFound".into())
        );
        assert_eq!(
            parts(&status, READY),
            ("False".into(), "SecretNotFound".into())
        );
        assert!(
            condition(&status, DEGRADED)
                .unwrap()
                .message
                .contains("secretRef.name")
        );
        assert_eq!((status.replicas, status.ready_replicas), (0, 0));
    }

    #[test]
    fn a_refusal_by_the_brokers_degrades_a_running_consumer_with_its_reason() {
        let ec = order_consumer();
        let d = deployment(1, 1, 1, 1);
        let message = "the brokers refused this client: SASL authentication error";
        let status = compute(
            &ec,
            Observation::Deployed {
                deployment: &d,
                paused: false,
                refused: Some((KAFKA_AUTHENTICATION_FAILED, message)),
            },
            t0(),
        );
        assert_eq!(
            parts(&status, DEGRADED),
            ("True".into(), KAFKA_AUTHENTICATION_FAILED.into())
        );
        assert_eq!(
            condition(&status, DEGRADED).map(|c| c.message.as_str()),
            Some(message)
        );
        // The Deployment itself is as specified.
        assert_eq!(parts(&status, READY).0, "True");
    }

    #[test]
    fn transition_times_move_only_when_a_status_flips() {
        let mut ec = order_consumer();
        let d = deployment(2, 2, 1, 2);
        let observe = |ec: &EventConsumer, d: &Deployment, now| {
            compute(
                ec,
                Observation::Deployed {
                    deployment: d,
                    paused: false,
                    refused: None,
                },
                now,
            )
        };
        let first = observe(&ec, &d, t0());
        ec.status = Some(first.clone());

        // Same observation later: identical status, so the reconciler writes nothing.
        let later = t0() + SignedDuration::from_secs(60);
        assert_eq!(observe(&ec, &d, later), first);

        // Ready flips: only its time moves.
        let d = deployment(2, 2, 2, 2);
        let second = observe(&ec, &d, later);
        let time =
            |s: &EventConsumerStatus, t| condition(s, t).unwrap().last_transition_time.clone();
        assert_eq!(time(&second, READY), Time(later));
        assert_eq!(time(&second, DEGRADED), time(&first, DEGRADED));
        // Progressing went True -> False: it moves too.
        assert_eq!(time(&second, PROGRESSING), Time(later));
    }
}
