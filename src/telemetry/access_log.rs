//! The access log: one JSON line per HTTP request and per WebSocket session when it ends.
//! Written to stdout by default (wsgate's own log goes to stderr), to a file, or nowhere.
//! Header values are never logged (no Authorization, no Cookie), query strings only if
//! `access_log.include_query` is set.

use crate::config::model::{AccessLogConfig, AccessLogTarget};
use serde::Serialize;
use std::fs::{File, OpenOptions};
use std::io::{LineWriter, Write};
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;
use std::time::Instant;

enum Sink {
    Off,
    Stdout,
    File(Mutex<LineWriter<File>>),
}

pub(crate) struct AccessLog {
    sink: Sink,
    pub(crate) include_query: bool,
}

/// One access-log line. Field names are part of the product (documented in docs/observability.md).
#[derive(Debug, Serialize)]
pub(crate) struct Record<'a> {
    pub(crate) time: String,
    pub(crate) client: String,
    pub(crate) method: &'a str,
    pub(crate) host: &'a str,
    pub(crate) path: &'a str,
    pub(crate) status: u16,
    pub(crate) route: &'a str,
    pub(crate) upstream: &'a str,
    pub(crate) backend: String,
    pub(crate) duration_ms: f64,
    /// Request body bytes (HTTP) or bytes client → backend (WebSocket).
    pub(crate) bytes_in: u64,
    /// Response body bytes (HTTP) or bytes backend → client (WebSocket).
    pub(crate) bytes_out: u64,
    /// Who the route's `auth` found the client to be (the token's `sub`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) user: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) websocket: Option<WsRecord>,
}

#[derive(Debug, Serialize)]
pub(crate) struct WsRecord {
    /// `h1`: an HTTP/1.1 upgrade; `h2`: an HTTP/2 stream (RFC 8441).
    pub(crate) protocol: &'static str,
    pub(crate) messages_in: u64,
    pub(crate) messages_out: u64,
    /// `client`, `backend`, or `none` when the TCP connection ended without a Close frame.
    pub(crate) close_initiator: &'static str,
    pub(crate) close_code: Option<u16>,
    /// Why wsgate ended the session itself: `drain`, `max_lifetime`, `backend_down`,
    /// `rebalance`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) reason: Option<&'static str>,
}

impl AccessLog {
    pub(crate) fn open(config: &AccessLogConfig) -> std::io::Result<AccessLog> {
        let sink = match &config.target {
            AccessLogTarget::Off => Sink::Off,
            AccessLogTarget::Stdout => Sink::Stdout,
            AccessLogTarget::File(path) => {
                let file = OpenOptions::new().create(true).append(true).open(path)?;
                Sink::File(Mutex::new(LineWriter::new(file)))
            }
        };
        Ok(AccessLog { sink, include_query: config.include_query })
    }

    pub(crate) fn enabled(&self) -> bool {
        !matches!(self.sink, Sink::Off)
    }

    /// The path as logged: without the query unless configured otherwise.
    pub(crate) fn path<'a>(&self, uri: &'a http::Uri) -> &'a str {
        match (self.include_query, uri.path_and_query()) {
            (true, Some(pq)) => pq.as_str(),
            _ => uri.path(),
        }
    }

    pub(crate) fn write(&self, record: &Record) {
        let Ok(mut line) = serde_json::to_vec(record) else { return };
        line.push(b'\n');
        // A full disk or closed stdout must not take the proxy down: drop the line.
        let _ = match &self.sink {
            Sink::Off => Ok(()),
            Sink::Stdout => std::io::stdout().lock().write_all(&line),
            Sink::File(file) => file.lock().unwrap_or_else(|e| e.into_inner()).write_all(&line),
        };
    }
}

/// A request's first line and host as the access log shows them, owned: what a WebSocket
/// session keeps for its line, written when Pingora's request is long gone.
pub(crate) struct RequestLine {
    pub(crate) method: String,
    pub(crate) host: String,
    pub(crate) path: String,
    pub(crate) user: Option<String>,
}

impl RequestLine {
    pub(crate) fn new(req: &pingora::http::RequestHeader, host: Option<&str>, log: &AccessLog) -> RequestLine {
        RequestLine {
            method: req.method.to_string(),
            host: host.unwrap_or_default().to_string(),
            path: log.path(&req.uri).to_string(),
            user: None,
        }
    }

    pub(crate) fn user(self, user: Option<String>) -> RequestLine {
        RequestLine { user, ..self }
    }
}

/// What every line says about a request, whatever became of it: the one place a line is
/// built, for plain HTTP (`logging`) and WebSocket sessions (when their tunnel ends).
pub(crate) struct Exchange<'a> {
    pub(crate) client: Option<IpAddr>,
    pub(crate) method: &'a str,
    pub(crate) host: &'a str,
    pub(crate) path: &'a str,
    pub(crate) route: &'a str,
    pub(crate) upstream: &'a str,
    pub(crate) backend: Option<SocketAddr>,
    pub(crate) started: Instant,
    pub(crate) user: Option<&'a str>,
}

impl<'a> Exchange<'a> {
    /// The line for this exchange, ended with `status` after `bytes_in`/`bytes_out` of body
    /// (or tunnel) bytes.
    pub(crate) fn record(&self, status: u16, bytes: (u64, u64), websocket: Option<WsRecord>) -> Record<'a> {
        Record {
            time: now(),
            client: self.client.map_or_else(String::new, |ip| ip.to_string()),
            method: self.method,
            host: self.host,
            path: self.path,
            status,
            route: self.route,
            upstream: self.upstream,
            backend: self.backend.map_or_else(String::new, |b| b.to_string()),
            duration_ms: self.started.elapsed().as_secs_f64() * 1000.0,
            bytes_in: bytes.0,
            bytes_out: bytes.1,
            user: self.user,
            websocket,
        }
    }
}

fn now() -> String {
    jiff::Timestamp::now().round(jiff::Unit::Millisecond).map(|t| t.to_string()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_serialize_as_one_json_object_with_escaping() {
        let r = Record {
            time: "2026-11-25T15:00:00.123Z".into(),
            client: "127.0.0.1".into(),
            method: "GET",
            host: "a\"b",
            path: "/x",
            status: 200,
            route: "r",
            upstream: "u",
            backend: "127.0.0.1:1".into(),
            duration_ms: 1.5,
            bytes_in: 0,
            bytes_out: 12,
            user: None,
            websocket: None,
        };
        let line = serde_json::to_string(&r).unwrap();
        assert!(line.starts_with("{\"time\":\"2026-11-25T15:00:00.123Z\",\"client\":\"127.0.0.1\""), "{line}");
        assert!(line.contains("\"host\":\"a\\\"b\""), "{line}");
        assert!(!line.contains("websocket"), "{line}");
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["status"], 200);
    }

    #[test]
    fn queries_are_logged_only_on_request() {
        let uri: http::Uri = "/p?token=secret".parse().unwrap();
        let off = AccessLog { sink: Sink::Off, include_query: false };
        let on = AccessLog { sink: Sink::Off, include_query: true };
        assert_eq!(off.path(&uri), "/p");
        assert_eq!(on.path(&uri), "/p?token=secret");
    }

    #[test]
    fn time_is_rfc3339_utc() {
        let t = now();
        assert!(t.ends_with('Z') && t.len() >= 20 && t.as_bytes()[10] == b'T', "{t}");
    }
}
