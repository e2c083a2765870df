//! An incremental RFC 6455 frame-header reader for one direction of a tunnel.
//!
//! The tunnel forwards bytes untouched; this only watches them go by, so it must accept the
//! stream split at any byte, never buffer or copy payloads, and cost O(frames) per chunk.
//! It checks framing (§5.2, §5.4, §5.5) and, with `Rules`, masking (§5.1) and the RSV bits
//! the session's negotiated extensions allow (§5.2; RFC 7692 §6 for permessage-deflate's
//! RSV1), but not UTF-8 (that needs the payload, which it skips). The only payload bytes
//! it reads are a Close's status code and, with `Rules::own_pongs`, a Pong that may answer
//! wsgate's own keepalive Ping.

mod encode;
pub use encode::{close_frame, ping_frame, ping_payload, PING_LEN};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpCode {
    Continuation,
    Text,
    Binary,
    Close,
    Ping,
    Pong,
}

impl OpCode {
    /// §5.2: 0x3-0x7 and 0xB-0xF are reserved.
    fn from_bits(bits: u8) -> Option<Self> {
        Some(match bits {
            0x0 => OpCode::Continuation,
            0x1 => OpCode::Text,
            0x2 => OpCode::Binary,
            0x8 => OpCode::Close,
            0x9 => OpCode::Ping,
            0xA => OpCode::Pong,
            _ => return None,
        })
    }

    /// §5.5: opcodes with the high bit set are control frames.
    fn is_control(self) -> bool {
        matches!(self, OpCode::Close | OpCode::Ping | OpCode::Pong)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FrameEvent {
    /// A frame header has been fully read. `payload_len` is the frame's payload length.
    /// `message_len` is the total payload of the current data message so far, including
    /// this frame (for control frames it equals `payload_len`).
    Header { opcode: OpCode, fin: bool, masked: bool, payload_len: u64, message_len: u64 },
    /// A data message (Text/Binary, possibly fragmented) ended: its final frame's payload
    /// has been fully passed. `bytes` = total payload bytes of the message.
    Message { opcode: OpCode, bytes: u64 },
    /// A Close frame's payload has been fully passed; `code` is `None` for an empty payload.
    Close { code: Option<u16> },
    /// A Pong answering wsgate's own Ping (`Rules::own_pongs`) has been fully passed.
    OwnPong,
    /// The stream broke RFC 6455 framing; the reader yields nothing more.
    Malformed(&'static str),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Collecting header bytes into `hdr[..hlen]`.
    Header,
    /// Inside the current frame's payload, `remaining` bytes to go (never 0 here).
    Payload,
    /// After a Malformed event: we no longer know where frames are.
    Passthrough,
}

/// What one direction's sender may put in a frame header beyond §5's framing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rules {
    /// §5.1: `Some(true)` for a client's frames (always masked), `Some(false)` for a
    /// server's (never masked), `None` to accept either.
    pub masked: Option<bool>,
    /// RSV bits (of 0x70) allowed on the first frame of a data message.
    pub rsv_message: u8,
    /// RSV bits allowed on every other frame (continuations, control frames).
    pub rsv_other: u8,
    /// Report Pongs carrying wsgate's Ping payload as `OwnPong` (keepalive is on).
    pub own_pongs: bool,
}

impl Rules {
    /// Anything §5 allows: either masking, any RSV bits.
    pub const ANY: Rules = Rules { masked: None, rsv_message: 0x70, rsv_other: 0x70, own_pongs: false };

    /// The rules for a session's two directions: the client masks, the server does not,
    /// and RSV bits depend on what the handshake negotiated.
    pub fn session(extensions: Extensions) -> (Rules, Rules) {
        let (rsv_message, rsv_other) = match extensions {
            Extensions::None => (0, 0),
            // RFC 7692 §6: RSV1 marks a compressed message, on its first frame only.
            Extensions::Deflate => (0x40, 0),
            Extensions::Unknown => (0x70, 0x70),
        };
        let rules = |masked| Rules { masked: Some(masked), rsv_message, rsv_other, own_pongs: false };
        (rules(true), rules(false))
    }
}

/// The extensions a session negotiated, as far as framing is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Extensions {
    None,
    /// Only permessage-deflate (RFC 7692).
    Deflate,
    /// Something whose RSV use wsgate does not know: every RSV bit is let through.
    Unknown,
}

#[derive(Debug)]
pub struct FrameReader {
    rules: Rules,
    state: State,
    /// §5.2: at most 2 + 8 (extended length) + 4 (masking key) bytes.
    hdr: [u8; 14],
    hlen: usize,
    /// Header length implied by the first two bytes (2 until those are known).
    need: usize,
    // The current frame.
    opcode: OpCode,
    fin: bool,
    masked: bool,
    mask: [u8; 4],
    payload_len: u64,
    remaining: u64,
    close_code: [u8; 2],
    /// The current frame is a Pong of wsgate's Ping's length, still matching its payload.
    own_pong: bool,
    // The current data message: its opcode and payload so far (§5.4).
    message: Option<OpCode>,
    message_len: u64,
    /// A non-FIN Text/Binary frame was seen and the message has not finished.
    fragmented: bool,
}

impl Default for FrameReader {
    fn default() -> Self {
        Self::new()
    }
}

impl FrameReader {
    /// A reader that checks §5's framing only (`Rules::ANY`).
    pub fn new() -> Self {
        Self::with_rules(Rules::ANY)
    }

