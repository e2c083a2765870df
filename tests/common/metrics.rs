//! Reading wsgate's /metrics in tests.
#![allow(dead_code)]

use super::client::{get, header};
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

pub async fn scrape(addr: std::net::SocketAddr) -> String {
    let (status, headers, body) = get(addr, "localhost", "/metrics").await;
    assert_eq!(status, 200);
    assert!(header(&headers, "content-type").unwrap().starts_with("text/plain; version=0.0.4"));
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
