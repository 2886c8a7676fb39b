use super::*;
use std::time::Duration;

#[test]
fn a_message_counts_in_flight_until_its_guard_drops() {
    let gauge = Gauge::default();
    let guard = InFlight::start(&gauge);
    assert_eq!(gauge.get(), 1);
    drop(guard);
    assert_eq!(gauge.get(), 0);
}

#[derive(Default)]
struct Calls(Mutex<Vec<bool>>);
impl OffsetSink for Calls {
    fn store(&self, _: &str, _: i32, _: i64) -> Result<(), String> {
        Ok(())
    }
}
impl PartitionControl for Calls {
    fn set_paused(&self, _: &str, _: i32, paused: bool) {
        self.0.lock().unwrap().push(paused);
    }
}

#[test]
fn a_partition_stays_paused_until_every_reason_is_gone() {
    let calls = Arc::new(Calls::default());
    let gate = PauseGate::new("t", 0, calls.clone());
    gate.backpressure(true);
    gate.write_blocked(true);
    gate.backpressure(false);
    assert_eq!(
        *calls.0.lock().unwrap(),
        vec![true],
        "still blocked by the DLQ"
    );
    gate.write_blocked(false);
    gate.write_blocked(false);
    assert_eq!(*calls.0.lock().unwrap(), vec![true, false]);
}

#[tokio::test]
async fn a_message_of_a_key_waits_for_the_one_before_it_and_other_keys_do_not() {
    let mut lanes = KeyLanes::default();
    let first = lanes.join(Some(b"k"));
    assert!(first.after.is_none(), "the first of a key runs at once");
    let mut second = lanes.join(Some(b"k"));
    let other = lanes.join(Some(b"other"));
    assert!(other.after.is_none(), "another key does not wait");
    let unkeyed = lanes.join(None);
    assert!(unkeyed.after.is_none() && unkeyed.done.is_none());
    let mut waiting = second.after.take().expect("the second waits");
    assert!(
        matches!(waiting.try_recv(), Err(oneshot::error::TryRecvError::Empty)),
        "still waiting while the first runs"
    );
    drop(first);
    assert!(
        matches!(
            waiting.try_recv(),
            Err(oneshot::error::TryRecvError::Closed)
        ),
        "its turn once the first is done"
    );
}

#[tokio::test]
async fn finished_lanes_are_swept_and_running_ones_kept() {
    let mut lanes = KeyLanes::default();
    let mut kept = Vec::new();
    for i in 0..=MIN_LANE_SWEEP {
        let turn = lanes.join(Some(format!("k{i}").as_bytes()));
        if i % 2 == 0 {
            kept.push(turn);
        }
    }
    // The join past the threshold swept the finished half (the odd keys' turns dropped).
    assert_eq!(lanes.len(), kept.len());
    let next = lanes.join(Some(b"k0"));
    assert!(next.after.is_some(), "a running lane survives the sweep");
}

/// A handle over a queue the test reads itself, with no task behind it.
fn handle_of(calls: Arc<Calls>) -> (PartitionHandle, mpsc::Receiver<OwnedMessage>) {
    let (tx, rx) = mpsc::channel(PARTITION_QUEUE);
    let handle = PartitionHandle {
        tx,
        overflow: VecDeque::new(),
        offsets: Arc::new(Mutex::new(PartitionOffsets::new("t", 0))),
        gate: Arc::new(PauseGate::new("t", 0, calls)),
        soft: CancellationToken::new(),
        hard: CancellationToken::new(),
        join: tokio::spawn(async {}),
    };
    (handle, rx)
}

fn message(offset: i64) -> OwnedMessage {
    OwnedMessage::new(
        Some(b"{}".to_vec()),
        None,
        "t".to_owned(),
        rdkafka::Timestamp::NotAvailable,
        0,
        offset,
        None,
    )
}

#[tokio::test]
async fn a_full_queue_gives_the_message_back_and_room_comes_only_after_a_batch_is_taken() {
    let calls = Arc::new(Calls::default());
    let (mut handle, mut rx) = handle_of(calls.clone());
    for offset in 0..PARTITION_QUEUE {
        assert!(matches!(
            handle.dispatch(message(offset as i64)),
            Dispatch::Queued
        ));
    }
    let Dispatch::Full(back) = handle.dispatch(message(PARTITION_QUEUE as i64)) else {
        panic!("a full queue must give the message back");
    };
    assert_eq!(back.offset(), PARTITION_QUEUE as i64);
    assert!(calls.0.lock().unwrap().is_empty(), "not paused yet");
    let room = tokio::spawn(handle.room());
    for _ in 1..ROOM {
        rx.recv().await.unwrap();
    }
    tokio::task::yield_now().await;
    assert!(
        !room.is_finished(),
        "no wake-up for fewer than ROOM free slots"
    );
    rx.recv().await.unwrap();
    tokio::time::timeout(Duration::from_secs(5), room)
        .await
        .expect("room once ROOM slots are free")
        .unwrap();
    assert!(matches!(handle.dispatch(back), Dispatch::Queued));
}

#[tokio::test]
async fn a_message_that_found_no_room_pauses_the_partition_and_the_next_ones_queue_behind_it() {
    let calls = Arc::new(Calls::default());
    let (mut handle, mut rx) = handle_of(calls.clone());
    for offset in 0..PARTITION_QUEUE {
        handle.dispatch(message(offset as i64));
    }
    let Dispatch::Full(back) = handle.dispatch(message(PARTITION_QUEUE as i64)) else {
        panic!("full");
    };
    handle.overflow_and_pause(back);
    assert_eq!(*calls.0.lock().unwrap(), vec![true], "paused");
    // Even with room again, a later message may not overtake the buffered one.
    rx.recv().await.unwrap();
    assert!(matches!(
        handle.dispatch(message(PARTITION_QUEUE as i64 + 1)),
        Dispatch::Queued
    ));
    assert_eq!(handle.overflow.len(), 2);
    for _ in 1..PARTITION_QUEUE {
        rx.recv().await.unwrap();
    }
    handle.drain_overflow();
    assert_eq!(
        *calls.0.lock().unwrap(),
        vec![true, false],
        "resumed once drained"
    );
    let order: Vec<i64> = [rx.recv().await.unwrap(), rx.recv().await.unwrap()]
        .iter()
        .map(|m| m.offset())
        .collect();
    assert_eq!(
        order,
        vec![PARTITION_QUEUE as i64, PARTITION_QUEUE as i64 + 1]
    );
}
