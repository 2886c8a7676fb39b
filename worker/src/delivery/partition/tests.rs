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
