//! `wsgate ctl`: the admin API's client, run as the real binary against a real wsgate:
//! tables and `--json`, the token, `sessions` and `close`, `drain --wait` and `enable`.
mod common;
use common::*;
use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Every ctl call gets this long before it is killed and the test fails.
const CTL_TIMEOUT: Duration = Duration::from_secs(30);

struct Outcome {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

/// Runs `wsgate ctl <args>` with its output in files under `dir`; bounded by CTL_TIMEOUT.
fn ctl(dir: &Path, args: &[&str]) -> Outcome {
    let (out_path, err_path) = (dir.join("ctl.stdout"), dir.join("ctl.stderr"));
    let mut child = Command::new(wsgate_bin())
        .arg("ctl")
        .args(args)
        .stdin(Stdio::null())
        .stdout(fs::File::create(&out_path).unwrap())
        .stderr(fs::File::create(&err_path).unwrap())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {}: {e}", wsgate_bin()));
    let deadline = Instant::now() + CTL_TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("`wsgate ctl {}` did not exit within {CTL_TIMEOUT:?}", args.join(" "));
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let read = |p: &Path| fs::read_to_string(p).unwrap_or_default();
    Outcome { code: status.code(), stdout: read(&out_path), stderr: read(&err_path) }
}

/// A wsgate in front of one WebSocket backend, its admin API on a loopback port with the
/// token `s3cret` (in `admin.token`, next to the config).
/// Returns it, the admin port and the proxy port.
fn gateway(backend: &WsBackend) -> (Wsgate, u16, u16) {
    let (port, aport) = (free_port(), free_port());
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("admin.token"), "s3cret\n").unwrap();
    let config = Config::proxy(port, "chat", backend.addr()).admin(loopback(aport), Some("admin.token"));
    (Wsgate::start_in_and_wait(dir, &config, &[port, aport]), aport, port)
}

fn config_arg(gw: &Wsgate) -> &str {
    gw.config_path.to_str().unwrap()
}

#[test]
fn upstreams_prints_a_table_with_each_backend() {
    let backend = WsBackend::start("a");
    let (gw, _, _) = gateway(&backend);
    let out = ctl(gw.dir.path(), &["-c", config_arg(&gw), "upstreams"]);
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert!(lines[0].starts_with("UPSTREAM") && lines[0].contains("SESSIONS"), "{}", out.stdout);
    let row: Vec<&str> = lines.get(1).map(|l| l.split_whitespace().collect()).unwrap_or_default();
    assert_eq!(row[..3], ["chat", backend.addr().to_string().as_str(), "1"], "{}", out.stdout);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_is_the_apis_own_answer() {
    let backend = WsBackend::start("a");
    let (gw, aport, _) = gateway(&backend);
    let out = ctl(gw.dir.path(), &["-c", config_arg(&gw), "--json", "upstreams"]);
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    let printed: serde_json::Value =
        serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", out.stdout));
    let request = "GET /upstreams HTTP/1.1\r\nHost: admin\r\nAuthorization: Bearer s3cret\r\nConnection: close\r\n\r\n";
    let (status, _, body) = http_request(([127, 0, 0, 1], aport).into(), request).await;
    assert_eq!(status, 200, "{body}");
    let direct: serde_json::Value = serde_json::from_str(&body).unwrap();
    // Health may flip between the two requests; the shape and the names may not.
    assert_eq!(shape(&printed), shape(&direct), "ctl:\n{}\ndirect:\n{body}", out.stdout);
    assert_eq!(printed["upstreams"][0]["backends"][0]["address"], backend.addr().to_string());
}

/// Each pool's name, and each backend's address and keys.
fn shape(answer: &serde_json::Value) -> Vec<(String, String, Vec<String>)> {
    let mut out = Vec::new();
    for pool in answer["upstreams"].as_array().expect("upstreams is a list") {
        for b in pool["backends"].as_array().expect("backends is a list") {
            let keys = b.as_object().expect("a backend is an object").keys().cloned().collect();
            out.push((pool["name"].to_string(), b["address"].to_string(), keys));
        }
    }
    out
}

#[test]
fn the_token_comes_from_the_config_or_a_token_file_and_a_wrong_one_is_named() {
    let backend = WsBackend::start("a");
    let (gw, aport, _) = gateway(&backend);
    let dir = gw.dir.path();
    let url = format!("http://127.0.0.1:{aport}");
    fs::write(dir.join("wrong.token"), "s3cre\n").unwrap();
    let out = ctl(dir, &["--admin", &url, "--token-file", dir.join("wrong.token").to_str().unwrap(), "upstreams"]);
    assert_eq!(out.code, Some(1), "stdout: {}\nstderr: {}", out.stdout, out.stderr);
    assert!(out.stderr.contains("token is missing or wrong"), "{}", out.stderr);
    let out = ctl(dir, &["--admin", &url, "upstreams"]);
    assert_eq!(out.code, Some(1), "no token at all");
    assert!(out.stderr.contains("token"), "{}", out.stderr);
    let out = ctl(dir, &["--admin", &url, "--token-file", dir.join("admin.token").to_str().unwrap(), "upstreams"]);
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    assert!(out.stdout.contains(&backend.addr().to_string()), "{}", out.stdout);
}

#[test]
fn a_config_without_an_admin_section_is_a_usage_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("wsgate.yaml");
    Config::proxy(free_port(), "chat", "127.0.0.1:9").write_to(&path);
    let out = ctl(dir.path(), &["-c", path.to_str().unwrap(), "upstreams"]);
    assert_eq!(out.code, Some(2), "{}", out.stderr);
    assert!(out.stderr.contains("no `admin` section") && out.stderr.contains("--admin"), "{}", out.stderr);
}

