//! Prints the EventConsumer CustomResourceDefinition as YAML.
//!
//! `cargo run -p eventconsumer-operator --bin crdgen > crds/eventconsumer.yaml`
#![forbid(unsafe_code)]

use std::io::Write;

fn main() -> anyhow::Result<()> {
    let yaml = eventconsumer_operator::crd::crd_yaml()?;
    std::io::stdout().lock().write_all(yaml.as_bytes())?;
    Ok(())
}
