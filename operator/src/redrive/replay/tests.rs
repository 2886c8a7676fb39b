use super::*;

#[test]
fn counts_survive_the_offset_metadata_round_trip() {
    let counts = Counts {
        scanned: 10,
        replayed: 4,
        filter: 3,
        max_redrives: 2,
        invalid: 1,
    };
    assert_eq!(Counts::decode(&counts.encode()), Some(counts));
    assert_eq!(Counts::decode(""), None);
    assert_eq!(Counts::decode("v1 1 2"), None);
}

#[test]
fn the_totals_add_up_the_partitions_and_the_skip_reasons() {
    let mut status = DeadLetterRedriveStatus::default();
    let one = Counts {
        scanned: 5,
        replayed: 2,
        filter: 1,
        max_redrives: 1,
        invalid: 0,
    };
    let two = Counts {
        scanned: 3,
        replayed: 1,
        filter: 0,
        max_redrives: 0,
        invalid: 1,
    };
    report(&mut status, &[(0, one), (1, two)].into_iter().collect());
    assert_eq!((status.scanned, status.replayed, status.skipped), (8, 3, 3));
    assert_eq!(
        status.skipped_by,
        SkippedBy {
            filter: 1,
            max_redrives: 1,
            invalid: 1
        }
    );
}
