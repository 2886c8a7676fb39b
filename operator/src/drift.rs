//! Deciding whether the live Deployment already is what the operator would apply, so a
//! reconcile that finds nothing to change writes nothing.
//!
//! Two checks, because each alone misses a case:
//! - The desired object carries a hash of itself in an annotation. A changed spec changes the
//!   hash, which catches fields the operator stopped setting (a removed nodeSelector entry)
//!   that a comparison of present fields cannot see.
//! - Every field of the desired object must be present with the same value in the live one
//!   (the API server may add defaults; lists must match in length). This catches manual edits,
//!   which leave the hash annotation untouched.
//!
//! Resource quantities compare by value: the API server stores `0.5` as `500m` and `1024Mi` as
//! `1Gi`, and a string comparison would make every reconcile of such a spec apply again.
//! A false "differs" only costs a server-side apply that changes nothing; a false "same" cannot
//! happen for fields the operator sets.
//!
//! Neither check sees a field another manager *added* (`kubectl set env`, a JSON patch adding a
//! capability, a sidecar): server-side apply never removes a field it does not own. The
//! managed fields do see it: [`foreign_fields`] lists every field under `spec` that another
//! manager owns and the operator does not, outside [`ALLOWED_TEMPLATE_ANNOTATIONS`]. The reconciler then
//! replaces the Deployment's spec whole (see `reconcile::deploy`).

use fnv::FnvHasher;
use k8s_openapi::api::apps::v1::Deployment;
use kube_quantity::ParsedQuantity;
use serde_json::{Map, Value};
use std::collections::BTreeSet;
use std::hash::Hasher;

use crate::deployment::SPEC_HASH_ANNOTATION;

/// Adds the hash annotation to a freshly built Deployment.
pub fn stamp(deployment: &mut Deployment) {
    let hash = hash_of(deployment);
    deployment
        .metadata
        .annotations
        .get_or_insert_with(Default::default)
        .insert(SPEC_HASH_ANNOTATION.to_owned(), hash);
}

/// True when applying `desired` could change `live`.
pub fn needs_apply(desired: &Deployment, live: Option<&Deployment>) -> bool {
    let Some(live) = live else {
        return true;
    };
    match (serde_json::to_value(desired), serde_json::to_value(live)) {
        (Ok(desired), Ok(live)) => !is_subset(&desired, &live),
        _ => true,
    }
}

fn hash_of(deployment: &Deployment) -> String {
    // FNV-1a over the JSON form: stable across Rust releases (unlike `DefaultHasher`), and the
    // JSON of a k8s-openapi struct has a fixed field order.
    let mut hasher = FnvHasher::default();
    if let Ok(json) = serde_json::to_vec(deployment) {
        hasher.write(&json);
    }
    format!("{:016x}", hasher.finish())
}

/// Every value in `desired` is in `live`: objects may have extra keys in `live`, arrays must have
/// the same length and match element by element, numbers compare by value, and so do the
/// quantities in a container's resource `limits` and `requests`.
fn is_subset(desired: &Value, live: &Value) -> bool {
    match (desired, live) {
        (Value::Object(d), Value::Object(l)) => d.iter().all(|(key, dv)| {
            l.get(key).is_some_and(|lv| {
                if key == "limits" || key == "requests" {
                    same_quantities(dv, lv)
                } else {
                    is_subset(dv, lv)
                }
            })
        }),
        (Value::Array(d), Value::Array(l)) => {
            d.len() == l.len() && d.iter().zip(l).all(|(dv, lv)| is_subset(dv, lv))
        }
        (Value::Number(d), Value::Number(l)) => d.as_f64() == l.as_f64(),
        _ => desired == live,
    }
}

