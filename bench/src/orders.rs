//! The messages the benchmarks produce: valid `OrderPlaced` JSON of about 300 bytes, the
//! shape the seed's checkout publishes, with totals that match the items to the cent.
//!
//! Chaos runs use order ids `seq-<n>` so every outcome (keyed by order id) and every
//! dead-letter record (which keeps the original value) names its sequence number.

/// Customers the keys are spread over (the seed keys orders by customer id).
const CUSTOMERS: u64 = 50_000;

/// SplitMix64: a cheap deterministic mixer, so item prices vary without an RNG.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

fn money(cents: u64) -> String {
    format!("{}.{:02}", cents / 100, cents % 100)
}

/// The key (customer id) and value of order number `i`. `order_id` is used as given.
/// With `poison`, the total is one cent off: a validation failure the worker dead-letters
/// at once.
pub fn order(i: u64, order_id: &str, poison: bool) -> (String, String) {
    let customer = format!("cust-{:06}", mix(i) % CUSTOMERS);
    let mut items = String::new();
    let mut total = 0u64;
    for line in 0..3u64 {
        let r = mix(i.wrapping_mul(4).wrapping_add(line));
        let product = r % 10_000;
        let quantity = 1 + (r >> 16) % 4;
        let price = 99 + (r >> 24) % 20_000;
        total += quantity * price;
        if line > 0 {
            items.push(',');
        }
        items.push_str(&format!(
            r#"{{"product_id":"SKU-{product:05}","quantity":{quantity},"price":{}}}"#,
            money(price)
        ));
    }
    if poison {
        total += 1;
    }
    let secs = 1_790_000_000 + i / 1000;
    let value = format!(
        r#"{{"order_id":"{order_id}","customer_id":"{customer}","items":[{items}],"total":{},"created_at":"{}","channel":"web","currency":"EUR"}}"#,
        money(total),
        rfc3339(secs, i % 1000)
    );
    (customer, value)
}

/// The key of message `i` of the ordering benchmark: one of `keys` keys, spread evenly
/// and in no pattern, so keys and partitions interleave as real traffic does.
pub fn spread_key(i: u64, keys: u64) -> String {
    format!("key-{:06}", mix(i) % keys.max(1))
}

/// Order id of benchmark order `i`: unique across runs through `run_tag`.
pub fn bench_order_id(run_tag: &str, i: u64) -> String {
    format!("ord-{run_tag}-{i:010}")
}

/// Order id carrying chaos sequence number `seq`.
pub fn seq_order_id(seq: u64) -> String {
    format!("seq-{seq:09}")
}

/// The sequence number in an order id made by [`seq_order_id`].
pub fn parse_seq_id(id: &str) -> Option<u64> {
    id.strip_prefix("seq-")?.parse().ok()
}

/// The sequence number of an order JSON value (a dead-letter record keeps the original).
pub fn seq_of_value(value: &[u8]) -> Option<u64> {
    // The id is the first field the generator writes; a full JSON parse is not needed.
    let text = std::str::from_utf8(value).ok()?;
    let start = text.find(r#""order_id":"seq-"#)? + r#""order_id":""#.len();
    let end = start + text[start..].find('"')?;
    parse_seq_id(&text[start..end])
}

fn rfc3339(secs: u64, millis: u64) -> String {
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let days = secs / 86_400;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + u64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize)]
    struct Item {
        quantity: i64,
        price: f64,
    }
    #[derive(serde::Deserialize)]
    struct Order {
        order_id: String,
        items: Vec<Item>,
        total: f64,
    }

    fn cents(v: f64) -> i64 {
        (v * 100.0).round() as i64
    }

    #[test]
    fn orders_are_about_300_bytes_and_their_totals_match() {
        for i in [0, 1, 77, 999_999] {
            let (key, value) = order(i, &bench_order_id("t1", i), false);
            assert!(key.starts_with("cust-"));
            assert!((250..=340).contains(&value.len()), "{} bytes", value.len());
            let o: Order = serde_json::from_str(&value).unwrap();
            let sum: i64 = o.items.iter().map(|i| i.quantity * cents(i.price)).sum();
            assert_eq!(sum, cents(o.total), "{value}");
        }
        let (_, bad) = order(5, &seq_order_id(5), true);
        let o: Order = serde_json::from_str(&bad).unwrap();
        let sum: i64 = o.items.iter().map(|i| i.quantity * cents(i.price)).sum();
        assert_ne!(sum, cents(o.total));
        assert_eq!(o.order_id, "seq-000000005");
    }

    #[test]
    fn sequence_numbers_come_back_from_ids_and_values() {
        assert_eq!(parse_seq_id(&seq_order_id(42)), Some(42));
        let (_, v) = order(42, &seq_order_id(42), false);
        assert_eq!(seq_of_value(v.as_bytes()), Some(42));
        assert_eq!(seq_of_value(b"{}"), None);
        assert_eq!(rfc3339(0, 5), "1970-01-01T00:00:00.005Z");
        assert_eq!(rfc3339(1_790_000_000, 0), "2026-09-21T14:13:20.000Z");
    }
}