    pub fn with_rules(rules: Rules) -> Self {
        FrameReader {
            rules,
            state: State::Header,
            hdr: [0; 14],
            hlen: 0,
            need: 2,
            opcode: OpCode::Continuation,
            fin: false,
            masked: false,
            mask: [0; 4],
            payload_len: 0,
            remaining: 0,
            close_code: [0; 2],
            own_pong: false,
            message: None,
            message_len: 0,
            fragmented: false,
        }
    }

    /// Feeds the next chunk of this direction's stream, exactly as it passes. Calls
    /// `on_event(offset, event)` in order, `offset` being the index in `chunk` just after
    /// the byte that completed the event (for `Header`, `chunk[offset..]` starts the
    /// payload; for `Message`/`Close`, the next frame).
    pub fn feed(&mut self, chunk: &[u8], mut on_event: impl FnMut(usize, FrameEvent)) {
        let mut i = 0;
        while i < chunk.len() {
            match self.state {
                State::Passthrough => return,
                State::Header => {
                    if self.hlen < 2 {
                        let b = chunk[i];
                        i += 1;
                        if let Err(reason) = self.decide(b) {
                            self.state = State::Passthrough;
                            on_event(i, FrameEvent::Malformed(reason));
                            return;
                        }
                    } else {
                        // §5.2: extended length and masking key decide nothing but the MSB rule.
                        if self.hlen == 2 && self.hdr[1] & 0x7F == 127 && chunk[i] & 0x80 != 0 {
                            self.state = State::Passthrough;
                            on_event(
                                i + 1,
                                FrameEvent::Malformed("64-bit payload length with the most significant bit set"),
                            );
                            return;
                        }
                        let take = (self.need - self.hlen).min(chunk.len() - i);
                        self.hdr[self.hlen..self.hlen + take].copy_from_slice(&chunk[i..i + take]);
                        self.hlen += take;
                        i += take;
                    }
                    if self.hlen == self.need {
                        let header = self.start_payload();
                        on_event(i, header);
                        if self.remaining == 0 {
                            if let Some(end) = self.end_frame() {
                                on_event(i, end);
                            }
                        }
                    }
                }
                State::Payload => {
                    let done = self.payload_len - self.remaining;
                    if (self.opcode == OpCode::Close && done < 2) || self.own_pong {
                        // §5.5.1: the first two payload bytes are the status code; §5.3: unmask.
                        let k = done as usize;
                        let unmask = if self.masked { self.mask[k % 4] } else { 0 };
                        let b = chunk[i] ^ unmask;
                        if self.opcode == OpCode::Close {
                            self.close_code[k] = b;
                        } else {
                            self.own_pong = ping_payload()[k] == b;
                        }
                        i += 1;
                        self.remaining -= 1;
                    } else {
                        let n = ((chunk.len() - i) as u64).min(self.remaining);
                        i += n as usize;
                        self.remaining -= n;
                    }
                    if self.remaining == 0 {
                        if let Some(end) = self.end_frame() {
                            on_event(i, end);
                        }
                    }
                }
            }
        }
    }

    /// Bytes left before the next frame boundary: `Some(0)` between frames, the rest of the
    /// payload inside one, `None` while a header is half read or in passthrough. The tunnel
    /// uses it to inject a Close exactly where the current frame ends.
    pub fn bytes_to_boundary(&self) -> Option<u64> {
        match self.state {
            State::Payload => Some(self.remaining),
            State::Header if self.hlen == 0 => Some(0),
            _ => None,
        }
    }

    /// How many bytes of a frame header have been fed without completing it (0 between
    /// frames and inside payloads). The tunnel holds these back so it only ever forwards
    /// whole headers and can always put a Close of its own between frames.
    pub fn partial_header_len(&self) -> usize {
        if self.state == State::Header {
            self.hlen
        } else {
            0
        }
    }

    /// True inside the payload of what may be a Pong answering wsgate's Ping: the tunnel
    /// holds such a frame back until it knows.
    pub fn in_own_pong(&self) -> bool {
        self.state == State::Payload && self.own_pong
    }

