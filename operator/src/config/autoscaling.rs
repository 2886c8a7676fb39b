//! Lag-driven autoscaling bounds and cooldown.

use crate::crd::MAX_AUTOSCALING_REPLICAS;

use super::*;

pub(super) fn autoscaling_config(
    spec: &crate::crd::AutoscalingSpec,
) -> Result<AutoscalingConfig, ConfigError> {
    if !(0..=MAX_AUTOSCALING_REPLICAS).contains(&spec.min_replicas) {
        return Err(ConfigError::invalid(
            "spec.autoscaling.minReplicas",
            format!(
                "{} is not between 0 and {MAX_AUTOSCALING_REPLICAS}",
                spec.min_replicas
            ),
        ));
    }
    if !(1..=MAX_AUTOSCALING_REPLICAS).contains(&spec.max_replicas) {
        return Err(ConfigError::invalid(
            "spec.autoscaling.maxReplicas",
            format!(
                "{} is not between 1 and {MAX_AUTOSCALING_REPLICAS}",
                spec.max_replicas
            ),
        ));
    }
    if spec.max_replicas < spec.min_replicas {
        return Err(ConfigError::invalid(
            "spec.autoscaling.maxReplicas",
            format!(
                "{} is less than minReplicas {}",
                spec.max_replicas, spec.min_replicas
            ),
        ));
    }
    if spec.lag_threshold < 1 {
        return Err(ConfigError::invalid(
            "spec.autoscaling.lagThreshold",
            format!("{} is not 1 or more", spec.lag_threshold),
        ));
    }
    if spec.activation_lag < 1 {
        return Err(ConfigError::invalid(
            "spec.autoscaling.activationLag",
            format!("{} is not 1 or more", spec.activation_lag),
        ));
    }
    let cooldown = positive_duration("spec.autoscaling.cooldown", &spec.cooldown)?;
    Ok(AutoscalingConfig {
        min_replicas: spec.min_replicas,
        max_replicas: spec.max_replicas,
        lag_threshold: spec.lag_threshold,
        activation_lag: spec.activation_lag,
        cooldown,
    })
}
