//! `PageBackend`: an HTTP/1.1 backend that serves one HTML page and records what the page
//! reports back, for tests that drive a real browser (tests/browser_h2.rs).
//!
//! `GET /` and `GET /index.html` answer the page (`text/html`); `POST /report` records its
//! body and answers 204; anything else is a 404. Keep-alive, like a real web server.
#![allow(dead_code)]

use super::backends::{read_body, read_head};
use super::raw::RawBackend;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use tokio::io::AsyncWriteExt;

pub struct PageBackend {
    backend: RawBackend,
    reports: Arc<Mutex<Vec<String>>>,
    /// Request lines (`GET /`, `POST /report`, ...) in arrival order.
    requests: Arc<Mutex<Vec<String>>>,
}

impl PageBackend {
    pub fn start(html: &str) -> PageBackend {
        let html: Arc<str> = html.into();
        let reports: Arc<Mutex<Vec<String>>> = Arc::default();
        let requests: Arc<Mutex<Vec<String>>> = Arc::default();
        let (r, q) = (reports.clone(), requests.clone());
        let backend = RawBackend::start(move |mut s| {
            let (html, reports, requests) = (html.clone(), r.clone(), q.clone());
            async move {
                let mut buf = Vec::new();
                loop {
                    let Ok(Some(head)) = read_head(&mut s, &mut buf).await else { return };
                    buf.drain(..head.len);
                    let Ok(body) = read_body(&mut s, &mut buf, &head.headers).await else { return };
                    let route = head.path.split('?').next().unwrap_or("");
                    requests.lock().unwrap().push(format!("{} {}", head.method, head.path));
                    let answer = match (head.method.as_str(), route) {
                        ("GET", "/" | "/index.html") => {
                            format!(
                                "HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\nCache-Control: no-store\r\nContent-Length: {}\r\n\r\n{html}",
                                html.len()
                            )
                        }
                        ("POST", "/report") => {
                            reports.lock().unwrap().push(String::from_utf8_lossy(&body).into_owned());
                            "HTTP/1.1 204 No Content\r\n\r\n".to_string()
                        }
                        _ => "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n".to_string(),
                    };
                    if s.write_all(answer.as_bytes()).await.is_err() {
                        return;
                    }
                }
            }
        });
        PageBackend { backend, reports, requests }
    }

    pub fn addr(&self) -> SocketAddr {
        self.backend.addr
    }

    /// Request lines received so far.
    pub fn requests(&self) -> Vec<String> {
        self.requests.lock().unwrap().clone()
    }

    /// The first body POSTed to `/report`, if any yet.
    pub fn report(&self) -> Option<String> {
        self.reports.lock().unwrap().first().cloned()
    }
}
