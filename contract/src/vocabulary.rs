//! The enumerated settings, each defined once with the names the CRD, the environment and the
//! worker's flags spell them with. The `schemars` and `clap` features add the derives the operator
//! (CRD schema) and the worker (flags) need, so each side reads the same enum.
//!
//! Variants carry plain comments, not doc comments: doc comments would turn the CRD schema's
//! `enum` into a non-structural `oneOf`. Help texts for `--help` are given as `value(help)`.

/// Declares an enumerated setting: the enum with one serde (and clap) name per variant, and
/// `NAMES`/`as_str` generated from the same literals.
macro_rules! vocabulary {
    (
        $(#[$meta:meta])*
        pub enum $name:ident {
            $( $(#[$vmeta:meta])* $variant:ident = $text:literal, )+
        }
    ) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
        #[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
        #[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
        pub enum $name {
            $(
                $(#[$vmeta])*
                #[serde(rename = $text)]
                #[cfg_attr(feature = "clap", value(name = $text))]
                $variant,
            )+
        }

        impl $name {
            /// Every name, in declaration order (the order of the CRD's `enum` and of `--help`).
            pub const NAMES: &'static [&'static str] = &[$($text),+];

            /// The name, as in the manifest and the environment.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $( $name::$variant => $text, )+
                }
            }
        }
    };
}

vocabulary! {
    /// The handler a worker runs (`spec.handler` / `EC_HANDLER`).
    pub enum Handler {
        // Orders from `order.placed`: validate, then one action.
        #[cfg_attr(feature = "clap", value(help = "`order.placed` consumers: inventory, payment, email or analytics (`--action`)"))]
        Order = "order",
        // Page-view and event counts in tumbling windows.
        #[cfg_attr(feature = "clap", value(help = "Tumbling-window counts of user events"))]
        Analytics = "analytics",
        // One stage of the video pipeline.
        #[cfg_attr(feature = "clap", value(help = "The video chain: transcode or publish (`--stage`)"))]
        Video = "video",
    }
}

vocabulary! {
    /// What the `order` handler does with a valid order (`spec.order.action` / `EC_ORDER_ACTION`).
    pub enum OrderAction {
        Inventory = "inventory",
        Payment = "payment",
        Email = "email",
        Analytics = "analytics",
    }
}

vocabulary! {
    /// A stage of the video pipeline (`spec.video.stage` / `EC_VIDEO_STAGE`).
    pub enum VideoStage {
        Transcode = "transcode",
        Publish = "publish",
    }
}

vocabulary! {
    /// Where a consumer group without committed offsets starts (`spec.kafka.initialOffset` /
    /// `EC_INITIAL_OFFSET`).
    #[derive(Default)]
    pub enum InitialOffset {
        #[default]
        Earliest = "earliest",
        Latest = "latest",
    }
}

vocabulary! {
    /// How a failed message waits for its next attempt (`spec.delivery.mode` /
    /// `EC_DELIVERY_MODE`).
    #[derive(Default)]
    pub enum DeliveryMode {
        // Retries wait in the worker, holding the message's partition: per-key order is kept.
        #[default]
        #[cfg_attr(feature = "clap", value(help = "Retry in-process with backoff; the message holds its partition (per-key order kept)"))]
        Blocking = "blocking",
        // Retries wait in retry topics; the partition moves on; per-key order is not kept.
        #[cfg_attr(feature = "clap", value(help = "Park the message in the group's retry topics; the partition moves on (per-key order is not kept)"))]
        RetryTopics = "retryTopics",
    }
}

