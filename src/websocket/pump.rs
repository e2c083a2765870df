//! One direction of a WebSocket tunnel: reads its sender, shows every byte to that
//! direction's `FrameReader` exactly once, from the first byte after the 101, and forwards
//! whole frames to the other peer, unchanged.
//!
//! What it forwards always ends on a whole frame header (a header cut by a read is held
//! back), so a Close of wsgate's own can go in between frames. It writes at most one Close
//! to its peer, ever (RFC 6455 §5.5.1): the sender's own, relayed, or wsgate's. A sender
//! that breaks framing fails the connection (§7.1.7): nothing from the offending frame on
//! is forwarded, the offender gets Close 1002 and the other peer Close 1001.

mod scan;
mod write;

use super::branch::Branch;
use super::frames::FrameReader;
use super::keepalive::Liveness;
use super::rate::{Allowance, Limiter};
use super::shared::{CloseRequest, Departure, Direction, Initiator, Shared, PROTOCOL_ERROR};
use crate::upstream::moves::now_ms;
use scan::{Action, Scan};
use std::io;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
pub(super) use write::Stalled;
use write::{close_to_peer, ping_to_peer, write_now};

/// A direction starts with a small buffer (idle sessions are the common case) and doubles
/// it, up to the maximum, whenever a read fills it (bulk transfers).
pub(super) const BUFFER_START: usize = 1024;
const BUFFER_MAX: usize = 64 * 1024;
/// A grown buffer returns to `BUFFER_START` after a much shorter read or this long without a
/// byte, so a session that once moved a large message does not keep 64 KiB per direction
/// through hours of idleness.
const QUIET: Duration = Duration::from_secs(1);
/// Only a buffer grown past this waits for `QUIET` (a timer per read while it is): one of a
/// few KiB, which messages of that size keep, goes back at the next much shorter read.
const QUIET_ABOVE: usize = 4 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Forwarding frames.
    Open,
    /// The sender's Close went through: nothing may follow it (§5.5.1), so the rest is
    /// discarded until the sender's end of stream.
    Relayed,
    /// wsgate's own Close went out: nothing more is forwarded, and the sender's Close (its
    /// answer) ends this direction.
    Closing,
    /// The sender broke RFC 6455 framing: its bytes are discarded until it ends.
    Failed,
}

#[derive(PartialEq, Eq)]
enum Woke {
    Read(usize),
    CloseRequested,
    Quiet,
    /// The peer this pump writes to owes wsgate an answer to a Ping.
    PingDue,
    /// A throttled sender's bucket has refilled.
    Refilled,
}

struct Pump<'a> {
    direction: &'a Direction,
    shared: &'a Shared,
    frames: FrameReader,
    buf: Vec<u8>,
    /// `buf[..held]` is the start of a frame cut by the last read (a header, or what may be
    /// the Pong answering wsgate's Ping): already shown to `frames`, not forwarded yet.
    held: usize,
    state: State,
    /// Keepalive is on: the sender's bytes prove it alive, its receiver may owe a Ping.
    keepalive: bool,
    /// The peer this pump writes to.
    receiver: Initiator,
    /// The sender's rate limits, if any.
    limiter: Option<Box<Limiter<'a>>>,
    /// A write of the current chunk had to wait for the receiver.
    waited: bool,
}

/// Copies `reader` to `writer` until end of stream (then half-closes `writer`) or, once
/// wsgate has closed this direction, until the sender's answering Close. `early` holds
/// bytes of this direction read with the handshake: they go first, through the same path.
pub(super) async fn run<R, W>(
    mut reader: R,
    mut writer: W,
    early: Vec<u8>,
    direction: &Direction,
    shared: &Shared,
) -> io::Result<()>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut pump = Pump::new(direction, shared, early.len());
    let receiver = pump.receiver;
    let mut early = (!early.is_empty()).then_some(early);
    // Built once: a future per read would cost more than the read itself on small messages.
    let mut close_requests = shared.close_request_watch();
    let close_requested = async move {
        let _ = close_requests.changed().await;
    };
    tokio::pin!(close_requested);
    let mut close_requested = Branch::new(close_requested);
    // Only with keepalive on (boxed: a future kept in every pump of every session otherwise).
    let ping_wake = shared.liveness(receiver).map(|l| &l.wake);
    let mut ping_due = ping_wake.map(|w| Box::pin(w.notified()));
    let mut close_seen = false;
    loop {
        // Between reads there is usually nothing to do: no future then.
        if (shared.close_request().is_some() || pump.ping_due()) && pump.before_read(&mut writer).await? {
            return Ok(());
        }
        let n = match early.take() {
            Some(bytes) => {
                pump.buf[..bytes.len()].copy_from_slice(&bytes);
                bytes.len()
            }
            None => {
                let watch = pump.state == State::Open && !close_seen && shared.close_request().is_none();
                match pump.wait(&mut reader, &mut close_requested, watch, ping_due.as_mut()).await? {
                    Woke::Read(n) => n,
                    Woke::CloseRequested => {
                        close_seen = true;
                        continue;
                    }
                    Woke::Quiet => {
                        pump.shrink();
                        continue;
                    }
                    Woke::PingDue => {
                        ping_due = ping_wake.map(|w| Box::pin(w.notified()));
                        continue;
                    }
                    Woke::Refilled => continue,
                }
            }
        };
        if n == 0 {
            let _ = writer.shutdown().await;
            return Ok(());
        }
        if pump.process(n, &mut writer).await? {
            let _ = writer.shutdown().await;
            return Ok(());
        }
    }
}

