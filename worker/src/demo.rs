//! `eventconsumer-worker demo`: the seed's three use cases in one process, on rdkafka's
//! embedded mock cluster, so it needs neither a broker nor a cluster.
//!
//! It creates the topics, starts seven consumers with the real delivery loop (the four
//! order actions, the analytics counter, the two video stages), produces orders and user
//! events as the gateway would (plus one poison order that bypassed it), runs the email
//! action against a local HTTP sink that keeps failing for one order, waits until every
//! expected record has arrived, stops the consumers as SIGTERM would and prints a summary:
//! per-service counts, a page-view table, the videos that reached `video.ready` and each
//! dead-letter entry with its error headers.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use axum::http::{HeaderMap, StatusCode};
use clap::Parser as _;
use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message, OwnedMessage};
use rdkafka::mocking::MockCluster;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use tokio_util::sync::CancellationToken;

use crate::cli::{Cli, Command, DemoArgs};
use crate::config::Settings;
use crate::delivery::{self, Summary};
use crate::events::{CheckoutRequest, OrderItem, OrderPlaced, UserEvent, VideoUploaded};
use crate::producer::Producer;

/// The whole demo must finish well under a minute, even on a slow machine.
const DEADLINE: Duration = Duration::from_secs(45);
/// The order the failing sink refuses (503) every time: it ends in the DLQ.
const SINK_REFUSES: &str = "order-0004";

const PATHS: [&str; 4] = ["/", "/products", "/products/42", "/cart"];

