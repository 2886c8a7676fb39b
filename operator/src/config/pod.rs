//! The pod settings that reach Kubernetes names and the worker's own parsers: node selector
//! labels, tolerations and the log filter. The API server (or the worker, for the filter)
//! would refuse a bad one naming its own field, such as
//! `spec.template.spec.nodeSelector`; checking here names the EventConsumer's field instead.

use super::*;

/// Longest label name, and longest label value.
const MAX_LABEL_PART: usize = 63;
/// Longest DNS subdomain, the optional prefix of a label key.
const MAX_LABEL_PREFIX: usize = 253;

/// `spec.nodeSelector`: every key a label key and every value a label value.
pub(super) fn check_node_selector(
    selector: Option<&BTreeMap<String, String>>,
) -> Result<(), ConfigError> {
    for (key, value) in selector.into_iter().flatten() {
        let field = format!("spec.nodeSelector[{key:?}]");
        if !is_label_key(key) {
            return Err(ConfigError::invalid(
                field,
                format!(
                    "{key:?} is not a label key: an optional DNS prefix and '/', then at most {MAX_LABEL_PART} letters, digits, '-', '_' or '.', starting and ending with a letter or digit"
                ),
            ));
        }
        if !value.is_empty() && !is_label_name(value) {
            return Err(ConfigError::invalid(
                field,
                format!(
                    "{value:?} is not a label value: at most {MAX_LABEL_PART} letters, digits, '-', '_' or '.', starting and ending with a letter or digit"
                ),
            ));
        }
    }
    Ok(())
}

/// `spec.tolerations`: operators and effects Kubernetes knows.
pub(super) fn check_tolerations(tolerations: Option<&[Toleration]>) -> Result<(), ConfigError> {
    for (i, toleration) in tolerations.into_iter().flatten().enumerate() {
        let operator = toleration.operator.as_deref().unwrap_or("Equal");
        if !matches!(operator, "Equal" | "Exists") {
            return Err(ConfigError::invalid(
                format!("spec.tolerations[{i}].operator"),
                format!("{operator:?} is not Equal or Exists"),
            ));
        }
        let effect = toleration.effect.as_deref().unwrap_or_default();
        if !matches!(effect, "" | "NoSchedule" | "PreferNoSchedule" | "NoExecute") {
            return Err(ConfigError::invalid(
                format!("spec.tolerations[{i}].effect"),
                format!("{effect:?} is not NoSchedule, PreferNoSchedule or NoExecute"),
            ));
        }
    }
    Ok(())
}

/// `spec.logLevel`: a filter the worker's parser (tracing's `EnvFilter`, the same crate)
/// accepts, or the workers would exit at start.
pub(super) fn check_log_level(filter: &str) -> Result<(), ConfigError> {
    if filter.trim().is_empty() {
        return Err(ConfigError::invalid("spec.logLevel", "must not be empty"));
    }
    tracing_subscriber::EnvFilter::try_new(filter)
        .map(|_| ())
        .map_err(|e| {
            ConfigError::invalid(
                "spec.logLevel",
                format!("{filter:?} is not a log filter such as info or info,eventconsumer_worker=debug: {e}"),
            )
        })
}

fn is_label_key(key: &str) -> bool {
    match key.split_once('/') {
        Some((prefix, name)) => {
            !prefix.is_empty()
                && prefix.len() <= MAX_LABEL_PREFIX
                && prefix.split('.').all(|part| {
                    !part.is_empty()
                        && part
                            .chars()
                            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
                        && !part.starts_with('-')
                        && !part.ends_with('-')
                })
                && is_label_name(name)
        }
        None => is_label_name(key),
    }
}

fn is_label_name(name: &str) -> bool {
    let alnum = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric());
    !name.is_empty()
        && name.len() <= MAX_LABEL_PART
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && alnum(name.chars().next())
        && alnum(name.chars().last())
}
