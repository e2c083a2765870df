//! A real browser through wsgate: headless Chromium loads a page over HTTPS (HTTP/2) and the
//! page opens `new WebSocket('wss://' + location.host + '/ws')` on the same origin, sends
//! three messages and reports their echoes back to the page's backend (`POST /report`).
//! With `tls.websocket_over_http2` Chromium carries the WebSocket on the page's HTTP/2
//! connection (RFC 8441, the access log says `h2`); without it, on an HTTP/1.1 connection of
//! its own (`h1`).
//!
//! Needs Debian's `chromium` (scripts/ensure-deps.sh installs it). Without it the tests fail
//! under CI (`CI` set) and print `SKIPPED: ...` and pass elsewhere.
mod common;
use common::page::PageBackend;
use common::*;

use std::fs;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Sends three messages, closes with 1000 once all three came back, then reports what it saw:
/// the protocol the page itself came over, the echoes, the close code, any error event.
const PAGE: &str = r#"<!doctype html>
<html><head><meta charset="utf-8"><link rel="icon" href="data:,"><title>wsgate</title></head>
<body><script>
const sent = ['one', 'two', 'three'];
const nav = performance.getEntriesByType('navigation')[0];
const result = { page_protocol: nav ? nav.nextHopProtocol : null, echoes: [], close: null, error: null };
const ws = new WebSocket('wss://' + location.host + '/ws');
ws.onopen = () => sent.forEach(m => ws.send(m));
ws.onmessage = e => {
  result.echoes.push(e.data);
  if (result.echoes.length === sent.length) ws.close(1000, 'done');
};
ws.onerror = () => { result.error = 'error event'; };
ws.onclose = e => {
  result.close = e.code;
  fetch('/report', { method: 'POST', body: JSON.stringify(result) });
};
</script></body></html>
"#;

/// How long Chromium gets to load the page, run the session and report (it reports within
/// about a second here).
const BROWSER_TIMEOUT: Duration = Duration::from_secs(30);

/// Chromium's binary, or None after printing the one allowed skip message (a failure under CI).
fn chromium_or_skip(test: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let found = std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/bin")])
        .map(|dir| dir.join("chromium"))
        .find(|p| p.is_file());
    if found.is_none() && std::env::var_os("CI").is_some() {
        panic!("{test}: `chromium` not installed; scripts/ensure-deps.sh installs it (Debian package `chromium`)");
    }
    if found.is_none() {
        use std::io::Write;
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED: {test}: `chromium` not installed (scripts/ensure-deps.sh installs it: Debian package `chromium`)"
        );
    }
    found
}

/// `sha256/base64` of the certificate's SubjectPublicKeyInfo, as
/// `--ignore-certificate-errors-spki-list` wants it.
fn spki_hash(cert: &Path) -> String {
    use base64::Engine;
    let pem = fs::read(cert).unwrap();
    let (_, pem) = x509_parser::pem::parse_x509_pem(&pem).expect("a PEM certificate");
    let cert = pem.parse_x509().expect("an X.509 certificate");
    let digest = ring::digest::digest(&ring::digest::SHA256, cert.public_key().raw);
    base64::engine::general_purpose::STANDARD.encode(digest.as_ref())
}

/// A headless Chromium we started, in a process group of its own; Drop kills that group
/// (the browser and its renderer, GPU and utility children) and reaps the browser.
struct Chromium {
    child: Child,
    log_path: PathBuf,
    _profile: tempfile::TempDir,
}

impl Chromium {
    fn start(bin: &Path, url: &str, spki: &str) -> Chromium {
        let profile = tempfile::tempdir().expect("profile dir");
        let log_path = profile.path().join("chromium.log");
        let log = fs::File::create(&log_path).expect("chromium log");
        let mut cmd = Command::new(bin);
        cmd.args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
        ])
        .arg(format!("--user-data-dir={}", profile.path().join("profile").display()))
        // The test's self-signed certificate counts as valid (pinned by its key; Chromium
        // honours this only with --user-data-dir), so the connection is treated as a real
        // site's. No flag for WebSocket over HTTP/2: Chromium does it by default once the
        // page's HTTP/2 connection has announced SETTINGS_ENABLE_CONNECT_PROTOCOL.
        .arg(format!("--ignore-certificate-errors-spki-list={spki}"));
        // Debugging aid, e.g. `--log-net-log=/tmp/netlog.json` (docs/testing.md).
        if let Ok(extra) = std::env::var("WSGATE_CHROMIUM_ARGS") {
            cmd.args(extra.split_whitespace());
        }
        cmd.arg(url).stdin(Stdio::null()).stdout(log.try_clone().unwrap()).stderr(log).process_group(0);
        let child = cmd.spawn().unwrap_or_else(|e| panic!("spawn {}: {e}", bin.display()));
        Chromium { child, log_path, _profile: profile }
    }

    fn exited(&mut self) -> bool {
        self.child.try_wait().ok().flatten().is_some()
    }

    fn log(&self) -> String {
        let text = fs::read_to_string(&self.log_path).unwrap_or_default();
        format!("--- chromium output ---\n{text}")
    }
}

