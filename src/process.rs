//! Worker processes for tests: the `remq-test-worker` binary (src/bin) run as
//! a child process that can be signalled, crashed and inspected.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// How often [`WorkerProcess::wait_exit`] looks at the process.
const POLL: Duration = Duration::from_millis(5);

/// The `remq-test-worker` binary that Cargo built beside the running test
/// (integration tests run from `target/<profile>/deps/`).
fn test_worker_exe() -> PathBuf {
    let exe = std::env::current_exe().expect("the test's own path");
    let dir = exe.parent().and_then(Path::parent).expect("a test binary in target/<profile>/deps");
    dir.join(format!("remq-test-worker{}", std::env::consts::EXE_SUFFIX))
}

/// A `remq-test-worker` child process, killed (SIGKILL) when dropped. Its output
/// goes to `<dir>/<label>.log`, whose tail is printed if the test is failing.
pub struct WorkerProcess {
    /// The name it is logged and reported under.
    pub label: String,
    /// The process.
    pub child: Child,
    /// Its log file.
    log: PathBuf,
    /// Set once the process was reaped.
    exited: Option<ExitStatus>,
}

impl WorkerProcess {
    /// Starts a worker for the Redis at `url` that consumes from the earliest
    /// message, with `vars` (the `REMQ_*` and `TEST_*` settings) on top.
    pub fn start(label: &str, dir: &Path, url: &str, vars: &[(&str, &str)]) -> WorkerProcess {
        let log = dir.join(format!("{label}.log"));
        // The binary logs to stdout; stderr would hold a panic message.
        let file =
            File::options().create(true).append(true).open(&log).expect("create the worker's log file");
        let mut command = Command::new(test_worker_exe());
        // Settings from the environment of whoever runs the tests must not leak in.
        for (name, _) in std::env::vars_os() {
            let name = name.to_string_lossy();
            if ["REMQ_", "TEST_", "REDIS_URL", "RUST_LOG"].iter().any(|p| name.starts_with(p)) {
                command.env_remove(&*name);
            }
        }
        command
            .env("REMQ_REDIS_URL", url)
            .env("REMQ_START_FROM", "earliest")
            .env("RUST_LOG", "remq=info")
            .env("NO_COLOR", "1")
            .envs(vars.iter().copied())
            .stdin(Stdio::null())
            .stdout(file.try_clone().expect("share the worker's log file"))
            .stderr(file);
        let child = command.spawn().expect("start remq-test-worker");
        WorkerProcess { label: label.to_owned(), child, log, exited: None }
    }

    /// Everything the worker logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Whether the worker logged `text`.
    pub fn logged(&self, text: &str) -> bool {
        self.log().contains(text)
    }

    /// Sends a signal (`TERM`, `STOP`, `CONT`) with `kill(1)`.
    pub fn signal(&self, signal: &str) {
        assert!(self.exited.is_none(), "{} already exited", self.label);
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.child.id().to_string())
            .status()
            .expect("run kill(1)");
        assert!(status.success(), "kill -{signal} {} ({}) failed", self.child.id(), self.label);
    }

    /// SIGKILL, as a crash or an OOM kill would; returns once the process is gone.
    pub fn crash(&mut self) {
        if self.exited.is_none() {
            let _ = self.child.kill();
            self.exited = Some(self.child.wait().expect("reap the worker"));
        }
    }

    /// The local ports of the process's TCP connections to `redis_port` on
    /// loopback, from `/proc` (its socket inodes, looked up in `/proc/net/tcp`).
    pub fn redis_ports(&self, redis_port: u16) -> Vec<u16> {
        let fds = std::fs::read_dir(format!("/proc/{}/fd", self.child.id())).expect("Linux /proc");
        let inodes: Vec<String> = fds
            .filter_map(|fd| std::fs::read_link(fd.ok()?.path()).ok())
            .filter_map(|link| {
                let link = link.to_string_lossy();
                Some(link.strip_prefix("socket:[")?.strip_suffix(']')?.to_owned())
            })
            .collect();
        let table = std::fs::read_to_string("/proc/net/tcp").expect("Linux /proc");
        let port_of = |address: &str| u16::from_str_radix(address.rsplit(':').next()?, 16).ok();
        table
            .lines()
            .skip(1)
            .filter_map(|row| {
                let columns: Vec<&str> = row.split_whitespace().collect();
                let (local, remote, inode) = (columns.get(1)?, columns.get(2)?, columns.get(9)?);
                (port_of(remote)? == redis_port && inodes.iter().any(|i| i == inode))
                    .then(|| port_of(local))?
            })
            .collect()
    }

    /// Whether the process still runs.
    pub fn is_running(&mut self) -> bool {
        self.exited.is_none() && self.child.try_wait().expect("poll the worker").is_none()
    }

    /// Waits for the process to exit by itself, at most `timeout`.
    pub async fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("poll the worker") {
                self.exited = Some(status);
                return status;
            }
            assert!(Instant::now() < deadline, "{} did not exit within {timeout:?}", self.label);
            tokio::time::sleep(POLL).await;
        }
    }
}

impl Drop for WorkerProcess {
    fn drop(&mut self) {
        self.crash();
        if std::thread::panicking() {
            let log = self.log();
            let lines: Vec<&str> = log.lines().collect();
            let tail = &lines[lines.len().saturating_sub(40)..];
            eprintln!("---- {} ({:?}), last lines of its log:\n{}", self.label, self.exited, tail.join("\n"));
        }
    }
}
