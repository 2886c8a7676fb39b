//! The string types of the spec whose schema carries Kafka's and the worker's rules: topic
//! names (Kafka's rule, from the contract) and durations (one unit, as CEL and humantime agree).

use std::borrow::Cow;

use eventconsumer_contract::topic;
use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Serialize};

use super::{DURATION_PATTERN, MAX_DURATION_DIGITS, bounded_duration_pattern};

/// A Kafka topic name: 1 to 249 characters among letters, digits, `.`, `_` and `-`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[serde(transparent)]
pub struct TopicName(pub String);

impl TopicName {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl From<&str> for TopicName {
    fn from(s: &str) -> Self {
        Self(s.to_owned())
    }
}

impl JsonSchema for TopicName {
    fn schema_name() -> Cow<'static, str> {
        "TopicName".into()
    }

    fn inline_schema() -> bool {
        true
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "minLength": 1,
            "maxLength": topic::MAX_LENGTH,
            "pattern": topic::PATTERN,
            "x-kubernetes-validations": [{
                "rule": "self != '.' && self != '..'",
                "message": "'.' and '..' are not valid Kafka topic names"
            }]
        })
    }
}

/// A duration such as `200ms`, `5s`, `1m` or `1h`: a positive whole number and one unit.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(transparent)]
pub struct HumanDuration(pub String);

impl HumanDuration {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl From<&str> for HumanDuration {
    fn from(s: &str) -> Self {
        Self(s.to_owned())
    }
}

impl JsonSchema for HumanDuration {
    fn schema_name() -> Cow<'static, str> {
        "HumanDuration".into()
    }

    fn inline_schema() -> bool {
        true
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            // Long enough for any sane value, short enough to keep CEL's cost estimate low.
            "maxLength": 16,
            "pattern": DURATION_PATTERN,
            // The guards leave values the pattern refuses to the pattern's error, and values
            // too large for `duration()` to the first rule's.
            "x-kubernetes-validations": [{
                "rule": format!("!self.matches('{DURATION_PATTERN}') || self.matches('{}')", bounded_duration_pattern()),
                "message": format!("must have at most {MAX_DURATION_DIGITS} digits before the unit (999999h is the longest duration)")
            }, {
                "rule": format!("!self.matches('{}') || duration(self) > duration('0s')", bounded_duration_pattern()),
                "message": "must be greater than zero"
            }]
        })
    }
}