#[test]
fn an_admin_api_nobody_listens_on_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let aport = free_port();
    let out = ctl(dir.path(), &["--admin", &format!("http://127.0.0.1:{aport}"), "upstreams"]);
    assert_eq!(out.code, Some(1), "{}", out.stderr);
    assert!(out.stderr.contains(&format!("127.0.0.1:{aport}")) && out.stderr.contains("refused"), "{}", out.stderr);

    // An admin API on every address is reached on loopback.
    fs::write(dir.path().join("admin.token"), "s3cret").unwrap();
    let path = dir.path().join("wsgate.yaml");
    let config =
        Config::proxy(free_port(), "chat", "127.0.0.1:9").admin(format!("0.0.0.0:{aport}"), Some("admin.token"));
    config.write_to(&path);
    let out = ctl(dir.path(), &["-c", path.to_str().unwrap(), "upstreams"]);
    assert_eq!(out.code, Some(1), "{}", out.stderr);
    assert!(out.stderr.contains(&format!("127.0.0.1:{aport}")), "{}", out.stderr);
}

/// A client that reads until its session ends, then (if `reconnect`) opens a new one and
/// keeps it; the Close code its first session got.
fn client(ws: Ws, port: u16, reconnect: bool) -> tokio::task::JoinHandle<Option<u16>> {
    use futures_util::StreamExt;
    use tokio_tungstenite::tungstenite::Message;
    tokio::spawn(async move {
        let mut ws = ws;
        let mut code = None;
        while let Some(Ok(msg)) = ws.next().await {
            if let Message::Close(frame) = msg {
                code = frame.map(|f| u16::from(f.code));
            }
        }
        if reconnect && code.is_some() {
            let (mut again, _) = ws_connect(&format!("ws://127.0.0.1:{port}/"), &[]).await.expect("reconnect");
            while let Some(Ok(_)) = again.next().await {}
        }
        code
    })
}

