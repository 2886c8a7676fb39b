//! The Kafka ACLs an EventConsumer's principal needs, defined once: the README's permission
//! table is rendered from these lists ([`readme_table`], checked by a test), and the tests on
//! the secured local broker grant exactly these and nothing else, then take each away.
//!
//! Kafka implies `Describe` from `Read` and `Write` (and `IdempotentWrite` on the cluster from
//! `Write` on any topic, since Kafka 3.0), so the lists hold only what is needed beyond that.

use std::fmt;

/// `group.id` of the operator's dead-letter counter, which only assigns partitions and never
/// joins or commits.
pub const DLQ_SCAN_GROUP: &str = "eventconsumer-operator-dlq-scan";
/// Prefix of a redrive's consumer group and transactional id (`eventconsumer-redrive.<uid>`).
pub const REDRIVE_ID_PREFIX: &str = "eventconsumer-redrive.";

/// A Kafka resource type an ACL can name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ResourceType {
    Topic,
    Group,
    Cluster,
    TransactionalId,
}

/// How an ACL's resource name matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Pattern {
    Literal,
    Prefixed,
}

/// An ACL operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Operation {
    Read,
    Write,
    Create,
    Describe,
    IdempotentWrite,
}

impl Operation {
    /// The name Kafka's tools and error messages use (`kafka-acls --operation Read`).
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Read => "Read",
            Operation::Write => "Write",
            Operation::Create => "Create",
            Operation::Describe => "Describe",
            Operation::IdempotentWrite => "IdempotentWrite",
        }
    }
}

impl ResourceType {
    /// The word the README and error messages use.
    pub fn as_str(self) -> &'static str {
        match self {
            ResourceType::Topic => "topic",
            ResourceType::Group => "group",
            ResourceType::Cluster => "cluster",
            ResourceType::TransactionalId => "transactional id",
        }
    }
}

/// One allowed operation on one resource (or, prefixed, on every resource whose name starts
/// with `name`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Acl {
    pub resource: ResourceType,
    pub name: String,
    pub pattern: Pattern,
    pub operation: Operation,
}

impl Acl {
    fn literal(resource: ResourceType, name: &str, operation: Operation) -> Acl {
        Acl {
            resource,
            name: name.to_owned(),
            pattern: Pattern::Literal,
            operation,
        }
    }

    fn prefixed(resource: ResourceType, prefix: &str, operation: Operation) -> Acl {
        Acl {
            resource,
            name: prefix.to_owned(),
            pattern: Pattern::Prefixed,
            operation,
        }
    }
}

impl fmt::Display for Acl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let pattern = match self.pattern {
            Pattern::Literal => "",
            Pattern::Prefixed => " (prefixed)",
        };
        write!(
            f,
            "{} on {} {}{pattern}",
            self.operation.as_str(),
            self.resource.as_str(),
            self.name
        )
    }
}

/// The names one EventConsumer's ACLs are about.
#[derive(Debug, Clone)]
pub struct Names<'a> {
    pub topics: &'a [String],
    pub group: &'a str,
    /// The handler's output topic, if it has one.
    pub output: Option<&'a str>,
    pub dead_letter: &'a str,
    /// `retryTopics` mode: the group's retry topics `<group>.retry.<n>` are read and written.
    pub retry_topics: bool,
    /// `exactlyOnce` semantics: the workers' transactional ids `<group>.tx.<pod>` are used.
    pub exactly_once: bool,
}

/// What the workers need: join and commit in the group, read the source topics, write the
/// output and dead-letter topics (and read and write the retry topics in `retryTopics` mode).
pub fn worker(n: &Names<'_>) -> Vec<Acl> {
    use Operation::*;
    use ResourceType::*;
    let mut acls = vec![Acl::literal(Group, n.group, Read)];
    acls.extend(n.topics.iter().map(|t| Acl::literal(Topic, t, Read)));
    if let Some(output) = n.output {
        acls.push(Acl::literal(Topic, output, Write));
    }
    acls.push(Acl::literal(Topic, n.dead_letter, Write));
    if n.retry_topics {
        let prefix = crate::retry_topic_prefix(n.group);
        acls.push(Acl::prefixed(Topic, &prefix, Read));
        acls.push(Acl::prefixed(Topic, &prefix, Write));
    }
    if n.exactly_once {
        // Write implies the Describe that `init_transactions` needs.
        acls.push(Acl::prefixed(
            TransactionalId,
            &crate::semantics::transactional_id_prefix(n.group),
            Write,
        ));
    }
    acls
}

/// What the operator needs besides [`worker`] to measure lag and dead letters (and create the
/// retry topics in `retryTopics` mode); it uses the EventConsumer's own credentials.
pub fn operator(n: &Names<'_>) -> Vec<Acl> {
    use Operation::*;
    use ResourceType::*;
    let mut acls = vec![
        Acl::literal(Topic, n.dead_letter, Read),
        Acl::literal(Group, DLQ_SCAN_GROUP, Read),
    ];
    if n.retry_topics {
        acls.push(Acl::prefixed(
            Topic,
            &crate::retry_topic_prefix(n.group),
            Create,
        ));
    }
    acls
}

