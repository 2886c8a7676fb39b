//! Fault injection around any handler (a testing aid, see [`crate::testing`]): the
//! messages a [`FaultSpec`] chooses fail their first attempts with a retryable
//! [`HandlerError::Injected`] before the real handler sees them.

use std::collections::HashMap;
use std::sync::Mutex;

use rdkafka::message::{Message, OwnedMessage};

use super::HandlerError;
use crate::testing::FaultSpec;

/// Which attempt at which source record is being made (`retryTopics` mode, where a retried
/// message arrives as a new record in a retry topic, possibly in another process).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AttemptOf<'a> {
    pub topic: &'a str,
    pub partition: i32,
    pub offset: i64,
    /// 1 for the first try.
    pub number: u32,
}

/// Counts the failed attempts of chosen messages until they are let through.
pub struct FaultInjector {
    spec: FaultSpec,
    /// Failed attempts so far per (topic, partition, offset); an entry is removed when its
    /// message passes, so this holds only messages being retried.
    failures: Mutex<HashMap<(String, i32, i64), u32>>,
}

impl FaultInjector {
    pub fn new(spec: FaultSpec) -> FaultInjector {
        FaultInjector {
            spec,
            failures: Mutex::new(HashMap::new()),
        }
    }

    /// `Err` for an attempt that must fail, `Ok` for one the handler should run.
    pub fn check(&self, msg: &OwnedMessage) -> Result<(), HandlerError> {
        if !self.spec.chosen(msg.topic(), msg.partition(), msg.offset()) {
            return Ok(());
        }
        let key = (msg.topic().to_owned(), msg.partition(), msg.offset());
        let mut failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        let count = failures.entry(key.clone()).or_insert(0);
        if *count >= self.spec.times {
            failures.remove(&key);
            return Ok(());
        }
        *count += 1;
        Err(HandlerError::Injected {
            failure: *count,
            times: self.spec.times,
        })
    }

    /// Like [`FaultInjector::check`] for `retryTopics` mode: the attempt number comes with
    /// the record, so nothing is counted in memory and a restart continues where it was.
    pub fn check_attempt(&self, attempt: &AttemptOf<'_>) -> Result<(), HandlerError> {
        if !self
            .spec
            .chosen(attempt.topic, attempt.partition, attempt.offset)
            || attempt.number > self.spec.times
        {
            return Ok(());
        }
        Err(HandlerError::Injected {
            failure: attempt.number,
            times: self.spec.times,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rdkafka::Timestamp;

    fn msg(offset: i64) -> OwnedMessage {
        OwnedMessage::new(
            Some(b"{}".to_vec()),
            None,
            "t".into(),
            Timestamp::NotAvailable,
            0,
            offset,
            None,
        )
    }

    #[test]
    fn a_chosen_message_fails_the_given_times_then_passes() {
        let spec = FaultSpec {
            per_million: 1_000_000,
            times: 2,
        };
        let f = FaultInjector::new(spec);
        let e = f.check(&msg(7)).unwrap_err();
        assert!(e.is_retryable());
        assert_eq!(e.class(), "injected");
        assert!(f.check(&msg(7)).is_err());
        assert!(f.check(&msg(7)).is_ok());
        assert!(f.failures.lock().unwrap().is_empty());
        let none = FaultInjector::new(FaultSpec {
            per_million: 0,
            times: 2,
        });
        assert!(none.check(&msg(7)).is_ok());
    }

    #[test]
    fn by_attempt_number_a_chosen_record_fails_its_first_attempts_in_any_process() {
        let f = FaultInjector::new(FaultSpec {
            per_million: 1_000_000,
            times: 2,
        });
        let attempt = |number| AttemptOf {
            topic: "t",
            partition: 0,
            offset: 7,
            number,
        };
        assert!(f.check_attempt(&attempt(1)).is_err());
        assert!(f.check_attempt(&attempt(2)).is_err());
        assert!(f.check_attempt(&attempt(3)).is_ok());
        assert!(f.check_attempt(&attempt(2)).is_err(), "no memory involved");
    }
}
