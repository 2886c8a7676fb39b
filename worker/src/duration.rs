//! Durations as the worker's flags and the gateway's headers spell them. A leaf module, so the
//! CLI, the config and the gateway parse durations the same way without importing each other.

use std::time::Duration;

/// A duration given as humantime (`200ms`, `5s`, `1m`) or as a bare number of seconds
/// (`25`), because the contract documents some settings in seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    if let Ok(secs) = text.parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    humantime::parse_duration(text).map_err(|e| format!("{e} (use e.g. 500ms, 5s, 1m or 25)"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_accept_humantime_and_bare_seconds() {
        assert_eq!(parse_duration("25"), Ok(Duration::from_secs(25)));
        assert_eq!(parse_duration("200ms"), Ok(Duration::from_millis(200)));
        assert_eq!(parse_duration("1m 5s"), Ok(Duration::from_secs(65)));
        assert!(parse_duration("soon").is_err());
    }
}
