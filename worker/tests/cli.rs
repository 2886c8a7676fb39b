//! The command line as an operator meets it: settings from flags or from the environment
//! variables the operator sets, and one clear line with exit code 2 for a bad value.

use std::process::{Command, Output};

fn worker(args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_eventconsumer-worker"))
        .args(args)
        .env_clear()
        .envs(env.iter().copied())
        .output()
        .expect("run the worker binary")
}

fn one_error_line(out: &Output) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr).trim().to_owned();
    assert_eq!(stderr.lines().count(), 1, "one line, got:\n{stderr}");
    stderr
}

#[test]
fn an_option_of_another_handler_exits_with_code_two_naming_flag_and_variable() {
    let out = worker(
        &[
            "run",
            "--handler",
            "video",
            "--stage",
            "publish",
            "--action",
            "email",
            "--topics",
            "t",
            "--group-id",
            "g",
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(2));
    let line = one_error_line(&out);
    assert!(
        line.contains("--action") && line.contains("EC_ORDER_ACTION"),
        "{line}"
    );
}

#[test]
fn a_bad_value_from_the_environment_exits_with_code_two_naming_the_variable() {
    let out = worker(
        &["run"],
        &[
            ("EC_HANDLER", "order"),
            ("EC_ORDER_ACTION", "payment"),
            ("EC_TOPICS", "order.placed"),
            ("EC_GROUP_ID", "payment-service"),
            ("EC_MAX_ATTEMPTS", "0"),
        ],
    );
    assert_eq!(out.status.code(), Some(2));
    let line = one_error_line(&out);
    assert!(
        line.contains("--max-attempts") && line.contains("EC_MAX_ATTEMPTS"),
        "{line}"
    );
}

#[test]
fn an_unparsable_duration_is_refused_by_clap_with_code_two() {
    let out = worker(
        &[
            "run",
            "--handler",
            "analytics",
            "--topics",
            "t",
            "--group-id",
            "g",
        ],
        &[("EC_BACKOFF_INITIAL", "soon")],
    );
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--backoff-initial"), "{stderr}");
}

#[test]
fn run_help_lists_every_contract_variable() {
    let out = worker(&["run", "--help"], &[]);
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for name in eventconsumer_contract::env::ALL {
        assert!(help.contains(name), "--help does not mention {name}");
    }
}

#[test]
fn an_unknown_delivery_mode_from_the_environment_exits_with_code_two_listing_the_contract_values() {
    let out = worker(
        &["run"],
        &[
            ("EC_HANDLER", "analytics"),
            ("EC_TOPICS", "user.events"),
            ("EC_GROUP_ID", "analytics-service"),
            ("EC_DELIVERY_MODE", "retry-topics"),
        ],
    );
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--delivery-mode"), "{stderr}");
    for mode in eventconsumer_contract::values::DELIVERY_MODES {
        assert!(stderr.contains(mode), "{mode} not offered: {stderr}");
    }
}
