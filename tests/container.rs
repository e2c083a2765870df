//! The container image, run as a user runs it: `scripts/image.sh` builds it from the release
//! binary (once per run of this file), podman runs it (runc, cgroupfs, vfs storage, host
//! networking and explicit ulimits: scripts/image.sh says why) with a read-only root file
//! system, no capabilities and a config directory mounted read-only at /etc/wsgate, in front
//! of backends started here on 127.0.0.1. HTTP and WebSocket traffic passes through it;
//! `podman kill -s HUP` reloads; with `config_watch: true` a ConfigMap-style update of the
//! mounted directory (a new `..data` symlink) reloads; `podman stop` drains 100 WebSocket
//! sessions with Close 1001 over `drain.window` and the container exits well inside the stop
//! timeout.
//!
//! Needs podman and runc (scripts/ensure-deps.sh installs them). Without them the test fails
//! under CI (`CI` set) and prints `SKIPPED: ...` and passes elsewhere. The image and the
//! containers it creates are removed by name, also when the test fails.
mod common;
use common::*;

use futures_util::StreamExt;
use std::io::Read;
use std::net::SocketAddr;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::Message;

/// `podman stop -t`: what a runtime gives the process after SIGTERM before SIGKILL.
const STOP_TIMEOUT_SECS: u64 = 30;
const DRAIN_WINDOW_SECS: u64 = 3;
const SESSIONS: usize = 100;
/// The release build in a debug run (minutes when nothing is built yet).
const BUILD_TIMEOUT: Duration = Duration::from_secs(30 * 60);
/// Any other podman command (a `run` copies the image: vfs storage).
const PODMAN_TIMEOUT: Duration = Duration::from_secs(60);
const POLL: Duration = Duration::from_millis(20);

// ---------------------------------------------------------------- podman

/// `name` on PATH, else in /usr/bin or /usr/sbin (where Debian's packages put them).
fn find_tool(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/bin"), PathBuf::from("/usr/sbin")])
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

/// Whether podman and runc are there; otherwise fails under CI, or prints the skip message.
fn podman_or_skip(test: &str) -> bool {
    let missing: Vec<&str> = ["podman", "runc"].into_iter().filter(|t| find_tool(t).is_none()).collect();
    if missing.is_empty() {
        return true;
    }
    if std::env::var_os("CI").is_some() {
        panic!("{test}: {missing:?} not installed; scripts/ensure-deps.sh installs them (Debian packages)");
    }
    // Straight to the process's stderr, past libtest's output capture.
    use std::io::Write;
    let _ = writeln!(
        std::io::stderr(),
        "SKIPPED: {test}: {} not installed (scripts/ensure-deps.sh installs them: Debian packages)",
        missing.join(" and ")
    );
    false
}

/// podman's global options, as scripts/image.sh uses them (`WSGATE_PODMAN_OPTS` replaces them).
fn podman_opts() -> Vec<String> {
    std::env::var("WSGATE_PODMAN_OPTS")
        .unwrap_or_else(|_| "--storage-driver vfs --runtime runc --cgroup-manager cgroupfs".into())
        .split_whitespace()
        .map(String::from)
        .collect()
}

struct Output {
    ok: bool,
    stdout: String,
    stderr: String,
}

/// Runs `cmd` to its end, at most `timeout` (then kills it: it is ours, and fails).
fn run_bounded(mut cmd: Command, timeout: Duration) -> Output {
    let shown = format!("{cmd:?}");
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {shown}: {e}"));
    let reader = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut text = String::new();
            let _ = pipe.read_to_string(&mut text);
            text
        })
    };
    let out = reader(Box::new(child.stdout.take().unwrap()));
    let err = reader(Box::new(child.stderr.take().unwrap()));
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{shown} did not finish within {timeout:?}\n{}", err.join().unwrap_or_default());
        }
        std::thread::sleep(POLL);
    };
    Output { ok: status.success(), stdout: out.join().unwrap_or_default(), stderr: err.join().unwrap_or_default() }
}

fn podman(args: &[&str], timeout: Duration) -> Output {
    let mut cmd = Command::new("podman");
    cmd.args(podman_opts()).args(args);
    run_bounded(cmd, timeout)
}

/// The image scripts/image.sh builds, under a tag of this run; removed when dropped.
struct Image {
    tag: String,
}

