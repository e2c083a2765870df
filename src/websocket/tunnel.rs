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
pub(crate) enum TunnelEnd {
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
pub(crate) enum Initiator {
    Client,
    Backend,
    /// wsgate itself (draining, an oversized message, a protocol error).
    Proxy,
}

impl Initiator {
    pub(crate) fn label(self) -> &'static str {
        match self {
            Initiator::Client => "client",
            Initiator::Backend => "backend",
            Initiator::Proxy => "proxy",
        }
    }

    /// The `direction` label of what this peer sends.
    pub(crate) fn direction_label(self) -> &'static str {
        match self {
            Initiator::Backend => "backend_to_client",
            _ => "client_to_backend",
        }
    }
}

#[derive(Debug, Clone)]
pub(crate) struct TunnelStats {
    pub(crate) client_to_backend_bytes: u64,
    pub(crate) backend_to_client_bytes: u64,
    pub(crate) client_to_backend_messages: u64,
    pub(crate) backend_to_client_messages: u64,
    /// The first Close frame seen in either direction: its sender and code.
    pub(crate) first_close: Option<(Initiator, Option<u16>)>,
    /// The peer that broke RFC 6455 framing, if one did (the session was failed with 1002).
    pub(crate) protocol_error: Option<Initiator>,
    pub(crate) duration: Duration,
    pub(crate) end: TunnelEnd,
}

/// Live counters a pump adds to as bytes pass (Prometheus counters, or detached ones).
pub(crate) struct Meters {
    pub(crate) bytes: IntCounter,
    pub(crate) messages: IntCounter,
}

/// One direction of the tunnel: who sends on it, its counters, its rules.
pub(crate) struct Direction {
    pub(crate) sender: Initiator,
    pub(crate) meters: Meters,
    /// Messages larger than this are refused: the tunnel closes with 1009.
    pub(crate) max_message: Option<u64>,
    /// What the sender's frame headers may hold (masking, negotiated RSV bits).
    pub(crate) rules: Rules,
    /// The receiving peer must accept bytes at least this often while wsgate holds some
    /// for it (`limits.send_timeout`).
    pub(crate) send_timeout: Duration,
}

/// One side of a session: its stream and the bytes already read from it with the handshake
/// (they are this direction's first bytes).
pub(crate) struct Endpoint {
    pub(crate) stream: Stream,
    pub(crate) early: Vec<u8>,
}

