//! The `DeadLetterRedrive` custom resource: a one-shot request to replay an EventConsumer's
//! dead letters to its source topics, with its progress and outcome in status.
//!
//! A resource of its own rather than a field on EventConsumer, because a redrive has its own
//! lifecycle (like a Job next to a Deployment): it starts, makes progress, ends, and stays as
//! a record of what was replayed. Several can exist side by side and be audited later, and
//! none needs a trigger token or mixes one-shot progress into the consumer's status. The
//! spec is immutable: another redrive is another object.

use std::borrow::Cow;

use eventconsumer_contract::values::ERROR_CLASSES;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, CustomResourceExt, KubeSchema};
use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Serialize};

/// `metadata.name` of the CustomResourceDefinition.
pub const CRD_NAME: &str = "deadletterredrives.eventconsumer.dev";

/// Spec of a DeadLetterRedrive: which dead letters of which EventConsumer to replay.
// clippy reads the repeated `type_ = ...` of separate `printcolumn(...)` entries as duplicates.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "eventconsumer.dev",
    version = "v1alpha1",
    kind = "DeadLetterRedrive",
    plural = "deadletterredrives",
    shortname = "dlr",
    category = "eventconsumer",
    namespaced,
    status = "DeadLetterRedriveStatus",
    derive = "PartialEq",
    doc = "A DeadLetterRedrive replays, once, the dead letters an EventConsumer's consumer group has in its dead-letter topic back to the consumer's source topics. It covers exactly the records present when it starts, each at most once, even across operator restarts. Create a new one for each redrive; the spec cannot be changed.",
    printcolumn(name = "Consumer", type_ = "string", json_path = ".spec.consumer"),
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(
        name = "Replayed",
        type_ = "integer",
        json_path = ".status.replayed",
        description = "Dead letters written back to a source topic"
    ),
    printcolumn(
        name = "Skipped",
        type_ = "integer",
        json_path = ".status.skipped",
        description = "The consumer's dead letters not replayed (filtered out, at maxRedrives or invalid)"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("self == oldSelf")
        .message("spec is immutable: create a new DeadLetterRedrive for another redrive"),
    validation = Rule::new("!has(self.since) || !has(self.until) || self.since < self.until")
        .message("must be later than since")
        .field_path(".until"),
)]
pub struct DeadLetterRedriveSpec {
    /// Name of the EventConsumer, in this namespace, whose dead letters are replayed: the
    /// records in its dead-letter topic that its consumer group wrote (the topic may be
    /// shared with other groups, whose records are left alone). They are written back to
    /// the source topic they came from, which every consumer group reading that topic then
    /// sees again.
    #[schemars(length(min = 1, max = 253))]
    pub consumer: String,

    /// Only dead letters written at or after this time (RFC 3339, e.g.
    /// `2026-11-26T09:00:00Z`), compared with the dead-letter record's timestamp, i.e. when
    /// it was dead-lettered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("format" = "date-time"))]
    pub since: Option<String>,

    /// Only dead letters written before this time (RFC 3339). Must be later than `since`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("format" = "date-time"))]
    pub until: Option<String>,

    /// Only dead letters with this error class (their `ec-dlt-error-class` header), such as
    /// `timeout` after a downstream outage. Unset: every class.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_class: Option<ErrorClass>,

    /// Dead letters already replayed this many times (their `ec-redrive-count` header) are
    /// skipped and counted in `status.skippedBy.maxRedrives`, so a message that keeps
    /// failing is not replayed forever.
    #[serde(default = "default_max_redrives")]
    #[schemars(range(min = 1, max = 100))]
    pub max_redrives: i32,
}

/// A value of the `ec-dlt-error-class` header; the schema enumerates the classes the worker
/// writes.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(transparent)]
pub struct ErrorClass(pub String);

impl JsonSchema for ErrorClass {
    fn schema_name() -> Cow<'static, str> {
        "ErrorClass".into()
    }

    fn inline_schema() -> bool {
        true
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "enum": ERROR_CLASSES,
        })
    }
}

/// Where a redrive is in its life. (Plain comments on the variants: doc comments would turn
/// the schema's `enum` into a non-structural `oneOf`.)
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Phase {
    // Not started: waiting for the EventConsumer, its Secrets or Kafka (see conditions).
    #[default]
    Pending,
    // The end offsets are taken; dead letters are being replayed.
    Running,
    // Every dead letter up to the end offsets was handled.
    Succeeded,
    // The redrive cannot complete (see message); nothing more will be replayed.
    Failed,
}

