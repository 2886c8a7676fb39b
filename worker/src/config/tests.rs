use super::*;
use crate::cli::{Cli, Command};
use clap::Parser;

fn parse(extra: &[&str]) -> Result<Settings, ConfigError> {
    let mut argv = vec![
        "eventconsumer-worker",
        "run",
        "--topics",
        "order.placed",
        "--group-id",
        "g",
    ];
    argv.extend_from_slice(extra);
    let Command::Run(args) = Cli::try_parse_from(argv).unwrap().command else {
        panic!("expected run")
    };
    Settings::from_args(&args)
}

#[test]
fn an_order_consumer_gets_the_default_output_and_dead_letter_topics() {
    let s = parse(&["--handler", "order", "--action", "inventory"]).unwrap();
    assert_eq!(s.output_topic, "order.inventory");
    assert_eq!(s.dlq_topic, "order.placed.dlq");
    assert_eq!(s.consumer_name, "g");
    assert_eq!(s.handler.label(), "order/inventory");
}

#[test]
fn an_action_with_the_video_handler_is_refused_naming_flag_and_variable() {
    let err = parse(&[
        "--handler",
        "video",
        "--stage",
        "publish",
        "--action",
        "email",
    ])
    .unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("--action") && text.contains(env::ORDER_ACTION),
        "{text}"
    );
}

#[test]
fn the_order_handler_without_an_action_is_refused() {
    let err = parse(&["--handler", "order"]).unwrap_err();
    assert!(err.to_string().contains("--action"), "{err}");
}

#[test]
fn a_window_is_only_for_analytics_and_defaults_to_five_seconds() {
    assert!(parse(&["--handler", "order", "--action", "email", "--window", "3s"]).is_err());
    let s = parse(&["--handler", "analytics"]).unwrap();
    assert_eq!(
        s.handler,
        HandlerSettings::Analytics {
            window: DEFAULT_ANALYTICS_WINDOW
        }
    );
    assert_eq!(s.output_topic, "analytics.counts");
}

#[test]
fn backoff_bounds_out_of_order_are_refused() {
    let err = parse(&[
        "--handler",
        "analytics",
        "--backoff-initial",
        "5s",
        "--backoff-max",
        "1s",
    ])
    .unwrap_err();
    assert!(err.to_string().contains("--backoff-max"), "{err}");
    assert!(parse(&["--handler", "analytics", "--max-attempts", "0"]).is_err());
    assert!(parse(&["--handler", "analytics", "--backoff-multiplier", "0.5"]).is_err());
}

#[test]
fn max_attempts_has_the_contracts_limits_in_both_modes() {
    use eventconsumer_contract::limits::{MAX_ATTEMPTS, MAX_RETRY_TOPIC_ATTEMPTS};
    let attempts = |n: u32, mode: &str| {
        parse(&[
            "--handler",
            "analytics",
            "--max-attempts",
            &n.to_string(),
            "--delivery-mode",
            mode,
        ])
    };
    assert!(attempts(MAX_ATTEMPTS, "blocking").is_ok());
    let err = attempts(MAX_ATTEMPTS + 1, "blocking").unwrap_err();
    assert!(err.to_string().contains("--max-attempts"), "{err}");
    assert!(attempts(MAX_RETRY_TOPIC_ATTEMPTS, "retryTopics").is_ok());
    let err = attempts(MAX_RETRY_TOPIC_ATTEMPTS + 1, "retryTopics").unwrap_err();
    assert!(err.to_string().contains("retryTopics"), "{err}");
}

#[test]
fn retry_topics_mode_names_one_retry_topic_per_retry_after_the_group() {
    let s = parse(&["--handler", "analytics", "--max-attempts", "3"]).unwrap();
    assert_eq!(s.delivery_mode, DeliveryMode::Blocking);
    assert!(s.retry_topics.is_empty(), "blocking mode has none");
    let s = parse(&[
        "--handler",
        "analytics",
        "--max-attempts",
        "3",
        "--delivery-mode",
        "retryTopics",
    ])
    .unwrap();
    assert_eq!(s.delivery_mode, DeliveryMode::RetryTopics);
    assert_eq!(s.retry_topics, vec!["g.retry.1", "g.retry.2"]);
}

#[test]
fn an_unknown_delivery_mode_is_refused_by_clap_naming_the_flag() {
    let argv = [
        "eventconsumer-worker",
        "run",
        "--topics",
        "t",
        "--group-id",
        "g",
        "--handler",
        "analytics",
        "--delivery-mode",
        "retry-topics",
    ];
    let err = Cli::try_parse_from(argv).unwrap_err().to_string();
    assert!(
        err.contains("--delivery-mode") && err.contains("retryTopics"),
        "{err}"
    );
}

#[test]
fn a_group_id_that_makes_an_invalid_retry_topic_is_refused_in_retry_topics_mode() {
    let argv = [
        "eventconsumer-worker",
        "run",
        "--topics",
        "t",
        "--group-id",
        "shop/payment",
        "--handler",
        "analytics",
        "--delivery-mode",
        "retryTopics",
    ];
    let Command::Run(args) = Cli::try_parse_from(argv).unwrap().command else {
        panic!("expected run")
    };
    let err = Settings::from_args(&args).unwrap_err().to_string();
    assert!(
        err.contains("--group-id") && err.contains("shop/payment.retry.1"),
        "{err}"
    );
}

#[test]
fn a_dead_letter_topic_equal_to_a_source_topic_is_refused() {
    let err = parse(&["--handler", "analytics", "--dlq-topic", "order.placed"]).unwrap_err();
    assert!(err.to_string().contains("loop"), "{err}");
}

