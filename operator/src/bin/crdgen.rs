//! Prints one of the operator's CustomResourceDefinitions as YAML, named like its file in
//! `crds/`: `eventconsumer` (also without an argument, as before there were two) or
//! `deadletterredrive`.
//!
//! `cargo run -p eventconsumer-operator --bin crdgen -- deadletterredrive > crds/deadletterredrive.yaml`
//! (`make crds` writes both).
#![forbid(unsafe_code)]

use std::io::Write;
use std::process::ExitCode;

use eventconsumer_operator::{crd, redrive};

/// The CRDs by the name of their file in `crds/`, without `.yaml`.
const CRDS: &[&str] = &["eventconsumer", "deadletterredrive"];

fn main() -> anyhow::Result<ExitCode> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let yaml = match args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        [] | ["eventconsumer"] => crd::crd_yaml()?,
        ["deadletterredrive"] => redrive::resource::crd_yaml()?,
        _ => {
            eprintln!("usage: crdgen [{}]", CRDS.join("|"));
            return Ok(ExitCode::from(2));
        }
    };
    std::io::stdout().lock().write_all(yaml.as_bytes())?;
    Ok(ExitCode::SUCCESS)
}
