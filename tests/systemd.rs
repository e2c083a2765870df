//! The systemd unit: `systemd-analyze verify` accepts it, it agrees with its config, and
//! the exact command sequence of its ExecStart/ExecStartPost/ExecReload performs a
//! zero-downtime reload of a daemonized wsgate.
mod common;
use common::*;
use futures_util::StreamExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::Message;

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

fn unit() -> String {
    std::fs::read_to_string(repo("systemd/wsgate.service")).unwrap()
}

fn directives<'a>(unit: &'a str, key: &str) -> Vec<&'a str> {
    unit.lines().filter_map(|l| l.strip_prefix(key)?.strip_prefix('=')).collect()
}

#[test]
fn systemd_analyze_verify_accepts_the_unit() {
    let Ok(out) = Command::new("systemd-analyze").arg("--version").output() else {
        eprintln!("SKIPPED: systemd-analyze not installed (scripts/ensure-deps.sh installs systemd)");
        return;
    };
    assert!(out.status.success());
    let dir = tempfile::tempdir().unwrap();
    // verify checks that the binaries exist: point the unit at the one under test.
    let unit_path = dir.path().join("wsgate.service");
    std::fs::write(&unit_path, unit().replace("/usr/local/bin/wsgate", wsgate_bin())).unwrap();
    let out = Command::new("systemd-analyze").arg("verify").arg(&unit_path).output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{text}");
    assert!(!text.contains("wsgate.service"), "warnings about the unit:\n{text}");

    // And the check can fail: a misspelt key is reported.
    std::fs::write(
        &unit_path,
        unit().replace("/usr/local/bin/wsgate", wsgate_bin()).replace("KillSignal=", "KilSignal="),
    )
    .unwrap();
    let out = Command::new("systemd-analyze").arg("verify").arg(&unit_path).output().unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("KilSignal"));
}