/// Running totals of one direction, readable however the tunnel ends.
#[derive(Debug, Default)]
pub(super) struct Flow {
    pub(crate) bytes: AtomicU64,
    pub(crate) messages: AtomicU64,
    pub(crate) malformed: AtomicBool,
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
    pub(crate) fn going_away() -> Self {
        CloseRequest { to_client: GOING_AWAY, to_backend: GOING_AWAY, abandoned: None }
    }
    pub(crate) fn too_big() -> Self {
        CloseRequest { to_client: MESSAGE_TOO_BIG, to_backend: MESSAGE_TOO_BIG, abandoned: None }
    }
    /// §7.1.7: the offender gets 1002; the other peer is told the session is going away.
    pub(crate) fn protocol_error(offender: Initiator) -> Self {
        match offender {
            Initiator::Backend => CloseRequest { to_client: GOING_AWAY, to_backend: PROTOCOL_ERROR, abandoned: None },
            _ => CloseRequest { to_client: PROTOCOL_ERROR, to_backend: GOING_AWAY, abandoned: None },
        }
    }
    /// `peer` accepted nothing for `send_timeout`: the other peer is told the session is
    /// going away.
    pub(crate) fn stalled(peer: Initiator) -> Self {
        CloseRequest { abandoned: Some(peer), ..Self::going_away() }
    }
    pub(crate) fn abandons(self, peer: Initiator) -> bool {
        self.abandoned == Some(peer)
    }
    /// The code for the peer that `sender`'s pump writes to.
    pub(crate) fn code_to_peer_of(self, sender: Initiator) -> u16 {
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
    pub(crate) fn touch(&self) {
        self.last_ms.store(self.start.elapsed().as_millis() as u64, Ordering::Relaxed);
    }
    fn last(&self) -> Instant {
        self.start + Duration::from_millis(self.last_ms.load(Ordering::Relaxed))
    }
    pub(crate) fn flow(&self, sender: Initiator) -> &Flow {
        match sender {
            Initiator::Backend => &self.downstream,
            _ => &self.upstream,
        }
    }
    pub(crate) fn note_close(&self, sender: Initiator, code: Option<u16>) {
        let _ = self.first_close.set((sender, code));
        match sender {
            Initiator::Client => self.client_sent_close.store(true, Ordering::Relaxed),
            Initiator::Backend => self.backend_sent_close.store(true, Ordering::Relaxed),
            Initiator::Proxy => {}
        }
    }
    pub(crate) fn close_request(&self) -> Option<CloseRequest> {
        *self.close_request.borrow()
    }
    pub(crate) fn close_request_watch(&self) -> watch::Receiver<Option<CloseRequest>> {
        self.close_request.subscribe()
    }
    /// Asks both pumps to close the session; the first request wins. True if this was it.
    pub(crate) fn request_close(&self, request: CloseRequest) -> bool {
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
        Err(e) if pump::Stalled::is(&e) => {
            log::debug!("{peer:?} accepted no bytes for send_timeout; ending the session");
            shared.request_close(CloseRequest::stalled(peer));
            None
        }
        Err(e) => Some(TunnelEnd::Error(format!("{side}: {e}"))),
    }
}

/// Runs the tunnel until both sides are done, an error, or `idle_timeout` of silence.
/// `drain_at` resolves when this session must close because the process is draining.
pub(crate) async fn run(
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
    let upstream = pump::run(client_read, backend_write, client.early, upstream_dir, &shared);
    let downstream = pump::run(backend_read, client_write, backend.early, downstream_dir, &shared);
    let end = supervise(upstream, downstream, drain_at, idle_timeout, &shared).await;
    let end = match shared.close_request().and_then(|r| r.abandoned) {
        Some(peer) => TunnelEnd::SendTimeout(peer),
        None => end,
    };
    let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
    TunnelStats {
        client_to_backend_bytes: load(&shared.upstream.bytes),
        backend_to_client_bytes: load(&shared.downstream.bytes),
        client_to_backend_messages: load(&shared.upstream.messages),
        backend_to_client_messages: load(&shared.downstream.messages),
        first_close: shared.first_close.get().copied(),
        protocol_error: shared.protocol_error(),
        duration: shared.start.elapsed(),
        end,
    }
}

/// Runs both pumps until the session is over: both are done (or one is, once the closing
/// handshake is complete), one failed, the idle timeout passed, or a closing handshake we
/// started outlived its bound. A drain asks both peers to close.
async fn supervise(
    upstream: impl std::future::Future<Output = std::io::Result<()>>,
    downstream: impl std::future::Future<Output = std::io::Result<()>>,
    drain_at: impl std::future::Future<Output = ()>,
    idle_timeout: Duration,
    shared: &Shared,
) -> TunnelEnd {
    let mut close_requests = shared.close_request_watch();
    tokio::pin!(upstream, downstream, drain_at);
    let (mut up_done, mut down_done, mut drain_fired) = (false, false, false);
    let mut linger_until: Option<Instant> = None;
    while !(up_done && down_done) {
        if up_done || down_done {
            if shared.handshake_complete() {
                break;
            }
            linger_until.get_or_insert_with(|| Instant::now() + HALF_CLOSE_LINGER.min(idle_timeout));
        }
        let idle_deadline = shared.last() + idle_timeout;
        let deadline = tokio::time::Instant::from_std(linger_until.map_or(idle_deadline, |l| l.min(idle_deadline)));
        tokio::select! {
            result = &mut upstream, if !up_done => {
                up_done = true;
                if let Some(end) = failed(result, Initiator::Backend, "client side", shared) {
                    return end;
                }
            }
            result = &mut downstream, if !down_done => {
                down_done = true;
                if let Some(end) = failed(result, Initiator::Client, "backend side", shared) {
                    return end;
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
                    return TunnelEnd::IdleTimeout;
                }
            }
        }
    }
    TunnelEnd::Closed
}

#[cfg(test)]
mod tests;
