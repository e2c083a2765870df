//! wsgate's own full-duplex tunnel for upgraded connections.
//!
//! Why not Pingora's: in Pingora 0.9.1 (`proxy_h1.rs`) one `select!` loop serves both
//! directions and awaits each write inside its arm, so while it is blocked writing to a
//! backend that is itself blocked writing back, nobody reads: under bidirectional bulk
//! traffic both sockets fill and the session hangs for good. Here each direction is its own
//! pump that only ever waits on its own reader or writer, so one side's back-pressure never
//! stops the other side from draining.
//!
//! Each pump hands every chunk to an observer before forwarding it; that is where a
//! frame-aware view (metrics, limits, drain) plugs in without touching the copy loop.

use pingora::protocols::Stream;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

const BUFFER_SIZE: usize = 32 * 1024;

/// Why a tunnel ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TunnelEnd {
    /// Both directions reached end of stream.
    Closed,
    /// No byte moved either way for the idle timeout.
    IdleTimeout,
    /// A read or write failed (reset, broken pipe).
    Error(String),
}

#[derive(Debug, Clone)]
pub struct TunnelStats {
    pub client_to_backend_bytes: u64,
    pub backend_to_client_bytes: u64,
    pub duration: Duration,
    pub end: TunnelEnd,
}

/// Time of the last byte moved in either direction, in ms since the tunnel started.
struct Activity {
    start: Instant,
    last_ms: AtomicU64,
}

impl Activity {
    fn touch(&self) {
        self.last_ms.store(self.start.elapsed().as_millis() as u64, Ordering::Relaxed);
    }
    fn last(&self) -> Instant {
        self.start + Duration::from_millis(self.last_ms.load(Ordering::Relaxed))
    }
}

/// Copies `reader` to `writer` until end of stream, then half-closes `writer`.
async fn pump<R, W>(mut reader: R, mut writer: W, activity: &Activity) -> std::io::Result<u64>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut buf = vec![0u8; BUFFER_SIZE];
    let mut total = 0u64;
    loop {
        let n = reader.read(&mut buf).await?;
        if n == 0 {
            let _ = writer.shutdown().await;
            return Ok(total);
        }
        activity.touch();
        writer.write_all(&buf[..n]).await?;
        // Pingora's streams may buffer writes; a tunnel must deliver each chunk now.
        writer.flush().await?;
        activity.touch();
        total += n as u64;
    }
}

/// Runs the tunnel until both sides are done, an error, or `idle_timeout` of silence.
/// `backend_prefix` holds bytes the backend sent right after its 101 (read together with
/// the response head); they go to the client first.
pub async fn run(client: Stream, backend: Stream, backend_prefix: &[u8], idle_timeout: Duration) -> TunnelStats {
    let activity = Activity { start: Instant::now(), last_ms: AtomicU64::new(0) };
    let (client_read, mut client_write) = tokio::io::split(client);
    let (backend_read, backend_write) = tokio::io::split(backend);

    let mut stats = TunnelStats {
        client_to_backend_bytes: 0,
        backend_to_client_bytes: backend_prefix.len() as u64,
        duration: Duration::ZERO,
        end: TunnelEnd::Closed,
    };
    if !backend_prefix.is_empty() {
        if let Err(e) = write_now(&mut client_write, backend_prefix).await {
            stats.end = TunnelEnd::Error(e.to_string());
            return stats;
        }
    }

    let upstream = pump(client_read, backend_write, &activity);
    let downstream = pump(backend_read, client_write, &activity);
    tokio::pin!(upstream, downstream);
    let (mut up_done, mut down_done) = (false, false);
    while !(up_done && down_done) {
        let deadline = tokio::time::Instant::from_std(activity.last() + idle_timeout);
        tokio::select! {
            r = &mut upstream, if !up_done => {
                up_done = true;
                match r {
                    Ok(n) => stats.client_to_backend_bytes = n,
                    Err(e) => { stats.end = TunnelEnd::Error(format!("client side: {e}")); break; }
                }
            }
            r = &mut downstream, if !down_done => {
                down_done = true;
                match r {
                    Ok(n) => stats.backend_to_client_bytes += n,
                    Err(e) => { stats.end = TunnelEnd::Error(format!("backend side: {e}")); break; }
                }
            }
            _ = tokio::time::sleep_until(deadline) => {
                if activity.last() + idle_timeout <= Instant::now() {
                    stats.end = TunnelEnd::IdleTimeout;
                    break;
                }
            }
        }
    }
    stats.duration = activity.start.elapsed();
    stats
}

async fn write_now<W: AsyncWrite + Unpin>(writer: &mut W, bytes: &[u8]) -> std::io::Result<()> {
    writer.write_all(bytes).await?;
    writer.flush().await
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::duplex;

    #[tokio::test]
    async fn copies_both_ways_and_sends_the_prefix_first() {
        let (client, mut client_peer) = duplex(1024);
        let (backend, mut backend_peer) = duplex(1024);
        let tunnel = tokio::spawn(async move { run(Box::new(client), Box::new(backend), b"hello", Duration::from_secs(5)).await });
        let mut got = [0u8; 5];
        client_peer.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"hello");
        client_peer.write_all(b"ping").await.unwrap();
        let mut got = [0u8; 4];
        backend_peer.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"ping");
        drop(client_peer);
        drop(backend_peer);
        let stats = tunnel.await.unwrap();
        assert_eq!(stats.client_to_backend_bytes, 4);
        assert_eq!(stats.backend_to_client_bytes, 5);
    }

    #[tokio::test]
    async fn ends_after_the_idle_timeout() {
        let (client, _client_peer) = duplex(64);
        let (backend, _backend_peer) = duplex(64);
        let stats = tokio::time::timeout(Duration::from_secs(5), run(Box::new(client), Box::new(backend), b"", Duration::from_millis(100)))
            .await
            .expect("idle tunnel must end by itself");
        assert_eq!(stats.end, TunnelEnd::IdleTimeout);
    }

    /// The Pingora 0.9.1 deadlock shape: both peers write a lot before reading anything,
    /// through small buffers. A single-loop copier stalls here; independent pumps do not.
    #[tokio::test]
    async fn does_not_deadlock_when_both_sides_write_at_once() {
        const TOTAL: usize = 4 * 1024 * 1024;
        let (client, client_peer) = duplex(4096);
        let (backend, backend_peer) = duplex(4096);
        let tunnel = tokio::spawn(run(Box::new(client), Box::new(backend), b"", Duration::from_secs(5)));
        let blast = |peer: tokio::io::DuplexStream| async move {
            let (mut r, mut w) = tokio::io::split(peer);
            let writer = async move {
                let chunk = vec![7u8; 64 * 1024];
                for _ in 0..TOTAL / chunk.len() {
                    w.write_all(&chunk).await.unwrap();
                }
                w.shutdown().await.unwrap();
            };
            let reader = async move {
                let mut sink = Vec::new();
                r.read_to_end(&mut sink).await.unwrap();
                sink.len()
            };
            tokio::join!(writer, reader).1
        };
        let both = async { tokio::join!(blast(client_peer), blast(backend_peer)) };
        let (a, b) = tokio::time::timeout(Duration::from_secs(20), both).await.expect("tunnel stalled");
        assert_eq!((a, b), (TOTAL, TOTAL));
        let stats = tunnel.await.unwrap();
        assert_eq!(stats.end, TunnelEnd::Closed);
    }
}