impl Image {
    /// From the release binary: the one under test in a release run; in a debug run, the
    /// one `cargo test --release` builds (nothing to do when it is up to date), with the
    /// features of a test build, so scripts/test.sh's release tests reuse that build.
    fn build() -> Image {
        let image = Image { tag: format!("localhost/wsgate:test-{}", std::process::id()) };
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let under_test = Path::new(wsgate_bin());
        let profile_dir = under_test.parent().expect("the binary's directory");
        let release = if profile_dir.ends_with("release") {
            under_test.to_path_buf()
        } else {
            let target_dir = profile_dir.parent().expect("the target directory");
            let mut cargo = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
            cargo.current_dir(root).args(["test", "--release", "--no-run", "--test", "container", "--target-dir"]);
            cargo.arg(target_dir);
            let started = Instant::now();
            let out = run_bounded(cargo, BUILD_TIMEOUT);
            assert!(out.ok, "cargo test --release --no-run failed\n{}", out.stderr);
            eprintln!("the release build took {:?}", started.elapsed());
            target_dir.join("release/wsgate")
        };
        let mut cmd = Command::new(root.join("scripts/image.sh"));
        cmd.current_dir(root).args(["--tag", &image.tag, "--binary"]).arg(&release);
        let out = run_bounded(cmd, PODMAN_TIMEOUT);
        assert!(out.ok, "scripts/image.sh failed\n{}\n{}", out.stdout, out.stderr);
        eprintln!("{}", out.stdout.trim());
        image
    }
}

impl Drop for Image {
    fn drop(&mut self) {
        // By our tag only: the image goes once no other name (or container) holds it.
        let _ = podman(&["rmi", "--force", &self.tag], PODMAN_TIMEOUT);
    }
}

/// A container of this run, named after the test; removed (killed first) when dropped.
struct Container {
    name: String,
}

impl Container {
    /// `podman run -d` of `image` with `config_dir` at /etc/wsgate (read-only), host
    /// networking, a read-only root file system (no tmpfs either: wsgate writes nowhere),
    /// no capabilities, no privilege gain, and the open-files limit `nofile` (`soft:hard`).
    fn start(image: &Image, what: &str, config_dir: &Path, nofile: &str) -> Container {
        let container = Container { name: format!("wsgate-test-{}-{what}", std::process::id()) };
        let volume = format!("{}:/etc/wsgate:ro", config_dir.display());
        let nofile = format!("nofile={nofile}");
        let out = podman(
            &[
                "run",
                "--detach",
                "--name",
                &container.name,
                "--network",
                "host",
                "--ulimit",
                &nofile,
                "--ulimit",
                "nproc=1024:1024",
                "--read-only",
                "--read-only-tmpfs=false",
                "--cap-drop",
                "all",
                "--security-opt",
                "no-new-privileges",
                "--volume",
                &volume,
                &image.tag,
            ],
            PODMAN_TIMEOUT,
        );
        assert!(out.ok, "podman run failed: {}", out.stderr);
        container
    }

    /// wsgate's log (stdout and stderr) so far.
    fn logs(&self) -> String {
        let out = podman(&["logs", &self.name], PODMAN_TIMEOUT);
        format!("--- podman logs {} ---\n{}{}", self.name, out.stdout, out.stderr)
    }

    fn running(&self) -> bool {
        podman(&["inspect", "--format", "{{.State.Running}}", &self.name], PODMAN_TIMEOUT).stdout.trim() == "true"
    }

    fn inspect(&self, format: &str) -> String {
        let out = podman(&["inspect", "--format", format, &self.name], PODMAN_TIMEOUT);
        assert!(out.ok, "podman inspect {}: {}", self.name, out.stderr);
        out.stdout.trim().to_string()
    }

    /// Polls a TCP connect to 127.0.0.1:`port` (30 s at most; the container's state checked
    /// every second, so an exit fails at once with the log).
    fn wait_port(&self, port: u16) {
        let started = Instant::now();
        let mut checked = Instant::now();
        while std::net::TcpStream::connect_timeout(&SocketAddr::from(([127, 0, 0, 1], port)), POLL * 10).is_err() {
            if checked.elapsed() > Duration::from_secs(1) {
                assert!(self.running(), "the container exited before port {port} opened\n{}", self.logs());
                checked = Instant::now();
            }
            assert!(started.elapsed() < Duration::from_secs(30), "port {port} not open after 30 s\n{}", self.logs());
            std::thread::sleep(POLL);
        }
    }

