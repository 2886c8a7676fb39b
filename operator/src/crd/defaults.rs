//! The defaults serde fills in for omitted spec fields (the CRD shows them as `default:`),
//! taken from the contract where the worker has the same setting.

use eventconsumer_contract::defaults;

use super::HumanDuration;

pub(super) fn replicas() -> i32 {
    1
}

pub(super) fn min_replicas() -> i32 {
    1
}

pub(super) fn lag_threshold() -> i64 {
    1000
}

pub(super) fn activation_lag() -> i64 {
    1
}

pub(super) fn cooldown() -> HumanDuration {
    "5m".into()
}

pub(super) fn log_level() -> String {
    defaults::LOG_LEVEL.to_owned()
}

pub(super) fn window() -> HumanDuration {
    HumanDuration(humantime::format_duration(defaults::ANALYTICS_WINDOW).to_string())
}

pub(super) fn max_attempts() -> i32 {
    // 5 fits an i32; the CRD field is an i32 like every Kubernetes integer.
    i32::try_from(defaults::MAX_ATTEMPTS).unwrap_or(i32::MAX)
}

pub(super) fn max_in_flight() -> i32 {
    // 256 fits an i32; the CRD field is an i32 like every Kubernetes integer.
    i32::try_from(defaults::MAX_IN_FLIGHT).unwrap_or(i32::MAX)
}

pub(super) fn attempt_timeout() -> HumanDuration {
    defaults::ATTEMPT_TIMEOUT.into()
}

pub(super) fn backoff_initial() -> HumanDuration {
    defaults::BACKOFF_INITIAL.into()
}

pub(super) fn backoff_max() -> HumanDuration {
    defaults::BACKOFF_MAX.into()
}

pub(super) fn backoff_multiplier() -> f64 {
    defaults::BACKOFF_MULTIPLIER
}

pub(super) fn username_key() -> String {
    "username".to_owned()
}

pub(super) fn password_key() -> String {
    "password".to_owned()
}

pub(super) fn ca_key() -> String {
    "ca.crt".to_owned()
}

/// The keys of a `kubernetes.io/tls` Secret.
pub(super) fn client_cert_key() -> String {
    "tls.crt".to_owned()
}

pub(super) fn client_key_key() -> String {
    "tls.key".to_owned()
}
