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

#[test]
fn a_refusal_by_the_brokers_blocks_as_an_authorization_failure_naming_the_acl_it_needs() {
    let refused = |code, needs: Vec<Acl>| ReplayError::Kafka {
        action: "reading the committed offsets of eventconsumer-redrive.u".into(),
        source: KafkaError::MetadataFetch(code),
        needs: needs.into(),
    };
    let group = refused(
        RDKafkaErrorCode::GroupAuthorizationFailed,
        vec![acl::redrive_group(), acl::redrive_transactional_id()],
    );
    assert_eq!(group.reason(), "KafkaAuthorizationFailed");
    assert!(
        group.to_string().ends_with(
            "; an ACL is missing: this principal needs Read on group eventconsumer-redrive. (prefixed)"
        ),
        "{group}"
    );
    let unnamed = refused(
        RDKafkaErrorCode::TopicAuthorizationFailed,
        vec![acl::redrive_group()],
    );
    assert!(
        unnamed
            .to_string()
            .ends_with("; an ACL is missing (README, Kafka ACLs)"),
        "{unnamed}"
    );
    let password = refused(RDKafkaErrorCode::SaslAuthenticationFailed, Vec::new());
    assert_eq!(password.reason(), "KafkaAuthenticationFailed");
    let outage = refused(
        RDKafkaErrorCode::BrokerTransportFailure,
        vec![acl::redrive_group()],
    );
    assert_eq!(outage.reason(), "KafkaUnavailable");
    assert!(!outage.to_string().contains("ACL"), "{outage}");
}