    /// Polls the log (10 s at most) until it contains `needle`.
    fn wait_log(&self, needle: &str) {
        let started = Instant::now();
        while !self.logs().contains(needle) {
            assert!(started.elapsed() < Duration::from_secs(10), "no {needle:?} in 10 s\n{}", self.logs());
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn kill(&self, signal: &str) {
        let out = podman(&["kill", "--signal", signal, &self.name], PODMAN_TIMEOUT);
        assert!(out.ok, "podman kill -s {signal}: {}", out.stderr);
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        let _ = podman(&["rm", "--force", "--time", "0", &self.name], PODMAN_TIMEOUT);
    }
}

// ---------------------------------------------------------------- config directories

/// A directory the container's user (65532) can read, as a mounted ConfigMap is.
fn config_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    dir
}

/// A ConfigMap volume as the kubelet writes it: `dir/wsgate.yaml` -> `..data/wsgate.yaml`,
/// `..data` -> `..<version>`; each call makes a new version and swaps `..data` atomically.
fn publish(dir: &Path, version: u32, text: &str) {
    let versioned = dir.join(format!("..2026_11_29_{version:02}"));
    std::fs::create_dir(&versioned).unwrap();
    std::fs::set_permissions(&versioned, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::write(versioned.join("wsgate.yaml"), text).unwrap();
    std::fs::set_permissions(versioned.join("wsgate.yaml"), std::fs::Permissions::from_mode(0o644)).unwrap();
    let tmp = dir.join("..data_tmp");
    symlink(versioned.file_name().unwrap(), &tmp).unwrap();
    std::fs::rename(&tmp, dir.join("..data")).unwrap();
    if !dir.join("wsgate.yaml").exists() {
        symlink("..data/wsgate.yaml", dir.join("wsgate.yaml")).unwrap();
    }
    if version > 1 {
        std::fs::remove_dir_all(dir.join(format!("..2026_11_29_{:02}", version - 1))).unwrap();
    }
}

fn write_config(dir: &Path, cfg: &Config) {
    let path = dir.join("wsgate.yaml");
    cfg.write_to(&path);
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
}

async fn reloads(maddr: SocketAddr, result: &str) -> f64 {
    sample(&scrape(maddr).await, "wsgate_config_reloads_total", &[("result", result)]).unwrap_or(0.0)
}

/// Polls (10 s at most) until `GET path` is answered by the backend `want`; how long it took.
async fn wait_route(addr: SocketAddr, path: &str, want: &str, container: &Container) -> Duration {
    let started = Instant::now();
    loop {
        if backend_of(addr, path).await == (200, want.to_string()) {
            return started.elapsed();
        }
        assert!(started.elapsed() < Duration::from_secs(10), "{path} not on {want} after 10 s\n{}", container.logs());
        tokio::time::sleep(POLL).await;
    }
}

// ---------------------------------------------------------------- the test

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    debug_assertions,
    ignore = "the image holds the release binary: scripts/test.sh runs this in its release phase"
)]
async fn the_image_serves_reloads_on_signal_and_on_change_and_drains_on_stop() {
    if !podman_or_skip("the_image_serves_reloads_on_signal_and_on_change_and_drains_on_stop") {
        return;
    }
    let test_started = Instant::now();
    let image = Image::build();
    // The image says what the Containerfile says.
    let config = podman(&["image", "inspect", "--format", "{{json .Config}}", &image.tag], PODMAN_TIMEOUT).stdout;
    for want in [
        r#""User":"65532:65532""#,
        r#""Entrypoint":["/usr/local/bin/wsgate"]"#,
        r#""Cmd":["-c","/etc/wsgate/wsgate.yaml"]"#,
        r#""StopSignal":"15""#,
        r#""8080/tcp""#,
        r#""8443/tcp""#,
        r#""9100/tcp""#,
    ] {
        assert!(config.contains(want), "{want} not in the image's config: {config}");
    }

    let (chat, a, b) = (WsBackend::start("chat"), HttpBackend::start("a"), HttpBackend::start("b"));
    signal_reload_and_drain(&image, &chat, &a, &b).await;
    configmap_update(&image, &a, &b).await;
    eprintln!("container test: {:?} in all", test_started.elapsed());
}

