//! wsgate's own full-duplex tunnel for upgraded connections.
//!
//! Why not Pingora's: in Pingora 0.9.1 (`proxy_h1.rs`) one `select!` loop serves both
//! directions and awaits each write inside its arm, so while it is blocked writing to a
//! backend that is itself blocked writing back, nobody reads: under bidirectional bulk
//! traffic both sockets fill and the session hangs for good. Here each direction is its own
//! pump that only ever waits on its own reader or writer, so one side's back-pressure never
//! stops the other side from draining.
//!
//! Each pump shows every chunk to that direction's `FrameReader` before forwarding it,
//! unchanged: the frame-aware view (messages, close codes, who closed) costs a header parse
//! per frame, never a payload copy. A stream that breaks RFC 6455 framing is counted and
//! carried on as a plain byte tunnel.
//!
//! Draining (`drain.rs`): when told to go away, each pump waits for the end of the frame
//! in flight in its direction, sends its peer a Close 1001 (masked towards the backend, as a
//! client's must be), forwards nothing more, and waits for that peer's Close reply; the
//! tunnel ends once both replies are in (or `CLOSING_TIMEOUT` has passed).

use super::frames::{close_frame, FrameEvent, FrameReader, OpCode};
use pingora::protocols::Stream;
use pingora_prometheus::prometheus::IntCounter;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::watch;

/// Each direction starts with a small buffer (idle sessions are the common case) and
/// doubles it, up to the maximum, whenever a read fills it (bulk transfers).
const BUFFER_START: usize = 4 * 1024;
const BUFFER_MAX: usize = 64 * 1024;
/// Once one side has closed its TCP stream, the other gets this long to finish (unless the
/// WebSocket closing handshake is already complete, then the tunnel ends at once).
const HALF_CLOSE_LINGER: Duration = Duration::from_secs(10);
/// How long a draining session waits for both peers to answer its Close 1001.
const CLOSING_TIMEOUT: Duration = Duration::from_secs(10);
/// RFC 6455 §7.4.1: 1001 Going Away, "a server going down".
const GOING_AWAY: u16 = 1001;
/// RFC 6455 §7.4.1: 1009, a message too big to process.
const MESSAGE_TOO_BIG: u16 = 1009;

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

/// Who sent a session's first Close frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Initiator {
    Client,
    Backend,
    /// wsgate itself, draining (Close 1001 to both sides).
    Proxy,
}

impl Initiator {
    pub fn label(self) -> &'static str {
        match self {
            Initiator::Client => "client",
            Initiator::Backend => "backend",
            Initiator::Proxy => "proxy",
        }
    }
}

#[derive(Debug, Clone)]
pub struct TunnelStats {
    pub client_to_backend_bytes: u64,
    pub backend_to_client_bytes: u64,
    pub client_to_backend_messages: u64,
    pub backend_to_client_messages: u64,
    /// The first Close frame seen in either direction: its sender and code.
    pub first_close: Option<(Initiator, Option<u16>)>,
    /// A direction broke RFC 6455 framing (and was then carried as plain bytes).
    pub malformed: bool,
    pub duration: Duration,
    pub end: TunnelEnd,
}

/// Live counters a pump adds to as bytes pass (Prometheus counters, or detached ones).
pub struct Meters {
    pub bytes: IntCounter,
    pub messages: IntCounter,
}

/// One direction of the tunnel: who sends on it, its counters, its message size limit.
pub struct Direction {
    pub sender: Initiator,
    pub meters: Meters,
    /// Messages larger than this are refused: the tunnel closes with 1009.
    pub max_message: Option<u64>,
}

/// Running totals of one direction, readable however the tunnel ends.
#[derive(Debug, Default)]
struct Flow {
    bytes: AtomicU64,
    messages: AtomicU64,
    malformed: AtomicBool,
}

/// State both pumps share: activity for the idle timeout, and the closing handshake.
struct Shared {
    start: Instant,
    /// Time of the last byte moved in either direction, in ms since `start`.
    last_ms: AtomicU64,
    first_close: OnceLock<(Initiator, Option<u16>)>,
    client_sent_close: AtomicBool,
    backend_sent_close: AtomicBool,
    upstream: Flow,
    downstream: Flow,
    /// Set when this session must close on wsgate's initiative, with the code both peers
    /// get: 1001 when the process drains, 1009 after an oversized message.
    close_request: watch::Sender<Option<u16>>,
}

