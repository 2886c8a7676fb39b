//! Offset bookkeeping for one partition: which offsets are unfinished, and how far the
//! stored (to-be-committed) offset may move.
//!
//! The rule from rust-rdkafka's at-least-once pattern is that an offset is stored only when
//! every message before it is finished. Messages of a partition start in order, but with
//! the analytics window they finish out of order (a dead-lettered message finishes at once,
//! the counted ones before it only when their window is published), so the tracker keeps
//! the set of started-but-unfinished offsets and only ever stores the lowest of them (or
//! one past the highest finished offset when none is pending).
//!
//! Successes on a partition task's fast path are stored in batches ([`Ack::release_batched`]):
//! the position moves in the tracker at once, but it reaches librdkafka only every
//! [`STORE_BATCH`] messages, whenever the task's queue runs empty, and before the task ends
//! ([`flush`]). Storing less far for a moment is always safe; the store per message (a
//! `TopicPartitionList` and a lock inside librdkafka) was a large share of the worker's CPU.
//!
//! After a revoke the tracker refuses to store anything: a partition we no longer own must
//! not get offsets from us, even from work that finishes late.
//!
//! A leaf module: the handlers (which keep an [`Ack`] or answer an [`Outcome`]) and the
//! delivery loop (which hands them out and stores offsets) both import it.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, MutexGuard};

/// Where stored offsets go (the consumer's offset store; a recorder in tests).
pub trait OffsetSink: Send + Sync {
    /// Stores `next` (the offset of the next message to read) for `topic`/`partition`.
    fn store(&self, topic: &str, partition: i32, next: i64) -> Result<(), String>;
}

/// The offsets of one owned partition.
#[derive(Debug)]
pub struct PartitionOffsets {
    topic: String,
    partition: i32,
    pending: BTreeSet<i64>,
    highest_finished: Option<i64>,
    /// The next offset to read as far as the store knows; starts at the first offset seen.
    stored: Option<i64>,
    /// A position that moved but was not handed to the sink yet, and how many batched
    /// releases it covers.
    unsent: Option<i64>,
    unsent_count: u32,
    revoked: bool,
}

/// Batched releases per store: at 150k messages/s a store every 256 is ~600 stores/s, far
/// below the 1 s background commit, so commits are as fresh as before.
pub const STORE_BATCH: u32 = 256;

impl PartitionOffsets {
    pub fn new(topic: &str, partition: i32) -> PartitionOffsets {
        PartitionOffsets {
            topic: topic.to_owned(),
            partition,
            pending: BTreeSet::new(),
            highest_finished: None,
            stored: None,
            unsent: None,
            unsent_count: 0,
            revoked: false,
        }
    }

    pub fn topic(&self) -> &str {
        &self.topic
    }

    pub fn partition(&self) -> i32 {
        self.partition
    }

    /// A message at `offset` was taken from Kafka and is now unfinished.
    pub fn begin(&mut self, offset: i64) {
        if self.stored.is_none() {
            self.stored = Some(offset);
        }
        self.pending.insert(offset);
    }

    /// The message at `offset` is finished; returns the offset to store if the stored
    /// position can now move forward.
    pub fn finish(&mut self, offset: i64) -> Option<i64> {
        if self.revoked || !self.pending.remove(&offset) {
            return None;
        }
        self.highest_finished = Some(self.highest_finished.map_or(offset, |h| h.max(offset)));
        let candidate = match self.pending.first() {
            Some(lowest_unfinished) => *lowest_unfinished,
            None => self.highest_finished? + 1,
        };
        match self.stored {
            Some(stored) if candidate <= stored => None,
            _ => {
                self.stored = Some(candidate);
                Some(candidate)
            }
        }
    }

    /// The next offset to read as stored so far (for lag).
    pub fn stored(&self) -> Option<i64> {
        self.stored
    }

    /// Number of unfinished messages.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// The partition was revoked: nothing is stored from now on.
    pub fn revoke(&mut self) {
        self.revoked = true;
        self.unsent = None;
    }