#[test]
fn the_unit_and_its_config_agree() {
    let unit = unit();
    let config = std::fs::read_to_string(repo("systemd/wsgate.yaml")).unwrap();
    assert_eq!(directives(&unit, "PIDFile"), ["/run/wsgate/wsgate.pid"]);
    assert!(
        config.contains("pid_file: /run/wsgate/wsgate.pid")
            && config.contains("upgrade_sock: /run/wsgate/upgrade.sock")
    );
    assert_eq!(directives(&unit, "RuntimeDirectory"), ["wsgate"]);
    let reload = directives(&unit, "ExecReload");
    assert_eq!(reload.len(), 4);
    assert!(reload[0].ends_with("wsgate -t -c /etc/wsgate/wsgate.yaml"), "config checked first: {reload:?}");
    assert!(reload[1].ends_with("wsgate -u -d -c /etc/wsgate/wsgate.yaml"));
    assert_eq!(reload[2], "/bin/kill -QUIT $MAINPID");
    assert!(reload[3].contains("--wait-ready"));
    // Stop must outlast the drain window plus Pingora's shutdown timeout.
    let window: u64 = config
        .lines()
        .find_map(|l| l.trim().strip_prefix("window: "))
        .and_then(|w| w.split_whitespace().next()?.strip_suffix('s')?.parse().ok())
        .unwrap();
    let stop: u64 = directives(&unit, "TimeoutStopSec")[0].trim_end_matches('s').parse().unwrap();
    assert!(stop >= window + 15, "TimeoutStopSec={stop}s, drain window {window}s");
    for hardening in [
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "ProtectHome=yes",
        "PrivateTmp=yes",
        "User=wsgate",
        "LimitNOFILE=1048576",
        "CapabilityBoundingSet=",
    ] {
        assert!(unit.lines().any(|l| l == hardening), "missing {hardening}");
    }
    let out = Command::new(wsgate_bin()).arg("-t").arg("-c").arg(repo("systemd/wsgate.yaml")).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

fn run(args: &[&str], config: &Path) -> (bool, String) {
    let out = Command::new(wsgate_bin()).args(args).arg("-c").arg(config).env("RUST_LOG", "warn").output().unwrap();
    (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

fn pid_of(pid_file: &Path) -> u32 {
    std::fs::read_to_string(pid_file).unwrap().trim().parse().unwrap()
}

fn alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
        && !std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default().contains(") Z ")
}

/// Stops a daemon we started (its pid is in our own pid file) when the test ends.
struct Daemon(PathBuf);
impl Drop for Daemon {
    fn drop(&mut self) {
        if let Ok(pid) = std::fs::read_to_string(&self.0) {
            let _ = Command::new("kill").args(["-INT", pid.trim()]).status();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_units_commands_reload_a_daemon_without_downtime() {
    let (web, chat) = (HttpBackend::start("web"), WsBackend::start("chat"));
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let pid_file = dir.path().join("wsgate.pid");
    let config = dir.path().join("wsgate.yaml");
    Config::new()
        .server(
            Server::new()
                .pid_file(&pid_file)
                .upgrade_sock(dir.path().join("upgrade.sock"))
                .error_log(dir.path().join("error.log")),
        )
        .drain_window("2s")
        .listen(port)
        .upstream("web", Upstream::one(web.addr()))
        .upstream("chat", Upstream::one(chat.addr()).health_check(HealthCheck::new().kind("http").path("/healthz")))
        .route(Route::to("chat").path_prefix("/ws"))
        .route(Route::to("web"))
        .write_to(&config);
    let _guard = Daemon(pid_file.clone());
    let addr = format!("127.0.0.1:{port}").parse().unwrap();

    // ExecStartPre, ExecStart, ExecStartPost.
    assert!(run(&["-t"], &config).0);
    let (ok, out) = run(&["-d"], &config);
    assert!(ok, "{out}");
    let (ok, out) = run(&["--wait-ready", "30"], &config);
    assert!(ok, "{out}");
    let first = pid_of(&pid_file);
    assert!(out.contains(&format!("process {first} is ready")), "{out}");
    assert_eq!(get(addr, "x", "/").await.0, 200, "serving once --wait-ready returned");
    let (mut ws, _) = ws_connect(&format!("ws://127.0.0.1:{port}/ws"), &[]).await.unwrap();
    assert_eq!(ws_echo_text(&mut ws, "before").await, "before");

    // ExecReload, step by step.
    let reload_started = Instant::now();
    assert!(run(&["-t"], &config).0);
    let (ok, out) = run(&["-u", "-d"], &config);
    assert!(ok, "{out}");
    assert!(Command::new("kill").args(["-QUIT", &first.to_string()]).status().unwrap().success());
    let (ok, out) = run(&["--wait-ready", "30"], &config);
    assert!(ok, "{out}\n{}", std::fs::read_to_string(dir.path().join("error.log")).unwrap_or_default());
    let second = pid_of(&pid_file);
    assert_ne!(first, second, "the pid file names the new process");
    eprintln!("reload returned after {:?}", reload_started.elapsed());
    assert_eq!(get(addr, "x", "/").await.0, 200);

    // The old process drains its session with Going Away and exits.
    match tokio::time::timeout(Duration::from_secs(20), ws.next()).await.expect("drained within the window") {
        Some(Ok(Message::Close(Some(frame)))) => assert_eq!(u16::from(frame.code), 1001),
        other => panic!("{other:?}"),
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    while alive(first) {
        assert!(Instant::now() < deadline, "old daemon {first} still alive");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(alive(second));
    let (mut ws, _) = ws_connect(&format!("ws://127.0.0.1:{port}/ws"), &[]).await.unwrap();
    assert_eq!(ws_echo_text(&mut ws, "after").await, "after");
    drop(ws);

    // systemctl stop: SIGTERM drains and exits.
    assert!(Command::new("kill").args(["-TERM", &second.to_string()]).status().unwrap().success());
    let deadline = Instant::now() + Duration::from_secs(20);
    while alive(second) {
        assert!(Instant::now() < deadline, "daemon {second} ignored SIGTERM");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
