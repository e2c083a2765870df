//! Running the `wsgate` binary under test.
#![allow(dead_code)]

use std::fs;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::config::ConfigText;

const POLL: Duration = Duration::from_millis(20);
const READY_TIMEOUT: Duration = Duration::from_secs(15);

/// A free loopback TCP port for wsgate to bind later. Taken below the kernel's ephemeral
/// range, so no client socket or `bind(0)` can take it between this check and wsgate's bind
/// (a port from `bind(0)` was once reused by a test's own outgoing connection); a counter
/// seeded by the pid keeps tests of one binary, and binaries run one after another, apart.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let (low, high) = below_ephemeral_range();
    if high <= low + 1000 {
        return TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0").local_addr().unwrap().port();
    }
    let span = u32::from(high - low);
    let _ = NEXT.compare_exchange(
        0,
        std::process::id().wrapping_mul(7919) % span + 1,
        Ordering::Relaxed,
        Ordering::Relaxed,
    );
    for _ in 0..2000 {
        let port = low + (NEXT.fetch_add(1, Ordering::Relaxed) % span) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free loopback port in {low}..{high} after 2000 tries");
}

/// Ports from 10000 up to the start of `ip_local_port_range` (32768 when it cannot be read).
fn below_ephemeral_range() -> (u16, u16) {
    let start = fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32768);
    (10000, start)
}

pub fn wsgate_bin() -> &'static str {
    env!("CARGO_BIN_EXE_wsgate")
}

fn rust_log(cmd: &mut Command) {
    if std::env::var_os("RUST_LOG").is_none() {
        cmd.env("RUST_LOG", "info");
    }
}

/// A running `wsgate -c <tempdir>/wsgate.yaml`. Dropping it kills that one process.
pub struct Wsgate {
    /// Only the process we spawned; behind a Mutex so `&self` methods can poll it.
    pub child: Mutex<Child>,
    pub dir: tempfile::TempDir,
    pub config_path: PathBuf,
    pub stdout_path: PathBuf,
    pub stderr_path: PathBuf,
}

impl Wsgate {
    /// Writes `config` (a `Config`, or `RawYaml` text) to `<new tempdir>/wsgate.yaml` and
    /// spawns wsgate on it.
    pub fn start(config: &impl ConfigText) -> Wsgate {
        Self::start_in(tempfile::tempdir().expect("tempdir"), config)
    }

    /// Like `start`, in a caller-provided tempdir (e.g. one already holding certs).
    pub fn start_in(dir: tempfile::TempDir, config: &impl ConfigText) -> Wsgate {
        Self::start_in_env(dir, config, &[])
    }

    /// Like `start_in`, with `env` added to wsgate's environment.
    pub fn start_in_env(dir: tempfile::TempDir, config: &impl ConfigText, env: &[(&str, &str)]) -> Wsgate {
        let config_path = dir.path().join("wsgate.yaml");
        fs::write(&config_path, config.config_text()).expect("write config");
        let stdout_path = dir.path().join("wsgate.stdout.log");
        let stderr_path = dir.path().join("wsgate.stderr.log");
        let mut cmd = Command::new(wsgate_bin());
        cmd.arg("-c")
            .arg(&config_path)
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(fs::File::create(&stdout_path).expect("stdout log"))
            .stderr(fs::File::create(&stderr_path).expect("stderr log"))
            .envs(env.iter().copied());
        rust_log(&mut cmd);
        let child = cmd.spawn().unwrap_or_else(|e| panic!("spawn {}: {e}", wsgate_bin()));
        Wsgate { child: Mutex::new(child), dir, config_path, stdout_path, stderr_path }
    }

    /// Starts wsgate on an existing `config` file with `extra` arguments first (e.g. `-u`
    /// to take over from a running instance); its logs go to a tempdir of its own.
    pub fn start_with(config: &Path, extra: &[&str]) -> Wsgate {
        let dir = tempfile::tempdir().expect("tempdir");
        let stdout_path = dir.path().join("wsgate.stdout.log");
        let stderr_path = dir.path().join("wsgate.stderr.log");
        let mut cmd = Command::new(wsgate_bin());
        cmd.args(extra)
            .arg("-c")
            .arg(config)
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(fs::File::create(&stdout_path).expect("stdout log"))
            .stderr(fs::File::create(&stderr_path).expect("stderr log"));
        rust_log(&mut cmd);
        let child = cmd.spawn().unwrap_or_else(|e| panic!("spawn {}: {e}", wsgate_bin()));
        Wsgate { child: Mutex::new(child), dir, config_path: config.to_path_buf(), stdout_path, stderr_path }
    }

    /// `start` + `wait_port` for every port.
    pub fn start_and_wait(config: &impl ConfigText, ports: &[u16]) -> Wsgate {
        Self::start_in_and_wait(tempfile::tempdir().expect("tempdir"), config, ports)
    }

    /// `start_in` + `wait_port` for every port.
    pub fn start_in_and_wait(dir: tempfile::TempDir, config: &impl ConfigText, ports: &[u16]) -> Wsgate {
        let gw = Self::start_in(dir, config);
        for &p in ports {
            gw.wait_port(p);
        }
        gw
    }

    /// Replaces the config file (e.g. before a SIGHUP).
    pub fn write_config(&self, config: &impl ConfigText) {
        fs::write(&self.config_path, config.config_text()).expect("write config");
    }