    pub fn is_revoked(&self) -> bool {
        self.revoked
    }
}

/// What became of a message the handler accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Finished: the loop stores the offset.
    Done,
    /// The handler holds the [`Ack`] and calls it once the work is durable.
    Deferred,
}

/// A shared tracker.
pub type SharedOffsets = Arc<Mutex<PartitionOffsets>>;

/// Locks a tracker; a poisoned lock (a panic elsewhere while holding it) still holds
/// consistent data because every mutation is a single step.
pub fn lock(offsets: &SharedOffsets) -> MutexGuard<'_, PartitionOffsets> {
    offsets
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The right to finish one message: releasing it lets the stored offset move past it.
#[derive(Clone)]
pub struct Ack {
    offsets: SharedOffsets,
    offset: i64,
    sink: Arc<dyn OffsetSink>,
}

impl std::fmt::Debug for Ack {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ack").field("offset", &self.offset).finish()
    }
}

impl Ack {
    /// Marks `offset` as started in `offsets` and returns its ack.
    pub fn begin(offsets: &SharedOffsets, offset: i64, sink: Arc<dyn OffsetSink>) -> Ack {
        lock(offsets).begin(offset);
        Ack {
            offsets: offsets.clone(),
            offset,
            sink,
        }
    }

    pub fn offset(&self) -> i64 {
        self.offset
    }

    /// Finishes the message and stores the new position if it moved. The lock is held
    /// across the (local, non-blocking) store so stores of one partition stay in order.
    pub fn release(&self) {
        let mut offsets = lock(&self.offsets);
        if let Some(next) = offsets.finish(self.offset) {
            offsets.unsent = None;
            offsets.unsent_count = 0;
            store(&offsets, &*self.sink, next);
        }
    }

    /// Finishes the message; the new position reaches the sink with the next batch, or
    /// with [`flush`]. Only for the partition task itself, which flushes when its queue
    /// runs empty and before it ends.
    pub fn release_batched(&self) {
        let mut offsets = lock(&self.offsets);
        if let Some(next) = offsets.finish(self.offset) {
            offsets.unsent = Some(next);
            offsets.unsent_count += 1;
            if offsets.unsent_count >= STORE_BATCH {
                offsets.unsent = None;
                offsets.unsent_count = 0;
                store(&offsets, &*self.sink, next);
            }
        }
    }
}

/// Hands a position that batched releases moved to `sink` (nothing after a revoke).
pub fn flush(offsets: &SharedOffsets, sink: &dyn OffsetSink) {
    let mut offsets = lock(offsets);
    offsets.unsent_count = 0;
    if let Some(next) = offsets.unsent.take()
        && !offsets.revoked
    {
        store(&offsets, sink, next);
    }
}

