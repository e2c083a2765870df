//! wsgate's own full-duplex tunnel for upgraded connections.
//!
//! Why not Pingora's: in Pingora 0.9.1 (`proxy_h1.rs`) one `select!` loop serves both
//! directions and awaits each write inside its arm, so while it is blocked writing to a
//! backend that is itself blocked writing back, nobody reads: under bidirectional bulk
//! traffic both sockets fill and the session hangs for good. Here each direction is its own
//! pump (`pump.rs`) that only ever waits on its own reader or writer, so one side's
//! back-pressure never stops the other side from draining.
//!
//! Closing on wsgate's initiative (draining, an oversized message, a peer that broke the
//! protocol) is one `CloseRequest` both pumps read: each sends its peer the request's code
//! at the end of the frame in flight, forwards nothing more and waits for that peer's Close
//! reply; the tunnel ends once both replies are in or `CLOSING_TIMEOUT` has passed.

use super::frames::Rules;
use super::pump;
use pingora::protocols::Stream;
use pingora_prometheus::prometheus::IntCounter;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// Once one side has closed its TCP stream, the other gets this long to finish (unless the
/// WebSocket closing handshake is already complete, then the tunnel ends at once).
const HALF_CLOSE_LINGER: Duration = Duration::from_secs(10);
/// How long a session closing on wsgate's initiative waits for both peers' Close replies.
const CLOSING_TIMEOUT: Duration = Duration::from_secs(10);
/// RFC 6455 §7.4.1: 1001 Going Away, "a server going down".
const GOING_AWAY: u16 = 1001;
/// RFC 6455 §7.4.1: 1002, a protocol error.
pub(super) const PROTOCOL_ERROR: u16 = 1002;
/// RFC 6455 §7.4.1: 1009, a message too big to process.
pub(super) const MESSAGE_TOO_BIG: u16 = 1009;

/// Why a tunnel ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TunnelEnd {
    /// Both directions reached end of stream.
    Closed,
    /// No byte moved either way for the idle timeout.
    IdleTimeout,
    /// A read or write failed (reset, broken pipe).
    Error(String),
    /// This peer accepted no bytes for `send_timeout` while wsgate held some for it.
    SendTimeout(Initiator),
}

/// Who sent a session's first Close frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Initiator {
    Client,
    Backend,
    /// wsgate itself (draining, an oversized message, a protocol error).
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

    /// The `direction` label of what this peer sends.
    pub fn direction_label(self) -> &'static str {
        match self {
            Initiator::Backend => "backend_to_client",
            _ => "client_to_backend",
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
    /// The peer that broke RFC 6455 framing, if one did (the session was failed with 1002).
    pub protocol_error: Option<Initiator>,
    pub duration: Duration,
    pub end: TunnelEnd,
}

/// Live counters a pump adds to as bytes pass (Prometheus counters, or detached ones).
pub struct Meters {
    pub bytes: IntCounter,
    pub messages: IntCounter,
}

/// One direction of the tunnel: who sends on it, its counters, its rules.
pub struct Direction {
    pub sender: Initiator,
    pub meters: Meters,
    /// Messages larger than this are refused: the tunnel closes with 1009.
    pub max_message: Option<u64>,
    /// What the sender's frame headers may hold (masking, negotiated RSV bits).
    pub rules: Rules,
    /// The receiving peer must accept bytes at least this often while wsgate holds some
    /// for it (`limits.send_timeout`).
    pub send_timeout: Duration,
}

/// One side of a session: its stream and the bytes already read from it with the handshake
/// (they are this direction's first bytes).
pub struct Endpoint {
    pub stream: Stream,
    pub early: Vec<u8>,
}

/// Running totals of one direction, readable however the tunnel ends.
#[derive(Debug, Default)]
pub(super) struct Flow {
    pub bytes: AtomicU64,
    pub messages: AtomicU64,
    pub malformed: AtomicBool,
}

