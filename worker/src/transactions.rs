//! `exactlyOnce` semantics: what the work of a worker writes to Kafka and the offsets of the
//! messages that caused it are committed in one Kafka transaction, so a reader with
//! `isolation.level=read_committed` sees every output once, whatever crashes.
//!
//! The invariant: **a transaction commits an output only together with the offset of the
//! message that caused it.** Work that writes (an attempt and the store of its offset, a
//! dead-letter or retry-topic write and its store, an analytics window's report and the stores
//! of its events) runs inside [`Transactions::enter`], a shared hold on the open
//! transaction; the commit takes the hold exclusively, so it waits for the work in progress
//! and no new work starts until it is done. Waiting is all it costs: an attempt that fails
//! without writing (a bad message, an injected fault) keeps its meaning, and a message waiting
//! for its next attempt holds nothing.
//!
//! A write in a transaction does not wait for Kafka's acknowledgement (the commit flushes
//! and fails if any record failed), so a message costs no broker round trip of its own. A
//! queued record that fails *spoils* the open transaction: the worker aborts it and starts
//! over from the last committed offsets ([`Transactions::rewind`]), the way a Kafka Streams
//! task does. Holds never nest: each piece of work takes one.
//!
//! A leaf module like [`crate::offsets`]: the producer, the handlers and the delivery loop
//! all use it; the commit itself lives in `delivery::transact`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::{Notify, OwnedRwLockReadGuard, OwnedRwLockWriteGuard, RwLock};
use tokio_util::sync::CancellationToken;

/// Messages (pieces of work) per transaction at most before a commit is due at once: with
/// ~300-byte orders this keeps a transaction's records to a few MiB, and at 30,000 messages a
/// second the commit interval, not this bound, usually decides.
pub const MAX_WORK_PER_TRANSACTION: u32 = 5_000;

/// The open transaction's bookkeeping, shared by everything that writes.
#[derive(Debug)]
pub struct Transactions {
    hold: Arc<RwLock<()>>,
    /// Offsets stored since the last commit: `(topic, partition)` → next offset to read.
    positions: Mutex<HashMap<(String, i32), i64>>,
    /// Something was produced since the last commit.
    written: AtomicBool,
    /// Work entered since the last commit (the count bound).
    entered: AtomicU32,
    /// Wakes the committer when the count bound is reached.
    due: Notify,
    /// Why the open transaction cannot be committed, once it cannot.
    spoiled: Mutex<Option<String>>,
    /// Cancelled when the transaction is spoiled: the worker stops and starts over.
    rewind: CancellationToken,
}