fn store(offsets: &PartitionOffsets, sink: &dyn OffsetSink, next: i64) {
    if let Err(e) = sink.store(offsets.topic(), offsets.partition(), next) {
        // Happens when the partition was just taken away; its new owner resumes
        // from the last commit, so nothing is lost.
        tracing::debug!(topic = offsets.topic(), partition = offsets.partition(), next, error = %e, "offset not stored");
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Records every store.
    #[derive(Default)]
    pub(crate) struct Recorder(pub Mutex<Vec<(String, i32, i64)>>);

    impl OffsetSink for Recorder {
        fn store(&self, topic: &str, partition: i32, next: i64) -> Result<(), String> {
            self.0
                .lock()
                .unwrap()
                .push((topic.to_owned(), partition, next));
            Ok(())
        }
    }

    #[test]
    fn in_order_finishes_store_one_past_each_offset() {
        let mut p = PartitionOffsets::new("t", 0);
        p.begin(10);
        assert_eq!(p.finish(10), Some(11));
        p.begin(11);
        p.begin(12);
        assert_eq!(p.finish(11), Some(12));
        assert_eq!(p.finish(12), Some(13));
    }

    #[test]
    fn a_later_finish_never_stores_past_an_unfinished_message() {
        let mut p = PartitionOffsets::new("t", 0);
        for o in 5..=8 {
            p.begin(o);
        }
        // 6 and 8 finish first (dead-lettered while 5 and 7 wait for their window).
        assert_eq!(p.finish(6), None, "5 is unfinished: stay at 5");
        assert_eq!(p.finish(8), None);
        assert_eq!(p.finish(5), Some(7), "5 and 6 done, 7 is not");
        assert_eq!(p.finish(7), Some(9));
        assert_eq!(p.pending(), 0);
    }

    #[test]
    fn offsets_with_gaps_store_one_past_the_last_finished() {
        let mut p = PartitionOffsets::new("t", 0);
        p.begin(3);
        p.begin(9);
        assert_eq!(p.finish(3), Some(9));
        assert_eq!(p.finish(9), Some(10));
    }

    #[test]
    fn a_revoked_partition_stores_nothing_and_unknown_offsets_are_ignored() {
        let mut p = PartitionOffsets::new("t", 0);
        p.begin(1);
        assert_eq!(p.finish(42), None);
        p.revoke();
        assert_eq!(p.finish(1), None);
        assert!(p.is_revoked());
    }

    #[test]
    fn acks_store_through_the_sink_in_order() {
        let offsets: SharedOffsets = Arc::new(Mutex::new(PartitionOffsets::new("t", 2)));
        let recorder = Arc::new(Recorder::default());
        let a = Ack::begin(&offsets, 0, recorder.clone());
        let b = Ack::begin(&offsets, 1, recorder.clone());
        b.release();
        assert!(recorder.0.lock().unwrap().is_empty());
        a.release();
        a.release(); // twice is harmless
        assert_eq!(*recorder.0.lock().unwrap(), vec![("t".to_owned(), 2, 2)]);
    }

    #[test]
    fn batched_releases_store_every_batch_and_on_flush_but_never_after_a_revoke() {
        let offsets: SharedOffsets = Arc::new(Mutex::new(PartitionOffsets::new("t", 0)));
        let recorder = Arc::new(Recorder::default());
        let stored = || recorder.0.lock().unwrap().clone();
        let n = i64::from(STORE_BATCH);
        for o in 0..n - 1 {
            Ack::begin(&offsets, o, recorder.clone()).release_batched();
        }
        assert!(stored().is_empty(), "below a batch nothing is stored yet");
        assert_eq!(lock(&offsets).stored(), Some(n - 1), "the tracker moved");
        Ack::begin(&offsets, n - 1, recorder.clone()).release_batched();
        assert_eq!(
            stored(),
            vec![("t".to_owned(), 0, n)],
            "a full batch stores"
        );

        Ack::begin(&offsets, n, recorder.clone()).release_batched();
        flush(&offsets, &*recorder);
        assert_eq!(stored().last(), Some(&("t".to_owned(), 0, n + 1)));
        flush(&offsets, &*recorder);
        assert_eq!(stored().len(), 2, "nothing new to flush");

        Ack::begin(&offsets, n + 1, recorder.clone()).release_batched();
        lock(&offsets).revoke();
        flush(&offsets, &*recorder);
        assert_eq!(stored().len(), 2, "nothing stored after a revoke");
    }

    #[test]
    fn an_immediate_release_carries_an_unsent_batched_position() {
        let offsets: SharedOffsets = Arc::new(Mutex::new(PartitionOffsets::new("t", 0)));
        let recorder = Arc::new(Recorder::default());
        Ack::begin(&offsets, 0, recorder.clone()).release_batched();
        Ack::begin(&offsets, 1, recorder.clone()).release();
        assert_eq!(*recorder.0.lock().unwrap(), vec![("t".to_owned(), 0, 2)]);
        flush(&offsets, &*recorder);
        assert_eq!(recorder.0.lock().unwrap().len(), 1, "already stored");
    }
}