vocabulary! {
    /// Which messages a worker may process at the same time (`spec.delivery.ordering` /
    /// `EC_ORDERING`). In every ordering an offset is committed only once every message
    /// below it in its partition is finished.
    #[derive(Default)]
    pub enum Ordering {
        // One message at a time per partition: per-key order kept, concurrency = partitions.
        #[default]
        #[cfg_attr(feature = "clap", value(help = "One message at a time per partition (per-key order kept)"))]
        Partition = "partition",
        // Messages of one key in offset order, different keys at the same time.
        #[cfg_attr(feature = "clap", value(help = "Messages with the same key in offset order, different keys concurrently (--max-in-flight)"))]
        Key = "key",
        // Any messages at the same time, up to maxInFlight; no order kept.
        #[cfg_attr(feature = "clap", value(help = "All messages concurrently up to --max-in-flight (no order kept)"))]
        Unordered = "none",
    }
}

vocabulary! {
    /// What a crash may do to the outputs (`spec.delivery.semantics` / `EC_SEMANTICS`).
    #[derive(Default)]
    pub enum Semantics {
        // Offsets committed after the work: after a crash recent messages are handled again.
        #[default]
        #[cfg_attr(feature = "clap", value(help = "Commit offsets after the work; after a crash the last uncommitted messages are handled again"))]
        AtLeastOnce = "atLeastOnce",
        // Outputs, dead letters, retry records and offsets in one Kafka transaction.
        #[cfg_attr(feature = "clap", value(help = "Outputs, dead letters, retry records and offsets in Kafka transactions (readers use read_committed)"))]
        ExactlyOnce = "exactlyOnce",
    }
}

vocabulary! {
    /// SASL mechanism (`spec.kafka.sasl.mechanism` / `EC_SASL_MECHANISM`), as librdkafka
    /// spells it.
    pub enum SaslMechanism {
        Plain = "PLAIN",
        ScramSha256 = "SCRAM-SHA-256",
        ScramSha512 = "SCRAM-SHA-512",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Pins the serde names (the CRD's `enum`, the environment's values) of every setting.
    #[test]
    fn the_serde_names_are_the_contract_names() {
        fn names<T: serde::Serialize + Copy>(all: &[T]) -> Vec<String> {
            all.iter()
                .map(|v| {
                    serde_json::to_value(v)
                        .unwrap()
                        .as_str()
                        .unwrap()
                        .to_owned()
                })
                .collect()
        }
        use Handler as H;
        assert_eq!(names(&[H::Order, H::Analytics, H::Video]), Handler::NAMES);
        assert_eq!(Handler::NAMES, ["order", "analytics", "video"]);
        use OrderAction as O;
        assert_eq!(
            names(&[O::Inventory, O::Payment, O::Email, O::Analytics]),
            ["inventory", "payment", "email", "analytics"]
        );
        assert_eq!(
            names(&[VideoStage::Transcode, VideoStage::Publish]),
            ["transcode", "publish"]
        );
        assert_eq!(
            names(&[InitialOffset::Earliest, InitialOffset::Latest]),
            ["earliest", "latest"]
        );
        assert_eq!(InitialOffset::default(), InitialOffset::Earliest);
        assert_eq!(
            names(&[DeliveryMode::Blocking, DeliveryMode::RetryTopics]),
            ["blocking", "retryTopics"]
        );
        assert_eq!(DeliveryMode::default(), DeliveryMode::Blocking);
        use Ordering as Or;
        assert_eq!(
            names(&[Or::Partition, Or::Key, Or::Unordered]),
            ["partition", "key", "none"]
        );
        assert_eq!(Or::default(), Or::Partition);
        assert_eq!(
            names(&[Semantics::AtLeastOnce, Semantics::ExactlyOnce]),
            ["atLeastOnce", "exactlyOnce"]
        );
        assert_eq!(Semantics::default(), Semantics::AtLeastOnce);
        use SaslMechanism as S;
        assert_eq!(
            names(&[S::Plain, S::ScramSha256, S::ScramSha512]),
            ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]
        );
        assert_eq!(S::ScramSha512.as_str(), "SCRAM-SHA-512");
        let parsed: DeliveryMode = serde_json::from_str("\"retryTopics\"").unwrap();
        assert_eq!(parsed, DeliveryMode::RetryTopics);
    }
}
