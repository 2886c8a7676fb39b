//! The `order` handler: one of the seed's four `order.placed` consumers (inventory,
//! payment, email, analytics), chosen by `--action`, each in its own consumer group.
//!
//! Each order is decoded and validated (a bad order is non-retryable), optionally POSTed to
//! an HTTP sink with `Idempotency-Key: <order id>` so a retried call cannot act twice, and
//! the action's outcome event is published to the output topic keyed by order id. The
//! sink is called before the publish, so a retry after a sink failure does not publish
//! the outcome twice; the publish is acknowledged before the loop stores the offset.

use std::time::Duration;

use rdkafka::message::OwnedMessage;
use serde::{Deserialize, Serialize};

use super::sink::{Sink, SinkSetupError};
use super::{HandlerError, Outcome, payload};
use crate::events::{self, OrderPlaced, Text};
use crate::producer::Producer;
use eventconsumer_contract::OrderAction;

/// One reserved line of an inventory reservation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReservedItem {
    pub product_id: String,
    pub quantity: i64,
}

/// The event an order action publishes (`order.inventory`, `order.payment`, …).
/// Fields that do not apply to the action are left out of the JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OrderOutcome {
    pub order_id: String,
    pub customer_id: String,
    /// `inventory` | `payment` | `email` | `analytics`.
    pub action: String,
    /// `reserved` | `initiated` | `queued` | `recorded`.
    pub status: String,
    /// Inventory: the lines reserved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub items: Option<Vec<ReservedItem>>,
    /// Payment: the amount to charge, as in the order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub amount: Option<f64>,
    /// Payment: the same amount in cents, exact.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub amount_cents: Option<i64>,
    /// Email: the template queued for the customer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<String>,
    /// Analytics: units ordered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub units: Option<i64>,
    /// Analytics: the order total in cents.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revenue_cents: Option<i64>,
    pub order_created_at: String,
}

/// The outcome of `action` for a valid `order` whose total is `total_cents`.
pub fn outcome<S: AsRef<str>>(
    action: OrderAction,
    order: &OrderPlaced<S>,
    total_cents: i64,
) -> OrderOutcome {
    let mut out = OrderOutcome {
        order_id: order.order_id.as_ref().to_owned(),
        customer_id: order.customer_id.as_ref().to_owned(),
        action: action.as_str().to_owned(),
        status: String::new(),
        items: None,
        amount: None,
        amount_cents: None,
        template: None,
        units: None,
        revenue_cents: None,
        order_created_at: order.created_at.as_ref().to_owned(),
    };
    match action {
        OrderAction::Inventory => {
            out.status = "reserved".into();
            out.items = Some(
                order
                    .items
                    .iter()
                    .map(|i| ReservedItem {
                        product_id: i.product_id.as_ref().to_owned(),
                        quantity: i.quantity,
                    })
                    .collect(),
            );
        }
        OrderAction::Payment => {
            out.status = "initiated".into();
            out.amount = Some(order.total);
            out.amount_cents = Some(total_cents);
        }
        OrderAction::Email => {
            out.status = "queued".into();
            out.template = Some("order-confirmation".into());
        }
        OrderAction::Analytics => {
            out.status = "recorded".into();
            out.units = Some(order.items.iter().map(|i| i.quantity).sum());
            out.revenue_cents = Some(total_cents);
        }
    }
    out
}

pub struct OrderHandler {
    action: OrderAction,
    /// `None` with `--no-output` (a testing aid): validate only, publish nothing.
    output_topic: Option<String>,
    sink: Option<Sink>,
    producer: Producer,
}

impl OrderHandler {
    pub fn new(
        action: OrderAction,
        output_topic: Option<&str>,
        sink_url: Option<&url::Url>,
        attempt_timeout: Duration,
        producer: Producer,
    ) -> Result<OrderHandler, SinkSetupError> {
        let sink = sink_url
            .map(|url| Sink::new(url, attempt_timeout))
            .transpose()?;
        Ok(OrderHandler {
            action,
            output_topic: output_topic.map(str::to_owned),
            sink,
            producer,
        })
    }

    pub async fn handle(&self, msg: &OwnedMessage) -> Result<Outcome, HandlerError> {
        // Borrowed from the payload: the ids and times are not copied.
        let order: OrderPlaced<Text<'_>> = events::decode(payload(msg)?)?;
        let total_cents = order.validate()?;
        if self.sink.is_none() && self.output_topic.is_none() {
            // --no-output without a sink: nobody would read the outcome event, so it is
            // not built (its JSON encoding was ~14 % of the benchmark's CPU).
            tracing::debug!(order_id = %order.order_id.as_ref(), action = self.action.as_str(), "order validated");
            return Ok(Outcome::Done);
        }
        let event = outcome(self.action, &order, total_cents);
        let mut body = serde_json::to_vec(&event)
            .map_err(|e| events::EventError::Decode(format!("cannot encode the outcome: {e}")))?;
        if let Some(sink) = &self.sink {
            // The body is copied only when the output topic needs it too.
            let copy = if self.output_topic.is_some() {
                body.clone()
            } else {
                std::mem::take(&mut body)
            };
            sink.post(order.order_id.as_ref(), copy).await?;
        }
        if let Some(topic) = &self.output_topic {
            self.producer
                .send(topic, Some(order.order_id.as_ref().as_bytes()), &body, None)
                .await?;
        }
        tracing::debug!(order_id = %order.order_id.as_ref(), action = self.action.as_str(), "order handled");
        Ok(Outcome::Done)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::OrderItem;

    fn order() -> OrderPlaced {
        OrderPlaced {
            order_id: "o-1".into(),
            customer_id: "c-1".into(),
            items: vec![OrderItem {
                product_id: "SKU-001".into(),
                quantity: 2,
                price: 29.99,
            }],
            total: 59.98,
            created_at: "2026-11-26T00:00:00Z".into(),
        }
    }

    #[test]
    fn each_action_publishes_its_own_outcome() {
        let o = order();
        let inv = outcome(OrderAction::Inventory, &o, 5998);
        assert_eq!(inv.status, "reserved");
        assert_eq!(
            inv.items,
            Some(vec![ReservedItem {
                product_id: "SKU-001".into(),
                quantity: 2
            }])
        );
        let pay = outcome(OrderAction::Payment, &o, 5998);
        assert_eq!((pay.amount, pay.amount_cents), (Some(59.98), Some(5998)));
        assert_eq!(outcome(OrderAction::Email, &o, 5998).status, "queued");
        let an = outcome(OrderAction::Analytics, &o, 5998);
        assert_eq!((an.units, an.revenue_cents), (Some(2), Some(5998)));
    }

    #[test]
    fn outcome_json_leaves_out_fields_of_other_actions() {
        let json = serde_json::to_value(outcome(OrderAction::Payment, &order(), 5998)).unwrap();
        assert_eq!(json["amount_cents"], 5998);
        assert!(json.get("items").is_none(), "{json}");
        assert_eq!(json["order_id"], "o-1");
    }
}