    /// True when the next byte fed will be the first byte of a frame header.
    pub fn at_frame_boundary(&self) -> bool {
        self.state == State::Header && self.hlen == 0
    }

    /// True once a Malformed event was emitted.
    pub fn is_passthrough(&self) -> bool {
        self.state == State::Passthrough
    }

    /// True while a fragmented data message is in progress (§5.4: only control frames may
    /// be sent until its final Continuation).
    pub fn in_fragmented_message(&self) -> bool {
        self.fragmented
    }

    /// Takes header byte 0 or 1, which decide every rule but one, so the Malformed offset
    /// does not depend on how the stream was split.
    fn decide(&mut self, b: u8) -> Result<(), &'static str> {
        self.hdr[self.hlen] = b;
        self.hlen += 1;
        if self.hlen == 1 {
            let opcode = OpCode::from_bits(b & 0x0F).ok_or("reserved opcode")?;
            let fin = b & 0x80 != 0;
            if opcode.is_control() && !fin {
                return Err("fragmented control frame"); // §5.5
            }
            // §5.4: a fragmented message is Text/Binary, then Continuations up to FIN, with
            // only control frames between them.
            match opcode {
                OpCode::Continuation if self.message.is_none() => {
                    return Err("continuation frame without a message in progress")
                }
                OpCode::Text | OpCode::Binary if self.message.is_some() => {
                    return Err("new data frame inside a fragmented message")
                }
                _ => {}
            }
            let allowed = match opcode {
                OpCode::Text | OpCode::Binary => self.rules.rsv_message,
                _ => self.rules.rsv_other,
            };
            if b & 0x70 & !allowed != 0 {
                return Err("RSV bits that no negotiated extension allows"); // §5.2
            }
            self.opcode = opcode;
            self.fin = fin;
        } else {
            self.masked = b & 0x80 != 0;
            match self.rules.masked {
                Some(true) if !self.masked => return Err("unmasked frame from the client"), // §5.1
                Some(false) if self.masked => return Err("masked frame from the server"),
                _ => {}
            }
            let len7 = b & 0x7F;
            if self.opcode.is_control() && len7 > 125 {
                return Err("control frame payload over 125 bytes"); // §5.5
            }
            if self.opcode == OpCode::Close && len7 == 1 {
                return Err("close payload of 1 byte"); // §5.5.1: a body starts with a 2-byte code
            }
            let ext = match len7 {
                126 => 2,
                127 => 8,
                _ => 0,
            };
            self.need = 2 + ext + if self.masked { 4 } else { 0 };
        }
        Ok(())
    }

    /// The header is complete: decode length and mask, update the message, emit `Header`.
    fn start_payload(&mut self) -> FrameEvent {
        let len7 = self.hdr[1] & 0x7F;
        let (payload_len, key_at) = match len7 {
            126 => (u64::from(u16::from_be_bytes([self.hdr[2], self.hdr[3]])), 4),
            127 => {
                let mut be = [0u8; 8];
                be.copy_from_slice(&self.hdr[2..10]);
                (u64::from_be_bytes(be), 10)
            }
            n => (u64::from(n), 2),
        };
        if self.masked {
            self.mask.copy_from_slice(&self.hdr[key_at..key_at + 4]);
        }
        self.payload_len = payload_len;
        self.remaining = payload_len;
        self.own_pong = self.rules.own_pongs && self.opcode == OpCode::Pong && payload_len == PING_LEN as u64;
        self.hlen = 0;
        self.need = 2;
        self.state = State::Payload;
        let message_len = match self.opcode {
            OpCode::Text | OpCode::Binary => {
                self.message = Some(self.opcode);
                self.fragmented = !self.fin;
                self.message_len = payload_len;
                payload_len
            }
            OpCode::Continuation => {
                // Saturating: a hostile peer may declare lengths summing past u64.
                self.message_len = self.message_len.saturating_add(payload_len);
                self.message_len
            }
            _ => payload_len,
        };
        FrameEvent::Header { opcode: self.opcode, fin: self.fin, masked: self.masked, payload_len, message_len }
    }

    /// The current frame's payload has fully passed.
    fn end_frame(&mut self) -> Option<FrameEvent> {
        self.state = State::Header;
        match self.opcode {
            OpCode::Close => {
                let code = (self.payload_len >= 2).then(|| u16::from_be_bytes(self.close_code));
                Some(FrameEvent::Close { code })
            }
            OpCode::Pong if std::mem::take(&mut self.own_pong) => Some(FrameEvent::OwnPong),
            OpCode::Text | OpCode::Binary | OpCode::Continuation if self.fin => {
                let opcode = self.message.take().unwrap_or(self.opcode);
                self.fragmented = false;
                Some(FrameEvent::Message { opcode, bytes: self.message_len })
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests;
