//! Retries and dead-lettering: the limits from the contract, the dead-letter topic and, in
//! `retryTopics` mode, the retry topics (the contract's list) that must not collide with it.

use eventconsumer_contract::limits::{
    MAX_ATTEMPTS, MAX_BACKOFF_MULTIPLIER, MAX_IN_FLIGHT, MAX_RETRY_TOPIC_ATTEMPTS,
    MIN_BACKOFF_MULTIPLIER,
};
use eventconsumer_contract::{default_dlq_topic, retry_topic_collision, retry_topics, semantics};

use super::*;

pub(super) fn delivery_config(
    ec: &EventConsumer,
    topics: &[String],
    group_id: &str,
    output_topic: &str,
) -> Result<DeliveryConfig, ConfigError> {
    let delivery = &ec.spec.delivery;
    let max_attempts = u32::try_from(delivery.max_attempts).unwrap_or(0);
    if !(1..=MAX_ATTEMPTS).contains(&max_attempts) {
        return Err(ConfigError::invalid(
            "spec.delivery.maxAttempts",
            format!("must be between 1 and {MAX_ATTEMPTS}"),
        ));
    }
    let backoff = &delivery.backoff;
    let initial = positive_duration("spec.delivery.backoff.initial", &backoff.initial)?;
    let max = positive_duration("spec.delivery.backoff.max", &backoff.max)?;
    if max < initial {
        return Err(ConfigError::invalid(
            "spec.delivery.backoff.max",
            format!(
                "{:?} is shorter than backoff.initial {:?}",
                backoff.max.as_str(),
                backoff.initial.as_str()
            ),
        ));
    }
    if !backoff.multiplier.is_finite()
        || !(MIN_BACKOFF_MULTIPLIER..=MAX_BACKOFF_MULTIPLIER).contains(&backoff.multiplier)
    {
        return Err(ConfigError::invalid(
            "spec.delivery.backoff.multiplier",
            format!("must be between {MIN_BACKOFF_MULTIPLIER} and {MAX_BACKOFF_MULTIPLIER}"),
        ));
    }
    positive_duration("spec.delivery.attemptTimeout", &delivery.attempt_timeout)?;

    let dead_letter_topic = match &delivery.dead_letter_topic {
        Some(topic) => {
            check_topic_name("spec.delivery.deadLetterTopic", topic.as_str())?;
            if topics.iter().any(|t| t == topic.as_str()) {
                return Err(ConfigError::invalid(
                    "spec.delivery.deadLetterTopic",
                    format!(
                        "{:?} is also a source topic in spec.kafka.topics; the consumer would read its own dead letters",
                        topic.as_str()
                    ),
                ));
            }
            topic.0.clone()
        }
        None => {
            // `source_topics` guarantees at least one topic.
            let first = topics.first().map(String::as_str).unwrap_or_default();
            let topic = default_dlq_topic(first);
            if topics.contains(&topic) {
                return Err(ConfigError::invalid(
                    "spec.delivery.deadLetterTopic",
                    format!(
                        "the default {topic:?} is also a source topic in spec.kafka.topics; set another one"
                    ),
                ));
            }
            check_topic_name("spec.delivery.deadLetterTopic", &topic)?;
            topic
        }
    };

    let retry_topics = match delivery.mode {
        DeliveryMode::Blocking => Vec::new(),
        DeliveryMode::RetryTopics => {
            if max_attempts > MAX_RETRY_TOPIC_ATTEMPTS {
                return Err(ConfigError::invalid(
                    "spec.delivery.maxAttempts",
                    format!(
                        "at most {MAX_RETRY_TOPIC_ATTEMPTS} in retryTopics mode (each retry has its own topic)"
                    ),
                ));
            }
            let names = retry_topics(group_id, max_attempts);
            for topic in &names {
                check_topic_name("spec.kafka.consumerGroup", topic).map_err(|_| {
                    ConfigError::invalid(
                        "spec.kafka.consumerGroup",
                        format!(
                            "the retry topic {topic:?} derived from it is not a valid Kafka topic name (at most 249 characters); choose a shorter group"
                        ),
                    )
                })?;
            }
            if let Some(topic) =
                retry_topic_collision(&names, topics, &dead_letter_topic, output_topic)
            {
                return Err(ConfigError::invalid(
                    "spec.kafka.consumerGroup",
                    format!(
                        "the retry topic {topic:?} derived from it is also a source, output or dead-letter topic"
                    ),
                ));
            }
            names
        }
    };

    if !eventconsumer_contract::ordering::fits(ec.spec.handler, delivery.ordering) {
        return Err(ConfigError::invalid(
            "spec.delivery.ordering",
            format!(
                "{} is not allowed: {}",
                delivery.ordering.as_str(),
                eventconsumer_contract::ordering::ANALYTICS_REASON
            ),
        ));
    }
    let has_sink = ec.spec.order.as_ref().is_some_and(|o| o.sink_url.is_some());
    if !semantics::fits_sink(delivery.semantics, has_sink) {
        return Err(ConfigError::invalid(
            "spec.delivery.semantics",
            format!(
                "{} is not allowed with spec.order.sinkUrl: {}",
                delivery.semantics.as_str(),
                semantics::SINK_REASON
            ),
        ));
    }
    if !semantics::fits_ordering(delivery.semantics, delivery.ordering) {
        return Err(ConfigError::invalid(
            "spec.delivery.semantics",
            format!(
                "{} is not allowed with ordering {}: {}",
                delivery.semantics.as_str(),
                delivery.ordering.as_str(),
                semantics::ORDERING_REASON
            ),
        ));
    }
    let max_in_flight = u32::try_from(delivery.max_in_flight).unwrap_or(0);
    if !(1..=MAX_IN_FLIGHT).contains(&max_in_flight) {
        return Err(ConfigError::invalid(
            "spec.delivery.maxInFlight",
            format!("must be between 1 and {MAX_IN_FLIGHT}"),
        ));
    }

    Ok(DeliveryConfig {
        mode: delivery.mode,
        ordering: delivery.ordering,
        max_in_flight,
        semantics: delivery.semantics,
        retry_topics,
        max_attempts: delivery.max_attempts,
        backoff_initial: backoff.initial.clone(),
        backoff_max: backoff.max.clone(),
        backoff_multiplier: backoff.multiplier,
        attempt_timeout: delivery.attempt_timeout.clone(),
        dead_letter_topic,
    })
}
