//! Peers for timeout tests: a backend with a body larger than any socket buffer that
//! reports when wsgate lets its connection go, client connections from a chosen loopback
//! address, and waiting (bounded) for wsgate to close one.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};

use super::backends::read_head;
use super::raw::RawBackend;

/// Answers every request with 200 and a `size`-byte body, written in 64 KiB pieces.
/// `open()` counts the connections on which it is serving a request or waiting for the
/// next: one ends when wsgate closes it (a write fails, or the read sees the close).
pub struct BulkBackend {
    pub backend: RawBackend,
    open: Arc<AtomicUsize>,
    served: Arc<AtomicUsize>,
}

impl BulkBackend {
    pub fn start(size: usize) -> BulkBackend {
        let (open, served) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let (o, s) = (open.clone(), served.clone());
        let backend = RawBackend::start(move |mut conn| {
            let (open, served) = (o.clone(), s.clone());
            async move {
                let mut buf = Vec::new();
                // A health check connects and closes without a request: not counted.
                let Ok(Some(_)) = read_head(&mut conn, &mut buf).await else { return };
                open.fetch_add(1, Ordering::SeqCst);
                served.fetch_add(1, Ordering::SeqCst);
                let chunk = vec![b'x'; 64 * 1024];
                let head = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: {size}\r\n\r\n"
                );
                let mut ok = conn.write_all(head.as_bytes()).await.is_ok();
                let mut left = size;
                while ok && left > 0 {
                    let n = left.min(chunk.len());
                    ok = conn.write_all(&chunk[..n]).await.is_ok();
                    left -= n;
                }
                if ok {
                    // Kept alive by wsgate: wait for its close (or another request, ignored).
                    let mut sink = [0u8; 4096];
                    while matches!(conn.read(&mut sink).await, Ok(n) if n > 0) {}
                }
                open.fetch_sub(1, Ordering::SeqCst);
            }
        });
        BulkBackend { backend, open, served }
    }

    pub fn addr(&self) -> SocketAddr {
        self.backend.addr
    }

    pub fn open(&self) -> usize {
        self.open.load(Ordering::SeqCst)
    }

    pub fn served(&self) -> usize {
        self.served.load(Ordering::SeqCst)
    }

    /// Polls (every 20 ms, up to `limit`) until `open()` is `want`; returns whether it was.
    pub async fn wait_open(&self, want: usize, limit: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + limit;
        while self.open() != want {
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        true
    }
}

/// Opens a TCP connection from `source` (any 127/8 address is loopback on Linux).
pub async fn connect_from(source: &str, addr: SocketAddr) -> tokio::net::TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(format!("{source}:0").parse().unwrap()).unwrap();
    socket.connect(addr).await.unwrap_or_else(|e| panic!("connect from {source}: {e}"))
}

/// Reads until the peer closes (or `limit`); returns what was read and whether it closed.
pub async fn read_until_closed<S: AsyncRead + Unpin>(s: &mut S, limit: Duration) -> (Vec<u8>, bool) {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return (got, true),
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
            Err(_) => return (got, false),
        }
    }
}