    fn lock(&self) -> MutexGuard<'_, Child> {
        self.child.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn pid(&self) -> u32 {
        self.lock().id()
    }

    /// Exit status if the process has exited (non-blocking).
    pub fn try_wait(&self) -> Option<ExitStatus> {
        self.lock().try_wait().ok().flatten()
    }

    pub fn is_running(&self) -> bool {
        self.try_wait().is_none()
    }

    /// Polls until the process exits, up to `timeout`.
    pub fn wait_exit(&self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        let max = timeout.as_millis() / POLL.as_millis() + 2;
        for _ in 0..max {
            if let Some(st) = self.try_wait() {
                return Some(st);
            }
            if Instant::now() >= deadline {
                break;
            }
            std::thread::sleep(POLL);
        }
        self.try_wait()
    }

    /// Sends a signal (e.g. "TERM", "HUP", "QUIT") to our child via `kill -s`.
    pub fn signal(&self, sig: &str) {
        let pid = self.pid();
        let st = Command::new("kill").args(["-s", sig, &pid.to_string()]).status().expect("run kill");
        assert!(st.success(), "kill -s {sig} {pid} failed");
    }

    /// Polls TCP connect to 127.0.0.1:port every 20 ms for up to 15 s. Panics (with the
    /// captured logs) if wsgate exits first or the port never opens.
    pub fn wait_port(&self, port: u16) {
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let deadline = Instant::now() + READY_TIMEOUT;
        let max = READY_TIMEOUT.as_millis() / POLL.as_millis() + 2;
        for _ in 0..max {
            if let Some(st) = self.try_wait() {
                panic!("wsgate exited ({st}) before port {port} was ready\n{}", self.logs());
            }
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                return;
            }
            if Instant::now() >= deadline {
                break;
            }
            std::thread::sleep(POLL);
        }
        panic!("wsgate did not open port {port} within {READY_TIMEOUT:?}\n{}", self.logs());
    }

    /// Polls the stderr log until it contains `needle` (up to `timeout`). Returns whether it did.
    pub fn wait_log_contains(&self, needle: &str, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let max = timeout.as_millis() / POLL.as_millis() + 2;
        for _ in 0..max {
            if self.log().contains(needle) {
                return true;
            }
            if Instant::now() >= deadline {
                break;
            }
            std::thread::sleep(POLL);
        }
        self.log().contains(needle)
    }

    /// stderr contents so far (where env_logger writes).
    pub fn log(&self) -> String {
        fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    pub fn stdout(&self) -> String {
        fs::read_to_string(&self.stdout_path).unwrap_or_default()
    }

    /// Both logs, labelled, for panic messages.
    pub fn logs(&self) -> String {
        format!("--- wsgate stderr ---\n{}\n--- wsgate stdout ---\n{}", self.log(), self.stdout())
    }

    /// Kills our child (by its PID) and reaps it. Idempotent.
    pub fn kill(&self) {
        let mut child = self.lock();
        if child.try_wait().ok().flatten().is_none() {
            let _ = child.kill();
        }
        let _ = child.wait();
    }
}

impl Drop for Wsgate {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Runs `wsgate -t -c <tempdir>/wsgate.yaml`; returns (exit success, stdout+stderr).
pub fn check_config(config: &impl ConfigText) -> (bool, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    check_config_in(dir.path(), "wsgate.yaml", config)
}

/// Writes `config` to `dir/file_name` and runs `wsgate -t -c` on it (15 s bound; the
/// process is killed if it does not finish). Returns (exit success, stdout+stderr).
pub fn check_config_in(dir: &Path, file_name: &str, config: &impl ConfigText) -> (bool, String) {
    let path = dir.join(file_name);
    fs::write(&path, config.config_text()).expect("write config");
    let out_path = dir.join(format!("{file_name}.check.stdout"));
    let err_path = dir.join(format!("{file_name}.check.stderr"));
    let mut cmd = Command::new(wsgate_bin());
    cmd.arg("-t")
        .arg("-c")
        .arg(&path)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(fs::File::create(&out_path).expect("stdout file"))
        .stderr(fs::File::create(&err_path).expect("stderr file"));
    rust_log(&mut cmd);
    let mut child = cmd.spawn().unwrap_or_else(|e| panic!("spawn {}: {e}", wsgate_bin()));
    let deadline = Instant::now() + READY_TIMEOUT;
    let max = READY_TIMEOUT.as_millis() / POLL.as_millis() + 2;
    let mut status = None;
    for _ in 0..max {
        if let Some(st) = child.try_wait().expect("try_wait") {
            status = Some(st);
            break;
        }
        if Instant::now() >= deadline {
            break;
        }
        std::thread::sleep(POLL);
    }
    let status = match status {
        Some(st) => st,
        None => {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "`wsgate -t -c {}` did not exit within {READY_TIMEOUT:?}\n{}{}",
                path.display(),
                fs::read_to_string(&out_path).unwrap_or_default(),
                fs::read_to_string(&err_path).unwrap_or_default()
            );
        }
    };
    let mut output = fs::read_to_string(&out_path).unwrap_or_default();
    output.push_str(&fs::read_to_string(&err_path).unwrap_or_default());
    (status.success(), output)
}
