//! The JSON events of the three use cases, as the seed tutorial publishes them, and
//! their validation.
//!
//! Decoding and validation failures are *non-retryable*: a message that does not parse
//! or breaks a rule today will not parse tomorrow, so the delivery loop sends it to the
//! dead-letter topic at once. Every error names the field that was wrong, because that
//! text ends up in the DLQ record's headers and in the gateway's 400 answers.
//!
//! Money travels as JSON numbers (the seed's `float64`); it is checked in whole cents so
//! that `29.99 * 2` equals `59.98` exactly, and a price with more than two decimals is
//! refused rather than silently rounded.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;
use std::marker::PhantomData;

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize};

/// Why an event was refused. Non-retryable by nature.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EventError {
    /// The bytes are not the JSON this event type expects.
    #[error("invalid JSON: {0}")]
    Decode(String),
    /// The JSON parsed but a field breaks a rule.
    #[error("{field}: {reason}")]
    Invalid { field: String, reason: String },
}

impl EventError {
    fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        EventError::Invalid {
            field: field.into(),
            reason: reason.into(),
        }
    }

    /// A short, stable name for metrics labels and the DLQ error-class header.
    pub fn class(&self) -> &'static str {
        match self {
            EventError::Decode(_) => "decode",
            EventError::Invalid { .. } => "validation",
        }
    }
}

/// Decode `bytes` as JSON of type `T`, naming the offending path on failure. `T` may
/// borrow from `bytes` (an [`OrderPlaced<Text>`] does).
///
/// The payload is checked as UTF-8 once, whole (std's word-at-a-time check), and parsed as
/// `&str`: `serde_json::from_slice` checks every string on its own, which on the bench's
/// orders (two dozen short keys and values) was a fifth of the decode's instructions.
pub fn decode<'a, T: Deserialize<'a>>(bytes: &'a [u8]) -> Result<T, EventError> {
    let text = std::str::from_utf8(bytes)
        .map_err(|e| EventError::Decode(format!("the value is not UTF-8: {e}")))?;
    serde_json::from_str(text).map_err(|e| EventError::Decode(e.to_string()))
}

/// A JSON string borrowed from the message bytes when it has no escapes (ids and times
/// never do), owned otherwise: the order handler decodes every order into
/// `OrderPlaced<Text>`, which allocates nothing but the items' vector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Text<'a>(pub Cow<'a, str>);

impl AsRef<str> for Text<'_> {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Text<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Borrowing<'a>(PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for Borrowing<'a> {
            type Value = Text<'a>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Text<'a>, E> {
                Ok(Text(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Text<'a>, E> {
                Ok(Text(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Text<'a>, E> {
                Ok(Text(Cow::Owned(v)))
            }
        }
        d.deserialize_str(Borrowing(PhantomData))
    }
}

/// Converts a JSON amount to whole cents, refusing fractions of a cent, negatives and
/// values too large to be money. The error is the reason; the caller names the field, so
/// the valid path (every message) builds no field name.
fn cents(amount: f64) -> Result<i64, &'static str> {
    // Orders above ten billion are not real orders; this also keeps the f64 → i64
    // conversion exact (2^53 is far above 10^12 cents).
    const MAX_AMOUNT: f64 = 10_000_000_000.0;
    if !amount.is_finite() || amount < 0.0 {
        return Err("must be a number ≥ 0");
    }
    if amount > MAX_AMOUNT {
        return Err("is larger than any real amount");
    }
    let scaled = amount * 100.0;
    let rounded = scaled.round();
    // Binary floating point stores 29.99 as 29.989999…; anything within a millionth of
    // a cent is the decimal the sender wrote.
    if (scaled - rounded).abs() > 1e-6 {
        return Err("has more than two decimals");
    }
    #[allow(clippy::cast_possible_truncation)] // bounded by MAX_AMOUNT above
    Ok(rounded as i64)
}

fn required(field: &str, value: &str) -> Result<(), EventError> {
    if value.trim().is_empty() {
        Err(EventError::invalid(field, "is required"))
    } else {
        Ok(())
    }
}

/// One line of an order. `S` is the string type: `String`, or [`Text`] to borrow from the
/// message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OrderItem<S = String> {
    pub product_id: S,
    pub quantity: i64,
    /// Unit price.
    pub price: f64,
}

