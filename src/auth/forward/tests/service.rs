//! A tiny auth service for the tests: every request on every connection gets the same
//! canned bytes (or none), and what it received is recorded. Raw bytes rather than a
//! server library, so the answers can be as odd as a broken service's.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};

#[derive(Clone)]
pub(crate) enum Reply {
    /// These bytes to every request; the connection stays open for the next.
    Canned(Vec<u8>),
    /// Reads the request and never answers.
    Silent,
    /// Answers a connection's first request, and closes it on reading the second: a
    /// keep-alive that ended just as wsgate reused the connection.
    OnceThenClose(Vec<u8>),
}

/// A request head as received: the request line and each header (name lowercased).
#[derive(Debug, Clone)]
pub(crate) struct Head {
    pub line: String,
    pub headers: Vec<(String, Vec<u8>)>,
}

impl Head {
    pub(crate) fn get(&self, name: &str) -> Option<&[u8]> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_slice())
    }

    pub(crate) fn text(&self, name: &str) -> Option<&str> {
        self.get(name).and_then(|v| std::str::from_utf8(v).ok())
    }
}

pub(crate) struct AuthService {
    pub addr: SocketAddr,
    heads: Arc<Mutex<Vec<Head>>>,
    connections: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

impl AuthService {
    pub(crate) async fn start(reply: Reply) -> AuthService {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let heads = Arc::new(Mutex::new(Vec::new()));
        let connections = Arc::new(AtomicUsize::new(0));
        let (h, c) = (heads.clone(), connections.clone());
        let task = tokio::spawn(async move {
            // Dropped with the accept task (on `AuthService`'s drop): no connection outlives it.
            let mut conns = JoinSet::new();
            while let Ok((stream, _)) = listener.accept().await {
                c.fetch_add(1, Ordering::SeqCst);
                conns.spawn(serve(stream, reply.clone(), h.clone()));
            }
        });
        AuthService { addr, heads, connections, task }
    }

    /// A canned answer: `head` (status line and headers, `\r\n`-separated) and `body`,
    /// with its Content-Length.
    pub(crate) async fn answering(head: &str, body: &[u8]) -> AuthService {
        AuthService::start(Reply::Canned(response(head, body))).await
    }

    pub(crate) fn requests(&self) -> usize {
        self.heads.lock().unwrap().len()
    }

    pub(crate) fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    pub(crate) fn last(&self) -> Head {
        self.heads.lock().unwrap().last().cloned().expect("a request was received")
    }
}

impl Drop for AuthService {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub(crate) fn response(head: &str, body: &[u8]) -> Vec<u8> {
    let mut bytes = format!("{head}\r\nContent-Length: {}\r\n\r\n", body.len()).into_bytes();
    bytes.extend_from_slice(body);
    bytes
}

async fn serve(mut stream: TcpStream, reply: Reply, heads: Arc<Mutex<Vec<Head>>>) {
    let mut buf = Vec::new();
    let mut served = 0;
    while let Some(head) = read_head(&mut stream, &mut buf).await {
        heads.lock().unwrap().push(head);
        served += 1;
        let answer = match &reply {
            Reply::Canned(bytes) => bytes,
            Reply::Silent => return std::future::pending().await,
            Reply::OnceThenClose(_) if served > 1 => return,
            Reply::OnceThenClose(bytes) => bytes,
        };
        if stream.write_all(answer).await.is_err() {
            return;
        }
    }
}

/// The next request head (the subrequest has no body), or `None` at EOF or past 64 KiB.
async fn read_head(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Option<Head> {
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = parse(&buf[..end + 4]);
            buf.drain(..end + 4);
            return head;
        }
        let mut chunk = [0u8; 4096];
        match stream.read(&mut chunk).await {
            Ok(n) if n > 0 && buf.len() < 64 * 1024 => buf.extend_from_slice(&chunk[..n]),
            _ => return None,
        }
    }
}

fn parse(bytes: &[u8]) -> Option<Head> {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut req = httparse::Request::new(&mut headers);
    req.parse(bytes).ok()?;
    let line = format!("{} {}", req.method?, req.path?);
    let headers = req.headers.iter().map(|h| (h.name.to_ascii_lowercase(), h.value.to_vec())).collect();
    Some(Head { line, headers })
}