/// HTTP and WebSocket through the container; `podman kill -s HUP` applies a new route;
/// `podman stop` closes 100 sessions with 1001 over the drain window, and the container
/// exits with 0 (not killed) well inside the stop timeout.
async fn signal_reload_and_drain(image: &Image, chat: &WsBackend, a: &HttpBackend, b: &HttpBackend) {
    let (port, mport) = (free_port(), free_port());
    let (addr, maddr) = (SocketAddr::from(([127, 0, 0, 1], port)), SocketAddr::from(([127, 0, 0, 1], mport)));
    let config = |with_hup_route: bool| {
        let mut cfg = Config::new()
            .listen(port)
            .metrics(mport)
            .drain_window(format!("{DRAIN_WINDOW_SECS}s"))
            .upstream("chat", Upstream::one(chat.addr()))
            .upstream("a", Upstream::one(a.addr()))
            .upstream("b", Upstream::one(b.addr()))
            .route(Route::to("chat").path_prefix("/ws"))
            .route(Route::to("a"));
        if with_hup_route {
            cfg = cfg.route(Route::to("b").path_prefix("/hup"));
        }
        cfg
    };
    let dir = config_dir();
    write_config(dir.path(), &config(false));
    let started = Instant::now();
    // A soft open-files limit of 1024, as container runtimes commonly give, under a higher hard one.
    let container = Container::start(image, "signals", dir.path(), "1024:20000");
    container.wait_port(port);
    container.wait_port(mport);
    eprintln!("container serving {:?} after podman run", started.elapsed());
    let top = podman(&["top", &container.name, "user", "args"], PODMAN_TIMEOUT).stdout;
    assert!(top.contains("nonroot") && top.contains("/usr/local/bin/wsgate -c /etc/wsgate/wsgate.yaml"), "{top}");
    // wsgate raised its soft limit to the hard one.
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", container.inspect("{{.State.Pid}}"))).unwrap();
    let open_files = limits.lines().find(|l| l.starts_with("Max open files")).unwrap_or_default();
    assert_eq!(open_files.split_whitespace().collect::<Vec<_>>()[3..5], ["20000", "20000"], "{limits}");

    // HTTP and WebSocket through it; /ready on the metrics listener.
    assert_eq!(backend_of(addr, "/").await, (200, "a".to_string()), "{}", container.logs());
    let (status, _, body) = get(maddr, "x", "/ready").await;
    assert_eq!(status, 200, "{body}");
    let url = format!("ws://127.0.0.1:{port}/ws");
    let (mut ws, _) = ws_connect(&url, &[]).await.unwrap_or_else(|e| panic!("{e}\n{}", container.logs()));
    assert_eq!(ws_echo_text(&mut ws, "through the container").await, "through the container");
    ws.close(None).await.unwrap();

    // SIGHUP by the runtime: the file in the mounted directory, rewritten, is applied.
    assert_eq!(backend_of(addr, "/hup").await.1, "a");
    write_config(dir.path(), &config(true));
    container.kill("HUP");
    let took = wait_route(addr, "/hup", "b", &container).await;
    eprintln!("podman kill -s HUP: the new route served after {took:?}");
    assert_eq!(reloads(maddr, "ok").await, 1.0, "{}", container.logs());

    // 100 sessions open, each echoing once; then `podman stop`.
    let mut sessions = Vec::new();
    for i in 0..SESSIONS {
        let (mut ws, _) = ws_connect(&url, &[]).await.unwrap_or_else(|e| panic!("session {i}: {e}"));
        assert_eq!(ws_echo_text(&mut ws, &format!("s{i}")).await, format!("s{i}"));
        sessions.push(ws);
    }
    let stop_sent = Instant::now();
    let waiting: Vec<_> = sessions
        .into_iter()
        .map(|mut ws| {
            tokio::spawn(async move {
                let end = tokio::time::timeout(Duration::from_secs(STOP_TIMEOUT_SECS + 10), ws.next()).await;
                let at = stop_sent.elapsed();
                // Finish the closing handshake, as a client does.
                while let Ok(Some(Ok(_))) = tokio::time::timeout(Duration::from_secs(5), ws.next()).await {}
                match end {
                    Ok(Some(Ok(Message::Close(Some(frame))))) => Ok((u16::from(frame.code), at)),
                    other => Err(format!("{other:?} after {at:?}")),
                }
            })
        })
        .collect();
    let name = container.name.clone();
    let stop = tokio::task::spawn_blocking(move || {
        let out = podman(&["stop", "--time", &STOP_TIMEOUT_SECS.to_string(), &name], PODMAN_TIMEOUT);
        (out, stop_sent.elapsed())
    });
    let mut closes = Vec::new();
    for session in waiting {
        match session.await.unwrap() {
            Ok(close) => closes.push(close),
            Err(e) => panic!("a session did not get a Close: {e}\n{}", container.logs()),
        }
    }
    let (out, stopped_after) = stop.await.unwrap();
    assert!(out.ok, "podman stop: {}", out.stderr);
    let exit_code = container.inspect("{{.State.ExitCode}}");
    let mut times: Vec<Duration> = closes.iter().map(|&(_, at)| at).collect();
    times.sort();
    eprintln!(
        "podman stop: {} sessions closed with {:?} from {:?} to {:?} (median {:?}) after SIGTERM; \
         the container exited with {exit_code} after {stopped_after:?} (stop timeout {STOP_TIMEOUT_SECS} s, drain window {DRAIN_WINDOW_SECS} s)",
        closes.len(),
        closes.iter().map(|&(code, _)| code).collect::<std::collections::BTreeSet<_>>(),
        times[0],
        times[times.len() - 1],
        times[times.len() / 2],
    );
    assert!(closes.iter().all(|&(code, _)| code == 1001), "every session gets 1001: {closes:?}");
    assert!(
        times[times.len() - 1] < Duration::from_secs(DRAIN_WINDOW_SECS + 2),
        "closes spread over the window: {times:?}"
    );
    assert!(
        times[times.len() - 1] - times[0] > Duration::from_secs(DRAIN_WINDOW_SECS) / 2,
        "not all at once: {times:?}"
    );
    assert_eq!(exit_code, "0", "a clean exit, not SIGKILL at the stop timeout\n{}", container.logs());
    assert!(
        stopped_after < Duration::from_secs(DRAIN_WINDOW_SECS + 5),
        "exit after {stopped_after:?}\n{}",
        container.logs()
    );
    let told = chat.close_codes().iter().filter(|c| **c == Some(1001)).count();
    assert_eq!(told, SESSIONS, "each backend session is told 1001 too: {:?}", chat.close_codes());
}

