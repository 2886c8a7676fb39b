//! Objects shared by the unit tests.

use crate::config::Settings;
use crate::crd::{
    DeliverySpec, EventConsumer, EventConsumerSpec, Handler, InitialOffset, KafkaSpec, OrderAction,
    OrderOptions,
};

pub fn settings() -> Settings {
    Settings {
        worker_image: "eventconsumer/worker:test".to_owned(),
        measure_interval: std::time::Duration::from_secs(15),
    }
}

/// `shop/inventory`: the order handler's inventory action on `order.placed`, every other field
/// at its default, as the API server would store it.
pub fn order_consumer() -> EventConsumer {
    let mut ec = EventConsumer::new(
        "inventory",
        EventConsumerSpec {
            handler: Handler::Order,
            order: Some(OrderOptions {
                action: OrderAction::Inventory,
                output_topic: None,
                sink_url: None,
            }),
            analytics: None,
            video: None,
            kafka: KafkaSpec {
                bootstrap_servers: "kafka:9092".to_owned(),
                topics: vec!["order.placed".into()],
                consumer_group: None,
                initial_offset: InitialOffset::Earliest,
                sasl: None,
                tls: None,
            },
            delivery: DeliverySpec::default(),
            replicas: 1,
            autoscaling: None,
            paused: false,
            image: None,
            resources: None,
            node_selector: None,
            tolerations: None,
            affinity: None,
            log_level: "info".to_owned(),
        },
    );
    ec.metadata.namespace = Some("shop".to_owned());
    ec.metadata.uid = Some("0b6c4a8e-1f2d-4c3b-9a7e-5d6f7a8b9c0d".to_owned());
    ec.metadata.generation = Some(1);
    ec
}
