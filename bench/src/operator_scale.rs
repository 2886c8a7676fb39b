//! The operator scale test: N EventConsumers in a fresh namespace of the local control
//! plane, reconciled by the real operator binary; time until every Deployment exists and
//! every status is current (`status.observedGeneration == metadata.generation`), the
//! operator's peak RSS, and reconcile p50/p99 from its own `/metrics` histogram.
//!
//! The EventConsumers ask for `replicas: 0`: the Deployments (and ReplicaSets) are created
//! and owned as usual, but the shared local control plane is not asked to schedule a
//! thousand pods on its one fake node. kubectl (from `. .dev/env`) does the API calls.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context as _;

use crate::{metrics, proc};

/// What the scale test measured.
#[derive(Debug, Clone)]
pub struct ScaleReport {
    pub consumers: usize,
    /// kubectl creating the objects (4 clients in parallel).
    pub create: Duration,
    /// From the first create to every Deployment present and every status current.
    pub converged: Duration,
    pub operator_peak_rss_kib: u64,
    pub operator_cpu_s: f64,
    pub reconcile_p50_s: Option<f64>,
    pub reconcile_p99_s: Option<f64>,
    pub reconciles: f64,
}

fn kubectl() -> Command {
    Command::new("kubectl")
}

fn kubectl_ok(args: &[&str]) -> anyhow::Result<String> {
    let out = kubectl()
        .args(args)
        .stdin(Stdio::null())
        .output()
        .context("running kubectl (is `. .dev/env` sourced?)")?;
    anyhow::ensure!(
        out.status.success(),
        "kubectl {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn manifest(ns: &str, name: &str, bootstrap: &str) -> String {
    format!(
        "apiVersion: eventconsumer.dev/v1alpha1\nkind: EventConsumer\nmetadata:\n  name: {name}\n  namespace: {ns}\nspec:\n  handler: order\n  order:\n    action: inventory\n  kafka:\n    bootstrapServers: {bootstrap}\n    topics: [bench.scale]\n  replicas: 0\n---\n"
    )
}

/// (Deployments, EventConsumers with a current status) in `ns`.
fn observe(ns: &str) -> anyhow::Result<(usize, usize)> {
    let deployments = kubectl_ok(&["get", "deployments", "-n", ns, "-o", "name"])?
        .lines()
        .filter(|l| !l.trim().is_empty())
        .count();
    let list: serde_json::Value = serde_json::from_str(&kubectl_ok(&[
        "get",
        "eventconsumers",
        "-n",
        ns,
        "-o",
        "json",
    ])?)?;
    let current = list["items"]
        .as_array()
        .map(|items| {
            items
                .iter()
                .filter(|i| {
                    let generation = i["metadata"]["generation"].as_i64();
                    generation.is_some() && i["status"]["observedGeneration"].as_i64() == generation
                })
                .count()
        })
        .unwrap_or(0);
    Ok((deployments, current))
}

/// Runs the test with `consumers` EventConsumers and the operator at `operator_bin`.
pub fn run(
    operator_bin: &Path,
    consumers: usize,
    bootstrap: &str,
    timeout: Duration,
    log: &Path,
) -> anyhow::Result<ScaleReport> {
    let root = crate::repo_root();
    for (file, crd) in [
        (
            "crds/eventconsumer.yaml",
            "crd/eventconsumers.eventconsumer.dev",
        ),
        (
            "crds/deadletterredrive.yaml",
            "crd/deadletterredrives.eventconsumer.dev",
        ),
    ] {
        kubectl_ok(&[
            "apply",
            "--server-side",
            "--force-conflicts",
            "-f",
            &root.join(file).display().to_string(),
        ])?;
        kubectl_ok(&["wait", "--for=condition=Established", crd, "--timeout=60s"])?;
    }
    let ns = format!("ec-scale-{}", crate::now_millis());
    kubectl_ok(&["create", "namespace", &ns])?;
    let result = measure(operator_bin, consumers, bootstrap, timeout, log, &ns);
    // Clean up whatever happened; the garbage collector removes the Deployments.
    let _ = kubectl_ok(&["delete", "namespace", &ns, "--wait=true", "--timeout=300s"]);
    result
}

fn measure(
    operator_bin: &Path,
    consumers: usize,
    bootstrap: &str,
    timeout: Duration,
    log: &Path,
    ns: &str,
) -> anyhow::Result<ScaleReport> {
    // Four manifest files, created by four kubectl processes at once.
    let dir = std::env::temp_dir().join(ns);
    std::fs::create_dir_all(&dir)?;
    let mut files = Vec::new();
    for part in 0..4 {
        let mut text = String::new();
        for i in (part..consumers).step_by(4) {
            text.push_str(&manifest(ns, &format!("scale-{i:04}"), bootstrap));
        }
        let f = dir.join(format!("part-{part}.yaml"));
        std::fs::write(&f, text)?;
        files.push(f);
    }

    let port = crate::free_port()?;
    let out = std::fs::File::create(log)?;
    let mut operator = Command::new(operator_bin)
        .args(["--namespace", ns, "--leader-elect", "false"])
        .args(["--http-addr", &format!("127.0.0.1:{port}")])
        .args(["--log-level", "warn"])
        .stdin(Stdio::null())
        .stdout(out.try_clone()?)
        .stderr(out)
        .spawn()
        .with_context(|| format!("starting {}", operator_bin.display()))?;
    let pid = operator.id();
    let ready_deadline = Instant::now() + Duration::from_secs(60);
    while !matches!(metrics::get(port, "/healthz"), Ok((200, _))) {
        if Instant::now() > ready_deadline || operator.try_wait()?.is_some() {
            let _ = operator.kill();
            anyhow::bail!("the operator did not come up (log: {})", log.display());
        }
        std::thread::sleep(Duration::from_millis(100));
    }

    let started = Instant::now();
    let creators: Vec<_> = files
        .iter()
        .map(|f| {
            kubectl()
                .args(["create", "-f"])
                .arg(f)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
        })
        .collect::<Result<_, _>>()?;
    let mut peak = 0u64;
    for c in creators {
        let out = c.wait_with_output()?;
        anyhow::ensure!(
            out.status.success(),
            "kubectl create: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let create = started.elapsed();
    let converged = loop {
        if let Some(kib) = proc::vm_hwm_kib(pid) {
            peak = peak.max(kib);
        }
        anyhow::ensure!(
            operator.try_wait()?.is_none(),
            "the operator exited (log: {})",
            log.display()
        );
        let (deployments, current) = observe(ns)?;
        if deployments >= consumers && current >= consumers {
            break started.elapsed();
        }
        if started.elapsed() > timeout {
            let _ = operator.kill();
            anyhow::bail!(
                "after {timeout:?}: {deployments} Deployments, {current} current statuses of {consumers}"
            );
        }
        std::thread::sleep(Duration::from_millis(250));
    };
    // A few seconds more: status writes trigger more reconciles, which count too.
    std::thread::sleep(Duration::from_secs(3));
    if let Some(kib) = proc::vm_hwm_kib(pid) {
        peak = peak.max(kib);
    }
    let cpu = cpu_seconds(pid).unwrap_or(f64::NAN);
    let text = metrics::get(port, "/metrics")
        .map(|(_, t)| t)
        .unwrap_or_default();
    let hist = "eventconsumer_operator_reconcile_duration_seconds";
    let report = ScaleReport {
        consumers,
        create,
        converged,
        operator_peak_rss_kib: peak,
        operator_cpu_s: cpu,
        reconcile_p50_s: metrics::quantile(&text, hist, 0.5),
        reconcile_p99_s: metrics::quantile(&text, hist, 0.99),
        reconciles: metrics::sum(&text, "eventconsumer_operator_reconciles_total"),
    };
    proc::terminate(&operator)?;
    proc::wait_or_kill(&mut operator, Duration::from_secs(30))?;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(report)
}

/// utime + stime of a running process from `/proc/<pid>/stat`, in seconds (USER_HZ = 100
/// on Linux).
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may contain spaces; fields after the closing parenthesis are fixed.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / 100.0)
}
