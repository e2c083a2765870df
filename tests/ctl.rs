//! `wsgate ctl`: the admin API's client, run as the real binary against a real wsgate.
//!
//! Still to add once the server side exists (ctl's requests are in src/ctl/mod.rs and
//! src/ctl/drain.rs): `sessions` lists an open WebSocket session with its backend and honours
//! `--upstream/--backend/--limit`; `drain POOL ADDR` takes the backend out of rotation and
//! its sessions get a Close 1001; `drain --wait` exits 0 once they are gone, and 1 naming
//! the sessions left when `--timeout` is shorter than a session that will not close;
//! `enable` puts it back; `close ID --code 1008` closes that one session; an IPv6 backend
//! (`[::1]:port`) drains by its address.
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
fn gateway(backend: &WsBackend) -> (Wsgate, u16) {
    let (port, aport) = (free_port(), free_port());
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("admin.token"), "s3cret\n").unwrap();
    let config = Config::proxy(port, "chat", backend.addr()).admin(loopback(aport), Some("admin.token"));
    (Wsgate::start_in_and_wait(dir, &config, &[port, aport]), aport)
}

fn config_arg(gw: &Wsgate) -> &str {
    gw.config_path.to_str().unwrap()
}

#[test]
fn upstreams_prints_a_table_with_each_backend() {
    let backend = WsBackend::start("a");
    let (gw, _) = gateway(&backend);
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
    let (gw, aport) = gateway(&backend);
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
    let (gw, aport) = gateway(&backend);
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