/// `config_watch: true` with the config directory laid out as a mounted ConfigMap: a new
/// version (the `..data` symlink swapped) adds a route that serves.
async fn configmap_update(image: &Image, a: &HttpBackend, b: &HttpBackend) {
    let (port, mport) = (free_port(), free_port());
    let (addr, maddr) = (SocketAddr::from(([127, 0, 0, 1], port)), SocketAddr::from(([127, 0, 0, 1], mport)));
    let config = |with_new: bool| {
        let mut cfg = Config::new()
            .listen(port)
            .metrics(mport)
            .config_watch()
            .upstream("a", Upstream::one(a.addr()))
            .upstream("b", Upstream::one(b.addr()))
            .route(Route::to("a"));
        if with_new {
            cfg = cfg.route(Route::to("b").path_prefix("/new"));
        }
        cfg.config_text()
    };
    let dir = config_dir();
    publish(dir.path(), 1, &config(false));
    let container = Container::start(image, "configmap", dir.path(), "20000:20000");
    container.wait_port(port);
    container.wait_log("config_watch: watching");
    assert_eq!(backend_of(addr, "/new").await.1, "a");

    publish(dir.path(), 2, &config(true));
    let took = wait_route(addr, "/new", "b", &container).await;
    eprintln!("ConfigMap-style update of the mounted directory: the new route served after {took:?}");
    assert!(took < Duration::from_secs(5), "{took:?}");
    assert_eq!(reloads(maddr, "ok").await, 1.0, "{}", container.logs());
    assert_eq!(reloads(maddr, "invalid").await, 0.0, "{}", container.logs());
}
