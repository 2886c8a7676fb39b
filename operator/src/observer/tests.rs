use super::status::ObserverPart;
use super::*;

fn marks(highs: &[i64]) -> BTreeMap<Partition, Watermarks> {
    highs
        .iter()
        .enumerate()
        .map(|(i, high)| {
            (
                ("t".to_owned(), i32::try_from(i).unwrap()),
                Watermarks {
                    low: 0,
                    high: *high,
                },
            )
        })
        .collect()
}

fn commits(highs: &[i64], caught_up: bool, pods: i32) -> Commits {
    let marks = marks(highs);
    Commits {
        offsets: marks.keys().map(|p| (p.clone(), Some(0))).collect(),
        ends: marks.iter().map(|(p, m)| (p.clone(), m.high)).collect(),
        caught_up,
        pods,
        read_at: Instant::now(),
    }
}

#[test]
fn commits_are_reused_only_while_they_cannot_have_moved() {
    // No pods then or now: new records change the lag, not the commits.
    assert!(commits(&[5, 5], false, 0).still_valid(0, &marks(&[9, 5])));
    // A pod exists now (or existed then): it may have committed.
    assert!(!commits(&[5, 5], false, 0).still_valid(1, &marks(&[5, 5])));
    assert!(!commits(&[5, 5], false, 2).still_valid(0, &marks(&[5, 5])));
    // Caught up with workers: valid until a record arrives.
    assert!(commits(&[5, 5], true, 2).still_valid(2, &marks(&[5, 5])));
    assert!(!commits(&[5, 5], true, 2).still_valid(2, &marks(&[5, 6])));
    // A partition was added: read again.
    assert!(!commits(&[5, 5], false, 0).still_valid(0, &marks(&[5, 5, 0])));
}

#[test]
fn an_unchanged_measurement_is_rewritten_only_when_stale() {
    let lag = |total, at: &str| ObserverPart {
        lag: Some(LagStatus {
            total: Some(total),
            measured_at: Some(at.to_owned()),
            ..Default::default()
        }),
        ..Default::default()
    };
    assert!(lag(5, "t1").same_as(&lag(5, "t0"), false));
    assert!(!lag(5, "t1").same_as(&lag(5, "t0"), true));
    assert!(!lag(6, "t1").same_as(&lag(5, "t0"), false));
}
