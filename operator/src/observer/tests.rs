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

fn commits(highs: &[i64], caught_up: bool, pods: Option<PodHistory>) -> Commits {
    let marks = marks(highs);
    Commits {
        offsets: marks.keys().map(|p| (p.clone(), Some(0))).collect(),
        ends: marks.iter().map(|(p, m)| (p.clone(), m.high)).collect(),
        caught_up,
        pods,
        read_at: Instant::now(),
    }
}

fn pods(generation: i64, quiet: bool) -> Option<PodHistory> {
    Some(PodHistory {
        uid: "u1".to_owned(),
        generation,
        quiet,
    })
}

#[test]
fn commits_are_reused_only_while_they_cannot_have_moved() {
    // No pod then or since (quiet, unchanged Deployment): new records change the lag, not the
    // commits.
    let quiet = pods(4, true);
    assert!(commits(&[5, 5], false, quiet.clone()).still_valid(quiet.as_ref(), &marks(&[9, 5])));
    // A pod exists now, or existed then (running or terminating).
    assert!(
        !commits(&[5, 5], false, quiet.clone())
            .still_valid(pods(5, false).as_ref(), &marks(&[5, 5]))
    );
    assert!(
        !commits(&[5, 5], false, pods(4, false))
            .still_valid(pods(4, false).as_ref(), &marks(&[5, 5]))
    );
    // Quiet at both reads, but the generation moved: a pod may have lived in between (woken
    // from zero and scaled away, or paused, between two rounds).
    assert!(
        !commits(&[5, 5], false, quiet.clone())
            .still_valid(pods(6, true).as_ref(), &marks(&[5, 5]))
    );
    // The Deployment was recreated: its generation starts again, its uid differs.
    let recreated = Some(PodHistory {
        uid: "u2".to_owned(),
        generation: 4,
        quiet: true,
    });
    assert!(
        !commits(&[5, 5], false, quiet.clone()).still_valid(recreated.as_ref(), &marks(&[5, 5]))
    );
    // Never seen: nothing proves anything.
    assert!(!commits(&[5, 5], false, None).still_valid(None, &marks(&[5, 5])));
    // Caught up with workers: valid until a record arrives.
    let busy = pods(7, false);
    assert!(commits(&[5, 5], true, busy.clone()).still_valid(busy.as_ref(), &marks(&[5, 5])));
    assert!(!commits(&[5, 5], true, busy.clone()).still_valid(busy.as_ref(), &marks(&[5, 6])));
    // A partition was added: read again.
    assert!(
        !commits(&[5, 5], false, quiet.clone()).still_valid(quiet.as_ref(), &marks(&[5, 5, 0]))
    );
}

#[test]
fn a_deployment_is_quiet_only_when_it_wants_and_counts_no_pod_terminating_ones_included() {
    let deployment =
        |replicas: i32, observed: i64, counted: Option<i32>, terminating: Option<i32>| {
            serde_json::from_value::<Deployment>(serde_json::json!({
                "metadata": { "name": "d", "uid": "u1", "generation": 3 },
                "spec": {
                    "replicas": replicas,
                    "selector": {},
                    "template": {}
                },
                "status": {
                    "observedGeneration": observed,
                    "replicas": counted,
                    "terminatingReplicas": terminating
                }
            }))
            .unwrap()
        };
    let quiet = |d: Deployment| PodHistory::of(&d).unwrap().quiet;
    assert!(quiet(deployment(0, 3, None, Some(0))));
    assert!(!quiet(deployment(1, 3, Some(1), Some(0))), "wants a pod");
    assert!(
        !quiet(deployment(0, 2, None, Some(0))),
        "scale-down not acted on yet"
    );
    assert!(
        !quiet(deployment(0, 3, Some(1), Some(0))),
        "a pod still counted"
    );
    assert!(
        !quiet(deployment(0, 3, None, Some(1))),
        "a pod still terminating"
    );
    assert!(
        !quiet(deployment(0, 3, None, None)),
        "terminating pods not counted by this API server"
    );
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
