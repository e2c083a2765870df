//! What one chunk read from a sender holds, found by its frame reader: where forwarding
//! must stop, and what the pump does there.

use crate::websocket::frames::{FrameEvent, FrameReader, OpCode};
use crate::websocket::keepalive;
use crate::websocket::shared::CloseRequest;

/// What a chunk holds that stops forwarding, as positions in the pump's buffer.
#[derive(Default)]
pub(super) struct Scan {
    /// Data messages that end before the first stop.
    pub(super) messages: u64,
    /// Start of the first data frame of a message over the direction's limit.
    pub(super) oversized: Option<usize>,
    /// Start of the first frame that broke framing, and why.
    pub(super) malformed: Option<(usize, &'static str)>,
    /// The first Close frame: its start, its end and its code.
    pub(super) close: Option<(usize, usize, Option<u16>)>,
    /// The Pong answering wsgate's Ping: its start and end. One Ping is outstanding at a
    /// time, so one is enough; a replayed copy is passed on (an unsolicited Pong, §5.5.3).
    pub(super) pong: Option<(usize, usize)>,
    /// Start of the frame the chunk ends in (or after).
    pub(super) open_frame: usize,
}

/// What to do with a chunk read in the `Open` state.
pub(super) enum Action {
    /// Forward up to here; what follows is a header cut by the read, held back.
    Forward(usize),
    /// Forward up to here, then send wsgate's own Close.
    Own(usize, CloseRequest),
    /// Forward up to the offending frame's start, then fail the connection.
    Fail(usize, &'static str),
    /// Forward up to the end of the sender's Close.
    Relay(usize, Option<u16>),
}

impl Scan {
    /// Takes the Pong answering wsgate's Ping out of `buf[..end]`, moving what `scan` found
    /// and `first_boundary` with the bytes; the new first boundary.
    pub(super) fn cut_own_pong(
        &mut self,
        pong: (usize, usize),
        buf: &mut [u8],
        end: &mut usize,
        first_boundary: usize,
    ) -> usize {
        let cuts = [pong];
        let at = |p: usize| keepalive::shift(&cuts, p);
        *end = keepalive::cut(buf, &cuts, *end);
        self.oversized = self.oversized.map(at);
        self.malformed = self.malformed.map(|(p, why)| (at(p), why));
        self.close = self.close.map(|(start, stop, code)| (at(start), at(stop), code));
        self.open_frame = at(self.open_frame);
        at(first_boundary)
    }

    /// Feeds `buf[held..end]` to the frame reader and notes what stops forwarding: a
    /// message over `max_message`, a Close, broken framing, wsgate's Pong. Messages are
    /// counted up to `drain_cut`, where wsgate's own Close goes.
    pub(super) fn read(
        frames: &mut FrameReader,
        buf: &[u8],
        (held, end): (usize, usize),
        max_message: Option<u64>,
        drain_cut: Option<usize>,
    ) -> Scan {
        let mut scan = Scan::default();
        let mut limit = drain_cut.unwrap_or(usize::MAX);
        let mut next_start =
            frames.bytes_to_boundary().map_or(0, |r| held.saturating_add(usize::try_from(r).unwrap_or(usize::MAX)));
        let mut frame_start = 0;
        frames.feed(&buf[held..end], |offset, event| {
            let at = held + offset;
            match event {
                FrameEvent::Header { opcode, payload_len, message_len, .. } => {
                    frame_start = next_start;
                    next_start = at.saturating_add(usize::try_from(payload_len).unwrap_or(usize::MAX));
                    let data = matches!(opcode, OpCode::Text | OpCode::Binary | OpCode::Continuation);
                    if scan.oversized.is_none() && data && max_message.is_some_and(|max| message_len > max) {
                        scan.oversized = Some(frame_start);
                        limit = limit.min(frame_start);
                    }
                }
                FrameEvent::Message { .. } => scan.messages += u64::from(at <= limit),
                FrameEvent::Close { code } => {
                    if scan.close.is_none() {
                        scan.close = Some((frame_start, at, code));
                        limit = limit.min(at);
                    }
                }
                FrameEvent::OwnPong => {
                    scan.pong.get_or_insert((frame_start, at));
                }
                // The offending frame starts where the previous one ended.
                FrameEvent::Malformed(why) => scan.malformed = Some((next_start, why)),
            }
        });
        scan.open_frame = frame_start;
        scan
    }

    /// The first thing in the chunk that stops forwarding wins; at equal positions a close
    /// already requested goes first.
    pub(super) fn decide(&self, frames: &FrameReader, requested: Option<(usize, CloseRequest)>, end: usize) -> Action {
        let scan = self;
        // A cut header, or what may be wsgate's Pong, waits for the rest of its frame.
        let whole = if frames.in_own_pong() { scan.open_frame } else { end - frames.partial_header_len() };
        let mut best = (usize::MAX, Action::Forward(whole));
        let mut consider = |at: usize, action: Action| {
            if at < best.0 {
                best = (at, action);
            }
        };
        if let Some((at, request)) = requested {
            consider(at, Action::Own(at, request));
        }
        if let Some((at, why)) = scan.malformed {
            consider(at, Action::Fail(at, why));
        }
        if let Some(at) = scan.oversized {
            consider(at, Action::Own(at, CloseRequest::too_big()));
        }
        if let Some((start, end, code)) = scan.close {
            consider(start, Action::Relay(end, code));
        }
        best.1
    }
}