/// wsgate closes the session: the code each peer gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct CloseRequest {
    to_client: u16,
    to_backend: u16,
    /// A peer that stopped reading: it gets nothing more, and no answer is awaited from it.
    abandoned: Option<Initiator>,
}

impl CloseRequest {
    pub fn going_away() -> Self {
        CloseRequest { to_client: GOING_AWAY, to_backend: GOING_AWAY, abandoned: None }
    }
    pub fn too_big() -> Self {
        CloseRequest { to_client: MESSAGE_TOO_BIG, to_backend: MESSAGE_TOO_BIG, abandoned: None }
    }
    /// §7.1.7: the offender gets 1002; the other peer is told the session is going away.
    pub fn protocol_error(offender: Initiator) -> Self {
        match offender {
            Initiator::Backend => CloseRequest { to_client: GOING_AWAY, to_backend: PROTOCOL_ERROR, abandoned: None },
            _ => CloseRequest { to_client: PROTOCOL_ERROR, to_backend: GOING_AWAY, abandoned: None },
        }
    }
    /// `peer` accepted nothing for `send_timeout`: the other peer is told the session is
    /// going away.
    pub fn stalled(peer: Initiator) -> Self {
        CloseRequest { abandoned: Some(peer), ..Self::going_away() }
    }
    pub fn abandons(self, peer: Initiator) -> bool {
        self.abandoned == Some(peer)
    }
    /// The code for the peer that `sender`'s pump writes to.
    pub fn code_to_peer_of(self, sender: Initiator) -> u16 {
        match sender {
            Initiator::Backend => self.to_client,
            _ => self.to_backend,
        }
    }
    /// The code the session's close is counted under.
    fn label_code(self) -> u16 {
        self.to_client.max(self.to_backend)
    }
}

/// State both pumps share: activity for the idle timeout, and the closing handshake.
pub(super) struct Shared {
    start: Instant,
    /// Time of the last byte moved in either direction, in ms since `start`.
    last_ms: AtomicU64,
    first_close: OnceLock<(Initiator, Option<u16>)>,
    client_sent_close: AtomicBool,
    backend_sent_close: AtomicBool,
    upstream: Flow,
    downstream: Flow,
    /// Set once, when this session must close on wsgate's initiative.
    close_request: watch::Sender<Option<CloseRequest>>,
}

impl Shared {
    fn new() -> Self {
        Shared {
            start: Instant::now(),
            last_ms: AtomicU64::new(0),
            first_close: OnceLock::new(),
            client_sent_close: AtomicBool::new(false),
            backend_sent_close: AtomicBool::new(false),
            upstream: Flow::default(),
            downstream: Flow::default(),
            close_request: watch::channel(None).0,
        }
    }
    pub fn touch(&self) {
        self.last_ms.store(self.start.elapsed().as_millis() as u64, Ordering::Relaxed);
    }
    fn last(&self) -> Instant {
        self.start + Duration::from_millis(self.last_ms.load(Ordering::Relaxed))
    }
    pub fn flow(&self, sender: Initiator) -> &Flow {
        match sender {
            Initiator::Backend => &self.downstream,
            _ => &self.upstream,
        }
    }
    pub fn note_close(&self, sender: Initiator, code: Option<u16>) {
        let _ = self.first_close.set((sender, code));
        match sender {
            Initiator::Client => self.client_sent_close.store(true, Ordering::Relaxed),
            Initiator::Backend => self.backend_sent_close.store(true, Ordering::Relaxed),
            Initiator::Proxy => {}
        }
    }
    pub fn close_request(&self) -> Option<CloseRequest> {
        *self.close_request.borrow()
    }
    pub fn close_request_watch(&self) -> watch::Receiver<Option<CloseRequest>> {
        self.close_request.subscribe()
    }
    /// Asks both pumps to close the session; the first request wins. True if this was it.
    pub fn request_close(&self, request: CloseRequest) -> bool {
        let first = self.close_request.send_if_modified(|current| {
            if current.is_some() {
                return false;
            }
            *current = Some(request);
            true
        });
        if first {
            let _ = self.first_close.set((Initiator::Proxy, Some(request.label_code())));
        }
        first
    }
    /// Both sides have sent a Close frame (RFC 6455 §7.1.1): nothing more may follow.
    fn handshake_complete(&self) -> bool {
        self.client_sent_close.load(Ordering::Relaxed) && self.backend_sent_close.load(Ordering::Relaxed)
    }
    fn protocol_error(&self) -> Option<Initiator> {
        if self.upstream.malformed.load(Ordering::Relaxed) {
            Some(Initiator::Client)
        } else if self.downstream.malformed.load(Ordering::Relaxed) {
            Some(Initiator::Backend)
        } else {
            None
        }
    }
}