/// `order.placed`: published by checkout, consumed by inventory, payment, email and
/// analytics in their own consumer groups.
/// `S` is the string type: `String`, or [`Text`] to borrow from the message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OrderPlaced<S = String> {
    pub order_id: S,
    pub customer_id: S,
    pub items: Vec<OrderItem<S>>,
    pub total: f64,
    /// RFC 3339 time the order was accepted.
    pub created_at: S,
}

/// Checks that hold for any order's lines and total; returns the total in cents.
fn validate_lines<S: AsRef<str>>(items: &[OrderItem<S>], total: f64) -> Result<i64, EventError> {
    if items.is_empty() {
        return Err(EventError::invalid("items", "must not be empty"));
    }
    let mut sum: i64 = 0;
    for (i, item) in items.iter().enumerate() {
        if item.product_id.as_ref().trim().is_empty() {
            return Err(EventError::invalid(
                format!("items[{i}].product_id"),
                "is required",
            ));
        }
        if item.quantity <= 0 {
            return Err(EventError::invalid(
                format!("items[{i}].quantity"),
                "must be > 0",
            ));
        }
        let price = cents(item.price)
            .map_err(|reason| EventError::invalid(format!("items[{i}].price"), reason))?;
        let line = price
            .checked_mul(item.quantity)
            .ok_or_else(|| EventError::invalid(format!("items[{i}]"), "line total overflows"))?;
        sum = sum
            .checked_add(line)
            .ok_or_else(|| EventError::invalid("items", "sum overflows"))?;
    }
    let total_cents = cents(total).map_err(|reason| EventError::invalid("total", reason))?;
    if total_cents != sum {
        return Err(EventError::invalid(
            "total",
            format!(
                "is {}.{:02} but the items sum to {}.{:02}",
                total_cents / 100,
                total_cents % 100,
                sum / 100,
                sum % 100
            ),
        ));
    }
    Ok(total_cents)
}

impl<S: AsRef<str>> OrderPlaced<S> {
    /// Ids present, items non-empty, quantities > 0, prices ≥ 0 with at most two
    /// decimals, and the total equal to the sum of the items to the cent.
    /// Returns the total in cents.
    pub fn validate(&self) -> Result<i64, EventError> {
        required("order_id", self.order_id.as_ref())?;
        required("customer_id", self.customer_id.as_ref())?;
        validate_lines(&self.items, self.total)
    }
}

/// The body of `POST /checkout`: an order before the gateway assigns its id and time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckoutRequest {
    pub customer_id: String,
    pub items: Vec<OrderItem>,
    pub total: f64,
}

impl CheckoutRequest {
    /// The same rules as [`OrderPlaced::validate`], minus the ids the gateway assigns.
    pub fn validate(&self) -> Result<i64, EventError> {
        required("customer_id", &self.customer_id)?;
        validate_lines(&self.items, self.total)
    }

    /// The event to publish, with the id and time the gateway assigned.
    pub fn into_order(self, order_id: String, created_at: String) -> OrderPlaced {
        OrderPlaced {
            order_id,
            customer_id: self.customer_id,
            items: self.items,
            total: self.total,
            created_at,
        }
    }
}

/// `user.events`: what a browser reports (`page_view`, `click`, `search`, …).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UserEvent {
    #[serde(rename = "type")]
    pub kind: String,
    pub user_id: String,
    pub session_id: String,
    #[serde(default)]
    pub payload: BTreeMap<String, String>,
    /// RFC 3339 time the gateway accepted the event; absent in the request body.
    #[serde(default)]
    pub timestamp: String,
}

