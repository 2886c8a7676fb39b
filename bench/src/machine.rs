//! What machine and versions a result was measured on, for the results file.

use std::process::Command;

fn first_line(cmd: &str, args: &[&str]) -> String {
    Command::new(cmd)
        .args(args)
        .output()
        .ok()
        .map(|o| {
            let text = if o.stdout.is_empty() {
                o.stderr
            } else {
                o.stdout
            };
            String::from_utf8_lossy(&text)
                .lines()
                .next()
                .unwrap_or("")
                .trim()
                .to_owned()
        })
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "unknown".to_owned())
}

fn read_trim(path: &str) -> String {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|_| "unknown".to_owned())
}

/// A `KEY=value` of `hack/versions.env`.
pub fn pinned_version(key: &str) -> String {
    let path = crate::repo_root().join("hack/versions.env");
    std::fs::read_to_string(path)
        .ok()
        .and_then(|text| {
            text.lines().find_map(|l| {
                let l = l.trim().trim_start_matches("export ");
                let (k, v) = l.split_once('=')?;
                (k == key).then(|| v.trim_matches('"').to_owned())
            })
        })
        .unwrap_or_else(|| "unknown".to_owned())
}

/// The version of `module` that `bench/<dir>/go.mod` pins.
fn go_mod_version(dir: &str, module: &str) -> String {
    let path = crate::repo_root().join("bench").join(dir).join("go.mod");
    std::fs::read_to_string(path)
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.split_whitespace().any(|w| w == module))
                .and_then(|l| l.split_whitespace().last().map(str::to_owned))
        })
        .unwrap_or_else(|| "unknown".to_owned())
}

/// The versions of the libraries inside the Spring contender's jar (what Maven resolved).
fn spring_versions() -> String {
    let jar = crate::repo_root().join("target/bench/spring-orders.jar");
    let Ok(out) = Command::new("unzip").arg("-Z1").arg(&jar).output() else {
        return "Spring contender not built".to_owned();
    };
    let names = String::from_utf8_lossy(&out.stdout);
    let version = |prefix: &str| {
        names
            .lines()
            .filter_map(|l| l.strip_prefix("BOOT-INF/lib/"))
            .find_map(|l| {
                let v = l.strip_prefix(prefix)?.strip_suffix(".jar")?;
                v.starts_with(|c: char| c.is_ascii_digit())
                    .then(|| v.to_owned())
            })
            .unwrap_or_else(|| "unknown".to_owned())
    };
    format!(
        "Spring Boot {}, spring-kafka {}, kafka-clients {}, Jackson {}",
        version("spring-boot-"),
        version("spring-kafka-"),
        version("kafka-clients-"),
        version("jackson-databind-")
    )
}

/// Host name (for the results file name).
pub fn hostname() -> String {
    read_trim("/proc/sys/kernel/hostname")
}

/// Markdown lines describing the machine and the versions.
pub fn describe() -> Vec<String> {
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|k| k.parse::<u64>().ok())
        })
        .map_or_else(
            || "unknown".to_owned(),
            |kib| format!("{:.1} GiB", kib as f64 / 1024.0 / 1024.0),
        );
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown".to_owned());
    let (_, rdkafka) = rdkafka::util::get_rdkafka_version();
    vec![
        format!(
            "- Host: `{}`, {cores} cores ({cpu}), {mem} memory",
            hostname()
        ),
        format!("- Kernel: {}", read_trim("/proc/sys/kernel/osrelease")),
        format!(
            "- Load average at start: {}",
            read_trim("/proc/loadavg")
                .split_whitespace()
                .take(3)
                .collect::<Vec<_>>()
                .join(" ")
        ),
        format!(
            "- Kafka {} (KRaft, one node, loopback), librdkafka {rdkafka}, kafka-go {}, franz-go {}",
            pinned_version("KAFKA_VERSION"),
            go_mod_version("seedloop", "github.com/segmentio/kafka-go"),
            go_mod_version("franzgo", "github.com/twmb/franz-go")
        ),
        format!("- {}", spring_versions()),
        format!(
            "- {}, {}, {}",
            first_line("rustc", &["--version"]),
            first_line("go", &["version"]),
            first_line("java", &["-version"])
        ),
        format!(
            "- Commit: {}",
            first_line("git", &["rev-parse", "--short", "HEAD"])
        ),
    ]
}
