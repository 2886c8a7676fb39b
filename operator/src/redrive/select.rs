//! Which dead-letter records a redrive replays, and the record it replays them as. Pure
//! functions over a record's timestamp and headers, so every rule is unit-tested without
//! Kafka.
//!
//! A dead-letter topic is shared by every consumer group whose EventConsumer names it, so
//! a record belongs to this redrive only when its `ec-dlt-consumer-group` header is the
//! consumer's group. Of those, a record is replayed when it passes the window and error
//! class filters, has not reached `maxRedrives`, and names one of the consumer's source
//! topics as its origin (a redrive never writes anywhere else).

use std::collections::BTreeMap;

use eventconsumer_contract::headers;

/// The selection rules of one redrive, resolved from its spec and its EventConsumer.
#[derive(Clone, Debug, PartialEq)]
pub struct Selection {
    /// The consumer group whose dead letters are replayed.
    pub group: String,
    /// Source topic → its number of partitions.
    pub source_topics: BTreeMap<String, i32>,
    /// Only records dead-lettered at or after this time (ms since the epoch).
    pub since_ms: Option<i64>,
    /// Only records dead-lettered before this time (ms since the epoch).
    pub until_ms: Option<i64>,
    /// Only records of this `ec-dlt-error-class`.
    pub error_class: Option<String>,
    /// Records already replayed this often are skipped.
    pub max_redrives: u32,
    /// `<namespace>/<name>` of the redrive, written to `ec-redrive-name`.
    pub redrive_name: String,
}

/// One header of a record: key and value (absent for a null value).
pub type RecordHeader = (String, Option<Vec<u8>>);

/// What a redrive does with one dead-letter record.
#[derive(Clone, Debug, PartialEq)]
pub enum Decision {
    /// Another consumer group's dead letter: not this redrive's business, not counted.
    OtherGroup,
    /// Replay it as `replay`.
    Replay(Replay),
    /// This group's dead letter, not replayed, for `SkipReason`.
    Skip(SkipReason),
}

/// Why one of the group's dead letters is not replayed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SkipReason {
    /// Outside `since`/`until`, or of another error class.
    Filter,
    /// Its `ec-redrive-count` already reached `maxRedrives`.
    MaxRedrives,
    /// No usable `ec-dlt-original-topic` (missing, or not a source topic of the consumer), or
    /// an `ec-redrive-count` that is not a number.
    Invalid,
}

/// The record to produce for a replayed dead letter.
#[derive(Clone, Debug, PartialEq)]
pub struct Replay {
    pub topic: String,
    /// The partition the message was consumed from, when the source topic still has it:
    /// keeps a key's messages in the partition they were in, whatever partitioner the
    /// original producer used.
    pub partition: Option<i32>,
    pub headers: Vec<RecordHeader>,
}

fn text<'a>(headers: &'a [RecordHeader], key: &str) -> Option<&'a str> {
    headers
        .iter()
        .rev()
        .find(|(k, _)| k == key)
        .and_then(|(_, v)| v.as_deref())
        .and_then(|v| std::str::from_utf8(v).ok())
}

/// Decides what to do with the dead-letter record with `timestamp_ms` (when it was
/// dead-lettered) and `headers`.
pub fn decide(
    selection: &Selection,
    timestamp_ms: Option<i64>,
    headers: &[RecordHeader],
) -> Decision {
    if text(headers, headers::DLT_CONSUMER_GROUP) != Some(selection.group.as_str()) {
        return Decision::OtherGroup;
    }
    let in_window = match (selection.since_ms, selection.until_ms, timestamp_ms) {
        (None, None, _) => true,
        (_, _, None) => false,
        (since, until, Some(t)) => since.is_none_or(|s| t >= s) && until.is_none_or(|u| t < u),
    };
    let class_matches = selection
        .error_class
        .as_deref()
        .is_none_or(|class| text(headers, headers::DLT_ERROR_CLASS) == Some(class));
    if !in_window || !class_matches {
        return Decision::Skip(SkipReason::Filter);
    }
    let count = match text(headers, headers::REDRIVE_COUNT) {
        None => 0,
        Some(n) => match n.trim().parse::<u32>() {
            Ok(n) => n,
            Err(_) => return Decision::Skip(SkipReason::Invalid),
        },
    };
    if count >= selection.max_redrives {
        return Decision::Skip(SkipReason::MaxRedrives);
    }
    let Some((topic, partitions)) = text(headers, headers::DLT_ORIGINAL_TOPIC)
        .and_then(|t| selection.source_topics.get_key_value(t))
    else {
        return Decision::Skip(SkipReason::Invalid);
    };
    let partition = text(headers, headers::DLT_ORIGINAL_PARTITION)
        .and_then(|p| p.parse::<i32>().ok())
        .filter(|p| (0..*partitions).contains(p));
    Decision::Replay(Replay {
        topic: topic.clone(),
        partition,
        headers: replay_headers(headers, count + 1, &selection.redrive_name),
    })
}