/// A shared hold on the open transaction; the commit waits until every hold is dropped.
#[derive(Debug)]
pub struct Entered(#[allow(dead_code)] OwnedRwLockReadGuard<()>);

/// The exclusive hold a commit (or abort) works under.
pub struct Exclusive(#[allow(dead_code)] OwnedRwLockWriteGuard<()>);

impl Default for Transactions {
    fn default() -> Self {
        Transactions {
            hold: Arc::new(RwLock::new(())),
            positions: Mutex::new(HashMap::new()),
            written: AtomicBool::new(false),
            entered: AtomicU32::new(0),
            due: Notify::new(),
            spoiled: Mutex::new(None),
            rewind: CancellationToken::new(),
        }
    }
}

impl Transactions {
    /// Waits for the open transaction (not a commit in progress) and holds it.
    pub async fn enter(&self) -> Entered {
        let held = Entered(self.hold.clone().read_owned().await);
        if self.entered.fetch_add(1, Ordering::Relaxed) + 1 == MAX_WORK_PER_TRANSACTION {
            self.due.notify_one();
        }
        held
    }

    /// Takes the transaction exclusively (waits for every [`Entered`] to be dropped).
    pub async fn exclusive(&self) -> Exclusive {
        Exclusive(self.hold.clone().write_owned().await)
    }

    /// Fires when [`MAX_WORK_PER_TRANSACTION`] pieces of work entered the open transaction.
    pub async fn due(&self) {
        self.due.notified().await;
    }

    /// Records the stored offset of a partition, to be committed with the transaction.
    pub fn store(&self, topic: &str, partition: i32, next: i64) {
        lock(&self.positions).insert((topic.to_owned(), partition), next);
    }

    /// A record was produced in the open transaction.
    pub fn wrote(&self) {
        self.written.store(true, Ordering::Relaxed);
    }

    /// The open transaction cannot be committed; the first reason is kept and logged.
    pub fn spoil(&self, why: impl Into<String>) {
        let mut spoiled = lock(&self.spoiled);
        if spoiled.is_none() {
            let why = why.into();
            tracing::error!(
                reason = %why,
                "the open transaction cannot commit: aborting it and starting over from the last committed offsets"
            );
            *spoiled = Some(why);
            self.rewind.cancel();
        }
    }

    /// Why the open transaction was spoiled, if it was.
    pub fn spoiled(&self) -> Option<String> {
        lock(&self.spoiled).clone()
    }

    /// Cancelled once the open transaction is spoiled.
    pub fn rewind(&self) -> &CancellationToken {
        &self.rewind
    }

    /// What the commit under `_exclusive` must carry: the stored offsets (taken) and whether
    /// anything was written. Resets the count bound.
    pub fn take(&self, _exclusive: &Exclusive) -> (HashMap<(String, i32), i64>, bool) {
        self.entered.store(0, Ordering::Relaxed);
        (
            std::mem::take(&mut *lock(&self.positions)),
            self.written.swap(false, Ordering::Relaxed),
        )
    }
}

/// Holds the open transaction `txn` for one piece of work that writes (an attempt and the
/// store of its offset, a write and its store); at once and `None` at least once (no
/// transaction). Holds never nest: a commit waiting for one would wait for the other forever.
pub async fn hold(txn: Option<&Arc<Transactions>>) -> Option<Entered> {
    match txn {
        Some(t) => Some(t.enter().await),
        None => None,
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn a_commit_waits_for_the_work_in_progress_and_holds_back_new_work() {
        let t = Arc::new(Transactions::default());
        let work = t.enter().await;
        let committing = tokio::spawn({
            let t = t.clone();
            async move {
                let x = t.exclusive().await;
                tokio::time::sleep(Duration::from_millis(50)).await;
                drop(x);
            }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!committing.is_finished(), "the commit waits for the work");
        let later = tokio::spawn({
            let t = t.clone();
            async move {
                let _e = t.enter().await;
            }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(
            !later.is_finished(),
            "new work waits behind the waiting commit"
        );
        drop(work);
        committing.await.unwrap();
        later.await.unwrap();
    }

    #[test]
    fn the_first_reason_a_transaction_is_spoiled_is_kept_and_calls_for_a_rewind() {
        let t = Transactions::default();
        assert_eq!(t.spoiled(), None);
        assert!(!t.rewind().is_cancelled());
        t.spoil("a write to out failed: broker down");
        t.spoil("a write to out was cancelled");
        assert!(t.rewind().is_cancelled());
        assert_eq!(
            t.spoiled().as_deref(),
            Some("a write to out failed: broker down")
        );
    }

    #[tokio::test]
    async fn a_commit_takes_the_stored_offsets_once_and_the_count_bound_calls_for_it() {
        let t = Arc::new(Transactions::default());
        t.store("in", 0, 5);
        t.store("in", 0, 7);
        t.store("in", 1, 2);
        let x = t.exclusive().await;
        let (positions, written) = t.take(&x);
        assert_eq!(positions.len(), 2);
        assert_eq!(positions[&("in".to_owned(), 0)], 7);
        assert!(!written);
        assert!(t.take(&x).0.is_empty());
        drop(x);
        let due = tokio::spawn({
            let t = t.clone();
            async move { t.due().await }
        });
        tokio::task::yield_now().await;
        for _ in 0..MAX_WORK_PER_TRANSACTION {
            drop(t.enter().await);
        }
        tokio::time::timeout(Duration::from_secs(1), due)
            .await
            .expect("due after the count bound")
            .unwrap();
    }
}