/// The pump's one timer: a throttled sender's refill at `until`, else after `QUIET` when
/// the buffer has grown; never otherwise. Lazy, so a small buffer's read costs no timer.
async fn timer(until: Option<std::time::Instant>, big: bool) -> Woke {
    match until {
        Some(at) => {
            tokio::time::sleep_until(tokio::time::Instant::from_std(at)).await;
            Woke::Refilled
        }
        None if big => {
            tokio::time::sleep(QUIET).await;
            Woke::Quiet
        }
        None => std::future::pending().await,
    }
}

impl<'a> Pump<'a> {
    fn new(direction: &'a Direction, shared: &'a Shared, early: usize) -> Pump<'a> {
        let receiver = if direction.sender == Initiator::Backend { Initiator::Client } else { Initiator::Backend };
        Pump {
            direction,
            shared,
            frames: FrameReader::with_rules(direction.rules),
            buf: vec![0; BUFFER_START.max(early)],
            held: 0,
            state: State::Open,
            keepalive: shared.keepalive.is_some(),
            receiver,
            limiter: direction.rate.as_ref().map(|spec| Box::new(Limiter::new(spec, std::time::Instant::now()))),
            waited: false,
        }
    }

    /// Waits for the sender's next bytes, a close request (when `watch`ed) or a quiet spell
    /// long enough to give a grown buffer back.
    async fn wait<R: AsyncRead + Unpin>(
        &mut self,
        reader: &mut R,
        close_requested: &mut (impl std::future::Future<Output = ()> + Unpin),
        watch: bool,
        ping_due: Option<&mut std::pin::Pin<Box<impl std::future::Future<Output = ()>>>>,
    ) -> io::Result<Woke> {
        let big = self.buf.len() > QUIET_ABOVE;
        if ping_due.is_none() && self.limiter.is_none() {
            // Neither keepalive nor rate limits: the fewest branches, as every read waits here.
            return Ok(tokio::select! {
                biased;
                read = reader.read(&mut self.buf[self.held..]) => Woke::Read(read?),
                _ = close_requested, if watch => Woke::CloseRequested,
                woke = timer(None, big) => woke,
            });
        }
        let pinging = watch && ping_due.is_some();
        let ping_due = async {
            match ping_due {
                Some(due) => due.await,
                None => std::future::pending().await,
            }
        };
        let (until, read_to) = match self.limiter.as_mut().map(|l| l.allowance(std::time::Instant::now())) {
            Some(Allowance::Wait(until)) => (Some(until), self.held),
            Some(Allowance::Read(n)) => (None, self.held.saturating_add(n).min(self.buf.len())),
            None => (None, self.buf.len()),
        };
        let throttled = until.is_some();
        Ok(tokio::select! {
            biased;
            read = reader.read(&mut self.buf[self.held..read_to]), if !throttled => Woke::Read(read?),
            _ = close_requested, if watch => Woke::CloseRequested,
            _ = ping_due, if pinging => Woke::PingDue,
            woke = timer(until, big) => woke,
        })
    }

    /// What happens between reads: wsgate's Close or Ping at a frame boundary, and the end
    /// of a direction whose peer is abandoned. True when this direction is done.
    async fn before_read<W: AsyncWrite + Unpin>(&mut self, writer: &mut W) -> io::Result<bool> {
        let request = self.shared.close_request();
        let sender = self.direction.sender;
        // A dead receiver gets nothing more; a dead sender's frame will never end, so the
        // receiver gets wsgate's Close only if it is between frames.
        if let Some(r) = request.filter(|r| r.silent && (r.abandons(self.receiver) || r.abandons(sender))) {
            if r.abandons(sender) && self.state == State::Open && self.at_boundary() {
                self.send_own_close(writer, r).await?;
            }
            let _ = writer.shutdown().await;
            return Ok(true);
        }
        if let (State::Open, Some(request), Some(0)) = (self.state, request, self.frames.bytes_to_boundary()) {
            self.send_own_close(writer, request).await?;
        }
        // The sender stopped reading and is being dropped: no answer will come from it.
        if self.state != State::Open && request.is_some_and(|r| r.abandons(sender)) {
            let _ = writer.shutdown().await;
            return Ok(true);
        }
        if self.state == State::Open && request.is_none() && self.ping_due() && self.at_boundary() {
            self.send_ping(writer).await?;
        }
        Ok(false)
    }

    /// What has been forwarded ends on a frame boundary: between frames, or with the start
    /// of a frame held back.
    fn at_boundary(&self) -> bool {
        self.held > 0 || self.frames.bytes_to_boundary() == Some(0)
    }

    fn ping_due(&self) -> bool {
        self.keepalive && self.shared.liveness(self.receiver).is_some_and(Liveness::ping_due)
    }

    async fn send_ping<W: AsyncWrite + Unpin>(&mut self, writer: &mut W) -> io::Result<()> {
        write_now(writer, &ping_to_peer(self.direction.sender), self.direction.send_timeout).await?;
        if let Some(liveness) = self.shared.liveness(self.receiver) {
            liveness.ping_sent(now_ms());
        }
        Ok(())
    }

    /// Handles the `n` bytes just read after `buf[..held]`. True when this direction is done.
    async fn process<W: AsyncWrite + Unpin>(&mut self, n: usize, writer: &mut W) -> io::Result<bool> {
        let now = now_ms();
        if let Some(liveness) = self.shared.liveness(self.direction.sender) {
            liveness.heard(now);
        }
        let mut end = self.held + n;
        // Where the frame in flight ends: inside a payload, after its rest; in a header, the
        // frame starts at 0 (its first bytes are the held ones).
        let mut first_boundary = self
            .frames
            .bytes_to_boundary()
            .map_or(0, |r| self.held.saturating_add(usize::try_from(r).unwrap_or(usize::MAX)));
        let requested = self.shared.close_request().filter(|_| self.state == State::Open && first_boundary <= end);
        let span = (self.held, end);
        let mut scan = Scan::read(
            &mut self.frames,
            &self.buf,
            span,
            self.direction.max_message,
            requested.map(|_| first_boundary),
        );
        if let Some(pong) = scan.pong.take() {
            first_boundary = scan.cut_own_pong(pong, &mut self.buf, &mut end, first_boundary);
        }
        // Answers to wsgate's Pings are not traffic: they do not hold off the idle timeout.
        let traffic = end > 0;
        if traffic {
            self.shared.card.activity.set(now);
        }
        let (forwarded, done) = match self.state {
            State::Open => {
                let action = scan.decide(&self.frames, requested.map(|r| (first_boundary, r)), end);
                let ping_at = self.ping_due().then_some(first_boundary);
                self.act(action, &scan, ping_at, writer).await?
            }
            State::Closing => match scan.close {
                Some((_, _, code)) => {
                    self.shared.note_close(self.direction.sender, code);
                    (0, true)
                }
                None => (0, false),
            },
            State::Relayed | State::Failed => (0, false),
        };
        if self.limiter.as_mut().is_some_and(|l| l.spent(n, scan.messages)) {
            log::info!("the client sent past its rate limit; closing the session with 1008");
            self.shared.depart(Departure::RateLimited);
        }
        self.keep_held(forwarded, end);
        self.resize(end, n);
        // Activity was stamped when the bytes came in; again only if they took long to go out.
        if traffic && std::mem::take(&mut self.waited) {
            self.shared.touch();
        }
        Ok(done)
    }

    /// Carries out `action` for a chunk read while `Open`: how much was forwarded, and
    /// whether this direction is done.
    async fn act<W: AsyncWrite + Unpin>(
        &mut self,
        action: Action,
        scan: &Scan,
        ping_at: Option<usize>,
        writer: &mut W,
    ) -> io::Result<(usize, bool)> {
        let forward = match action {
            Action::Forward(at) | Action::Own(at, _) | Action::Fail(at, _) | Action::Relay(at, _) => at,
        };
        match (&action, ping_at) {
            // A Ping the receiver is owed goes in at the first frame boundary.
            (Action::Forward(_), Some(at)) if at <= forward => {
                self.forward(writer, 0, at, 0).await?;
                self.send_ping(writer).await?;
                self.forward(writer, at, forward, scan.messages).await?;
            }
            _ => self.forward(writer, 0, forward, scan.messages).await?,
        }
        match action {
            Action::Forward(_) => {}
            Action::Relay(_, code) => {
                self.shared.note_close(self.direction.sender, code);
                self.state = State::Relayed;
            }
            Action::Own(at, request) => {
                if self.shared.request_close(request) && request == CloseRequest::too_big() {
                    log::info!("{:?} sent a message over the route's websocket.max_message_bytes; closing the session with 1009", self.direction.sender);
                }
                let request = self.shared.close_request().unwrap_or(request);
                self.send_own_close(writer, request).await?;
                // The sender's Close right behind the cut crossed ours: it is the answer.
                if let Some((_, _, code)) = scan.close.filter(|c| c.0 >= at) {
                    self.shared.note_close(self.direction.sender, code);
                    return Ok((forward, true));
                }
            }
            Action::Fail(_, why) => {
                log::info!(
                    "{:?} broke the WebSocket protocol ({why}); failing the session with 1002",
                    self.direction.sender
                );
                self.shared.flow(self.direction.sender).malformed.store(true, Ordering::Relaxed);
                self.shared.request_close(CloseRequest::protocol_error(self.direction.sender));
                let request =
                    self.shared.close_request().unwrap_or(CloseRequest::protocol_error(self.direction.sender));
                self.send_own_close(writer, request).await?;
                self.state = State::Failed;
            }
        }
        Ok((forward, false))
    }

    /// Writes `buf[from..upto]`, counting it and the `messages` it ends.
    async fn forward<W: AsyncWrite + Unpin>(
        &mut self,
        writer: &mut W,
        from: usize,
        upto: usize,
        messages: u64,
    ) -> io::Result<()> {
        if upto > from {
            self.waited |= write_now(writer, &self.buf[from..upto], self.direction.send_timeout).await?;
        }
        let (flow, bytes) = (self.shared.flow(self.direction.sender), (upto - from) as u64);
        flow.bytes.fetch_add(bytes, Ordering::Relaxed);
        flow.messages.fetch_add(messages, Ordering::Relaxed);
        self.direction.meters.bytes.inc_by(bytes);
        self.direction.meters.messages.inc_by(messages);
        Ok(())
    }

    /// Writes wsgate's Close to this direction's peer; its only Close, so it ends the
    /// forwarding. A peer that broke the protocol gets its connection closed right after
    /// (§7.1.7): its stream can no longer be read for an answer.
    async fn send_own_close<W: AsyncWrite + Unpin>(&mut self, writer: &mut W, request: CloseRequest) -> io::Result<()> {
        let code = request.code_to_peer_of(self.direction.sender);
        let given = if self.receiver == Initiator::Client { self.shared.card.reason_for(code) } else { None };
        write_now(writer, &close_to_peer(self.direction.sender, code, given), self.direction.send_timeout).await?;
        if self.state == State::Open {
            self.state = State::Closing;
        }
        if code == PROTOCOL_ERROR {
            let _ = writer.shutdown().await;
        }
        Ok(())
    }

    /// Keeps the unforwarded tail of `buf[..end]` (a cut header) at the front; once the
    /// direction no longer forwards, nothing is kept.
    fn keep_held(&mut self, forwarded: usize, end: usize) {
        let tail = if self.state == State::Open { end - forwarded } else { 0 };
        self.buf.copy_within(forwarded..forwarded + tail, 0);
        self.held = tail;
    }

    /// Doubles the buffer after a read that filled it; back to the start size after a read
    /// of under an eighth of it (the burst is over). Not after any short read: messages a
    /// little over the start size would then take a shrink, a grow and two reads each.
    fn resize(&mut self, end: usize, n: usize) {
        if end == self.buf.len() && self.buf.len() < BUFFER_MAX {
            self.buf.resize(self.buf.len() * 2, 0);
        } else if n < self.buf.len() / 8 {
            self.shrink();
        }
    }

    fn shrink(&mut self) {
        if self.buf.len() > BUFFER_START && self.held <= BUFFER_START {
            self.buf.truncate(BUFFER_START);
            self.buf.shrink_to_fit();
        }
    }
}
