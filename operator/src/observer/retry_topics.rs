//! Provisioning retry topics (`retryTopics` mode): creating the missing ones is not measuring,
//! but it needs the same Kafka access, so the observer does it in the same round and reports
//! the result in the `RetryTopicsReady` condition.

use super::*;

impl Observer {
    /// Creates the retry topics that do not exist yet, with the partition count of the
    /// largest source topic.
    pub(super) async fn ensure_retry_topics(
        &self,
        access: &KafkaAccess,
        valid: &ValidConsumer,
        marks: &BTreeMap<String, Result<BTreeMap<i32, Watermarks>, KafkaOpError>>,
    ) -> Option<Result<(), String>> {
        let retry = &valid.delivery.retry_topics;
        if retry.is_empty() {
            return None;
        }
        let missing: Vec<String> = retry
            .iter()
            .filter(|t| matches!(marks.get(*t), Some(Err(KafkaOpError::TopicMissing { .. }))))
            .cloned()
            .collect();
        if missing.is_empty() {
            return Some(Ok(()));
        }
        let partitions = valid
            .kafka
            .topics
            .iter()
            .filter_map(|t| marks.get(t)?.as_ref().ok().map(BTreeMap::len))
            .max();
        let Some(partitions) = partitions.and_then(|p| i32::try_from(p).ok()) else {
            return Some(Err(format!(
                "cannot create retry topic {:?}: no source topic exists to take the partition count from",
                missing[0]
            )));
        };
        info!(topics = ?missing, partitions, "creating retry topics");
        Some(
            self.clients
                .create_topics(access, missing, partitions)
                .await
                .map_err(|e| e.to_string()),
        )
    }
}

pub(super) fn retry_condition(
    result: &Result<(), String>,
    old: Option<&Condition>,
    ec: &EventConsumer,
    now: Timestamp,
) -> Condition {
    let (status, reason, message) = match result {
        Ok(()) => ("True", "TopicsExist", "every retry topic exists".to_owned()),
        Err(message) => ("False", RETRY_TOPIC_CREATE_FAILED, message.clone()),
    };
    let last_transition_time = old
        .filter(|c| c.status == status)
        .map(|c| c.last_transition_time.clone())
        .unwrap_or(Time(now));
    Condition {
        type_: RETRY_TOPICS_READY.to_owned(),
        status: status.to_owned(),
        reason: reason.to_owned(),
        message,
        observed_generation: ec.metadata.generation,
        last_transition_time,
    }
}

pub(super) fn newly_failed(old: Option<&Condition>, new: Option<&Condition>) -> bool {
    let parts = |c: &Condition| (c.status.clone(), c.message.clone());
    new.is_some_and(|n| n.status == "False") && old.map(parts) != new.map(parts)
}