/// Resource maps (`cpu: 500m`, …) with the same names and quantities of the same value.
fn same_quantities(desired: &Value, live: &Value) -> bool {
    let (Value::Object(d), Value::Object(l)) = (desired, live) else {
        return is_subset(desired, live);
    };
    let parse = |v: &Value| -> Option<ParsedQuantity> { v.as_str()?.try_into().ok() };
    d.len() == l.len()
        && d.iter().all(|(name, dv)| {
            l.get(name).is_some_and(|lv| match (parse(dv), parse(lv)) {
                (Some(a), Some(b)) => a == b,
                _ => dv == lv,
            })
        })
}

/// Pod-template annotations another manager may own without being reverted: the one
/// `kubectl rollout restart` sets to roll the pods. Replacing it would roll them a second time,
/// and the operator has no value of its own for it.
pub const ALLOWED_TEMPLATE_ANNOTATIONS: &[&str] = &["kubectl.kubernetes.io/restartedAt"];

/// True for the managed-field key path (below `f:spec`) of an allowed annotation.
fn allowed(keys: &[&str]) -> bool {
    match keys {
        ["f:template", "f:metadata", "f:annotations", annotation] => annotation
            .strip_prefix("f:")
            .is_some_and(|a| ALLOWED_TEMPLATE_ANNOTATIONS.contains(&a)),
        _ => false,
    }
}

/// True when `keys` leads towards an allowed annotation (is a prefix of its path).
fn towards_allowed(keys: &[&str]) -> bool {
    ["f:template", "f:metadata", "f:annotations"].starts_with(keys)
}

/// A field of the Deployment's spec that another manager set and the operator does not own.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct ForeignField {
    /// Where, such as `spec.template.spec.containers[name=worker].env[name=DEBUG]`.
    pub path: String,
    /// The field manager that set it, such as `kubectl-edit` or `kubectl-patch`.
    pub manager: String,
}

impl std::fmt::Display for ForeignField {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} (set by {})", self.path, self.manager)
    }
}

/// The fields under `spec` of `live` that a manager other than `manager` owns and `manager`
/// does not (by any operation), minus [`ALLOWED_TEMPLATE_ANNOTATIONS`]. A field both own (the same value set
/// twice, e.g. `kubectl scale` to the current count) is not listed: its value is the
/// operator's, and [`needs_apply`] catches a different one.
pub fn foreign_fields(live: &Deployment, manager: &str) -> BTreeSet<ForeignField> {
    let entries = live.metadata.managed_fields.as_deref().unwrap_or_default();
    let spec_of = |fields: Option<&k8s_openapi::apimachinery::pkg::apis::meta::v1::FieldsV1>| {
        fields.and_then(|f| f.0.get("f:spec")).cloned()
    };
    let mut ours = Value::Object(Map::new());
    for entry in entries
        .iter()
        .filter(|e| e.manager.as_deref() == Some(manager))
    {
        if let Some(spec) = spec_of(entry.fields_v1.as_ref()) {
            union(&mut ours, &spec);
        }
    }
    let mut found = BTreeSet::new();
    for entry in entries
        .iter()
        .filter(|e| e.manager.as_deref() != Some(manager))
    {
        if let Some(spec) = spec_of(entry.fields_v1.as_ref()) {
            let who = entry
                .manager
                .clone()
                .unwrap_or_else(|| "(unnamed)".to_owned());
            let mut keys = Vec::new();
            not_owned(&spec, Some(&ours), &mut keys, &mut |keys| {
                found.insert(ForeignField {
                    manager: who.clone(),
                    path: readable_path(keys),
                });
            });
        }
    }
    found
}

/// Adds every key of the managed-fields tree `other` to `into`.
fn union(into: &mut Value, other: &Value) {
    if let (Value::Object(into), Value::Object(other)) = (into, other) {
        for (key, child) in other {
            union(
                into.entry(key.clone())
                    .or_insert_with(|| Value::Object(Map::new())),
                child,
            );
        }
    }
}

