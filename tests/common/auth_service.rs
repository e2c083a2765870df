//! An `auth.forward` service for the integration tests, deciding by the subrequest's
//! `Authorization` as a real one decides by a session:
//!
//! | `Authorization`      | answer                                                        |
//! |----------------------|---------------------------------------------------------------|
//! | `Bearer good-<user>` | `200`, `X-User-Id: <user>`                                     |
//! | `Bearer forbidden`   | `403`, `Content-Type: text/plain`, body [`FORBIDDEN_BODY`]      |
//! | `Bearer broken`      | `500`                                                          |
//! | `Bearer slow`        | none: the connection is held until wsgate gives up and closes it |
//! | none (or another)    | `401`, `WWW-Authenticate:` [`CHALLENGE`]                        |
//!
//! HTTP/1.1 keep-alive with `Content-Length` on every answer, because wsgate pools its
//! connections to the service. It runs on its own runtime (like the backends), so it keeps
//! answering while a test thread blocks, and [`AuthService::stop`] closes every connection.
#![allow(dead_code)]

use super::backends::{header_value, read_head, RecordedRequest};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

pub const FORBIDDEN_BODY: &str = "no entry for you";
pub const CHALLENGE: &str = "Bearer realm=\"test\"";

#[derive(Default)]
struct Shared {
    requests: Mutex<Vec<RecordedRequest>>,
    connections: AtomicUsize,
}

pub struct AuthService {
    addr: SocketAddr,
    shared: Arc<Shared>,
    rt: Option<tokio::runtime::Runtime>,
}

impl AuthService {
    pub fn start() -> AuthService {
        let std_listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind the auth service");
        std_listener.set_nonblocking(true).expect("set_nonblocking");
        let addr = std_listener.local_addr().expect("local_addr");
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("auth service runtime");
        let shared = Arc::new(Shared::default());
        let sh = shared.clone();
        rt.spawn(async move {
            let listener = TcpListener::from_std(std_listener).expect("from_std");
            while let Ok((stream, _)) = listener.accept().await {
                sh.connections.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(serve(stream, sh.clone()));
            }
        });
        AuthService { addr, shared, rt: Some(rt) }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:<port><path>`, for the route's `auth.forward.url`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Every request head received, in order (names lowercased, no bodies).
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.shared.requests.lock().unwrap().clone()
    }

    pub fn count(&self) -> usize {
        self.shared.requests.lock().unwrap().len()
    }

    /// Requests that carried exactly this `Authorization` value.
    pub fn count_for(&self, authorization: &str) -> usize {
        let requests = self.shared.requests.lock().unwrap();
        requests.iter().filter(|r| r.header("authorization") == Some(authorization)).count()
    }

    /// TCP connections accepted.
    pub fn connections(&self) -> usize {
        self.shared.connections.load(Ordering::SeqCst)
    }

    /// Stops listening and drops every connection (the runtime's tasks go with it).
    pub fn stop(&mut self) {
        if let Some(rt) = self.rt.take() {
            // Safe inside an async context, unlike dropping the runtime.
            rt.shutdown_background();
        }
    }
}

impl Drop for AuthService {
    fn drop(&mut self) {
        self.stop();
    }
}

async fn serve(mut stream: TcpStream, shared: Arc<Shared>) {
    let _ = stream.set_nodelay(true);
    let mut buf = Vec::with_capacity(4096);
    // A subrequest is a bodiless GET: its head is the whole request.
    while let Ok(Some(head)) = read_head(&mut stream, &mut buf).await {
        buf.drain(..head.len);
        let answer = decide(header_value(&head.headers, "authorization"));
        let close = header_value(&head.headers, "connection").is_some_and(|v| v.eq_ignore_ascii_case("close"));
        let request = RecordedRequest { method: head.method, path: head.path, headers: head.headers, body: Vec::new() };
        shared.requests.lock().unwrap().push(request);
        let Some(answer) = answer else {
            // Silent: read (and discard) until wsgate closes the connection at its timeout.
            let mut sink = [0u8; 1024];
            while matches!(stream.read(&mut sink).await, Ok(n) if n > 0) {}
            return;
        };
        if stream.write_all(&answer).await.is_err() || close {
            return;
        }
    }
}

/// The answer's bytes for this `Authorization`, `None` for silence.
fn decide(authorization: Option<&str>) -> Option<Vec<u8>> {
    let user = authorization.and_then(|a| a.strip_prefix("Bearer good-"));
    Some(match (authorization, user) {
        (_, Some(user)) => response("200 OK", &[("X-User-Id", user)], ""),
        (Some("Bearer forbidden"), _) => response("403 Forbidden", &[("Content-Type", "text/plain")], FORBIDDEN_BODY),
        (Some("Bearer broken"), _) => response("500 Internal Server Error", &[], "oops"),
        (Some("Bearer slow"), _) => return None,
        _ => response("401 Unauthorized", &[("WWW-Authenticate", CHALLENGE)], ""),
    })
}

fn response(status: &str, headers: &[(&str, &str)], body: &str) -> Vec<u8> {
    let mut text = format!("HTTP/1.1 {status}\r\n");
    for (name, value) in headers {
        text.push_str(&format!("{name}: {value}\r\n"));
    }
    text.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    text.into_bytes()
}