/// How a pump that writes to `peer` ended: `None` when the tunnel goes on. A stalled peer
/// (send timeout) is dropped while the other is told the session is going away.
fn failed(result: std::io::Result<()>, peer: Initiator, side: &str, shared: &Shared) -> Option<TunnelEnd> {
    match result {
        Ok(()) => None,
        Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {
            log::debug!("{peer:?} accepted no bytes for send_timeout; ending the session");
            shared.request_close(CloseRequest::stalled(peer));
            None
        }
        Err(e) => Some(TunnelEnd::Error(format!("{side}: {e}"))),
    }
}

/// Runs the tunnel until both sides are done, an error, or `idle_timeout` of silence.
/// `drain_at` resolves when this session must close because the process is draining.
pub async fn run(
    client: Endpoint,
    backend: Endpoint,
    idle_timeout: Duration,
    upstream_dir: &Direction,
    downstream_dir: &Direction,
    drain_at: impl std::future::Future<Output = ()>,
) -> TunnelStats {
    let shared = Shared::new();
    let (client_read, client_write) = tokio::io::split(client.stream);
    let (backend_read, backend_write) = tokio::io::split(backend.stream);
    let mut stats = TunnelStats {
        client_to_backend_bytes: 0,
        backend_to_client_bytes: 0,
        client_to_backend_messages: 0,
        backend_to_client_messages: 0,
        first_close: None,
        protocol_error: None,
        duration: Duration::ZERO,
        end: TunnelEnd::Closed,
    };

    let upstream = pump::run(client_read, backend_write, client.early, upstream_dir, &shared);
    let downstream = pump::run(backend_read, client_write, backend.early, downstream_dir, &shared);
    let mut close_requests = shared.close_request_watch();
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
                if let Some(end) = failed(result, Initiator::Backend, "client side", &shared) {
                    stats.end = end;
                    break;
                }
            }
            result = &mut downstream, if !down_done => {
                down_done = true;
                if let Some(end) = failed(result, Initiator::Client, "backend side", &shared) {
                    stats.end = end;
                    break;
                }
            }
            _ = &mut drain_at, if !drain_fired => {
                drain_fired = true;
                // A session already closing needs no help; otherwise say goodbye both ways.
                if shared.first_close.get().is_none() {
                    shared.request_close(CloseRequest::going_away());
                }
            }
            // Closing on our initiative: bound the closing handshake.
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
    if let Some(peer) = shared.close_request().and_then(|r| r.abandoned) {
        stats.end = TunnelEnd::SendTimeout(peer);
    }
    let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
    stats.client_to_backend_bytes = load(&shared.upstream.bytes);
    stats.backend_to_client_bytes = load(&shared.downstream.bytes);
    stats.client_to_backend_messages = load(&shared.upstream.messages);
    stats.backend_to_client_messages = load(&shared.downstream.messages);
    stats.protocol_error = shared.protocol_error();
    stats.first_close = shared.first_close.get().copied();
    stats.duration = shared.start.elapsed();
    stats
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{duplex, AsyncReadExt, AsyncWriteExt};

    fn direction(sender: Initiator) -> Direction {
        let counter = || IntCounter::new("test", "test").unwrap();
        let (client, backend) = Rules::session(super::super::frames::Extensions::None);
        let rules = if sender == Initiator::Client { client } else { backend };
        Direction { sender, meters: Meters { bytes: counter(), messages: counter() }, max_message: None, rules, send_timeout: Duration::from_secs(5) }
    }

    fn endpoint(stream: tokio::io::DuplexStream, early: &[u8]) -> Endpoint {
        Endpoint { stream: Box::new(stream), early: early.to_vec() }
    }

    async fn tunnel(client: tokio::io::DuplexStream, backend: tokio::io::DuplexStream, prefix: &'static [u8], idle: Duration) -> TunnelStats {
        let (up, down) = (direction(Initiator::Client), direction(Initiator::Backend));
        run(endpoint(client, b""), endpoint(backend, prefix), idle, &up, &down, std::future::pending()).await
    }

    use crate::websocket::frames::{close_frame, FrameEvent, FrameReader};

    /// A masked text frame, as a client sends it.
    fn client_text(text: &[u8]) -> Vec<u8> {
        let key = [1, 2, 3, 4];
        let mut frame = vec![0x81, 0x80 | text.len() as u8];
        frame.extend_from_slice(&key);
        frame.extend(text.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
        frame
    }

    /// An unmasked frame, as a server sends it.
    fn server_frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
        let mut frame = vec![0x80 | opcode];
        match payload.len() {
            n @ 0..=125 => frame.push(n as u8),
            n => {
                frame.push(126);
                frame.extend_from_slice(&(n as u16).to_be_bytes());
            }
        }
        frame.extend_from_slice(payload);
        frame
    }

    /// Reads `peer` until a Close frame (or the end of the stream): every event seen and
    /// whether the stream then ended.
    async fn read_until_close(peer: &mut tokio::io::DuplexStream) -> (Vec<FrameEvent>, Vec<u8>) {
        let (mut reader, mut events, mut bytes) = (FrameReader::new(), Vec::new(), Vec::new());
        while !events.iter().any(|e| matches!(e, FrameEvent::Close { .. })) {
            let mut chunk = [0u8; 4096];
            let n = tokio::time::timeout(Duration::from_secs(5), peer.read(&mut chunk)).await.expect("a Close in time").unwrap();
            if n == 0 {
                break;
            }
            bytes.extend_from_slice(&chunk[..n]);
            reader.feed(&chunk[..n], |_, e| events.push(e));
        }
        (events, bytes)
    }

    async fn at_eof(peer: &mut tokio::io::DuplexStream) -> bool {
        let mut rest = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(5), peer.read_to_end(&mut rest)).await;
        matches!(read, Ok(Ok(_))) && rest.is_empty()
    }

    #[tokio::test]
    async fn copies_both_ways_and_sends_the_early_bytes_first() {
        let (client, mut client_peer) = duplex(1024);
        let (backend, mut backend_peer) = duplex(1024);
        let hello = server_frame(0x1, b"hello");
        let early: &'static [u8] = Box::leak(hello.clone().into_boxed_slice());
        let tunnel = tokio::spawn(tunnel(client, backend, early, Duration::from_secs(5)));
        let mut got = vec![0u8; hello.len()];
        client_peer.read_exact(&mut got).await.unwrap();
        assert_eq!(got, hello);
        let ping = client_text(b"ping");
        client_peer.write_all(&ping).await.unwrap();
        let mut got = vec![0u8; ping.len()];
        backend_peer.read_exact(&mut got).await.unwrap();
        assert_eq!(got, ping);
        drop(client_peer);
        drop(backend_peer);
        let stats = tunnel.await.unwrap();
        assert_eq!((stats.client_to_backend_bytes, stats.backend_to_client_bytes), (ping.len() as u64, hello.len() as u64));
        assert_eq!((stats.client_to_backend_messages, stats.backend_to_client_messages), (1, 1), "early bytes are frames too");
    }

    /// Early bytes that end inside a frame: the reader goes on from where they stopped.
    #[tokio::test]
    async fn a_frame_split_between_the_early_bytes_and_the_first_read_is_one_frame() {
        let (client, mut client_peer) = duplex(1 << 16);
        let (backend, mut backend_peer) = duplex(1 << 16);
        let wire = [server_frame(0x1, b"hi"), server_frame(0x2, &[7; 3000])].concat();
        let early: &'static [u8] = Box::leak(wire[..100].to_vec().into_boxed_slice());
        let task = tokio::spawn(tunnel(client, backend, early, Duration::from_secs(5)));
        backend_peer.write_all(&wire[100..]).await.unwrap();
        backend_peer.write_all(&close_frame(1000, "", None)).await.unwrap();
        let (events, bytes) = read_until_close(&mut client_peer).await;
        assert!(bytes.starts_with(&wire), "both frames arrive whole");
        assert!(events.contains(&FrameEvent::Close { code: Some(1000) }), "{events:?}");
        drop((client_peer, backend_peer));
        let stats = tokio::time::timeout(Duration::from_secs(15), task).await.unwrap().unwrap();
        assert_eq!(stats.backend_to_client_messages, 2);
        assert_eq!(stats.protocol_error, None);
    }

    #[tokio::test]
    async fn counts_messages_and_the_first_close_and_forwards_nothing_after_a_close() {
        let (client, mut client_peer) = duplex(4096);
        let (backend, mut backend_peer) = duplex(4096);
        let task = tokio::spawn(tunnel(client, backend, b"", Duration::from_secs(5)));
        // Client: two masked text frames, then its Close 1000.
        let mut wire = [client_text(b"hi"), client_text(b"hi")].concat();
        wire.extend(close_frame(1000, "", Some([9, 9, 9, 9])));
        client_peer.write_all(&wire).await.unwrap();
        let mut got = vec![0u8; wire.len()];
        backend_peer.read_exact(&mut got).await.unwrap();
        assert_eq!(got, wire, "bytes pass unchanged");
        // Backend: its Close reply, then more frames (64 KiB of empty Closes, garbage): after
        // a Close nothing may follow (§5.5.1), so none of it passes and none is kept.
        let reply = close_frame(1000, "", None);
        let mut after = [0x88u8, 0x00].repeat(32 * 1024);
        after.extend_from_slice(&[0x83, 0x00, 0xff]);
        backend_peer.write_all(&[reply.clone(), after].concat()).await.unwrap();
        drop(backend_peer);
        let mut got = Vec::new();
        tokio::time::timeout(Duration::from_secs(5), client_peer.read_to_end(&mut got)).await.unwrap().unwrap();
        assert_eq!(got, reply, "one Close, then the end of the stream");
        let stats = tokio::time::timeout(Duration::from_secs(5), task).await.expect("ends once both closed").unwrap();
        assert_eq!(stats.client_to_backend_messages, 2);
        assert_eq!(stats.backend_to_client_messages, 0);
        assert_eq!(stats.first_close, Some((Initiator::Client, Some(1000))));
        assert_eq!(stats.protocol_error, None);
        assert_eq!(stats.client_to_backend_bytes, wire.len() as u64);
    }

    /// §7.1.7 for each way a client can break framing: nothing from the bad frame on
    /// reaches the backend, which gets Close 1001; the client gets Close 1002 and its
    /// connection closed.
    #[tokio::test]
    async fn a_client_that_breaks_framing_gets_1002_and_the_backend_1001() {
        let key = [1, 2, 3, 4];
        let masked = |b0: u8, len: u8| [vec![b0, 0x80 | len], key.to_vec(), vec![0; len as usize]].concat();
        let bad_frames: Vec<(&str, Vec<u8>)> = vec![
            ("reserved opcode", masked(0x83, 0)),
            ("fragmented control frame", masked(0x09, 0)),
            ("control payload over 125 bytes", [vec![0x89, 0x80 | 126, 0, 126], key.to_vec(), vec![0; 126]].concat()),
            ("1-byte close body", masked(0x88, 1)),
            ("continuation out of order", masked(0x80, 1)),
            ("64-bit length with MSB set", [vec![0x82, 0x80 | 127, 0x80], vec![0; 7], key.to_vec()].concat()),
            ("RSV bits without an extension", masked(0xC1, 1)),
            ("unmasked client frame", vec![0x81, 0x01, b'x']),
        ];
        for (case, bad) in bad_frames {
            let (client, mut client_peer) = duplex(1 << 16);
            let (backend, mut backend_peer) = duplex(1 << 16);
            let task = tokio::spawn(tunnel(client, backend, b"", Duration::from_secs(30)));
            let good = client_text(b"ok");
            // A big message behind the bad frame must not pass either.
            let behind = [vec![0x82, 0x80 | 126, 0x10, 0], key.to_vec(), vec![5; 4096]].concat();
            client_peer.write_all(&[good.clone(), bad, behind].concat()).await.unwrap();
            let (events, bytes) = read_until_close(&mut backend_peer).await;
            assert!(bytes.starts_with(&good), "{case}: the frame before passes");
            assert_eq!(events.iter().filter(|e| matches!(e, FrameEvent::Header { .. })).count(), 2, "{case}: the good frame, then our Close: {events:?}");
            assert!(events.contains(&FrameEvent::Close { code: Some(1001) }), "{case}: {events:?}");
            let (to_client, _) = read_until_close(&mut client_peer).await;
            assert_eq!(to_client.last(), Some(&FrameEvent::Close { code: Some(1002) }), "{case}");
            assert!(at_eof(&mut client_peer).await, "{case}: the offender's connection is closed after its 1002");
            backend_peer.write_all(&close_frame(1001, "", None)).await.unwrap();
            drop(client_peer);
            let stats = tokio::time::timeout(Duration::from_secs(5), task).await.expect("ends once the backend answered").unwrap();
            assert_eq!(stats.protocol_error, Some(Initiator::Client), "{case}");
            assert_eq!(stats.first_close, Some((Initiator::Proxy, Some(1002))), "{case}");
            assert_eq!(stats.client_to_backend_messages, 1, "{case}");
        }
    }

    #[tokio::test]
    async fn a_backend_that_masks_its_frames_gets_1002_and_the_client_1001() {
        let (client, mut client_peer) = duplex(4096);
        let (backend, mut backend_peer) = duplex(4096);
        let task = tokio::spawn(tunnel(client, backend, b"", Duration::from_secs(30)));
        backend_peer.write_all(&client_text(b"masked")).await.unwrap();
        let (to_client, _) = read_until_close(&mut client_peer).await;
        assert_eq!(to_client, [FrameEvent::Header { opcode: crate::websocket::frames::OpCode::Close, fin: true, masked: false, payload_len: 12, message_len: 12 }, FrameEvent::Close { code: Some(1001) }]);
        let (to_backend, _) = read_until_close(&mut backend_peer).await;
        assert_eq!(to_backend.last(), Some(&FrameEvent::Close { code: Some(1002) }));
        client_peer.write_all(&close_frame(1001, "", Some([1, 1, 1, 1]))).await.unwrap();
        drop(backend_peer);
        let stats = tokio::time::timeout(Duration::from_secs(5), task).await.unwrap().unwrap();
        assert_eq!(stats.protocol_error, Some(Initiator::Backend));
    }

    /// Draining, then an oversized message from the client: the backend gets one Close
    /// (1001), never a second (§5.5.1).
    #[tokio::test]
    async fn one_close_per_direction_when_draining_meets_an_oversized_message() {
        let (client, mut client_peer) = duplex(1 << 16);
        let (backend, mut backend_peer) = duplex(1 << 16);
        let (drain, drained) = tokio::sync::oneshot::channel::<()>();
        let up = Direction { max_message: Some(100), ..direction(Initiator::Client) };
        let down = direction(Initiator::Backend);
        let task = tokio::spawn(async move {
            run(endpoint(client, b""), endpoint(backend, b""), Duration::from_secs(30), &up, &down, async move {
                let _ = drained.await;
            })
            .await
        });
        drain.send(()).unwrap();
        let (to_client, _) = read_until_close(&mut client_peer).await;
        assert_eq!(to_client.last(), Some(&FrameEvent::Close { code: Some(1001) }));
        let (to_backend, _) = read_until_close(&mut backend_peer).await;
        assert_eq!(to_backend.last(), Some(&FrameEvent::Close { code: Some(1001) }));
        let big = [vec![0x82, 0x80 | 126, 0, 200], vec![1, 2, 3, 4], vec![0; 200]].concat();
        client_peer.write_all(&big).await.unwrap();
        client_peer.write_all(&close_frame(1001, "", Some([1, 1, 1, 1]))).await.unwrap();
        backend_peer.write_all(&close_frame(1001, "", None)).await.unwrap();
        let stats = tokio::time::timeout(Duration::from_secs(5), task).await.expect("ends once both answered").unwrap();
        assert_eq!(stats.first_close, Some((Initiator::Proxy, Some(1001))));
        assert!(at_eof(&mut backend_peer).await, "nothing after the one Close");
    }

    #[tokio::test]
    async fn an_oversized_message_never_reaches_the_backend_and_both_sides_get_1009() {
        let (client, mut client_peer) = duplex(1 << 16);
        let (backend, mut backend_peer) = duplex(1 << 16);
        let up = Direction { max_message: Some(100), ..direction(Initiator::Client) };
        let down = direction(Initiator::Backend);
        let task = tokio::spawn(async move { run(endpoint(client, b""), endpoint(backend, b""), Duration::from_secs(5), &up, &down, std::future::pending()).await });
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

    /// A client that stops reading while the backend sends: dropped after send_timeout, and
    /// the backend is told the session is going away.
    #[tokio::test]
    async fn a_peer_that_accepts_nothing_for_send_timeout_is_dropped_and_the_other_gets_1001() {
        let (client, client_peer) = duplex(1024);
        let (backend, mut backend_peer) = duplex(1 << 17);
        let timeout = Duration::from_millis(200);
        let up = Direction { send_timeout: timeout, ..direction(Initiator::Client) };
        let down = Direction { send_timeout: timeout, ..direction(Initiator::Backend) };
        let task = tokio::spawn(async move { run(endpoint(client, b""), endpoint(backend, b""), Duration::from_secs(30), &up, &down, std::future::pending()).await });
        backend_peer.write_all(&server_frame(0x2, &[0; 60_000])).await.unwrap();
        let (to_backend, _) = read_until_close(&mut backend_peer).await;
        assert_eq!(to_backend.last(), Some(&FrameEvent::Close { code: Some(1001) }));
        let stats = tokio::time::timeout(Duration::from_secs(5), task).await.expect("ends without waiting for the stalled client").unwrap();
        assert_eq!(stats.end, TunnelEnd::SendTimeout(Initiator::Client));
        assert_eq!(stats.first_close, Some((Initiator::Proxy, Some(1001))));
        drop(client_peer);
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
        // One binary frame of TOTAL bytes each way (the client's masked with a zero key).
        let header = |masked: bool| {
            let mut h = vec![0x82, if masked { 0x80 | 127 } else { 127 }];
            h.extend_from_slice(&(TOTAL as u64).to_be_bytes());
            h.extend_from_slice(if masked { &[0; 4][..] } else { &[] });
            h
        };
        let blast = |peer: tokio::io::DuplexStream, header: Vec<u8>| async move {
            let (mut r, mut w) = tokio::io::split(peer);
            let writer = async move {
                w.write_all(&header).await.unwrap();
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
        let both = async { tokio::join!(blast(client_peer, header(true)), blast(backend_peer, header(false))) };
        let (a, b) = tokio::time::timeout(Duration::from_secs(20), both).await.expect("tunnel stalled");
        assert_eq!((a, b), (TOTAL + 10, TOTAL + 14));
        let stats = tunnel.await.unwrap();
        assert_eq!(stats.end, TunnelEnd::Closed);
    }
}