/// Calls `report` with the key path of every node of `theirs` absent from `ours` (the topmost
/// one of each absent subtree), skipping [`ALLOWED_TEMPLATE_ANNOTATIONS`].
fn not_owned<'a>(
    theirs: &'a Value,
    ours: Option<&Value>,
    keys: &mut Vec<&'a str>,
    report: &mut impl FnMut(&[&str]),
) {
    let Value::Object(theirs) = theirs else {
        return;
    };
    for (key, child) in theirs {
        // "." marks the node itself (a list element or map as a whole); its children say more.
        if key == "." {
            continue;
        }
        keys.push(key);
        match ours.and_then(|o| o.get(key)) {
            Some(our_child) => not_owned(child, Some(our_child), keys, report),
            None if allowed(keys) => {}
            // Look inside, so an allowed annotation alone is not reported as its parent.
            None if towards_allowed(keys) => not_owned(child, None, keys, report),
            None => report(keys),
        }
        keys.pop();
    }
}

/// `["f:template", "f:spec", "f:containers", "k:{\"name\":\"worker\"}", "f:env"]` →
/// `spec.template.spec.containers[name=worker].env`.
fn readable_path(keys: &[&str]) -> String {
    let mut path = String::from("spec");
    for key in keys {
        if let Some(field) = key.strip_prefix("f:") {
            path.push('.');
            path.push_str(field);
        } else if let Some(fields) = key.strip_prefix("k:") {
            let parts: Vec<String> = match serde_json::from_str::<Map<String, Value>>(fields) {
                Ok(map) => map
                    .iter()
                    .map(|(k, v)| match v {
                        Value::String(s) => format!("{k}={s}"),
                        other => format!("{k}={other}"),
                    })
                    .collect(),
                Err(_) => vec![fields.to_owned()],
            };
            path.push_str(&format!("[{}]", parts.join(",")));
        } else if let Some(value) = key.strip_prefix("v:") {
            path.push_str(&format!("[{value}]"));
        } else if let Some(index) = key.strip_prefix("i:") {
            path.push_str(&format!("[{index}]"));
        } else {
            path.push_str(&format!("[{key}]"));
        }
    }
    path
}

