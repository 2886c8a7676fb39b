//! The slow HTTP sink of the ordering benchmark: a local server that answers every
//! `POST` with 204 after a fixed latency, like a database or a web hook that spends its
//! time waiting, not computing.
//!
//! It runs on its own thread and Tokio runtime inside the bench process, so its CPU is not
//! counted in a contender's (the bench measures the contender's process alone). It counts
//! the requests and the most it held open at once: the concurrency a contender reached.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;

/// Worker threads of the sink's runtime: one would do (it only sleeps and answers), the
/// second keeps its accept loop answering while the first parses a burst of requests.
const SINK_THREADS: usize = 2;

#[derive(Default)]
struct Counters {
    requests: AtomicU64,
    open: AtomicU64,
    peak_open: AtomicU64,
    /// Microseconds from each handler's start to its answer, summed: the latency the sink
    /// really served (a timer fires at its deadline or after it, never before).
    served_us: AtomicU64,
}

/// A running sink; it stops when dropped.
pub struct SlowSink {
    pub url: String,
    counters: Arc<Counters>,
    _stop: tokio::sync::oneshot::Sender<()>,
}

/// What the sink saw since [`SlowSink::reset`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SinkStats {
    pub requests: u64,
    /// Requests held open at once, at most.
    pub peak_open: u64,
    /// Microseconds the sink took to answer, summed over the requests.
    pub served_us: u64,
}

impl SinkStats {
    /// The sink's mean answer time in seconds (`None` before any request).
    pub fn mean_served_s(&self) -> Option<f64> {
        (self.requests > 0).then(|| self.served_us as f64 / 1e6 / self.requests as f64)
    }
}

async fn answer(State((counters, latency)): State<(Arc<Counters>, Duration)>) -> StatusCode {
    let started = std::time::Instant::now();
    counters.requests.fetch_add(1, Ordering::Relaxed);
    let open = counters.open.fetch_add(1, Ordering::Relaxed) + 1;
    counters.peak_open.fetch_max(open, Ordering::Relaxed);
    tokio::time::sleep(latency).await;
    counters.open.fetch_sub(1, Ordering::Relaxed);
    let served = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
    counters.served_us.fetch_add(served, Ordering::Relaxed);
    StatusCode::NO_CONTENT
}

impl SlowSink {
    /// Starts a sink on 127.0.0.1 answering after `latency`.
    pub fn start(latency: Duration) -> anyhow::Result<SlowSink> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(SINK_THREADS)
            .enable_all()
            .build()
            .context("starting the sink's runtime")?;
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .context("binding the sink")?;
        let addr: SocketAddr = listener.local_addr()?;
        let counters = Arc::new(Counters::default());
        let app = Router::new()
            .route("/orders", post(answer))
            .with_state((counters.clone(), latency));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        std::thread::Builder::new()
            .name("slow-sink".into())
            .spawn(move || {
                runtime.block_on(async move {
                    let served = axum::serve(listener, app).with_graceful_shutdown(async {
                        let _ = stopped.await;
                    });
                    if let Err(e) = served.await {
                        eprintln!("bench: the slow sink stopped: {e}");
                    }
                });
            })
            .context("starting the sink's thread")?;
        Ok(SlowSink {
            url: format!("http://{addr}/orders"),
            counters,
            _stop: stop,
        })
    }

    /// Zeroes the counters (before each run).
    pub fn reset(&self) {
        self.counters.requests.store(0, Ordering::Relaxed);
        self.counters.peak_open.store(0, Ordering::Relaxed);
        self.counters.served_us.store(0, Ordering::Relaxed);
    }

    pub fn stats(&self) -> SinkStats {
        SinkStats {
            requests: self.counters.requests.load(Ordering::Relaxed),
            peak_open: self.counters.peak_open.load(Ordering::Relaxed),
            served_us: self.counters.served_us.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sink_answers_after_its_latency_and_counts_what_it_held_open() -> anyhow::Result<()> {
        let sink = SlowSink::start(Duration::from_millis(50))?;
        let started = std::time::Instant::now();
        let posts: Vec<_> = (0..4)
            .map(|_| {
                let addr = sink.url["http://".len()..].split('/').next().unwrap_or_default().to_owned();
                std::thread::spawn(move || -> std::io::Result<String> {
                    use std::io::{Read, Write};
                    let mut s = std::net::TcpStream::connect(addr)?;
                    s.write_all(
                        b"POST /orders HTTP/1.1\r\nHost: sink\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}",
                    )?;
                    let mut answer = String::new();
                    s.read_to_string(&mut answer)?;
                    Ok(answer)
                })
            })
            .collect();
        for p in posts {
            let answer = p
                .join()
                .map_err(|_| anyhow::anyhow!("a poster panicked"))??;
            assert!(answer.starts_with("HTTP/1.1 204"), "{answer}");
        }
        assert!(started.elapsed() >= Duration::from_millis(50));
        let stats = sink.stats();
        assert_eq!(stats.requests, 4);
        assert!((1..=4).contains(&stats.peak_open), "{stats:?}");
        let mean = stats.mean_served_s().unwrap_or_default();
        assert!(mean >= 0.050, "served no faster than its latency: {mean}");
        sink.reset();
        assert_eq!(
            sink.stats(),
            SinkStats {
                requests: 0,
                peak_open: 0,
                served_us: 0
            }
        );
        Ok(())
    }
}
