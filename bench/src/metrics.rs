//! Reading a process's Prometheus `/metrics` over plain HTTP/1.0 on loopback, and the two
//! things the benchmarks take from it: counter sums and histogram quantiles.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// GETs `path` from `127.0.0.1:port`; the body on a 200 answer.
pub fn get(port: u16, path: &str) -> anyhow::Result<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    s.set_write_timeout(Some(Duration::from_secs(5)))?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")?;
    let mut raw = String::new();
    s.read_to_string(&mut raw)?;
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    Ok((status, body.to_owned()))
}

/// The sum of every sample of `name` (all label sets).
pub fn sum(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let metric = series.split('{').next()?;
            (metric == name).then(|| value.parse::<f64>().ok())?
        })
        .sum()
}

/// The `q` quantile of histogram `name` (`name_bucket{le=…}` lines), interpolated inside
/// the bucket as Prometheus' `histogram_quantile` does. `None` without observations.
pub fn quantile(text: &str, name: &str, q: f64) -> Option<f64> {
    let bucket = format!("{name}_bucket");
    let mut buckets: Vec<(f64, f64)> = text
        .lines()
        .filter(|l| l.starts_with(&bucket))
        .filter_map(|l| {
            let le_start = l.find("le=\"")? + 4;
            let le_end = le_start + l[le_start..].find('"')?;
            let le = match &l[le_start..le_end] {
                "+Inf" => f64::INFINITY,
                v => v.parse().ok()?,
            };
            let count: f64 = l.rsplit_once(' ')?.1.parse().ok()?;
            Some((le, count))
        })
        .collect();
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    let total = buckets.last()?.1;
    if total <= 0.0 {
        return None;
    }
    let rank = q * total;
    let mut prev = (0.0, 0.0);
    for (le, count) in buckets {
        if count >= rank {
            if le.is_infinite() {
                return Some(prev.0);
            }
            let in_bucket = count - prev.1;
            let frac = if in_bucket > 0.0 {
                (rank - prev.1) / in_bucket
            } else {
                1.0
            };
            return Some(prev.0 + (le - prev.0) * frac);
        }
        prev = (le, count);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = r#"# HELP x
eventconsumer_messages_processed_total{handler="order/inventory"} 40
eventconsumer_messages_processed_total{handler="other"} 2
eventconsumer_messages_processed_created 1
d_bucket{le="0.005"} 50
d_bucket{le="0.01"} 90
d_bucket{le="+Inf"} 100
d_count 100
"#;

    #[test]
    fn counters_are_summed_over_label_sets() {
        assert_eq!(sum(TEXT, "eventconsumer_messages_processed_total"), 42.0);
        assert_eq!(sum(TEXT, "nothing"), 0.0);
    }

    #[test]
    fn quantiles_interpolate_inside_the_bucket() {
        let p50 = quantile(TEXT, "d", 0.5).unwrap();
        assert!((p50 - 0.005).abs() < 1e-9, "{p50}");
        let p70 = quantile(TEXT, "d", 0.7).unwrap();
        assert!((p70 - 0.0075).abs() < 1e-9, "{p70}");
        assert_eq!(quantile(TEXT, "d", 0.99), Some(0.01));
        assert_eq!(quantile("", "d", 0.5), None);
    }
}
