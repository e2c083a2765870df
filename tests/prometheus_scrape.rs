//! wsgate's metrics endpoint against real Prometheus tooling (Debian's `prometheus` package:
//! `promtool` and the `prometheus` server), which `scripts/ensure-deps.sh` installs. Without
//! them both tests fail under CI (`CI` set) and print `SKIPPED: ...` and pass elsewhere.
mod common;
use common::*;

use std::fs;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use tokio_tungstenite::tungstenite::protocol::{frame::coding::CloseCode, CloseFrame};

/// `name` on PATH, else in /usr/bin (where Debian's package puts it); None if absent.
fn find_tool(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path).chain([PathBuf::from("/usr/bin")]).map(|dir| dir.join(name)).find(|p| p.is_file())
}

/// The tool, or prints the one allowed skip message and returns None.
fn tool_or_skip(name: &str, test: &str) -> Option<PathBuf> {
    let found = find_tool(name);
    if found.is_none() && std::env::var_os("CI").is_some() {
        panic!("{test}: `{name}` not installed; scripts/ensure-deps.sh installs it (Debian package `prometheus`)");
    }
    if found.is_none() {
        // Straight to the process's stderr, past libtest's output capture, so the skip is
        // visible in a normal `cargo test` run.
        use std::io::Write;
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED: {test}: `{name}` not installed (scripts/ensure-deps.sh installs it: Debian package `prometheus`)"
        );
    }
    found
}

/// Polls `child` every 20 ms until it exits or `timeout` passes (then kills it: it is ours).
fn wait_child(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    for _ in 0..(timeout.as_millis() / 20 + 2) {
        if let Some(st) = child.try_wait().expect("try_wait") {
            return Some(st);
        }
        if Instant::now() >= deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
    None
}

/// Names of the metric families declared by `# TYPE` lines.
fn families(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_once(' '))
        .map(|(n, t)| (n.to_string(), t.trim().to_string()))
        .collect()
}

/// Whether some sample line belongs to family `name` of type `kind`.
fn has_samples(text: &str, name: &str, kind: &str) -> bool {
    let suffixes: &[&str] = if kind == "histogram" { &["_bucket", "_sum", "_count"] } else { &[""] };
    text.lines().filter(|l| !l.starts_with('#')).any(|l| {
        let metric = l.split(['{', ' ']).next().unwrap_or("");
        suffixes.iter().any(|s| metric == format!("{name}{s}"))
    })
}

