use super::*;

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