impl Shared {
    fn touch(&self) {
        self.last_ms.store(self.start.elapsed().as_millis() as u64, Ordering::Relaxed);
    }
    fn last(&self) -> Instant {
        self.start + Duration::from_millis(self.last_ms.load(Ordering::Relaxed))
    }
    fn flow(&self, sender: Initiator) -> &Flow {
        match sender {
            Initiator::Backend => &self.downstream,
            _ => &self.upstream,
        }
    }
    fn note_close(&self, sender: Initiator, code: Option<u16>) {
        let _ = self.first_close.set((sender, code));
        match sender {
            Initiator::Client => self.client_sent_close.store(true, Ordering::Relaxed),
            Initiator::Backend => self.backend_sent_close.store(true, Ordering::Relaxed),
            Initiator::Proxy => {}
        }
    }
    fn close_code(&self) -> Option<u16> {
        *self.close_request.borrow()
    }
    /// Both sides have sent a Close frame (RFC 6455 §7.1.1): nothing more may follow.
    fn handshake_complete(&self) -> bool {
        self.client_sent_close.load(Ordering::Relaxed) && self.backend_sent_close.load(Ordering::Relaxed)
    }
}

/// Copies `reader` to `writer` until end of stream, then half-closes `writer`.
async fn pump<R, W>(mut reader: R, mut writer: W, direction: &Direction, shared: &Shared) -> std::io::Result<()>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut buf = vec![0u8; BUFFER_START];
    let mut frames = FrameReader::new();
    let flow = shared.flow(direction.sender);
    // Built once: a future per read would cost more than the read itself on small messages.
    let mut close_requests = shared.close_request.subscribe();
    let close_requested = async move {
        let _ = close_requests.changed().await;
    };
    tokio::pin!(close_requested);
    let mut close_seen = false;
    // Our Close has gone out on `writer`: forward nothing more, await the peer's reply.
    let mut closing = false;
    // `buf[..held]` is the start of a frame header cut by the last read: already shown to
    // `frames`, not yet forwarded. Holding it back means everything forwarded ends on a
    // whole header, so a Close of our own can always go in between frames.
    let mut held = 0usize;
    let mut closes: Vec<(usize, Option<u16>)> = Vec::new();
    loop {
        if let (false, Some(code), Some(0)) = (closing, shared.close_code(), frames.bytes_to_boundary()) {
            write_now(&mut writer, &close_to_peer(direction.sender, code)).await?;
            closing = true;
        }
        let n = if closing || close_seen || shared.close_code().is_some() {
            reader.read(&mut buf[held..]).await?
        } else {
            tokio::select! {
                read = reader.read(&mut buf[held..]) => read?,
                _ = &mut close_requested => {
                    close_seen = true;
                    continue;
                }
            }
        };
        if n == 0 {
            let _ = writer.shutdown().await;
            return Ok(());
        }
        shared.touch();
        let end = held + n;
        let grow = end == buf.len() && buf.len() < BUFFER_MAX;
        let requested = if closing { None } else { shared.close_code() };
        // Where the frame in flight ends (in `buf`): inside a payload, after its rest; in
        // a header, the frame starts at 0 (its first bytes are the held ones).
        let mut next_start = frames.bytes_to_boundary().map_or(0, |r| held.saturating_add(usize::try_from(r).unwrap_or(usize::MAX)));
        let first_boundary = next_start;
        let mut oversized_at: Option<usize> = None;
        let mut messages = 0;
        closes.clear();
        frames.feed(&buf[held..end], |offset, event| match event {
            FrameEvent::Header { opcode, payload_len, message_len, .. } => {
                let start = next_start;
                next_start = (held + offset).saturating_add(usize::try_from(payload_len).unwrap_or(usize::MAX));
                let data = matches!(opcode, OpCode::Text | OpCode::Binary | OpCode::Continuation);
                if oversized_at.is_none() && data && direction.max_message.is_some_and(|max| message_len > max) {
                    oversized_at = Some(start);
                }
            }
            FrameEvent::Message { .. } => messages += 1,
            FrameEvent::Close { code } => closes.push((held + offset, code)),
            FrameEvent::Malformed(why) => {
                log::debug!("{:?} sent a malformed WebSocket stream ({why}); carrying it as bytes", direction.sender);
                flow.malformed.store(true, Ordering::Relaxed);
            }
        });
        flow.bytes.fetch_add(n as u64, Ordering::Relaxed);
        flow.messages.fetch_add(messages, Ordering::Relaxed);
        direction.meters.bytes.inc_by(n as u64);
        direction.meters.messages.inc_by(messages);

        // Cut before an oversized message's frame, or at the first frame boundary when
        // asked to close; our Close follows what was forwarded.
        let drain_cut = requested.filter(|_| first_boundary <= end).map(|code| (first_boundary, code));
        let cut = match (oversized_at, drain_cut) {
            (Some(at), Some((d, code))) if d < at => Some((d, code)),
            (Some(at), _) => Some((at, MESSAGE_TOO_BIG)),
            (None, drain) => drain,
        };
        let was_closing = closing;
        let forward = match (closing, cut) {
            (true, _) => 0,
            (false, Some((at, _))) => at,
            (false, None) => end - frames.partial_header_len(),
        };
        if forward > 0 {
            write_now(&mut writer, &buf[..forward]).await?;
        }
        if let Some((_, code)) = cut {
            if code == MESSAGE_TOO_BIG {
                log::info!("{:?} sent a message over the route's websocket.max_message_bytes; closing the session with 1009", direction.sender);
                let _ = shared.first_close.set((Initiator::Proxy, Some(MESSAGE_TOO_BIG)));
                shared.close_request.send_replace(Some(MESSAGE_TOO_BIG));
            }
            write_now(&mut writer, &close_to_peer(direction.sender, code)).await?;
            closing = true;
        }
        held = if closing { 0 } else { end - forward };
        buf.copy_within(forward..forward + held, 0);
        if grow {
            buf.resize(buf.len() * 2, 0);
        }
        shared.touch();
        for &(at, code) in &closes {
            if !was_closing && at <= forward {
                // A Close passed through; noted only once delivered, since the other pump
                // may end the tunnel as soon as both directions have one.
                shared.note_close(direction.sender, code);
            } else if closing {
                // The peer's answer to (or its own crossing of) our Close: this side is done.
                shared.note_close(direction.sender, code);
                let _ = writer.shutdown().await;
                return Ok(());
            }
        }
    }
}