/// Runs the demo and prints its summary; `Ok(false)` if something expected did not happen.
pub async fn run(args: &DemoArgs) -> anyhow::Result<bool> {
    let started = Instant::now();
    let _ = crate::telemetry::init(&args.log_level);
    let cluster = MockCluster::new(1).context("cannot start the mock cluster")?;
    let bootstrap = cluster.bootstrap_servers();
    for (topic, partitions) in [
        ("order.placed", 3),
        ("order.placed.dlq", 1),
        ("order.inventory", 1),
        ("order.payment", 1),
        ("order.email", 1),
        ("order.analytics", 1),
        ("user.events", 3),
        ("user.events.dlq", 1),
        ("analytics.counts", 1),
        ("video.uploaded", 2),
        ("video.uploaded.dlq", 1),
        ("video.transcoded", 2),
        ("video.transcoded.dlq", 1),
        ("video.ready", 1),
    ] {
        cluster
            .create_topic(topic, partitions, 1)
            .with_context(|| format!("cannot create {topic}"))?;
    }
    let sink = start_sink().await?;
    let sink_url = format!("http://{sink}/notify");

    println!("EventConsumer demo: the seed's three use cases on an embedded mock Kafka cluster");
    println!();

    let common = [
        "--bootstrap-servers",
        bootstrap.as_str(),
        "--max-attempts",
        "3",
        "--backoff-initial",
        "100ms",
        "--backoff-max",
        "400ms",
        "--attempt-timeout",
        "5s",
        "--shutdown-grace",
        "5",
    ];
    let services: Vec<(&str, Vec<&str>)> = vec![
        (
            "inventory",
            vec![
                "--handler",
                "order",
                "--action",
                "inventory",
                "--topics",
                "order.placed",
                "--group-id",
                "inventory-service",
            ],
        ),
        (
            "payment",
            vec![
                "--handler",
                "order",
                "--action",
                "payment",
                "--topics",
                "order.placed",
                "--group-id",
                "payment-service",
            ],
        ),
        (
            "email",
            vec![
                "--handler",
                "order",
                "--action",
                "email",
                "--topics",
                "order.placed",
                "--group-id",
                "email-service",
                "--sink-url",
                sink_url.as_str(),
            ],
        ),
        (
            "order-analytics",
            vec![
                "--handler",
                "order",
                "--action",
                "analytics",
                "--topics",
                "order.placed",
                "--group-id",
                "order-analytics",
            ],
        ),
        (
            "page-views",
            vec![
                "--handler",
                "analytics",
                "--window",
                "1s",
                "--topics",
                "user.events",
                "--group-id",
                "page-views",
            ],
        ),
        (
            "transcode",
            vec![
                "--handler",
                "video",
                "--stage",
                "transcode",
                "--topics",
                "video.uploaded",
                "--group-id",
                "transcode-service",
            ],
        ),
        (
            "publish",
            vec![
                "--handler",
                "video",
                "--stage",
                "publish",
                "--topics",
                "video.transcoded",
                "--group-id",
                "publish-service",
            ],
        ),
    ];
    let stop = CancellationToken::new();
    let mut running = Vec::new();
    for (name, args) in services {
        let argv = ["eventconsumer-worker", "run"]
            .into_iter()
            .chain(common)
            .chain(args)
            .chain(["--consumer-name", name]);
        let Command::Run(run_args) = Cli::try_parse_from(argv)?.command else {
            anyhow::bail!("the demo builds only run commands");
        };
        let settings = Settings::from_args(&run_args)?;
        let label = settings.handler.label();
        let (_registry, metrics) = crate::metrics::registry_with(&label);
        let readiness = Arc::new(crate::http::Readiness::default());
        let stop = stop.clone();
        let task =
            tokio::spawn(async move { delivery::run(&settings, metrics, readiness, stop).await });
        running.push((name, label, task));
    }

    let producer = Producer::new(
        &ClientConfig::new()
            .set("bootstrap.servers", &bootstrap)
            .clone(),
        Duration::from_secs(10),
    )?;
    let orders = produce_orders(&producer).await?;
    let events = produce_user_events(&producer).await?;
    let videos = produce_videos(&producer).await?;
    println!(
        "Produced {} orders (+1 poison order that bypassed the gateway), {} user events, {} video uploads",
        orders.len(),
        events.len(),
        videos.len()
    );

    // Every valid order reaches each action (the email of SINK_REFUSES is dead-lettered);
    // the poison order is dead-lettered by all four actions.
    let valid = orders.len();
    let expected = [
        ("order.inventory", valid),
        ("order.payment", valid),
        ("order.email", valid - 1),
        ("order.analytics", valid),
        ("order.placed.dlq", 4 + 1),
        ("video.ready", videos.len()),
    ];
    let reader = Reader::new(&bootstrap)?;
    let deadline = Instant::now() + DEADLINE;
    let mut complete = false;
    while Instant::now() < deadline {
        let mut all = true;
        for (topic, want) in expected {
            all &= reader.read(topic)?.len() >= want;
        }
        all &= counted_events(&reader.read("analytics.counts")?) >= events.len() as u64;
        if all {
            complete = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }

    stop.cancel();
    let mut summaries: Vec<(&str, String, Summary)> = Vec::new();
    for (name, label, task) in running {
        let summary = task.await.context("a consumer task panicked")??;
        summaries.push((name, label, summary));
    }

    print_services(&summaries);
    print_page_views(&reader.read("analytics.counts")?);
    print_videos(&reader.read("video.ready")?);
    print_dead_letters(
        &reader,
        &[
            "order.placed.dlq",
            "user.events.dlq",
            "video.uploaded.dlq",
            "video.transcoded.dlq",
        ],
    )?;
    println!();
    if complete {
        println!(
            "All expected records arrived. Finished in {:.1} s.",
            started.elapsed().as_secs_f64()
        );
    } else {
        println!(
            "Not every expected record arrived within {} s.",
            DEADLINE.as_secs()
        );
    }
    // Clients first, so none of them reports the vanished broker.
    drop(reader);
    drop(producer);
    drop(cluster);
    Ok(complete)
}

/// The email provider stand-in: accepts every notification except those of SINK_REFUSES.
async fn start_sink() -> anyhow::Result<SocketAddr> {
    let app = axum::Router::new().route(
        "/notify",
        axum::routing::post(|headers: HeaderMap| async move {
            let key = headers.get("idempotency-key").and_then(|v| v.to_str().ok());
            if key == Some(SINK_REFUSES) {
                StatusCode::SERVICE_UNAVAILABLE
            } else {
                StatusCode::ACCEPTED
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "demo sink stopped");
        }
    });
    Ok(addr)
}

/// Six valid orders as the gateway publishes them, then one poison order; returns the
/// valid ones.
async fn produce_orders(p: &Producer) -> anyhow::Result<Vec<OrderPlaced>> {
    let catalogue = [("SKU-001", 29.99), ("SKU-002", 9.5), ("SKU-003", 120.0)];
    let mut orders = Vec::new();
    for n in 1..=6 {
        let items: Vec<OrderItem> = (0..(n % 3 + 1))
            .map(|i| {
                let (sku, price) = catalogue[(n + i) % catalogue.len()];
                OrderItem {
                    product_id: sku.to_owned(),
                    quantity: i64::try_from(i + 1).unwrap_or(1),
                    price,
                }
            })
            .collect();
        let cents: i64 = items
            .iter()
            .map(|i| (i.price * 100.0).round() as i64 * i.quantity)
            .sum();
        let request = CheckoutRequest {
            customer_id: format!("customer-{}", n % 3 + 1),
            items,
            total: cents as f64 / 100.0,
        };
        request.validate()?;
        let order = request.into_order(format!("order-{n:04}"), chrono::Utc::now().to_rfc3339());
        p.send(
            "order.placed",
            Some(order.customer_id.as_bytes()),
            &serde_json::to_vec(&order)?,
            None,
        )
        .await?;
        orders.push(order);
    }
    // The poison order: its total does not match its items.
    let mut poison = orders[0].clone();
    poison.order_id = "order-poison".to_owned();
    poison.total += 1.0;
    p.send(
        "order.placed",
        Some(poison.customer_id.as_bytes()),
        &serde_json::to_vec(&poison)?,
        None,
    )
    .await?;
    Ok(orders)
}

async fn produce_user_events(p: &Producer) -> anyhow::Result<Vec<UserEvent>> {
    let mut events = Vec::new();
    for i in 0..40usize {
        let kind = match i % 5 {
            0 => "click",
            1 => "search",
            _ => "page_view",
        };
        let mut payload = BTreeMap::new();
        payload.insert("path".to_owned(), PATHS[i % PATHS.len()].to_owned());
        let event = UserEvent {
            kind: kind.to_owned(),
            user_id: format!("user-{}", i % 4),
            session_id: format!("session-{}", i % 6),
            payload,
            timestamp: chrono::Utc::now().to_rfc3339(),
        };
        event.validate()?;
        p.send(
            "user.events",
            Some(event.session_id.as_bytes()),
            &serde_json::to_vec(&event)?,
            None,
        )
        .await?;
        events.push(event);
    }
    Ok(events)
}

async fn produce_videos(p: &Producer) -> anyhow::Result<Vec<VideoUploaded>> {
    let mut videos = Vec::new();
    for (n, size) in [(1, 80_000_000_i64), (2, 350_000_000), (3, 1_200_000_000)] {
        let video = VideoUploaded {
            video_id: format!("video-{n}"),
            s3_key: format!("uploads/video-{n}.mp4"),
            user_id: format!("user-{n}"),
            size_bytes: size,
        };
        p.send(
            "video.uploaded",
            Some(video.video_id.as_bytes()),
            &serde_json::to_vec(&video)?,
            None,
        )
        .await?;
        videos.push(video);
    }
    Ok(videos)
}

/// Reads whole topics of the mock cluster.
struct Reader {
    consumer: BaseConsumer,
}

impl Reader {
    fn new(bootstrap: &str) -> anyhow::Result<Reader> {
        let consumer = ClientConfig::new()
            .set("bootstrap.servers", bootstrap)
            .set("group.id", "demo-reader")
            .set("enable.auto.commit", "false")
            // The mock broker answers at once; a fetch lingering for librdkafka's default
            // 500 ms made every read of a topic take 1.5 s.
            .set("fetch.wait.max.ms", "10")
            .create()?;
        Ok(Reader { consumer })
    }

    /// Every record of `topic` up to its current end.
    fn read(&self, topic: &str) -> anyhow::Result<Vec<OwnedMessage>> {
        let timeout = Duration::from_secs(5);
        let md = self.consumer.fetch_metadata(Some(topic), timeout)?;
        let mut tpl = TopicPartitionList::new();
        let mut ends = BTreeMap::new();
        for p in md
            .topics()
            .first()
            .map(|t| t.partitions())
            .unwrap_or_default()
        {
            let (low, high) = self.consumer.fetch_watermarks(topic, p.id(), timeout)?;
            if high > low {
                tpl.add_partition_offset(topic, p.id(), Offset::Offset(low))?;
                ends.insert(p.id(), high);
            }
        }
        let mut out = Vec::new();
        if ends.is_empty() {
            return Ok(out);
        }
        self.consumer.assign(&tpl)?;
        let deadline = Instant::now() + timeout;
        while !ends.is_empty() && Instant::now() < deadline {
            if let Some(Ok(m)) = self.consumer.poll(Duration::from_millis(100)) {
                if ends
                    .get(&m.partition())
                    .is_some_and(|end| m.offset() + 1 >= *end)
                {
                    ends.remove(&m.partition());
                }
                out.push(m.detach());
            }
        }
        Ok(out)
    }
}

fn json(m: &OwnedMessage) -> serde_json::Value {
    serde_json::from_slice(m.payload().unwrap_or_default()).unwrap_or_default()
}

fn counted_events(reports: &[OwnedMessage]) -> u64 {
    reports
        .iter()
        .filter_map(|r| json(r)["events"].as_u64())
        .sum()
}

fn print_services(summaries: &[(&str, String, Summary)]) {
    println!();
    println!(
        "{:<18} {:<18} {:>9} {:>13} {:>8}",
        "service", "handler", "processed", "dead-lettered", "retries"
    );
    for (name, label, s) in summaries {
        println!(
            "{name:<18} {label:<18} {:>9} {:>13} {:>8}",
            s.processed, s.dead_lettered, s.retried
        );
    }
}

fn print_page_views(reports: &[OwnedMessage]) {
    let mut paths: BTreeMap<String, u64> = BTreeMap::new();
    let mut types: BTreeMap<String, u64> = BTreeMap::new();
    for r in reports {
        let v = json(r);
        for (key, into) in [("page_views", &mut paths), ("events_by_type", &mut types)] {
            if let Some(map) = v[key].as_object() {
                for (k, n) in map {
                    *into.entry(k.clone()).or_default() += n.as_u64().unwrap_or(0);
                }
            }
        }
    }
    println!();
    println!(
        "Page views ({} window report(s) on analytics.counts)",
        reports.len()
    );
    for (path, n) in &paths {
        println!("  {path:<16} {n:>4}");
    }
    let types: Vec<String> = types.iter().map(|(k, n)| format!("{k} {n}")).collect();
    println!("  events by type: {}", types.join(", "));
}

fn print_videos(ready: &[OwnedMessage]) {
    println!();
    println!("Videos ready ({} on video.ready)", ready.len());
    for m in ready {
        let v = json(m);
        println!(
            "  {:<8} {:<7} {}",
            v["video_id"].as_str().unwrap_or("?"),
            v["user_id"].as_str().unwrap_or("?"),
            v["thumbnail_url"].as_str().unwrap_or("?")
        );
    }
}

fn print_dead_letters(reader: &Reader, topics: &[&str]) -> anyhow::Result<()> {
    println!();
    println!("Dead-letter entries (every ec-dlt-* header)");
    for topic in topics {
        for m in reader.read(topic)? {
            let headers: BTreeMap<String, String> = m
                .headers()
                .map(|hs| {
                    hs.iter()
                        .filter(|h| h.key.starts_with("ec-dlt-"))
                        .map(|h| {
                            let value = String::from_utf8_lossy(h.value.unwrap_or_default());
                            (
                                h.key.trim_start_matches("ec-dlt-").to_owned(),
                                value.into_owned(),
                            )
                        })
                        .collect()
                })
                .unwrap_or_default();
            let get = |k: &str| headers.get(k).map(String::as_str).unwrap_or("-");
            println!(
                "  {topic}: {}[{}]@{} key={} group={} handler={} consumer={}",
                get("original-topic"),
                get("original-partition"),
                get("original-offset"),
                String::from_utf8_lossy(m.key().unwrap_or_default()),
                get("consumer-group"),
                get("handler"),
                get("consumer-name"),
            );
            println!(
                "      error-class={} retryable={} attempts={} first-failure={} last-failure={}",
                get("error-class"),
                get("error-retryable"),
                get("attempts"),
                get("first-failure"),
                get("last-failure"),
            );
            println!(
                "      original-timestamp={} ({})  error-message: {}",
                get("original-timestamp"),
                get("original-timestamp-type"),
                get("error-message"),
            );
        }
    }
    Ok(())
}