/// What a DeadLetterRedrive needs besides [`worker`] and [`operator`]: replay the dead
/// letters to the source topics in transactions under its own group and transactional id.
pub fn redrive(n: &Names<'_>) -> Vec<Acl> {
    let mut acls = vec![redrive_read(n.dead_letter)];
    acls.extend(n.topics.iter().map(|t| redrive_write(t)));
    acls.extend([redrive_group(), redrive_transactional_id()]);
    acls
}

/// A redrive reads the dead letters.
pub fn redrive_read(dead_letter_topic: &str) -> Acl {
    Acl::literal(ResourceType::Topic, dead_letter_topic, Operation::Read)
}

/// A redrive writes the replayed records back to their source topic.
pub fn redrive_write(source_topic: &str) -> Acl {
    Acl::literal(ResourceType::Topic, source_topic, Operation::Write)
}

/// A redrive commits its position in its own group, `eventconsumer-redrive.<uid>`.
pub fn redrive_group() -> Acl {
    Acl::prefixed(ResourceType::Group, REDRIVE_ID_PREFIX, Operation::Read)
}

/// A redrive's transactions use its own transactional id, `eventconsumer-redrive.<uid>`
/// (Write implies the Describe that `init_transactions` needs).
pub fn redrive_transactional_id() -> Acl {
    Acl::prefixed(
        ResourceType::TransactionalId,
        REDRIVE_ID_PREFIX,
        Operation::Write,
    )
}

/// What the gateway needs: write the orders and events topics it publishes to.
pub fn gateway(orders_topic: &str, events_topic: &str) -> Vec<Acl> {
    vec![
        Acl::literal(ResourceType::Topic, orders_topic, Operation::Write),
        Acl::literal(ResourceType::Topic, events_topic, Operation::Write),
    ]
}

/// The README's permission table, for an EventConsumer named by placeholders.
pub fn readme_table() -> String {
    let topics = ["<topic>".to_owned()];
    let names = Names {
        topics: &topics,
        group: "<group>",
        output: Some("<output topic>"),
        dead_letter: "<dead-letter topic>",
        retry_topics: true,
        exactly_once: true,
    };
    let mut out = String::from("| who | operation | resource | name |\n|---|---|---|---|\n");
    for (who, acls) in [
        ("workers", worker(&names)),
        (
            "operator (lag, dead letters, retry topics)",
            operator(&names),
        ),
        ("operator (DeadLetterRedrive)", redrive(&names)),
        ("gateway", gateway("<orders topic>", "<events topic>")),
    ] {
        for acl in acls {
            let name = match acl.pattern {
                Pattern::Literal => format!("`{}`", acl.name),
                Pattern::Prefixed => format!("`{}*` (prefixed)", acl.name),
            };
            out.push_str(&format!(
                "| {who} | {} | {} | {name} |\n",
                acl.operation.as_str(),
                acl.resource.as_str()
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_readme_lists_exactly_the_acls_the_tests_grant() {
        let readme = include_str!("../../README.md");
        let table = readme_table();
        assert!(
            readme.contains(&table),
            "README.md's Kafka ACL table is not the one contract/src/acl.rs defines; put this \
             table in it:\n{table}"
        );
    }

    #[test]
    fn retry_topics_add_read_write_and_create_on_the_prefix() {
        let topics = ["in".to_owned()];
        let mut names = Names {
            topics: &topics,
            group: "g",
            output: None,
            dead_letter: "in.dlq",
            retry_topics: false,
            exactly_once: false,
        };
        let plain = worker(&names).len() + operator(&names).len();
        names.retry_topics = true;
        let with_retry: Vec<String> = worker(&names)
            .into_iter()
            .chain(operator(&names))
            .map(|a| a.to_string())
            .collect();
        assert_eq!(with_retry.len(), plain + 3, "{with_retry:?}");
        assert!(with_retry.contains(&"Create on topic g.retry. (prefixed)".to_owned()));
    }

    #[test]
    fn exactly_once_adds_write_on_the_groups_transactional_ids_and_nothing_for_the_operator() {
        let topics = ["in".to_owned()];
        let mut names = Names {
            topics: &topics,
            group: "g",
            output: Some("out"),
            dead_letter: "in.dlq",
            retry_topics: false,
            exactly_once: false,
        };
        let (workers, operator_acls) = (worker(&names).len(), operator(&names).len());
        names.exactly_once = true;
        let with: Vec<String> = worker(&names).iter().map(|a| a.to_string()).collect();
        assert_eq!(with.len(), workers + 1, "{with:?}");
        assert!(
            with.contains(&"Write on transactional id g.tx. (prefixed)".to_owned()),
            "{with:?}"
        );
        assert_eq!(operator(&names).len(), operator_acls);
        assert!(crate::semantics::transactional_id("g", "pod-1").starts_with("g.tx."));
    }
}