impl UserEvent {
    /// Type and session present (the session is the partition key); a `page_view`
    /// must carry `payload.path`, which is what the counter counts.
    pub fn validate(&self) -> Result<(), EventError> {
        required("type", &self.kind)?;
        required("session_id", &self.session_id)?;
        if self.kind == "page_view" {
            match self.payload.get("path") {
                Some(path) if !path.trim().is_empty() => {}
                _ => {
                    return Err(EventError::invalid(
                        "payload.path",
                        "is required for a page_view",
                    ));
                }
            }
        }
        Ok(())
    }

    /// The path of a page view, if this is one.
    pub fn page_path(&self) -> Option<&str> {
        (self.kind == "page_view")
            .then(|| self.payload.get("path").map(String::as_str))
            .flatten()
    }
}

/// `video.uploaded`: the start of the video chain.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VideoUploaded {
    pub video_id: String,
    pub s3_key: String,
    pub user_id: String,
    pub size_bytes: i64,
}

impl VideoUploaded {
    pub fn validate(&self) -> Result<(), EventError> {
        required("video_id", &self.video_id)?;
        required("s3_key", &self.s3_key)?;
        required("user_id", &self.user_id)?;
        if self.size_bytes <= 0 {
            return Err(EventError::invalid("size_bytes", "must be > 0"));
        }
        Ok(())
    }
}

/// `video.transcoded`. Unlike the seed's, it carries `user_id` through, because the
/// publish stage needs it for `video.ready` and must not look it up elsewhere.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VideoTranscoded {
    pub video_id: String,
    pub user_id: String,
    pub formats: Vec<String>,
    pub duration_seconds: i64,
}

impl VideoTranscoded {
    pub fn validate(&self) -> Result<(), EventError> {
        required("video_id", &self.video_id)?;
        required("user_id", &self.user_id)?;
        if self.formats.is_empty() {
            return Err(EventError::invalid("formats", "must not be empty"));
        }
        Ok(())
    }
}