/// What to replace `live` with so it carries `desired`'s spec and nothing another manager
/// added: `live`'s metadata (its resourceVersion makes the write fail rather than overwrite a
/// newer edit), `desired`'s spec, and the [`ALLOWED_TEMPLATE_ANNOTATIONS`] kept from `live`.
pub fn replacement(desired: &Deployment, live: &Deployment) -> Deployment {
    let mut spec = desired.spec.clone();
    let live_annotations = live
        .spec
        .template
        .metadata
        .as_ref()
        .and_then(|m| m.annotations.as_ref());
    for key in ALLOWED_TEMPLATE_ANNOTATIONS {
        if let Some(value) = live_annotations.and_then(|a| a.get(*key)) {
            spec.template
                .metadata
                .get_or_insert_with(Default::default)
                .annotations
                .get_or_insert_with(Default::default)
                .insert((*key).to_owned(), value.clone());
        }
    }
    Deployment {
        metadata: live.metadata.clone(),
        spec,
        status: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{SecretFacts, validate};
    use crate::deployment::build;
    use crate::test_fixtures::{order_consumer, settings};
    use k8s_openapi::api::apps::v1::DeploymentStatus;

    fn desired() -> Deployment {
        let valid = validate(&order_consumer(), &SecretFacts::default()).unwrap();
        let mut d = build(&valid, &settings());
        stamp(&mut d);
        d
    }

    /// What the API server returns: our fields plus defaults, metadata and status.
    fn as_served(d: &Deployment) -> Deployment {
        let mut live = d.clone();
        live.metadata.resource_version = Some("42".into());
        live.metadata.generation = Some(3);
        live.spec.progress_deadline_seconds = Some(600);
        if let Some(pod) = live.spec.template.spec.as_mut() {
            pod.restart_policy = Some("Always".into());
            pod.dns_policy = Some("ClusterFirst".into());
            pod.containers[0].termination_message_path = Some("/dev/termination-log".into());
        }
        live.status = Some(DeploymentStatus {
            replicas: Some(1),
            ..Default::default()
        });
        live
    }

    #[test]
    fn a_missing_deployment_needs_applying() {
        assert!(needs_apply(&desired(), None));
    }

    #[test]
    fn server_defaults_and_status_do_not_count_as_drift() {
        let d = desired();
        assert!(!needs_apply(&d, Some(&as_served(&d))));
    }

    #[test]
    fn a_manual_edit_of_an_owned_field_is_drift() {
        let d = desired();
        let mut live = as_served(&d);
        live.spec.replicas = Some(7);
        assert!(needs_apply(&d, Some(&live)));

        let mut live = as_served(&d);
        if let Some(pod) = live.spec.template.spec.as_mut() {
            pod.containers[0].env.get_or_insert_with(Vec::new).pop();
        }
        assert!(needs_apply(&d, Some(&live)));
    }

    #[test]
    fn a_field_the_operator_stops_setting_changes_the_hash() {
        let old = {
            let mut ec = order_consumer();
            ec.spec.node_selector = Some([("pool".to_owned(), "a".to_owned())].into());
            let valid = validate(&ec, &SecretFacts::default()).unwrap();
            let mut d = build(&valid, &settings());
            stamp(&mut d);
            d
        };
        let new = desired();
        // `new` is a subset of what `old` left behind, but the hash tells them apart.
        assert!(needs_apply(&new, Some(&as_served(&old))));
    }

    #[test]
    fn quantities_the_api_server_rewrote_are_not_drift_but_changed_ones_are() {
        use k8s_openapi::api::core::v1::ResourceRequirements;
        use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
        let with = |cpu: &str, memory: &str| {
            let mut ec = order_consumer();
            ec.spec.resources = Some(ResourceRequirements {
                requests: Some(
                    [
                        ("cpu".to_owned(), Quantity(cpu.into())),
                        ("memory".to_owned(), Quantity(memory.into())),
                    ]
                    .into(),
                ),
                ..Default::default()
            });
            let valid = validate(&ec, &SecretFacts::default()).unwrap();
            let mut d = build(&valid, &settings());
            stamp(&mut d);
            d
        };
        let desired = with("0.5", "1024Mi");
        let mut served = as_served(&desired);
        let container = &mut served.spec.template.spec.as_mut().unwrap().containers[0];
        let requests = container
            .resources
            .as_mut()
            .unwrap()
            .requests
            .as_mut()
            .unwrap();
        requests.insert("cpu".into(), Quantity("500m".into()));
        requests.insert("memory".into(), Quantity("1Gi".into()));
        assert!(!needs_apply(&desired, Some(&served)));

        let mut more_cpu = served.clone();
        let container = &mut more_cpu.spec.template.spec.as_mut().unwrap().containers[0];
        let requests = container
            .resources
            .as_mut()
            .unwrap()
            .requests
            .as_mut()
            .unwrap();
        requests.insert("cpu".into(), Quantity("600m".into()));
        assert!(needs_apply(&desired, Some(&more_cpu)));
    }

    fn with_managed_fields(mut d: Deployment, entries: &[(&str, &str, Value)]) -> Deployment {
        use k8s_openapi::apimachinery::pkg::apis::meta::v1::{FieldsV1, ManagedFieldsEntry};
        d.metadata.managed_fields = Some(
            entries
                .iter()
                .map(|(manager, operation, fields)| ManagedFieldsEntry {
                    manager: Some((*manager).to_owned()),
                    operation: Some((*operation).to_owned()),
                    fields_type: Some("FieldsV1".to_owned()),
                    fields_v1: Some(FieldsV1(fields.clone())),
                    ..Default::default()
                })
                .collect(),
        );
        d
    }

    fn ours() -> Value {
        serde_json::json!({ "f:metadata": { "f:labels": {} }, "f:spec": {
            "f:replicas": {},
            "f:template": { "f:metadata": { "f:labels": {} }, "f:spec": {
                "f:containers": { "k:{\"name\":\"worker\"}": {
                    ".": {}, "f:image": {},
                    "f:env": { "k:{\"name\":\"EC_HANDLER\"}": { ".": {}, "f:name": {}, "f:value": {} } },
                    "f:securityContext": { "f:capabilities": { "f:drop": {} } }
                } }
            } }
        } })
    }

    #[test]
    fn fields_another_manager_added_are_listed_with_their_manager_and_path() {
        let live = with_managed_fields(
            as_served(&desired()),
            &[
                ("eventconsumer-operator", "Apply", ours()),
                (
                    "kubectl-set",
                    "Update",
                    serde_json::json!({ "f:spec": { "f:template": { "f:spec": {
                    "f:containers": { "k:{\"name\":\"worker\"}": {
                        "f:env": { "k:{\"name\":\"EC_NO_OUTPUT\"}": { ".": {}, "f:name": {}, "f:value": {} } }
                    } }
                } } } }),
                ),
                (
                    "kubectl-patch",
                    "Update",
                    serde_json::json!({ "f:spec": { "f:template": { "f:spec": {
                    "f:containers": { "k:{\"name\":\"worker\"}": {
                        "f:securityContext": { "f:capabilities": { "f:add": {} } }
                    } }
                } } } }),
                ),
                (
                    "kube-controller-manager",
                    "Update",
                    serde_json::json!({
                        "f:metadata": { "f:annotations": { "f:deployment.kubernetes.io/revision": {} } }
                    }),
                ),
            ],
        );
        let found: Vec<String> = foreign_fields(&live, "eventconsumer-operator")
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            found,
            [
                "spec.template.spec.containers[name=worker].env[name=EC_NO_OUTPUT] (set by kubectl-set)",
                "spec.template.spec.containers[name=worker].securityContext.capabilities.add (set by kubectl-patch)",
            ]
        );
    }

    #[test]
    fn a_field_both_own_and_kubectl_rollout_restart_are_not_foreign() {
        let live = with_managed_fields(
            as_served(&desired()),
            &[
                ("eventconsumer-operator", "Apply", ours()),
                (
                    "kubectl",
                    "Update",
                    serde_json::json!({ "f:spec": { "f:replicas": {} } }),
                ),
                (
                    "kubectl-rollout",
                    "Update",
                    serde_json::json!({ "f:spec": { "f:template": {
                    "f:metadata": { "f:annotations": { ".": {}, "f:kubectl.kubernetes.io/restartedAt": {} } }
                } } }),
                ),
            ],
        );
        assert_eq!(
            foreign_fields(&live, "eventconsumer-operator"),
            BTreeSet::new()
        );
    }

    #[test]
    fn the_replacement_has_the_desired_spec_the_live_metadata_and_the_restart_annotation() {
        let desired = desired();
        let mut live = as_served(&desired);
        let template = live
            .spec
            .template
            .metadata
            .get_or_insert_with(Default::default);
        let annotations = template.annotations.get_or_insert_with(Default::default);
        annotations.insert(
            "kubectl.kubernetes.io/restartedAt".into(),
            "2026-12-02T01:00:00Z".into(),
        );
        annotations.insert("sidecar.example/inject".into(), "true".into());
        let replaced = replacement(&desired, &live);
        assert_eq!(replaced.metadata.resource_version.as_deref(), Some("42"));
        let annotations = replaced
            .spec
            .template
            .metadata
            .unwrap()
            .annotations
            .unwrap();
        assert_eq!(
            annotations
                .get("kubectl.kubernetes.io/restartedAt")
                .map(String::as_str),
            Some("2026-12-02T01:00:00Z")
        );
        assert!(!annotations.contains_key("sidecar.example/inject"));
        assert_eq!(replaced.spec.replicas, desired.spec.replicas);
        assert!(replaced.status.is_none());
    }

    #[test]
    fn the_hash_is_stable() {
        assert_eq!(hash_of(&desired()), hash_of(&desired()));
    }
}
