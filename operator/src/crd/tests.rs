use super::describe::unwrap_lines;
use super::*;

const COMMITTED: &str = include_str!("../../../crds/eventconsumer.yaml");

#[test]
fn the_enumerated_fields_take_exactly_the_contract_values() {
    use eventconsumer_contract::values;
    let crd = serde_json::to_value(EventConsumer::crd()).unwrap();
    let spec = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"];
    let allowed = |field: &serde_json::Value| -> Vec<String> {
        field["enum"]
            .as_array()
            .unwrap_or_else(|| panic!("no enum in {field}"))
            .iter()
            .map(|v| v.as_str().unwrap().to_owned())
            .collect()
    };
    let kafka = &spec["kafka"]["properties"];
    assert_eq!(allowed(&spec["handler"]), values::HANDLERS);
    assert_eq!(
        allowed(&spec["order"]["properties"]["action"]),
        values::ORDER_ACTIONS
    );
    assert_eq!(
        allowed(&spec["video"]["properties"]["stage"]),
        values::VIDEO_STAGES
    );
    assert_eq!(allowed(&kafka["initialOffset"]), values::INITIAL_OFFSETS);
    assert_eq!(
        allowed(&spec["delivery"]["properties"]["mode"]),
        values::DELIVERY_MODES
    );
    assert_eq!(
        allowed(&kafka["sasl"]["properties"]["mechanism"]),
        values::SASL_MECHANISMS
    );
}

/// The limits reach the CRD's schema and CEL rules from the contract's constants.
#[test]
fn the_admission_rules_are_formatted_from_the_contract_limits() {
    let crd = serde_json::to_value(crd()).unwrap();
    let spec = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"];
    let delivery = &spec["properties"]["delivery"]["properties"];
    assert_eq!(
        delivery["maxAttempts"]["maximum"].as_f64(),
        Some(f64::from(limits::MAX_ATTEMPTS))
    );
    assert_eq!(
        delivery["maxInFlight"]["maximum"].as_f64(),
        Some(f64::from(limits::MAX_IN_FLIGHT))
    );
    let ordering = spec["x-kubernetes-validations"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["fieldPath"] == ".delivery.ordering")
        .unwrap();
    assert_eq!(
        ordering["rule"],
        "self.handler != 'analytics' || self.delivery.ordering == 'partition'"
    );
    assert_eq!(
        delivery["backoff"]["properties"]["multiplier"]["maximum"].as_f64(),
        Some(limits::MAX_BACKOFF_MULTIPLIER)
    );
    let rule = spec["x-kubernetes-validations"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["fieldPath"] == ".delivery.maxAttempts")
        .unwrap();
    assert_eq!(
        rule["rule"],
        "self.delivery.mode != 'retryTopics' || self.delivery.maxAttempts <= 10"
    );
    assert_eq!(
        rule["message"],
        "must be at most 10 in retryTopics mode, where each retry has its own topic"
    );
    let autoscaling = &spec["properties"]["autoscaling"]["properties"];
    for field in ["minReplicas", "maxReplicas"] {
        assert_eq!(
            autoscaling[field]["maximum"].as_f64(),
            Some(f64::from(MAX_AUTOSCALING_REPLICAS))
        );
    }
    assert_eq!(MAX_AUTOSCALING_REPLICAS, 1000);
    let group = &spec["properties"]["kafka"]["properties"]["consumerGroup"];
    assert_eq!(group["pattern"], topic::PATTERN);
    assert_eq!(group["maxLength"].as_u64(), Some(249));
}

#[test]
fn the_committed_crd_matches_the_types() {
    let generated = crd_yaml().unwrap();
    assert!(
        generated == COMMITTED,
        "crds/eventconsumer.yaml is stale: run `make crds`"
    );
}

#[test]
fn the_crd_has_status_scale_and_a_short_name() {
    let crd = crd();
    assert_eq!(crd.metadata.name.as_deref(), Some(CRD_NAME));
    assert_eq!(crd.spec.names.short_names, Some(vec!["ec".to_owned()]));
    let version = &crd.spec.versions[0];
    assert_eq!(version.name, VERSION);
    let subresources = version.subresources.as_ref().unwrap();
    assert!(subresources.status.is_some());
    let scale = subresources.scale.as_ref().unwrap();
    assert_eq!(scale.spec_replicas_path, ".spec.replicas");
    assert_eq!(scale.status_replicas_path, ".status.replicas");
    assert_eq!(
        scale.label_selector_path.as_deref(),
        Some(".status.selector")
    );
    let columns: Vec<_> = version
        .additional_printer_columns
        .iter()
        .flatten()
        .map(|c| c.name.as_str())
        .collect();
    assert_eq!(
        columns,
        [
            "Handler", "Topics", "Replicas", "Ready", "Lag", "DLQ", "Status", "Age"
        ]
    );
}

#[test]
fn conditions_merge_by_type() {
    let yaml = crd_yaml().unwrap();
    let value: serde_json::Value = serde_yaml::from_str(&yaml).unwrap();
    let conditions = &value["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["status"]
        ["properties"]["conditions"];
    assert_eq!(conditions["x-kubernetes-list-type"], "map");
    assert_eq!(conditions["x-kubernetes-list-map-keys"][0], "type");
}

#[test]
fn descriptions_are_unwrapped_into_paragraphs() {
    assert_eq!(unwrap_lines("one\ntwo\n\nthree"), "one two\n\nthree");
    assert_eq!(unwrap_lines("list:\n- a\n- b"), "list:\n- a\n- b");
}