/// wsgate's families (src/telemetry/metrics.rs); the scrape must declare at least these, each with samples.
const EXPECTED_FAMILIES: &[&str] = &[
    "wsgate_http_requests_total",
    "wsgate_http_request_duration_seconds",
    "wsgate_websocket_upgrades_total",
    "wsgate_websocket_sessions_active",
    "wsgate_websocket_session_duration_seconds",
    "wsgate_websocket_messages_total",
    "wsgate_websocket_bytes_total",
    "wsgate_websocket_closes_total",
    "wsgate_upstream_backend_healthy",
    "wsgate_upstream_errors_total",
    "wsgate_build_info",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promtool_accepts_the_scraped_metrics() {
    let Some(promtool) = tool_or_skip("promtool", "promtool_accepts_the_scraped_metrics") else {
        return;
    };
    let (web, chat) = (HttpBackend::start("web"), WsBackend::start("chat"));
    let dead = free_port(); // nothing listens: a 502 and an upstream error
    let (port, mport) = (free_port(), free_port());
    let cfg = traffic_config(port, mport, web.addr(), chat.addr(), dead, None);
    let gw = Wsgate::start_and_wait(&cfg, &[port, mport]);
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let maddr: SocketAddr = format!("127.0.0.1:{mport}").parse().unwrap();

    for _ in 0..3 {
        assert_eq!(get(addr, "site.example", "/").await.0, 200);
    }
    assert_eq!(get(addr, "unknown.example", "/").await.0, 404);
    assert_eq!(get(addr, "site.example", "/gone").await.0, 502);
    let (mut ws, _) = ws_connect(&format!("ws://127.0.0.1:{port}/ws"), &[]).await.expect("ws connect");
    assert_eq!(ws_echo_text(&mut ws, "hello").await, "hello");
    ws.close(Some(CloseFrame { code: CloseCode::Normal, reason: "bye".into() })).await.expect("close");
    while let Some(Ok(_)) = ws_recv(&mut ws).await {}

    // The session's end is recorded after the tunnel finishes: poll (bounded) until every
    // wsgate_ family has at least one sample.
    let deadline = Instant::now() + Duration::from_secs(5);
    let text = loop {
        let text = scrape(maddr).await;
        let fams = families(&text);
        let empty: Vec<&String> = fams
            .iter()
            .filter(|(n, k)| n.starts_with("wsgate_") && !has_samples(&text, n, k))
            .map(|(n, _)| n)
            .collect();
        let absent: Vec<&str> =
            EXPECTED_FAMILIES.iter().copied().filter(|e| !fams.iter().any(|(n, _)| n == e)).collect();
        if empty.is_empty() && absent.is_empty() {
            break text;
        }
        assert!(
            Instant::now() < deadline,
            "after 5 s: wsgate_ families without samples: {empty:?}; not declared at all: {absent:?}\n{text}\n{}",
            gw.logs()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };

    let dir = tempfile::tempdir().expect("tempdir");
    let (out_path, err_path) = (dir.path().join("promtool.stdout"), dir.path().join("promtool.stderr"));
    let mut child = Command::new(&promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(fs::File::create(&out_path).unwrap())
        .stderr(fs::File::create(&err_path).unwrap())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {}: {e}", promtool.display()));
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(text.as_bytes()).expect("write promtool stdin");
    } // closed: promtool sees EOF
    let status = wait_child(&mut child, Duration::from_secs(30));
    let output = format!(
        "{}{}",
        fs::read_to_string(&out_path).unwrap_or_default(),
        fs::read_to_string(&err_path).unwrap_or_default()
    );
    eprintln!(
        "promtool check metrics on {} families / {} samples: {status:?}; output: {output:?}",
        families(&text).len(),
        text.lines().filter(|l| !l.is_empty() && !l.starts_with('#')).count()
    );
    let status = status.expect("promtool check metrics did not exit within 30 s");
    assert!(status.success(), "promtool check metrics failed ({status}):\n{output}\n--- scraped /metrics ---\n{text}");
    drop(gw);
}

/// A `prometheus` server we started; Drop kills exactly that process (by its PID).
struct PrometheusServer {
    child: Child,
    log_path: PathBuf,
    /// Config, TSDB and log; removed after the process is gone (fields drop after `drop`).
    _dir: tempfile::TempDir,
}

impl PrometheusServer {
    fn start(bin: &Path, target: SocketAddr, listen: SocketAddr) -> PrometheusServer {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = dir.path().join("prometheus.yml");
        fs::write(
            &config,
            format!(
                "global: {{scrape_interval: 1s, evaluation_interval: 1s}}\n\
                 scrape_configs:\n  - job_name: wsgate\n    static_configs:\n      - targets: ['{target}']\n"
            ),
        )
        .expect("write prometheus.yml");
        let log_path = dir.path().join("prometheus.log");
        let log = fs::File::create(&log_path).expect("prometheus log");
        let child = Command::new(bin)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.tsdb.path={}", dir.path().join("data").display()))
            .arg(format!("--web.listen-address={listen}"))
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", bin.display()));
        PrometheusServer { child, log_path, _dir: dir }
    }

    fn log(&self) -> String {
        format!("--- prometheus output ---\n{}", fs::read_to_string(&self.log_path).unwrap_or_default())
    }

    fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }
}

impl Drop for PrometheusServer {
    fn drop(&mut self) {
        if self.exited().is_none() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

/// `GET path` on the Prometheus API, or None while it does not accept connections yet.
async fn api_get(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    let stream = tokio::time::timeout(Duration::from_secs(2), tokio::net::TcpStream::connect(addr)).await.ok()?.ok()?;
    let (status, _, body) =
        request_on(stream, &format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n")).await;
    Some((status, body))
}

/// The `data.result` array of a successful instant-query answer.
fn query_result(body: &str) -> Option<Vec<serde_json::Value>> {
    let v: serde_json::Value = serde_json::from_str(body).ok()?;
    if v["status"] != "success" {
        return None;
    }
    v["data"]["result"].as_array().cloned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_prometheus_server_scrapes_wsgate() {
    let Some(bin) = tool_or_skip("prometheus", "a_real_prometheus_server_scrapes_wsgate") else {
        return;
    };
    let web = HttpBackend::start("web");
    let (port, mport) = (free_port(), free_port());
    let cfg = Config::proxy(port, "web", web.addr()).metrics(mport);
    let gw = Wsgate::start_and_wait(&cfg, &[port, mport]);
    let target: SocketAddr = format!("127.0.0.1:{mport}").parse().unwrap();
    let papi: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let mut prom = PrometheusServer::start(&bin, target, papi);

    // Until the first scrape of wsgate succeeded: up{job="wsgate"} == 1.
    let up_query = "/api/v1/query?query=up%7Bjob%3D%22wsgate%22%7D";
    let started = Instant::now();
    let deadline = started + Duration::from_secs(30);
    let mut last = String::from("(no answer yet)");
    loop {
        if let Some(st) = prom.exited() {
            panic!("prometheus exited ({st}) before scraping wsgate\n{}", prom.log());
        }
        if let Some((status, body)) = api_get(papi, up_query).await {
            let up = query_result(&body).and_then(|r| r.first().and_then(|s| s["value"][1].as_str().map(String::from)));
            if status == 200 && up.as_deref() == Some("1") {
                break;
            }
            last = format!("{status} {body}");
        }
        if Instant::now() >= deadline {
            let targets = api_get(papi, "/api/v1/targets").await.map(|(s, b)| format!("{s} {b}"));
            panic!(
                "prometheus never reported up{{job=\"wsgate\"}} == 1 within 30 s\nlast answer: {last}\n\
                 targets: {targets:?}\n{}\n{}",
                prom.log(),
                gw.logs()
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    eprintln!("prometheus: up{{job=\"wsgate\"}} == 1 after {:?}", started.elapsed());

    let (status, body) = api_get(papi, "/api/v1/query?query=wsgate_build_info").await.expect("prometheus API answers");
    assert_eq!(status, 200, "{body}");
    let result = query_result(&body).unwrap_or_else(|| panic!("not a successful query answer: {body}"));
    assert_eq!(result.len(), 1, "one wsgate_build_info series expected: {body}");
    let series = &result[0];
    assert_eq!(series["metric"]["job"], "wsgate", "{body}");
    assert_eq!(series["metric"]["instance"], target.to_string(), "{body}");
    assert_eq!(series["metric"]["version"], env!("CARGO_PKG_VERSION"), "{body}");
    assert_eq!(series["value"][1], "1", "{body}");
    drop(prom);
    drop(gw);
}
