//! Running a contender as a child process and measuring it: wall time to "done", CPU
//! seconds (user + system, from `getrusage(RUSAGE_CHILDREN)` before and after, so run one
//! child at a time), and peak RSS (`VmHWM` of `/proc/<pid>/status`, sampled while it runs).

use std::process::{Child, Command, ExitStatus};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use nix::sys::resource::{UsageWho, getrusage};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// How often a running child is sampled: short enough that the VmHWM and "done" time
/// missed at the end are small against runs of seconds.
pub const SAMPLE_EVERY: Duration = Duration::from_millis(50);

/// What one measured run gave.
#[derive(Debug, Clone)]
pub struct Measured {
    /// From spawn to done (the child's exit, or the done check turning true).
    pub wall: Duration,
    /// User + system CPU of the child, its whole life (shutdown included).
    pub cpu: Duration,
    /// Peak resident set size in KiB.
    pub peak_rss_kib: u64,
    pub status: Option<ExitStatus>,
    /// From spawn to the child saying it is ready (see [`run_watched`]); `None` when it was
    /// not asked or never said so.
    pub ready: Option<Duration>,
}

fn children_cpu() -> anyhow::Result<Duration> {
    let u = getrusage(UsageWho::RUSAGE_CHILDREN)?;
    let t = |tv: nix::sys::time::TimeVal| {
        Duration::from_secs(u64::try_from(tv.tv_sec()).unwrap_or(0))
            + Duration::from_micros(u64::try_from(tv.tv_usec()).unwrap_or(0))
    };
    Ok(t(u.user_time()) + t(u.system_time()))
}

/// `VmHWM` (peak RSS) of `pid` in KiB, if it still runs.
pub fn vm_hwm_kib(pid: u32) -> Option<u64> {
    status_field(pid, "VmHWM:")
}

/// `VmRSS` (current RSS) of `pid` in KiB, if it still runs.
pub fn vm_rss_kib(pid: u32) -> Option<u64> {
    status_field(pid, "VmRSS:")
}

fn status_field(pid: u32, field: &str) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    text.lines()
        .find(|l| l.starts_with(field))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// Sends SIGTERM to `child` (a clean stop: the worker drains and commits).
pub fn terminate(child: &Child) -> anyhow::Result<()> {
    let pid = i32::try_from(child.id())?;
    kill(Pid::from_raw(pid), Signal::SIGTERM).context("sending SIGTERM")?;
    Ok(())
}

/// Waits up to `grace` for `child` to exit, then kills it.
pub fn wait_or_kill(child: &mut Child, grace: Duration) -> anyhow::Result<ExitStatus> {
    let deadline = Instant::now() + grace;
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(status);
        }
        if Instant::now() >= deadline {
            child.kill()?;
            return Ok(child.wait()?);
        }
        std::thread::sleep(SAMPLE_EVERY);
    }
}

/// Runs `cmd` and measures it until it is done (see [`run_watched`]; no readiness).
pub fn run_measured(
    cmd: &mut Command,
    timeout: Duration,
    done: impl FnMut(u32) -> anyhow::Result<bool>,
) -> anyhow::Result<Measured> {
    run_watched(cmd, timeout, |_| false, done)
}

/// Runs `cmd` and measures it until it is done.
///
/// `ready(pid)` is asked at every sample until it first returns `true` (the child finished
/// starting: a JVM's start-up is reported apart from its work). `done(pid)` is asked at
/// every sample; when it returns `true` the wall time stops and the child gets SIGTERM (for
/// a consumer that never exits by itself). A child that exits by itself is done at its
/// exit, which must then be successful. Past `timeout` the child is killed and the run
/// fails.
pub fn run_watched(
    cmd: &mut Command,
    timeout: Duration,
    mut ready: impl FnMut(u32) -> bool,
    mut done: impl FnMut(u32) -> anyhow::Result<bool>,
) -> anyhow::Result<Measured> {
    let cpu_before = children_cpu()?;
    let started = Instant::now();
    let mut child = cmd
        .spawn()
        .with_context(|| format!("starting {:?}", cmd.get_program()))?;
    let pid = child.id();
    let mut peak = 0u64;
    let mut wall = None;
    let mut ready_at = None;
    let status = loop {
        if let Some(kib) = vm_hwm_kib(pid) {
            peak = peak.max(kib);
        }
        if ready_at.is_none() && ready(pid) {
            ready_at = Some(started.elapsed());
        }
        if let Some(status) = child.try_wait()? {
            wall.get_or_insert_with(|| started.elapsed());
            break status;
        }
        if wall.is_none() && done(pid)? {
            wall = Some(started.elapsed());
            terminate(&child)?;
            let status = wait_or_kill(&mut child, Duration::from_secs(60))?;
            break status;
        }
        if started.elapsed() > timeout {
            child.kill()?;
            let _ = child.wait();
            anyhow::bail!("{:?} did not finish within {timeout:?}", cmd.get_program());
        }
        std::thread::sleep(SAMPLE_EVERY);
    };
    let cpu = children_cpu()?.saturating_sub(cpu_before);
    let wall = wall.unwrap_or_else(|| started.elapsed());
    Ok(Measured {
        wall,
        cpu,
        peak_rss_kib: peak,
        status: Some(status),
        ready: ready_at,
    })
}
