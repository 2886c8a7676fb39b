//! `eventconsumer-worker demo` needs nothing but the binary: it runs the three use cases on
//! rdkafka's embedded mock cluster and must finish well within a minute.

use std::process::Command;
use std::time::{Duration, Instant};

#[test]
fn the_demo_runs_all_three_use_cases_on_the_mock_cluster_within_a_minute() {
    let started = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_eventconsumer-worker"))
        .arg("demo")
        .env_clear()
        .output()
        .expect("run the demo");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "demo failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "took {:?}",
        started.elapsed()
    );
    assert!(stdout.contains("All expected records arrived"), "{stdout}");
    // The poison order, dead-lettered by each of the four order actions, and the order
    // whose sink kept failing.
    assert_eq!(
        stdout.matches("error-class=validation").count(),
        4,
        "{stdout}"
    );
    assert_eq!(
        stdout.matches("error-class=sink-unavailable").count(),
        1,
        "{stdout}"
    );
    assert_eq!(
        stdout
            .matches("https://cdn.example.com/thumbnails/")
            .count(),
        3,
        "{stdout}"
    );
}