#[test]
fn no_output_and_fault_injection_are_order_testing_aids() {
    let s = parse(&[
        "--handler",
        "order",
        "--action",
        "payment",
        "--no-output",
        "--fault-fail-percent",
        "1",
        "--fault-fail-times",
        "2",
    ])
    .unwrap();
    assert_eq!(s.output_topic, NO_OUTPUT_TOPIC);
    assert_eq!(s.handler.label(), "order/payment");
    let (inner, fault) = s.handler.split_fault();
    assert!(matches!(
        inner,
        HandlerSettings::Order { publish: false, .. }
    ));
    assert_eq!(fault.map(|f| (f.per_million, f.times)), Some((10_000, 2)));
    assert!(parse(&["--handler", "analytics", "--no-output"]).is_err());
    assert!(
        parse(&[
            "--handler",
            "order",
            "--action",
            "email",
            "--no-output",
            "--output-topic",
            "x"
        ])
        .is_err()
    );
}

#[test]
fn a_sink_url_must_be_http() {
    assert!(
        parse(&[
            "--handler",
            "order",
            "--action",
            "email",
            "--sink-url",
            "ftp://x"
        ])
        .is_err()
    );
    let s = parse(&[
        "--handler",
        "order",
        "--action",
        "email",
        "--sink-url",
        "http://127.0.0.1:9/hook",
    ])
    .unwrap();
    assert!(matches!(
        s.handler,
        HandlerSettings::Order {
            sink_url: Some(_),
            ..
        }
    ));
}

#[test]
fn bad_combinations_are_refused() {
    let mut a = TestingArgs {
        no_output: true,
        ..TestingArgs::default()
    };
    assert!(a.settings(Handler::Video).is_err());
    assert!(a.settings(Handler::Order).is_ok());
    a.fault_fail_percent = 101.0;
    assert!(a.settings(Handler::Order).is_err());
    a.fault_fail_percent = 1.0;
    a.fault_fail_times = 0;
    assert!(a.settings(Handler::Order).is_err());
    a.fault_fail_times = 2;
    assert_eq!(
        a.settings(Handler::Order).map(|t| t.fault),
        Ok(Some(FaultSpec {
            per_million: 10_000,
            times: 2
        }))
    );
}

#[test]
fn ordering_defaults_to_partition_and_concurrent_orderings_are_refused_for_analytics() {
    let s = parse(&["--handler", "order", "--action", "email"]).unwrap();
    assert_eq!(s.ordering, Ordering::Partition);
    assert_eq!(
        s.max_in_flight,
        eventconsumer_contract::defaults::MAX_IN_FLIGHT as usize
    );
    let s = parse(&[
        "--handler",
        "order",
        "--action",
        "email",
        "--ordering",
        "key",
    ])
    .unwrap();
    assert_eq!(s.ordering, Ordering::Key);
    let err = parse(&["--handler", "analytics", "--ordering", "none"]).unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("--ordering") && text.contains(env::ORDERING) && text.contains("analytics"),
        "{text}"
    );
}

#[test]
fn max_in_flight_outside_its_bounds_is_refused_naming_flag_and_variable() {
    let max = eventconsumer_contract::limits::MAX_IN_FLIGHT;
    for bad in ["0".to_owned(), (max + 1).to_string()] {
        let err = parse(&[
            "--handler",
            "order",
            "--action",
            "email",
            "--max-in-flight",
            &bad,
        ])
        .unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("--max-in-flight") && text.contains(env::MAX_IN_FLIGHT),
            "{text}"
        );
    }
}

#[test]
fn exactly_once_takes_the_transactional_id_from_the_flag_or_the_host_name() {
    let order = ["--handler", "order", "--action", "email"];
    let s = parse(&order).unwrap();
    assert_eq!(s.transactional_id, None, "at least once by default");
    let s = parse(
        &[
            &order[..],
            &["--semantics", "exactlyOnce", "--transactional-id", "t-1"],
        ]
        .concat(),
    )
    .unwrap();
    assert_eq!(s.transactional_id.as_deref(), Some("t-1"));
    // Without the flag: the group's prefix and this machine's host name (a pod's name).
    let s = parse(&[&order[..], &["--semantics", "exactlyOnce"]].concat()).unwrap();
    let id = s.transactional_id.unwrap();
    assert!(id.starts_with("g.tx.") && id.len() > "g.tx.".len(), "{id}");
    let err = parse(
        &[
            &order[..],
            &["--semantics", "exactlyOnce", "--transactional-id", " "],
        ]
        .concat(),
    )
    .unwrap_err();
    assert!(err.to_string().contains("--transactional-id"), "{err}");
    let err = parse(&[&order[..], &["--transactional-id", "t-1"]].concat()).unwrap_err();
    assert!(
        err.to_string()
            .contains("is only for --semantics exactlyOnce"),
        "{err}"
    );
}

#[test]
fn exactly_once_is_refused_with_a_sink_or_with_key_ordering_naming_the_flag_and_the_reason() {
    let order = [
        "--handler",
        "order",
        "--action",
        "email",
        "--semantics",
        "exactlyOnce",
    ];
    let err =
        parse(&[&order[..], &["--sink-url", "http://127.0.0.1:9/hook"]].concat()).unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("--semantics") && text.contains(env::SEMANTICS),
        "{text}"
    );
    assert!(
        text.contains(eventconsumer_contract::semantics::SINK_REASON),
        "{text}"
    );
    for ordering in ["key", "none"] {
        let err = parse(&[&order[..], &["--ordering", ordering]].concat()).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("--semantics"), "{text}");
        assert!(
            text.contains(eventconsumer_contract::semantics::ORDERING_REASON),
            "{text}"
        );
    }
    assert!(parse(&[&order[..], &["--ordering", "partition"]].concat()).is_ok());
}
