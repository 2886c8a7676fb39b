//! The slow HTTP sink of the ordering benchmark: a local server that answers every
//! `POST` with 204 after a fixed latency, like a database or a web hook that spends its
//! time waiting, not computing.
//!
//! It runs on its own thread and Tokio runtime inside the bench process, so its CPU is not
//! counted in a contender's (the bench measures the contender's process alone). It counts
//! the requests and the most it held open at once: the concurrency a contender reached; and
//! it times its answers, which gives the contender's sustained rate (see [`STEADY`]).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;

/// Worker threads of the sink's runtime: one would do (it only sleeps and answers), the
/// second keeps its accept loop answering while the first parses a burst of requests.
const SINK_THREADS: usize = 2;

/// The share of a run's answers, by answer time, that measures the sustained rate: the
/// first tenth is the contender filling its calls after the start (a fetch, a JVM warming)
/// and the last tenth the tail it drains, neither of which `maxInFlight / latency` is about.
pub const STEADY: (f64, f64) = (0.1, 0.9);

/// Fewest answers for a sustained rate: below it the middle of a run is a few calls wide.
const STEADY_MIN_ANSWERS: usize = 100;

#[derive(Default)]
struct Counters {
    requests: AtomicU64,
    open: AtomicU64,
    peak_open: AtomicU64,
    /// Microseconds from each handler's start to its answer, summed: the latency the sink
    /// really served (a timer fires at its deadline or after it, never before).
    served_us: AtomicU64,
    /// When each answer was given (about 16 bytes a call: 1.6 MB per 100,000).
    answered: Mutex<Vec<Instant>>,
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
    /// Answers between the [`STEADY`] shares of the run and the microseconds between them
    /// (0 and 0 below [`STEADY_MIN_ANSWERS`]).
    pub steady_calls: u64,
    pub steady_us: u64,
}

impl SinkStats {
    /// The sink's mean answer time in seconds (`None` before any request).
    pub fn mean_served_s(&self) -> Option<f64> {
        (self.requests > 0).then(|| self.served_us as f64 / 1e6 / self.requests as f64)
    }

    /// Calls answered per second in the middle of the run ([`STEADY`]), `None` when too
    /// few were answered to tell.
    pub fn steady_rate(&self) -> Option<f64> {
        (self.steady_us > 0).then(|| self.steady_calls as f64 * 1e6 / self.steady_us as f64)
    }
}

fn lock(answered: &Mutex<Vec<Instant>>) -> std::sync::MutexGuard<'_, Vec<Instant>> {
    answered.lock().unwrap_or_else(|p| p.into_inner())
}

/// The answers between the [`STEADY`] shares of `answered` (sorted here: two threads push)
/// and the microseconds between the first and the last of them.
fn steady(answered: &mut [Instant]) -> (u64, u64) {
    if answered.len() < STEADY_MIN_ANSWERS {
        return (0, 0);
    }
    answered.sort_unstable();
    let at = |share: f64| ((answered.len() - 1) as f64 * share).round() as usize;
    let (from, to) = (at(STEADY.0), at(STEADY.1));
    let us = answered[to]
        .saturating_duration_since(answered[from])
        .as_micros();
    (
        u64::try_from(to - from).unwrap_or(u64::MAX),
        u64::try_from(us).unwrap_or(u64::MAX),
    )
}

async fn answer(State((counters, latency)): State<(Arc<Counters>, Duration)>) -> StatusCode {
    let started = Instant::now();
    counters.requests.fetch_add(1, Ordering::Relaxed);
    let open = counters.open.fetch_add(1, Ordering::Relaxed) + 1;
    counters.peak_open.fetch_max(open, Ordering::Relaxed);
    tokio::time::sleep(latency).await;
    counters.open.fetch_sub(1, Ordering::Relaxed);
    // One clock read for both: the answer's time and how long it was held.
    let answered = Instant::now();
    let served = answered.saturating_duration_since(started).as_micros();
    counters
        .served_us
        .fetch_add(u64::try_from(served).unwrap_or(u64::MAX), Ordering::Relaxed);
    lock(&counters.answered).push(answered);
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
        lock(&self.counters.answered).clear();
    }

    pub fn stats(&self) -> SinkStats {
        let (steady_calls, steady_us) = steady(&mut lock(&self.counters.answered));
        SinkStats {
            requests: self.counters.requests.load(Ordering::Relaxed),
            peak_open: self.counters.peak_open.load(Ordering::Relaxed),
            served_us: self.counters.served_us.load(Ordering::Relaxed),
            steady_calls,
            steady_us,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sink_answers_after_its_latency_and_counts_what_it_held_open() -> anyhow::Result<()> {
        let sink = SlowSink::start(Duration::from_millis(50))?;
        let started = Instant::now();
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
                served_us: 0,
                steady_calls: 0,
                steady_us: 0,
            }
        );
        Ok(())
    }

    #[test]
    fn the_sustained_rate_counts_the_middle_of_the_run_and_not_its_start_or_its_tail() {
        // 1,001 answers: 100 in the first second (a slow start), then one per millisecond
        // for 800 ms, then 100 more over the next 10 s (a tail).
        let t0 = Instant::now();
        let mut answered: Vec<Instant> = (0..100)
            .map(|i| t0 + Duration::from_millis(10 * i))
            .chain((0..=800).map(|i| t0 + Duration::from_millis(1_000 + i)))
            .chain((1..=100).map(|i| t0 + Duration::from_millis(1_800 + 100 * i)))
            .rev()
            .collect();
        let (calls, us) = steady(&mut answered);
        assert_eq!((calls, us), (800, 800_000));
        let stats = SinkStats {
            requests: 1_001,
            peak_open: 1,
            served_us: 0,
            steady_calls: calls,
            steady_us: us,
        };
        assert_eq!(stats.steady_rate(), Some(1_000.0));
        let mut few: Vec<Instant> = (0..99).map(|_| t0).collect();
        assert_eq!(steady(&mut few), (0, 0));
    }
}
