//! `config_watch` / `--watch`: a change to the config file (or a file it names) reloads as
//! SIGHUP does, including a Kubernetes ConfigMap update (a `..data` symlink swapped, the
//! file itself never written); a half-written file is an invalid reload that changes
//! nothing; a burst of writes is one reload; a deleted file keeps the last good config.
mod common;
use common::*;

use std::net::SocketAddr;
use std::os::unix::fs::symlink;
use std::path::Path;
use std::time::{Duration, Instant};

async fn reloads(maddr: SocketAddr, result: &str) -> f64 {
    let text = scrape(maddr).await;
    sample(&text, "wsgate_config_reloads_total", &[("result", result)]).unwrap_or(0.0)
}

/// Polls (bounded, 5 s) until `path` is served by `want`'s backend name; how long it took.
async fn wait_route(addr: SocketAddr, path: &str, want: &str, gw: &Wsgate) -> Duration {
    let started = Instant::now();
    loop {
        let (status, body) = backend_of(addr, path).await;
        if status == 200 && body == want {
            return started.elapsed();
        }
        assert!(started.elapsed() < Duration::from_secs(5), "{path} not on {want} after 5 s\n{}", gw.log());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Two backends; `/new` routed to `b` only when `with_new`.
fn config(port: u16, mport: u16, a: &HttpBackend, b: &HttpBackend, with_new: bool) -> Config {
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
    cfg
}

/// A ConfigMap volume as the kubelet writes it: `dir/wsgate.yaml` -> `..data/wsgate.yaml`,
/// `..data` -> `..<version>`; `publish` makes a new version and swaps `..data` atomically.
fn publish(dir: &Path, version: u32, text: &str) {
    let versioned = dir.join(format!("..2026_11_29_{version:02}"));
    std::fs::create_dir(&versioned).unwrap();
    std::fs::write(versioned.join("wsgate.yaml"), text).unwrap();
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_configmap_update_is_applied_within_two_seconds() {
    let (a, b) = (HttpBackend::start("a"), HttpBackend::start("b"));
    let (port, mport) = (free_port(), free_port());
    let (addr, maddr) = (SocketAddr::from(([127, 0, 0, 1], port)), SocketAddr::from(([127, 0, 0, 1], mport)));
    let dir = tempfile::tempdir().unwrap();
    publish(dir.path(), 1, &config(port, mport, &a, &b, false).config_text());
    let gw = Wsgate::start_with(&dir.path().join("wsgate.yaml"), &[]);
    gw.wait_port(port);
    assert!(gw.wait_log_contains("config_watch: watching", Duration::from_secs(5)), "{}", gw.log());
    assert_eq!(backend_of(addr, "/new").await.1, "a");

    publish(dir.path(), 2, &config(port, mport, &a, &b, true).config_text());
    let took = wait_route(addr, "/new", "b", &gw).await;
    eprintln!("ConfigMap update served after {took:?}");
    assert!(took < Duration::from_secs(2), "{took:?}");
    assert_eq!(reloads(maddr, "ok").await, 1.0);

    // A SIGHUP now reads the same path (not the deleted version directory it pointed to).
    gw.signal("HUP");
    let deadline = Instant::now() + Duration::from_secs(5);
    while reloads(maddr, "ok").await < 2.0 {
        assert!(Instant::now() < deadline, "SIGHUP reload not applied\n{}", gw.log());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(reloads(maddr, "invalid").await, 0.0, "{}", gw.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_half_written_file_changes_nothing_and_a_burst_is_one_reload() {
    let (a, b) = (HttpBackend::start("a"), HttpBackend::start("b"));
    let (port, mport) = (free_port(), free_port());
    let (addr, maddr) = (SocketAddr::from(([127, 0, 0, 1], port)), SocketAddr::from(([127, 0, 0, 1], mport)));
    let gw = Wsgate::start_and_wait(&config(port, mport, &a, &b, false), &[port, mport]);
    assert!(gw.wait_log_contains("config_watch: watching", Duration::from_secs(5)), "{}", gw.log());

    // Caught half-written: invalid, counted, nothing changed.
    let full = config(port, mport, &a, &b, true).config_text();
    std::fs::write(&gw.config_path, &full[..full.len() / 2]).unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while reloads(maddr, "invalid").await < 1.0 {
        assert!(Instant::now() < deadline, "the half-written file was not looked at\n{}", gw.log());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(backend_of(addr, "/new").await.1, "a", "nothing changed");

    // 50 writes in one second, each different: one reload once they stop.
    let started = Instant::now();
    for i in 0..50 {
        std::fs::write(&gw.config_path, format!("# write {i}\n{full}")).unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let written = started.elapsed();
    let applied = written + wait_route(addr, "/new", "b", &gw).await;
    eprintln!("50 writes in {written:?}, applied {applied:?} after the first");
    tokio::time::sleep(Duration::from_millis(600)).await; // a second reload would have come by now
    assert_eq!(reloads(maddr, "ok").await, 1.0, "one reload for the burst");
    assert_eq!(reloads(maddr, "invalid").await, 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_file_keeps_the_config_until_it_is_back_and_watch_needs_no_key() {
    let (a, b) = (HttpBackend::start("a"), HttpBackend::start("b"));
    let (port, mport) = (free_port(), free_port());
    let (addr, maddr) = (SocketAddr::from(([127, 0, 0, 1], port)), SocketAddr::from(([127, 0, 0, 1], mport)));
    // --watch on the command line, no config_watch in the file.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("wsgate.yaml");
    let plain = |with_new| {
        let cfg = config(port, mport, &a, &b, with_new).config_text();
        cfg.lines().filter(|l| !l.starts_with("config_watch")).collect::<Vec<_>>().join("\n") + "\n"
    };
    std::fs::write(&path, plain(false)).unwrap();
    let gw = Wsgate::start_with(&path, &["--watch"]);
    gw.wait_port(port);
    assert!(gw.wait_log_contains("config_watch: watching", Duration::from_secs(5)), "{}", gw.log());

    std::fs::remove_file(&path).unwrap();
    assert!(gw.wait_log_contains("is gone", Duration::from_secs(5)), "{}", gw.log());
    assert_eq!(backend_of(addr, "/new").await.1, "a", "still serving the last good config");
    assert_eq!(reloads(maddr, "invalid").await + reloads(maddr, "ok").await, 0.0);

    std::fs::write(&path, plain(true)).unwrap();
    wait_route(addr, "/new", "b", &gw).await;
    assert_eq!(reloads(maddr, "ok").await, 1.0);
}

/// A renewed certificate written over the files the config names is a change too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_renewed_certificate_reloads() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = write_self_signed_cert(dir.path());
    let a = HttpBackend::start("a");
    let (port, mport) = (free_port(), free_port());
    let maddr = SocketAddr::from(([127, 0, 0, 1], mport));
    let cfg = Config::new()
        .listener(Listener::on(port).tls(Tls::new(&cert, &key)))
        .metrics(mport)
        .config_watch()
        .upstream("a", Upstream::one(a.addr()))
        .route(Route::to("a"));
    let gw = Wsgate::start_in_and_wait(tempfile::tempdir().unwrap(), &cfg, &[port, mport]);
    assert!(gw.wait_log_contains("config_watch: watching 3 file(s)", Duration::from_secs(5)), "{}", gw.log());

    let (new_cert, new_key) = write_cert(dir.path(), "renewed-", "localhost", "DNS:localhost,IP:127.0.0.1");
    std::fs::copy(&new_key, &key).unwrap();
    std::fs::copy(&new_cert, &cert).unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while reloads(maddr, "ok").await < 1.0 {
        assert!(Instant::now() < deadline, "the renewed certificate did not reload\n{}", gw.log());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(gw.wait_log_contains("TLS certificates replaced", Duration::from_secs(5)), "{}", gw.log());
}
