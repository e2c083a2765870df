//! Reading wsgate's /metrics and access log in tests.
#![allow(dead_code)]

use super::client::{get, header};
use super::config::{loopback, Config, HealthCheck, Route, Upstream, WebSocket};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// The value of the sample `name{labels}` whose labels include every `key="value"` given.
pub fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    text.lines().filter(|l| !l.starts_with('#')).find_map(|line| {
        let (series, value) = line.rsplit_once(' ')?;
        let (metric, rest) = series.split_once('{').unwrap_or((series, ""));
        if metric != name {
            return None;
        }
        labels.iter().all(|(k, v)| rest.contains(&format!("{k}=\"{v}\""))).then(|| value.parse().ok())?
    })
}

/// The /metrics page of the metrics listener at `addr`, checked to be 200 in the Prometheus
/// text format.
/// wsgate on `port` (metrics on `mport`) with a route for each kind of traffic the metrics
/// count: `site` (host `site.example`, to `web`), `chat` (`/ws`, to `chat`, with the
/// WebSocket `chat_policy` if any) and `gone` (`/gone`, to the dead address `dead`, which
/// stays in rotation, so requests there fail to connect).
pub fn traffic_config(
    port: u16,
    mport: u16,
    web: SocketAddr,
    chat: SocketAddr,
    dead: u16,
    chat_policy: Option<WebSocket>,
) -> Config {
    let mut chat_route = Route::to("chat").name("chat").path_prefix("/ws");
    if let Some(policy) = chat_policy {
        chat_route = chat_route.websocket(policy);
    }
    Config::new()
        .listen(port)
        .metrics(mport)
        .upstream("web", Upstream::one(web))
        .upstream("chat", Upstream::one(chat))
        .upstream(
            "gone",
            Upstream::one(loopback(dead)).health_check(HealthCheck::new().interval("1h").unhealthy_after(3)),
        )
        .route(chat_route)
        .route(Route::to("gone").name("gone").path_prefix("/gone"))
        .route(Route::to("web").name("site").host("site.example"))
}

pub async fn scrape(addr: std::net::SocketAddr) -> String {
    let (status, headers, body) = get(addr, "localhost", "/metrics").await;
    assert_eq!(status, 200, "{body}");
    let ct = header(&headers, "content-type").unwrap_or("");
    assert!(ct.starts_with("text/plain; version=0.0.4"), "content-type {ct:?}");
    body
}

/// Polls /metrics (bounded: 5 s) until `name{labels}` equals `want` (`None`: no such series).
pub async fn wait_for(addr: std::net::SocketAddr, name: &str, labels: &[(&str, &str)], want: Option<f64>) -> String {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let text = scrape(addr).await;
        if sample(&text, name, labels) == want {
            return text;
        }
        assert!(
            Instant::now() < deadline,
            "{name}{labels:?} never became {want:?}; last value {:?}\n{text}",
            sample(&text, name, labels)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The access log at `path` as JSON values, once it has at least `want` lines (bounded: 10 s).
pub fn access_log_lines(path: &std::path::Path, want: usize) -> Vec<serde_json::Value> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let lines: Vec<serde_json::Value> =
            text.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON: {l}: {e}"))).collect();
        if lines.len() >= want {
            return lines;
        }
        assert!(Instant::now() < deadline, "expected {want} access-log lines, got:\n{text}");
        std::thread::sleep(Duration::from_millis(20));
    }
}
