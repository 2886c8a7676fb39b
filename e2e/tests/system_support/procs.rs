//! The binaries under test and the local processes that run them.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::SystemTime;

/// The operator and worker executables of this workspace, built for the profile this test
/// was built with.
pub struct Binaries {
    pub operator: PathBuf,
    pub worker: PathBuf,
}

/// The workspace root (`e2e/..`).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("e2e/ has a parent")
        .to_path_buf()
}

/// Finds `eventconsumer-operator` and `eventconsumer-worker` next to this test's own
/// executable (`<target>/<profile>/deps/system-…` → `<target>/<profile>/`), and builds them
/// with `cargo build` when they are missing or older than their sources. `cargo test
/// --workspace` (what `make test` runs) builds them already, because their own crates have
/// integration tests; `cargo test -p eventconsumer-e2e` does not.
///
/// `EC_E2E_NO_BUILD=1` uses whatever binaries exist, stale or not (while their sources are
/// half-edited, say).
///
/// # Panics
/// When the build fails, with cargo's last lines.
pub fn binaries() -> &'static Binaries {
    static BINARIES: OnceLock<Binaries> = OnceLock::new();
    BINARIES.get_or_init(locate_or_build)
}

fn locate_or_build() -> Binaries {
    let exe = std::env::current_exe().expect("the test executable's path");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("the test executable lives in <target>/<profile>/deps/")
        .to_path_buf();
    let target_dir = profile_dir
        .parent()
        .expect("<target>/<profile> has a parent")
        .to_path_buf();
    let bins = Binaries {
        operator: profile_dir.join("eventconsumer-operator"),
        worker: profile_dir.join("eventconsumer-worker"),
    };
    let no_build = std::env::var("EC_E2E_NO_BUILD").is_ok_and(|v| v == "1");
    let fresh = |bin: &Path| {
        let Ok(built) = bin.metadata().and_then(|m| m.modified()) else {
            return false;
        };
        no_build || newest_source() <= built
    };
    if fresh(&bins.operator) && fresh(&bins.worker) {
        return bins;
    }
    let profile = profile_dir
        .file_name()
        .and_then(|n| n.to_str())
        .expect("a UTF-8 profile directory name");
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned()));
    cmd.current_dir(workspace_root())
        .env("CARGO_TARGET_DIR", &target_dir)
        .args([
            "build",
            "-p",
            "eventconsumer-operator",
            "-p",
            "eventconsumer-worker",
            "--bins",
        ]);
    match profile {
        "debug" => {}
        "release" => {
            cmd.arg("--release");
        }
        other => {
            cmd.args(["--profile", other]);
        }
    }
    eprintln!("building the operator and worker binaries: {cmd:?}");
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run cargo ({cmd:?}): {e}"));
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let tail: Vec<&str> = stderr.lines().rev().take(40).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        panic!(
            "building the operator and worker failed ({cmd:?}, {}):\n{}\n\
             Fix the build (or set EC_E2E_NO_BUILD=1 to use the existing binaries).",
            out.status,
            tail.join("\n")
        );
    }
    for bin in [&bins.operator, &bins.worker] {
        assert!(bin.exists(), "cargo built but {} is missing", bin.display());
    }
    bins
}

/// Modification time of the newest source file the two binaries are built from.
fn newest_source() -> SystemTime {
    let root = workspace_root();
    let mut newest = SystemTime::UNIX_EPOCH;
    let mut stack: Vec<PathBuf> = ["contract", "operator/src", "worker/src"]
        .iter()
        .map(|d| root.join(d))
        .collect();
    for file in [
        "Cargo.lock",
        "Cargo.toml",
        "operator/Cargo.toml",
        "worker/Cargo.toml",
    ] {
        stack.push(root.join(file));
    }
    while let Some(path) = stack.pop() {
        let Ok(meta) = path.metadata() else { continue };
        if meta.is_dir() {
            if let Ok(entries) = path.read_dir() {
                stack.extend(entries.flatten().map(|e| e.path()));
            }
        } else if let Ok(modified) = meta.modified() {
            newest = newest.max(modified);
        }
    }
    newest
}

/// A TCP port on 127.0.0.1 that nothing listens on right now. (The port is released before
/// the child binds it; another process could take it in between, which on this machine
/// does not happen in practice.)
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

struct Proc {
    name: String,
    child: Child,
    log: PathBuf,
}

/// The children a test started. Each one's stdout and stderr go to `<log dir>/<name>.log`;
/// dropping this kills every child that still runs (also when the test panics).
pub struct Processes {
    log_dir: PathBuf,
    children: Mutex<Vec<Proc>>,
}

impl Processes {
    pub fn new(log_dir: PathBuf) -> Self {
        std::fs::create_dir_all(&log_dir)
            .unwrap_or_else(|e| panic!("creating {}: {e}", log_dir.display()));
        Processes {
            log_dir,
            children: Mutex::new(Vec::new()),
        }
    }

    pub fn log_dir(&self) -> &Path {
        &self.log_dir
    }

    /// Starts `cmd` as `name` (unique among this test's children).
    pub fn spawn(&self, name: &str, mut cmd: Command) {
        let log = self.log_dir.join(format!("{name}.log"));
        let file = File::create(&log).unwrap_or_else(|e| panic!("creating {}: {e}", log.display()));
        let err = file.try_clone().expect("a second handle on the log file");
        cmd.stdin(Stdio::null())
            .stdout(Stdio::from(file))
            .stderr(Stdio::from(err));
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name} ({cmd:?}): {e}"));
        let mut children = self.children.lock().expect("children lock");
        assert!(
            children.iter().all(|p| p.name != name),
            "two children named {name}"
        );
        children.push(Proc {
            name: name.to_owned(),
            child,
            log,
        });
    }

    /// Panics, with the end of its log, when any child has exited: a worker that dies is a
    /// failure to report at once, not a timeout to wait for.
    pub fn assert_all_running(&self) {
        let mut children = self.children.lock().expect("children lock");
        for p in children.iter_mut() {
            if let Ok(Some(status)) = p.child.try_wait() {
                panic!(
                    "{} exited ({status}); the end of {}:\n{}",
                    p.name,
                    p.log.display(),
                    tail(&p.log, 4000)
                );
            }
        }
    }

    /// How many children are running.
    pub fn count(&self) -> usize {
        self.children.lock().expect("children lock").len()
    }
}

impl Drop for Processes {
    fn drop(&mut self) {
        let Ok(mut children) = self.children.lock() else {
            return;
        };
        for p in children.iter_mut() {
            let _ = p.child.kill();
            let _ = p.child.wait();
        }
        if std::thread::panicking() {
            eprintln!(
                "the logs of the test's processes are in {}",
                self.log_dir.display()
            );
        }
    }
}

/// The last `max` bytes of `path`, as text.
pub fn tail(path: &Path, max: u64) -> String {
    let Ok(mut file) = File::open(path) else {
        return String::new();
    };
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    let _ = file.seek(SeekFrom::Start(len.saturating_sub(max)));
    let mut buf = Vec::new();
    let _ = file.read_to_end(&mut buf);
    String::from_utf8_lossy(&buf).into_owned()
}
