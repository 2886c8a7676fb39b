//! Logging setup: JSON lines on stdout through `tracing`, filtered by a directive such as
//! `info` or `eventconsumer_worker=debug,rdkafka=warn`.

use tracing_subscriber::EnvFilter;

/// Installs the global JSON subscriber. A bad filter is a configuration error.
pub fn init(filter: &str) -> anyhow::Result<()> {
    let filter = EnvFilter::try_new(filter)
        .map_err(|e| anyhow::anyhow!("--log-level {filter:?} is not a valid filter: {e}"))?;
    tracing_subscriber::fmt()
        .json()
        .flatten_event(true)
        .with_current_span(false)
        .with_env_filter(filter)
        .with_writer(std::io::stdout)
        .try_init()
        .map_err(|e| anyhow::anyhow!("cannot install the log subscriber: {e}"))
}
