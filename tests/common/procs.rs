//! Real `ctxd` processes for process-level tests: SIGKILL, SIGSTOP/SIGCONT, restart.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A `ctxd` child process, killed on drop.
pub struct Ctxd {
    child: Option<Child>,
    args: Vec<String>,
    /// Where its stderr goes (appended across restarts); None: discarded.
    log: Option<PathBuf>,
}

impl Ctxd {
    pub fn spawn(args: Vec<String>) -> Ctxd {
        Self::spawn_logged(args, None)
    }

    /// Spawns `ctxd` with its stderr (at `RUST_LOG=info`) appended to `log`.
    pub fn spawn_logged(args: Vec<String>, log: Option<PathBuf>) -> Ctxd {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_ctxd"));
        cmd.args(&args).stdout(Stdio::null());
        match &log {
            Some(path) => {
                let f = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .expect("open the ctxd log");
                cmd.env("RUST_LOG", "info,raft=warn").stderr(f);
            }
            None => {
                cmd.env("RUST_LOG", "warn").stderr(Stdio::null());
            }
        }
        let child = cmd.spawn().expect("spawn ctxd");
        Ctxd {
            child: Some(child),
            args,
            log,
        }
    }

    /// What the process wrote to its log so far (empty without one).
    pub fn log_text(&self) -> String {
        self.log
            .as_ref()
            .and_then(|p| std::fs::read_to_string(p).ok())
            .unwrap_or_default()
    }

    /// SIGTERM, then waits up to `within` for the process to exit; its exit status.
    /// Panics if it is still running then.
    pub async fn terminate(&mut self, within: Duration) -> std::process::ExitStatus {
        self.signal("TERM");
        let mut c = self.child.take().expect("a running ctxd");
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = c.try_wait().expect("wait for ctxd") {
                return status;
            }
            if Instant::now() >= deadline {
                let _ = c.kill();
                let _ = c.wait();
                panic!("ctxd did not exit within {within:?} of SIGTERM");
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// SIGKILL, no chance to flush anything.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            // A stopped process must be continued to die promptly.
            self.signal("CONT");
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Whether the process ended on its own (crashed or exited) since it was started.
    pub fn exited(&mut self) -> bool {
        match &mut self.child {
            Some(c) => !matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// Whether the process is running (not killed).
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// Starts the process again with the same flags (killing it first if it runs).
    pub fn restart(&mut self) {
        self.kill9();
        *self = Ctxd::spawn_logged(self.args.clone(), self.log.take());
    }

    /// SIGSTOP: the process freezes (timers, network, disk) until `resume`.
    pub fn pause(&self) {
        self.signal("STOP");
    }

    /// SIGCONT after `pause`.
    pub fn resume(&self) {
        self.signal("CONT");
    }

    fn signal(&self, sig: &str) {
        if let Some(c) = &self.child {
            // The shell's builtin `kill`: no dependency on procps.
            let status = Command::new("sh")
                .args(["-c", &format!("kill -{sig} {}", c.id())])
                .status()
                .expect("run sh -c kill");
            assert!(status.success(), "kill -{sig} {} failed", c.id());
        }
    }
}

impl Drop for Ctxd {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// A loopback port the OS considers free now.
pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

/// Starts `n` `ctxd` processes forming a new cluster (`extra` flags go to each).
pub fn start_cluster(dir: &Path, n: usize, extra: &[&str]) -> (Vec<Ctxd>, Vec<String>) {
    let extra: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
    start_cluster_with(dir, n, false, |_| extra.clone())
}

/// Starts `n` `ctxd` processes forming a new cluster; node `i` (from 0) gets the
/// flags `extra(i)`. With `logged`, each writes its log to `dir/nI.log`.
pub fn start_cluster_with(
    dir: &Path,
    n: usize,
    logged: bool,
    extra: impl Fn(usize) -> Vec<String>,
) -> (Vec<Ctxd>, Vec<String>) {
    let addrs: Vec<String> = (0..n)
        .map(|_| format!("127.0.0.1:{}", free_port()))
        .collect();
    let initial = ctxstore::config::format_initial_cluster(&addrs);
    let procs = addrs
        .iter()
        .enumerate()
        .map(|(i, a)| {
            let mut args = vec![
                "--node-id".into(),
                (i + 1).to_string(),
                "--listen".into(),
                a.clone(),
                "--data-dir".into(),
                dir.join(format!("n{}", i + 1)).display().to_string(),
                "--initial-cluster".into(),
                initial.clone(),
            ];
            args.extend(extra(i));
            let log = logged.then(|| dir.join(format!("n{}.log", i + 1)));
            Ctxd::spawn_logged(args, log)
        })
        .collect();
    (procs, addrs)
}

/// The `ctxctl` binary, built next to `ctxd`. `ctxctl` is a package of its own
/// (`crates/ctxctl`, so installing it needs no RocksDB), so cargo does not build it for
/// this package's tests: `scripts/test.sh` builds every binary of the workspace first,
/// and a test run on its own (`cargo test --test process`) builds them here once.
pub fn ctxctl_bin() -> std::path::PathBuf {
    static BUILT: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();
    BUILT
        .get_or_init(|| {
            let bin = Path::new(env!("CARGO_BIN_EXE_ctxd")).with_file_name("ctxctl");
            if !bin.exists() {
                // The same selection as scripts/test.sh, so nothing is rebuilt twice.
                let status = Command::new(env!("CARGO"))
                    .args(["build", "--quiet", "--workspace", "--bins", "--tests"])
                    .current_dir(env!("CARGO_MANIFEST_DIR"))
                    .status()
                    .expect("run cargo build");
                assert!(status.success(), "building ctxctl failed");
            }
            assert!(bin.exists(), "ctxctl not found at {}", bin.display());
            bin
        })
        .clone()
}