/// Waits (bounded) until the backends have counted `total` sessions.
async fn settle(backends: &[&WsBackend], total: usize) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while backends.iter().map(|b| b.sessions()).sum::<usize>() < total && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The figure: 200 sessions on a backend, drained over 5 s with `--wait`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_wait_returns_once_the_backend_is_empty_and_enable_puts_it_back() {
    const EACH: usize = 200;
    let (a, b) = (WsBackend::start("a"), WsBackend::start("b"));
    let (port, aport) = (free_port(), free_port());
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("admin.token"), "s3cret\n").unwrap();
    let config = Config::new()
        .listen(port)
        .admin(loopback(aport), Some("admin.token"))
        .limits(Limits::new().max_concurrent_per_ip(10_000).max_connections_per_ip(10_000))
        .upstream("app", Upstream::new([a.addr(), b.addr()]).balance("least_sessions"))
        .route(Route::to("app"));
    let gw = Wsgate::start_in_and_wait(dir, &config, &[port, aport]);
    let mut clients = Vec::new();
    for _ in 0..2 * EACH {
        let (ws, _) = ws_connect(&format!("ws://127.0.0.1:{port}/"), &[]).await.unwrap();
        clients.push(client(ws, port, true));
    }
    settle(&[&a, &b], 2 * EACH).await;
    assert_eq!((a.sessions(), b.sessions()), (EACH, EACH), "least_sessions spreads them");

    let (cfg, target) = (config_arg(&gw).to_string(), a.addr().to_string());
    let started = Instant::now();
    let args = ["-c", cfg.as_str(), "drain", "app", target.as_str(), "--window", "5s", "--wait"].map(String::from);
    let home = gw.dir.path().to_path_buf();
    let out = tokio::task::spawn_blocking(move || ctl(&home, &args.each_ref().map(String::as_str))).await.unwrap();
    let took = started.elapsed();
    assert_eq!(out.code, Some(0), "stdout: {}\nstderr: {}", out.stdout, out.stderr);
    eprintln!("drain --wait of {EACH} sessions over 5 s took {took:?}");
    assert!(took >= Duration::from_secs(4) && took <= Duration::from_secs(6), "drain --wait took {took:?}");
    let upstreams = ctl(gw.dir.path(), &["-c", &cfg, "--json", "upstreams"]);
    let json: serde_json::Value = serde_json::from_str(&upstreams.stdout).unwrap();
    let drained =
        json["upstreams"][0]["backends"].as_array().unwrap().iter().find(|b| b["address"] == target.as_str()).cloned();
    assert_eq!(
        drained.as_ref().map(|b| (b["sessions"].as_u64(), b["draining"].as_bool())),
        Some((Some(0), Some(true)))
    );

    // Every session of the drained backend saw 1012 and reconnected to the other one.
    settle(&[&a, &b], 3 * EACH).await;
    assert_eq!((a.sessions(), b.sessions()), (EACH, 2 * EACH), "reconnects land on the other backend");
    assert_eq!(a.close_codes(), vec![Some(1001); EACH], "the drained backend is told its clients go away");
    let mut codes = Vec::new();
    for c in clients.iter_mut().filter(|c| c.is_finished()) {
        codes.push(c.await.unwrap());
    }
    assert!(codes.is_empty(), "reconnected clients keep their new session open: {codes:?}");

    let out = ctl(gw.dir.path(), &["-c", &cfg, "enable", "app", &target]);
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    let (ws, _) = ws_connect(&format!("ws://127.0.0.1:{port}/"), &[]).await.unwrap();
    clients.push(client(ws, port, false));
    settle(&[&a, &b], 3 * EACH + 1).await;
    assert_eq!(a.sessions(), EACH + 1, "enabled, the empty backend takes the next session");
    clients.iter().for_each(|c| c.abort());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_lists_an_open_session_and_close_ends_it_with_the_code() {
    let backend = WsBackend::start("a");
    let (gw, _, port) = gateway(&backend);
    let (ws, _) = ws_connect(&format!("ws://127.0.0.1:{port}/"), &[]).await.unwrap();
    let session = client(ws, port, false);
    let cfg = config_arg(&gw).to_string();
    let out = ctl(gw.dir.path(), &["-c", &cfg, "--json", "sessions", "--backend", &backend.addr().to_string()]);
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    let listed: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(listed["total"], 1, "{listed}");
    let id = listed["sessions"][0]["id"].as_u64().unwrap().to_string();
    let table = ctl(gw.dir.path(), &["-c", &cfg, "sessions"]);
    assert!(table.stdout.lines().nth(1).is_some_and(|row| row.contains(&id)), "{}", table.stdout);
    let out = ctl(gw.dir.path(), &["-c", &cfg, "close", &id, "--code", "1008"]);
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    let code = tokio::time::timeout(Duration::from_secs(5), session).await.expect("closed").unwrap();
    assert_eq!(code, Some(1008));
    let out = ctl(gw.dir.path(), &["-c", &cfg, "close", &id]);
    assert_eq!(out.code, Some(1), "a session that is gone: {}", out.stdout);
    assert!(out.stderr.contains("no open session"), "{}", out.stderr);
}
