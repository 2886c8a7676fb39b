//! The status of an EventConsumer: the reconciler writes conditions and replicas, the observer
//! lag, dead letters and autoscaling, each under its own field manager.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Observed state of an EventConsumer, written by the operator.
#[derive(Serialize, Deserialize, KubeSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct EventConsumerStatus {
    /// Latest observations: `Ready` (the wanted number of workers are ready and consuming),
    /// `Progressing` (a rollout or scale is under way) and `Degraded` (the spec cannot be
    /// carried out, e.g. a referenced Secret is missing, the rollout is stuck, or the brokers
    /// refuse the consumer's credentials or lack an ACL). `reason` and `message` say why.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,

    /// The `metadata.generation` of the spec this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,

    /// Worker pods that exist, ready or not.
    #[serde(default)]
    pub replicas: i32,

    /// Worker pods that are ready.
    #[serde(default)]
    pub ready_replicas: i32,

    /// Label selector of the worker pods, for the scale subresource (and autoscalers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<String>,

    /// The consumer group's lag, measured by the operator from the group's committed offsets
    /// and the source topics' end offsets. A failed measurement keeps the last values and
    /// says why in `lag.error`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lag: Option<LagStatus>,

    /// Records this consumer (its consumer group) has written to its dead-letter topic that
    /// the topic still retains.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dead_letters: Option<i64>,

    /// Why the latest dead-letter count failed, if it did (a broker or the dead-letter
    /// topic's leader unreachable): `deadLetters` is then the last count that succeeded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dead_letters_error: Option<String>,

    /// What the autoscaler decided last, when `spec.autoscaling` is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub autoscaling: Option<AutoscalingStatus>,
}

/// Lag of a consumer group.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct LagStatus {
    /// Messages in all source partitions after the group's committed offsets. A partition
    /// without a committed offset counts from its oldest retained message (`earliest`) or as 0
    /// (`latest`), like the workers would start. Absent while no measurement has succeeded
    /// (then `error` says why).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total: Option<i64>,

    /// The partition with the largest lag, if any has lag.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_partition: Option<PartitionLag>,

    /// When the lag was measured (RFC 3339). An unchanged lag is written again only about
    /// once a minute, so this may be up to a minute older than the latest measurement.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub measured_at: Option<String>,

    /// Why the latest measurement failed, if it did (the values above are then older).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The lag of one partition.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PartitionLag {
    pub topic: String,
    pub partition: i32,
    pub lag: i64,
}

/// The autoscaler's latest decision.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct AutoscalingStatus {
    /// Pods the autoscaler wants now.
    pub desired_replicas: i32,

    /// When the autoscaler last changed the number of pods (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_scale_time: Option<String>,

    /// Lag that counted for the decision: the total minus the partitions left out as stuck.
    #[serde(default)]
    pub scaling_lag: i64,

    /// Partitions (`topic/partition`) left out of the decision because their committed offset
    /// did not move since the last measurement while workers ran.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stuck_partitions: Vec<String>,

    /// Why the autoscaler chose `desiredReplicas`, in one sentence.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}
