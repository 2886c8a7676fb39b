//! `kubectl explain` texts: the derived CRD with the line breaks of doc comments unwrapped, so
//! the reader's terminal wraps the text.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    CustomResourceDefinition, JSONSchemaProps,
};

/// `crd` with the line breaks of its doc comments unwrapped (shared by every CRD the
/// operator defines).
pub fn unwrap_crd_descriptions(mut crd: CustomResourceDefinition) -> CustomResourceDefinition {
    for version in &mut crd.spec.versions {
        let Some(schema) = version.schema.as_mut() else {
            continue;
        };
        if let Some(props) = schema.open_api_v3_schema.take() {
            schema.open_api_v3_schema = Some(unwrap_descriptions(props));
        }
    }
    crd
}

fn unwrap_descriptions(props: JSONSchemaProps) -> JSONSchemaProps {
    fn walk(value: &mut serde_json::Value) {
        match value {
            serde_json::Value::Object(map) => {
                for (key, child) in map.iter_mut() {
                    match child {
                        serde_json::Value::String(text) if key == "description" => {
                            *text = unwrap_lines(text);
                        }
                        _ => walk(child),
                    }
                }
            }
            serde_json::Value::Array(items) => items.iter_mut().for_each(walk),
            _ => {}
        }
    }
    let Ok(mut value) = serde_json::to_value(&props) else {
        return props;
    };
    walk(&mut value);
    serde_json::from_value(value).unwrap_or(props)
}

/// Joins the lines of each paragraph with spaces, as rustdoc renders them; keeps paragraph breaks
/// and lines that start a list item.
pub(super) fn unwrap_lines(text: &str) -> String {
    text.split("\n\n")
        .map(|paragraph| {
            let mut out = String::new();
            for line in paragraph.lines() {
                let line = line.trim();
                if out.is_empty() {
                    out.push_str(line);
                } else if line.starts_with("- ") || line.starts_with("* ") {
                    out.push('\n');
                    out.push_str(line);
                } else {
                    out.push(' ');
                    out.push_str(line);
                }
            }
            out
        })
        .collect::<Vec<_>>()
        .join("\n\n")
}