impl Phase {
    /// True when the redrive will not do anything more.
    pub fn is_finished(self) -> bool {
        matches!(self, Phase::Succeeded | Phase::Failed)
    }
}

/// Observed state of a DeadLetterRedrive, written by the operator.
#[derive(Serialize, Deserialize, KubeSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct DeadLetterRedriveStatus {
    /// `Pending` (waiting to start), `Running`, `Succeeded` or `Failed`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<Phase>,

    /// `Blocked` (True while the redrive cannot make progress: the EventConsumer or a Secret
    /// is missing, or Kafka cannot be reached; `reason` and `message` say which; it is
    /// retried) and `Complete` (True once it succeeded).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,

    /// When the end offsets were taken and replaying began (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<String>,

    /// When the redrive ended (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completed_at: Option<String>,

    /// The dead-letter topic read, fixed when the redrive started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dead_letter_topic: Option<String>,

    /// The consumer group whose dead letters are replayed, fixed when the redrive started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consumer_group: Option<String>,

    /// Per partition of the dead-letter topic: the end offset taken at the start (the
    /// redrive covers exactly the records before it, so records dead-lettered again while it
    /// runs are not replayed by it) and the position reached.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub partitions: Vec<PartitionProgress>,

    /// Records of the dead-letter topic read so far, of every consumer group.
    #[serde(default)]
    pub scanned: i64,

    /// This consumer's dead letters written back to a source topic.
    #[serde(default)]
    pub replayed: i64,

    /// This consumer's dead letters not replayed; `skippedBy` says why.
    #[serde(default)]
    pub skipped: i64,

    /// The skipped dead letters by reason.
    #[serde(default)]
    pub skipped_by: SkippedBy,

    /// What happened last, in one sentence.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// Progress in one partition of the dead-letter topic.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PartitionProgress {
    pub partition: i32,
    /// The partition's end offset when the redrive started.
    pub end_offset: i64,
    /// The next offset to read (committed with the replayed records); done at `endOffset`.
    pub position: i64,
}

/// Skipped dead letters by reason.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct SkippedBy {
    /// Outside `since`/`until` or of another error class.
    #[serde(default)]
    pub filter: i64,
    /// Already replayed `maxRedrives` times.
    #[serde(default)]
    pub max_redrives: i64,
    /// Without a usable origin: no `ec-dlt-original-topic`, one that is not a source topic
    /// of the consumer, or a malformed `ec-redrive-count`.
    #[serde(default)]
    pub invalid: i64,
}

fn default_max_redrives() -> i32 {
    3
}

/// The CustomResourceDefinition, with doc comments unwrapped for `kubectl explain`.
pub fn crd() -> CustomResourceDefinition {
    crate::crd::unwrap_crd_descriptions(DeadLetterRedrive::crd())
}

/// The CRD as the YAML committed in `crds/deadletterredrive.yaml`.
pub fn crd_yaml() -> Result<String, serde_yaml::Error> {
    serde_yaml::to_string(&crd())
}

#[cfg(test)]
mod tests {
    use super::*;

    const COMMITTED: &str = include_str!("../../../crds/deadletterredrive.yaml");

    #[test]
    fn the_committed_redrive_crd_matches_the_types() {
        let generated = crd_yaml().unwrap();
        assert!(
            generated == COMMITTED,
            "crds/deadletterredrive.yaml is stale: run `make crds`"
        );
    }

    #[test]
    fn the_error_class_takes_exactly_the_contract_values() {
        let crd = serde_json::to_value(crd()).unwrap();
        let spec = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"];
        // The optional field's schema also allows null.
        let allowed: Vec<&str> = spec["errorClass"]["enum"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|v| v.as_str())
            .collect();
        assert_eq!(allowed, ERROR_CLASSES);
        assert_eq!(spec["since"]["format"], "date-time");
        assert_eq!(spec["maxRedrives"]["default"], 3);
    }

    #[test]
    fn the_redrive_crd_has_status_a_short_name_and_the_columns() {
        let crd = crd();
        assert_eq!(crd.metadata.name.as_deref(), Some(CRD_NAME));
        assert_eq!(crd.spec.names.short_names, Some(vec!["dlr".to_owned()]));
        assert_eq!(
            crd.spec.names.categories,
            Some(vec!["eventconsumer".to_owned()])
        );
        let version = &crd.spec.versions[0];
        assert!(version.subresources.as_ref().unwrap().status.is_some());
        let columns: Vec<_> = version
            .additional_printer_columns
            .iter()
            .flatten()
            .map(|c| c.name.as_str())
            .collect();
        assert_eq!(columns, ["Consumer", "Phase", "Replayed", "Skipped", "Age"]);
    }
}