/// `video.ready`: the end of the chain.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VideoReady {
    pub video_id: String,
    pub user_id: String,
    pub thumbnail_url: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn order() -> OrderPlaced {
        OrderPlaced {
            order_id: "o-1".into(),
            customer_id: "c-1".into(),
            items: vec![
                OrderItem {
                    product_id: "SKU-001".into(),
                    quantity: 2,
                    price: 29.99,
                },
                OrderItem {
                    product_id: "SKU-002".into(),
                    quantity: 1,
                    price: 0.1,
                },
            ],
            total: 60.08,
            created_at: "2026-11-26T00:00:00Z".into(),
        }
    }

    fn field_of(err: EventError) -> String {
        match err {
            EventError::Invalid { field, .. } => field,
            other => panic!("expected a validation error, got {other}"),
        }
    }

    #[test]
    fn a_well_formed_order_is_valid_and_its_total_is_in_cents() {
        assert_eq!(order().validate(), Ok(6008));
    }

    #[test]
    fn a_total_off_by_one_cent_is_refused_naming_total() {
        let mut o = order();
        o.total = 60.07;
        let err = o.validate().unwrap_err();
        assert!(err.to_string().contains("items sum to 60.08"), "{err}");
        assert_eq!(field_of(err), "total");
    }

    #[test]
    fn each_broken_order_rule_names_its_field() {
        type Breaker = fn(&mut OrderPlaced);
        let cases: Vec<(Breaker, &str)> = vec![
            (|o| o.order_id.clear(), "order_id"),
            (|o| o.customer_id = "  ".into(), "customer_id"),
            (|o| o.items.clear(), "items"),
            (|o| o.items[1].quantity = 0, "items[1].quantity"),
            (|o| o.items[0].price = -1.0, "items[0].price"),
            (|o| o.items[0].price = 1.001, "items[0].price"),
            (|o| o.items[1].product_id.clear(), "items[1].product_id"),
            (|o| o.total = f64::NAN, "total"),
        ];
        for (break_it, field) in cases {
            let mut o = order();
            break_it(&mut o);
            assert_eq!(field_of(o.validate().unwrap_err()), field);
        }
    }

    #[test]
    fn a_borrowed_order_copies_no_plain_string_and_validates_like_an_owned_one() {
        let json = br#"{"order_id":"o-\u00e9","customer_id":"c-1","items":[{"product_id":"SKU-001","quantity":2,"price":29.99},{"product_id":"SKU-002","quantity":1,"price":0.1}],"total":60.08,"created_at":"2026-11-26T00:00:00Z","channel":"web"}"#;
        let borrowed: OrderPlaced<Text<'_>> = decode(json).unwrap();
        // An escape needs a copy; plain strings point into the message.
        assert!(matches!(borrowed.order_id.0, Cow::Owned(ref s) if s == "o-é"));
        assert!(matches!(borrowed.customer_id.0, Cow::Borrowed("c-1")));
        assert!(matches!(
            borrowed.items[1].product_id.0,
            Cow::Borrowed("SKU-002")
        ));
        let owned: OrderPlaced = decode(json).unwrap();
        assert_eq!(borrowed.validate(), owned.validate());
        assert_eq!(borrowed.validate(), Ok(6008));
        let mut bad = owned.clone();
        bad.total = 60.07;
        let text = String::from_utf8(serde_json::to_vec(&bad).unwrap()).unwrap();
        let borrowed_bad: OrderPlaced<Text<'_>> = decode(text.as_bytes()).unwrap();
        assert_eq!(borrowed_bad.validate(), bad.validate());
        assert_eq!(field_of(borrowed_bad.validate().unwrap_err()), "total");
        assert!(decode::<OrderPlaced<Text<'_>>>(br#"{"order_id":1}"#).is_err());
    }

    #[test]
    fn undecodable_bytes_are_a_decode_error() {
        let err = decode::<OrderPlaced>(b"{not json").unwrap_err();
        assert_eq!(err.class(), "decode");
        let err = decode::<OrderPlaced<Text<'_>>>(b"{\"order_id\":\"\xff\"}").unwrap_err();
        assert!(err.to_string().contains("not UTF-8"), "{err}");
        let err = decode::<OrderPlaced>(br#"{"order_id":"x"}"#).unwrap_err();
        assert!(err.to_string().contains("customer_id"), "{err}");
    }

    #[test]
    fn a_checkout_request_refuses_unknown_fields_and_becomes_an_order() {
        assert!(
            decode::<CheckoutRequest>(br#"{"customer_id":"c","items":[],"total":0,"x":1}"#)
                .is_err()
        );
        let req: CheckoutRequest = decode(
            br#"{"customer_id":"c","items":[{"product_id":"p","quantity":3,"price":1.5}],"total":4.5}"#,
        )
        .unwrap();
        assert_eq!(req.validate(), Ok(450));
        let order = req.into_order("o".into(), "t".into());
        assert_eq!(order.validate(), Ok(450));
    }

    #[test]
    fn a_page_view_needs_a_path_and_other_events_do_not() {
        let mut e: UserEvent = decode(
            br#"{"type":"page_view","user_id":"u","session_id":"s","payload":{"path":"/a"}}"#,
        )
        .unwrap();
        assert_eq!(e.validate(), Ok(()));
        assert_eq!(e.page_path(), Some("/a"));
        e.payload.clear();
        assert_eq!(field_of(e.validate().unwrap_err()), "payload.path");
        e.kind = "click".into();
        assert_eq!(e.validate(), Ok(()));
        assert_eq!(e.page_path(), None);
    }

    #[test]
    fn videos_need_ids_and_a_positive_size() {
        let v = VideoUploaded {
            video_id: "v".into(),
            s3_key: "k".into(),
            user_id: "u".into(),
            size_bytes: 0,
        };
        assert_eq!(field_of(v.validate().unwrap_err()), "size_bytes");
        let t = VideoTranscoded {
            video_id: "v".into(),
            user_id: "u".into(),
            formats: vec![],
            duration_seconds: 1,
        };
        assert_eq!(field_of(t.validate().unwrap_err()), "formats");
    }
}