/// The headers of the replayed record: the dead letter's own headers without the failure
/// (`ec-dlt-*`), retry-topic (`ec-retry-*`) and earlier redrive headers, then
/// `ec-redrive-count` and `ec-redrive-name`.
pub fn replay_headers(
    original: &[RecordHeader],
    count: u32,
    redrive_name: &str,
) -> Vec<RecordHeader> {
    let mut out: Vec<RecordHeader> = original
        .iter()
        .filter(|(k, _)| {
            !k.starts_with(headers::DLT_PREFIX)
                && !k.starts_with(headers::RETRY_PREFIX)
                && k != headers::REDRIVE_COUNT
                && k != headers::REDRIVE_NAME
        })
        .cloned()
        .collect();
    out.push((
        headers::REDRIVE_COUNT.to_owned(),
        Some(count.to_string().into_bytes()),
    ));
    out.push((
        headers::REDRIVE_NAME.to_owned(),
        Some(redrive_name.as_bytes().to_vec()),
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn selection() -> Selection {
        Selection {
            group: "shop.payment".into(),
            source_topics: [("order.placed".to_owned(), 3)].into_iter().collect(),
            since_ms: None,
            until_ms: None,
            error_class: None,
            max_redrives: 3,
            redrive_name: "shop/replay-1".into(),
        }
    }

    fn h(key: &str, value: &str) -> RecordHeader {
        (key.to_owned(), Some(value.as_bytes().to_vec()))
    }

    fn dead_letter(group: &str, class: &str) -> Vec<RecordHeader> {
        vec![
            h("traceparent", "00-abc-def-01"),
            h(headers::RETRY_ATTEMPT, "3"),
            h(headers::DLT_ORIGINAL_TOPIC, "order.placed"),
            h(headers::DLT_ORIGINAL_PARTITION, "2"),
            h(headers::DLT_ORIGINAL_OFFSET, "41"),
            h(headers::DLT_CONSUMER_GROUP, group),
            h(headers::DLT_ERROR_CLASS, class),
        ]
    }

    fn replayed(decision: Decision) -> Replay {
        match decision {
            Decision::Replay(replay) => replay,
            other => panic!("expected a replay, got {other:?}"),
        }
    }

    #[test]
    fn another_groups_dead_letter_is_not_this_redrives_business() {
        let d = decide(&selection(), Some(0), &dead_letter("shop.email", "timeout"));
        assert_eq!(d, Decision::OtherGroup);
    }

    #[test]
    fn a_matching_dead_letter_is_replayed_to_its_source_partition_with_redrive_headers() {
        let replay = replayed(decide(
            &selection(),
            Some(0),
            &dead_letter("shop.payment", "timeout"),
        ));
        assert_eq!(replay.topic, "order.placed");
        assert_eq!(replay.partition, Some(2));
        assert_eq!(
            replay.headers,
            vec![
                h("traceparent", "00-abc-def-01"),
                h(headers::REDRIVE_COUNT, "1"),
                h(headers::REDRIVE_NAME, "shop/replay-1"),
            ]
        );
    }

    #[test]
    fn the_redrive_count_goes_up_by_one_and_replaces_the_old_headers() {
        let mut record = dead_letter("shop.payment", "timeout");
        record.push(h(headers::REDRIVE_COUNT, "2"));
        record.push(h(headers::REDRIVE_NAME, "shop/replay-0"));
        let replay = replayed(decide(&selection(), Some(0), &record));
        let count: Vec<_> = replay
            .headers
            .iter()
            .filter(|(k, _)| k.starts_with("ec-redrive-"))
            .cloned()
            .collect();
        assert_eq!(
            count,
            vec![
                h(headers::REDRIVE_COUNT, "3"),
                h(headers::REDRIVE_NAME, "shop/replay-1")
            ]
        );
    }

    #[test]
    fn a_record_that_reached_max_redrives_is_skipped() {
        let mut record = dead_letter("shop.payment", "timeout");
        record.push(h(headers::REDRIVE_COUNT, "3"));
        let d = decide(&selection(), Some(0), &record);
        assert_eq!(d, Decision::Skip(SkipReason::MaxRedrives));
    }

    #[test]
    fn the_error_class_filter_skips_other_classes() {
        let s = Selection {
            error_class: Some("timeout".into()),
            ..selection()
        };
        assert!(matches!(
            decide(&s, Some(0), &dead_letter("shop.payment", "timeout")),
            Decision::Replay(_)
        ));
        assert_eq!(
            decide(&s, Some(0), &dead_letter("shop.payment", "validation")),
            Decision::Skip(SkipReason::Filter)
        );
    }

    #[test]
    fn the_window_includes_since_and_excludes_until() {
        let s = Selection {
            since_ms: Some(1_000),
            until_ms: Some(2_000),
            ..selection()
        };
        let record = dead_letter("shop.payment", "timeout");
        let at = |t| decide(&s, t, &record);
        assert_eq!(at(Some(999)), Decision::Skip(SkipReason::Filter));
        assert!(matches!(at(Some(1_000)), Decision::Replay(_)));
        assert!(matches!(at(Some(1_999)), Decision::Replay(_)));
        assert_eq!(at(Some(2_000)), Decision::Skip(SkipReason::Filter));
        assert_eq!(at(None), Decision::Skip(SkipReason::Filter));
    }

    #[test]
    fn a_record_from_a_topic_the_consumer_does_not_read_is_skipped_as_invalid() {
        let mut record = dead_letter("shop.payment", "timeout");
        record.retain(|(k, _)| k != headers::DLT_ORIGINAL_TOPIC);
        assert_eq!(
            decide(&selection(), Some(0), &record),
            Decision::Skip(SkipReason::Invalid)
        );
        record.push(h(headers::DLT_ORIGINAL_TOPIC, "payments.internal"));
        assert_eq!(
            decide(&selection(), Some(0), &record),
            Decision::Skip(SkipReason::Invalid)
        );
    }

    #[test]
    fn a_partition_the_source_topic_no_longer_has_is_left_to_the_partitioner() {
        let mut record = dead_letter("shop.payment", "timeout");
        record.retain(|(k, _)| k != headers::DLT_ORIGINAL_PARTITION);
        record.push(h(headers::DLT_ORIGINAL_PARTITION, "7"));
        assert_eq!(
            replayed(decide(&selection(), Some(0), &record)).partition,
            None
        );
    }
}