impl Drop for Chromium {
    fn drop(&mut self) {
        // The group is ours: it was created for this child (process_group(0)).
        let pgid = self.child.id() as libc::pid_t;
        unsafe {
            libc::kill(-pgid, libc::SIGKILL);
        }
        let _ = self.child.wait();
    }
}

/// wsgate with a TLS listener (HTTP/2 on; `websocket_over_http2` as given) in front of the
/// page's backend (`/`) and a WebSocket echo backend (`/ws`); Chromium loads the page and
/// reports. Returns the report and wsgate's access-log line for the WebSocket session.
fn browse(bin: &Path, websocket_over_http2: bool) -> (serde_json::Value, serde_json::Value) {
    let certs = tempfile::tempdir().unwrap();
    let (cert, key) = write_self_signed_cert(certs.path());
    let page = PageBackend::start(PAGE);
    let ws = WsBackend::start("ws");
    let port = free_port();
    let tls = Tls::new(&cert, &key).http2(true).websocket_over_http2(websocket_over_http2);
    let cfg = Config::new()
        .listener(Listener::on(port).tls(tls))
        .access_log(AccessLog::path("access.jsonl"))
        .upstream("page", Upstream::one(page.addr()))
        .upstream("ws", Upstream::one(ws.addr()))
        .route(Route::to("ws").name("ws").path_prefix("/ws"))
        .route(Route::to("page").name("page"));
    let gw = Wsgate::start_and_wait(&cfg, &[port]);
    let log_path = gw.dir.path().join("access.jsonl");

    let mut browser = Chromium::start(bin, &format!("https://127.0.0.1:{port}/"), &spki_hash(&cert));
    let deadline = Instant::now() + BROWSER_TIMEOUT;
    let report = loop {
        if let Some(report) = page.report() {
            break report;
        }
        assert!(!browser.exited(), "chromium exited before the page reported\n{}\n{}", browser.log(), gw.logs());
        assert!(
            Instant::now() < deadline,
            "no report from the page within {BROWSER_TIMEOUT:?}; page backend saw {:?}\n{}\n{}",
            page.requests(),
            browser.log(),
            gw.logs()
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let chromium_log = browser.log();
    drop(browser);
    assert_eq!(ws.messages(), 3, "the echo backend's count");
    let report: serde_json::Value =
        serde_json::from_str(&report).unwrap_or_else(|e| panic!("report {report:?} is not JSON: {e}"));

    // The session's line is written when it ends, which the page waited for (its onclose).
    let deadline = Instant::now() + Duration::from_secs(10);
    let session = loop {
        let lines = access_log_lines(&log_path, 1);
        let mut sessions = lines.into_iter().filter(|l| l["status"] == 101);
        if let Some(line) = sessions.next() {
            assert!(sessions.next().is_none(), "more than one session\n{}", fs::read_to_string(&log_path).unwrap());
            break line;
        }
        assert!(
            Instant::now() < deadline,
            "no WebSocket session in the access log; report {report}\n{chromium_log}\n{}",
            gw.logs()
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    eprintln!("report: {report}\nsession: {session}");
    (report, session)
}

/// What both cases share: the page came over HTTP/2, its messages echoed, the page closed
/// with 1000, and wsgate logged one session on `/ws` with three messages each way.
fn assert_echoed(report: &serde_json::Value, session: &serde_json::Value, protocol: &str) {
    assert_eq!(report["page_protocol"], "h2", "the page itself came over HTTP/2: {report}");
    assert_eq!(report["echoes"], serde_json::json!(["one", "two", "three"]), "{report}");
    assert_eq!(report["close"], 1000, "{report}");
    assert!(report["error"].is_null(), "{report}");
    assert_eq!(session["path"], "/ws", "{session}");
    assert_eq!(session["route"], "ws", "{session}");
    let ws = &session["websocket"];
    assert_eq!(ws["protocol"], protocol, "{session}");
    assert_eq!((ws["messages_in"].as_u64(), ws["messages_out"].as_u64()), (Some(3), Some(3)), "{session}");
    assert_eq!((ws["close_initiator"].as_str(), ws["close_code"].as_u64()), (Some("client"), Some(1000)), "{session}");
}

#[test]
fn chromium_runs_a_websocket_over_the_pages_http2_connection() {
    let Some(bin) = chromium_or_skip("chromium_runs_a_websocket_over_the_pages_http2_connection") else { return };
    let (report, session) = browse(&bin, true);
    assert_echoed(&report, &session, "h2");
}

#[test]
fn without_websocket_over_http2_chromium_opens_an_http1_connection_for_it() {
    let Some(bin) = chromium_or_skip("without_websocket_over_http2_chromium_opens_an_http1_connection_for_it") else {
        return;
    };
    let (report, session) = browse(&bin, false);
    assert_echoed(&report, &session, "h1");
}
