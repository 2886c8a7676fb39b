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

use fnv::FnvHasher;
use k8s_openapi::api::apps::v1::Deployment;
use kube_quantity::ParsedQuantity;
use serde_json::Value;
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

    #[test]
    fn the_hash_is_stable() {
        assert_eq!(hash_of(&desired()), hash_of(&desired()));
    }
}