/// The Close a closing tunnel sends the peer that `sender`'s pump writes to: the backend
/// gets it masked (RFC 6455 §5.3: client frames are masked), the client plain.
fn close_to_peer(sender: Initiator, code: u16) -> Vec<u8> {
    let reason = if code == MESSAGE_TOO_BIG { "message too big" } else { "going away" };
    match sender {
        // This pump reads the client and writes to the backend.
        Initiator::Client => close_frame(code, reason, Some(fastrand::u32(..).to_ne_bytes())),
        _ => close_frame(code, reason, None),
    }
}

/// Runs the tunnel until both sides are done, an error, or `idle_timeout` of silence.
/// `backend_prefix` holds bytes the backend sent right after its 101 (read together with
/// the response head); they go to the client first.
/// `drain_at` resolves when this session must close because the process is draining.
pub async fn run(
    client: Stream,
    backend: Stream,
    backend_prefix: &[u8],
    idle_timeout: Duration,
    upstream_dir: &Direction,
    downstream_dir: &Direction,
    drain_at: impl std::future::Future<Output = ()>,
) -> TunnelStats {
    let shared = Shared {
        start: Instant::now(),
        last_ms: AtomicU64::new(0),
        first_close: OnceLock::new(),
        client_sent_close: AtomicBool::new(false),
        backend_sent_close: AtomicBool::new(false),
        upstream: Flow::default(),
        downstream: Flow::default(),
        close_request: watch::channel(None).0,
    };
    let (client_read, mut client_write) = tokio::io::split(client);
    let (backend_read, backend_write) = tokio::io::split(backend);

    let mut stats = TunnelStats {
        client_to_backend_bytes: 0,
        backend_to_client_bytes: 0,
        client_to_backend_messages: 0,
        backend_to_client_messages: 0,
        first_close: None,
        malformed: false,
        duration: Duration::ZERO,
        end: TunnelEnd::Closed,
    };
    if !backend_prefix.is_empty() {
        // Rare (a backend that speaks first, right after its 101): count it as bytes only.
        downstream_dir.meters.bytes.inc_by(backend_prefix.len() as u64);
        shared.downstream.bytes.store(backend_prefix.len() as u64, Ordering::Relaxed);
        if let Err(e) = write_now(&mut client_write, backend_prefix).await {
            stats.end = TunnelEnd::Error(e.to_string());
            return stats;
        }
    }

    let upstream = pump(client_read, backend_write, upstream_dir, &shared);
    let downstream = pump(backend_read, client_write, downstream_dir, &shared);
    let mut close_requests = shared.close_request.subscribe();
    tokio::pin!(upstream, downstream, drain_at);
    let (mut up_done, mut down_done) = (false, false);
    let mut linger_until: Option<Instant> = None;
    let mut drain_fired = false;
    while !(up_done && down_done) {
        if up_done || down_done {
            if shared.handshake_complete() {
                break;
            }
            linger_until.get_or_insert_with(|| Instant::now() + HALF_CLOSE_LINGER.min(idle_timeout));
        }
        let idle_deadline = shared.last() + idle_timeout;
        let deadline = linger_until.map_or(idle_deadline, |l| l.min(idle_deadline));
        let deadline = tokio::time::Instant::from_std(deadline);
        tokio::select! {
            result = &mut upstream, if !up_done => {
                up_done = true;
                if let Err(e) = result {
                    stats.end = TunnelEnd::Error(format!("client side: {e}"));
                    break;
                }
            }
            result = &mut downstream, if !down_done => {
                down_done = true;
                if let Err(e) = result {
                    stats.end = TunnelEnd::Error(format!("backend side: {e}"));
                    break;
                }
            }
            _ = &mut drain_at, if !drain_fired => {
                drain_fired = true;
                // A session already closing needs no help; otherwise say goodbye both ways.
                if shared.first_close.set((Initiator::Proxy, Some(GOING_AWAY))).is_ok() {
                    shared.close_request.send_replace(Some(GOING_AWAY));
                }
            }
            // Closing on our initiative (drain, oversized message): bound the handshake.
            _ = close_requests.changed(), if linger_until.is_none() => {
                linger_until = Some(Instant::now() + CLOSING_TIMEOUT);
            }
            _ = tokio::time::sleep_until(deadline) => {
                if linger_until.is_some_and(|l| l <= Instant::now()) {
                    break;
                }
                if shared.last() + idle_timeout <= Instant::now() {
                    stats.end = TunnelEnd::IdleTimeout;
                    break;
                }
            }
        }
    }
    let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
    stats.client_to_backend_bytes = load(&shared.upstream.bytes);
    stats.backend_to_client_bytes = load(&shared.downstream.bytes);
    stats.client_to_backend_messages = load(&shared.upstream.messages);
    stats.backend_to_client_messages = load(&shared.downstream.messages);
    stats.malformed = shared.upstream.malformed.load(Ordering::Relaxed) || shared.downstream.malformed.load(Ordering::Relaxed);
    stats.first_close = shared.first_close.get().copied();
    stats.duration = shared.start.elapsed();
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

    fn direction(sender: Initiator) -> Direction {
        let counter = || IntCounter::new("test", "test").unwrap();
        Direction { sender, meters: Meters { bytes: counter(), messages: counter() }, max_message: None }
    }

    async fn tunnel(client: tokio::io::DuplexStream, backend: tokio::io::DuplexStream, prefix: &'static [u8], idle: Duration) -> TunnelStats {
        let (up, down) = (direction(Initiator::Client), direction(Initiator::Backend));
        run(Box::new(client), Box::new(backend), prefix, idle, &up, &down, std::future::pending()).await
    }

    #[tokio::test]
    async fn copies_both_ways_and_sends_the_prefix_first() {
        let (client, mut client_peer) = duplex(1024);
        let (backend, mut backend_peer) = duplex(1024);
        let tunnel = tokio::spawn(tunnel(client, backend, b"hello", Duration::from_secs(5)));
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
    async fn counts_messages_and_the_first_close_and_survives_garbage() {
        use crate::websocket::frames::close_frame;
        let (client, mut client_peer) = duplex(4096);
        let (backend, mut backend_peer) = duplex(4096);
        let task = tokio::spawn(tunnel(client, backend, b"", Duration::from_secs(5)));
        // Client: two masked text frames, then its Close 1000.
        let text = [0x81, 0x82, 1, 2, 3, 4, b'h' ^ 1, b'i' ^ 2];
        let mut wire = [text, text].concat();
        wire.extend(close_frame(1000, "", Some([9, 9, 9, 9])));
        client_peer.write_all(&wire).await.unwrap();
        let mut got = vec![0u8; wire.len()];
        backend_peer.read_exact(&mut got).await.unwrap();
        assert_eq!(got, wire, "bytes pass unchanged");
        // Backend: its Close reply, then garbage (a reserved opcode) that must still pass.
        let mut reply = close_frame(1000, "", None);
        reply.extend_from_slice(&[0x83, 0x00, 0xff]);
        backend_peer.write_all(&reply).await.unwrap();
        let mut got = vec![0u8; reply.len()];
        client_peer.read_exact(&mut got).await.unwrap();
        assert_eq!(got, reply);
        drop(backend_peer);
        let stats = tokio::time::timeout(Duration::from_secs(5), task).await.expect("ends once both closed").unwrap();
        assert_eq!(stats.client_to_backend_messages, 2);
        assert_eq!(stats.backend_to_client_messages, 0);
        assert_eq!(stats.first_close, Some((Initiator::Client, Some(1000))));
        assert!(stats.malformed);
        assert_eq!(stats.client_to_backend_bytes, wire.len() as u64);
    }

    #[tokio::test]
    async fn an_oversized_message_never_reaches_the_backend_and_both_sides_get_1009() {
        use crate::websocket::frames::{FrameReader, FrameEvent};
        let (client, mut client_peer) = duplex(1 << 16);
        let (backend, mut backend_peer) = duplex(1 << 16);
        let up = Direction { max_message: Some(100), ..direction(Initiator::Client) };
        let down = direction(Initiator::Backend);
        let task = tokio::spawn(async move { run(Box::new(client), Box::new(backend), b"", Duration::from_secs(5), &up, &down, std::future::pending()).await });
        // A 50-byte text message passes; a 200-byte binary one (masked, 16-bit length) does
        // not, and its header arrives cut in two reads.
        let small = [&[0x81u8, 0x80 | 50, 0, 0, 0, 0][..], &[b'a'; 50][..]].concat();
        let big_header = [0x82u8, 0x80 | 126, 0, 200, 0, 0, 0, 0];
        client_peer.write_all(&small).await.unwrap();
        client_peer.write_all(&big_header[..3]).await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        client_peer.write_all(&big_header[3..]).await.unwrap();
        client_peer.write_all(&[b'x'; 200]).await.unwrap();

        let mut to_backend = Vec::new();
        let mut reader = FrameReader::new();
        let mut events = Vec::new();
        while !events.iter().any(|e| matches!(e, FrameEvent::Close { .. })) {
            let mut chunk = [0u8; 512];
            let n = tokio::time::timeout(Duration::from_secs(5), backend_peer.read(&mut chunk)).await.unwrap().unwrap();
            assert!(n > 0, "backend stream ended before a Close");
            to_backend.extend_from_slice(&chunk[..n]);
            reader.feed(&chunk[..n], |_, e| events.push(e));
        }
        assert!(to_backend.starts_with(&small), "the small message passes whole");
        // (Not a byte search: the masked Close may contain any byte.)
        assert!(!events.iter().any(|e| matches!(e, FrameEvent::Header { payload_len: 200, .. })), "nothing of the oversized message reaches the backend: {events:?}");
        assert_eq!(events.iter().filter(|e| matches!(e, FrameEvent::Header { .. })).count(), 2, "the small message, then our Close: {events:?}");
        assert!(events.contains(&FrameEvent::Close { code: Some(1009) }), "{events:?}");
        let mut to_client = [0u8; 64];
        let n = tokio::time::timeout(Duration::from_secs(5), client_peer.read(&mut to_client)).await.unwrap().unwrap();
        let mut client_events = Vec::new();
        FrameReader::new().feed(&to_client[..n], |_, e| client_events.push(e));
        assert!(client_events.contains(&FrameEvent::Close { code: Some(1009) }), "{client_events:?}");
        drop((client_peer, backend_peer));
        let stats = tokio::time::timeout(Duration::from_secs(15), task).await.unwrap().unwrap();
        assert_eq!(stats.first_close, Some((Initiator::Proxy, Some(1009))));
    }

    #[tokio::test]
    async fn ends_after_the_idle_timeout() {
        let (client, _client_peer) = duplex(64);
        let (backend, _backend_peer) = duplex(64);
        let stats = tokio::time::timeout(Duration::from_secs(5), tunnel(client, backend, b"", Duration::from_millis(100)))
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
        let tunnel = tokio::spawn(tunnel(client, backend, b"", Duration::from_secs(5)));
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
