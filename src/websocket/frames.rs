//! An incremental RFC 6455 frame-header reader for one direction of a tunnel.
//!
//! The tunnel forwards bytes untouched; this only watches them go by, so it must accept the
//! stream split at any byte, never buffer or copy payloads, and cost O(frames) per chunk.
//! It checks framing (§5.2, §5.4, §5.5) and, with `Rules`, masking (§5.1) and the RSV bits
//! the session's negotiated extensions allow (§5.2; RFC 7692 §6 for permessage-deflate's
//! RSV1), but not UTF-8 (that needs the payload, which it skips).

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
}

impl Rules {
    /// Anything §5 allows: either masking, any RSV bits.
    pub const ANY: Rules = Rules { masked: None, rsv_message: 0x70, rsv_other: 0x70 };

    /// The rules for a session's two directions: the client masks, the server does not,
    /// and RSV bits depend on what the handshake negotiated.
    pub fn session(extensions: Extensions) -> (Rules, Rules) {
        let (rsv_message, rsv_other) = match extensions {
            Extensions::None => (0, 0),
            // RFC 7692 §6: RSV1 marks a compressed message, on its first frame only.
            Extensions::Deflate => (0x40, 0),
            Extensions::Unknown => (0x70, 0x70),
        };
        let rules = |masked| Rules { masked: Some(masked), rsv_message, rsv_other };
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
                    if self.opcode == OpCode::Close && done < 2 {
                        // §5.5.1: the first two payload bytes are the status code; §5.3: unmask.
                        let k = done as usize;
                        let unmask = if self.masked { self.mask[k] } else { 0 };
                        self.close_code[k] = chunk[i] ^ unmask;
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
            OpCode::Text | OpCode::Binary | OpCode::Continuation if self.fin => {
                let opcode = self.message.take().unwrap_or(self.opcode);
                self.fragmented = false;
                Some(FrameEvent::Message { opcode, bytes: self.message_len })
            }
            _ => None,
        }
    }
}

/// Encodes a Close frame (§5.5.1) with `code` and `reason`, the reason cut at a char
/// boundary so the payload fits a control frame's 125 bytes. `mask`: `Some(key)` for
/// client-to-server frames (§5.3 requires them masked), `None` for server-to-client.
pub fn close_frame(code: u16, reason: &str, mask: Option<[u8; 4]>) -> Vec<u8> {
    let mut end = reason.len().min(125 - 2);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    let reason = &reason.as_bytes()[..end];
    let payload_len = 2 + reason.len();
    let mut out = Vec::with_capacity(2 + 4 + payload_len);
    out.push(0x80 | 0x8);
    out.push(payload_len as u8 | if mask.is_some() { 0x80 } else { 0 });
    if let Some(key) = mask {
        out.extend_from_slice(&key);
    }
    let start = out.len();
    out.extend_from_slice(&code.to_be_bytes());
    out.extend_from_slice(reason);
    if let Some(key) = mask {
        for (i, b) in out[start..].iter_mut().enumerate() {
            *b ^= key[i % 4];
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::FrameEvent::{Close, Header, Malformed, Message};
    use super::OpCode::*;
    use super::*;

    /// Independent of the module: the frame layout straight from §5.2, minimal lengths.
    pub(super) fn encode(fin: bool, opcode: u8, payload: &[u8], mask: Option<[u8; 4]>) -> Vec<u8> {
        let mut out = vec![(if fin { 0x80 } else { 0 }) | opcode];
        let m = if mask.is_some() { 0x80 } else { 0 };
        match payload.len() {
            n @ 0..=125 => out.push(m | n as u8),
            n @ 126..=0xFFFF => {
                out.push(m | 126);
                out.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                out.push(m | 127);
                out.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        match mask {
            Some(key) => {
                out.extend_from_slice(&key);
                out.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
            }
            None => out.extend_from_slice(payload),
        }
        out
    }

    fn op_bits(op: OpCode) -> u8 {
        match op {
            Continuation => 0x0,
            Text => 0x1,
            Binary => 0x2,
            Close => 0x8,
            Ping => 0x9,
            Pong => 0xA,
        }
    }

    /// splitmix64: deterministic, no crates.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        }
        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
    }

    /// A stream plus what a correct reader must report for it, computed as it is built.
    #[derive(Default)]
    struct Script {
        bytes: Vec<u8>,
        events: Vec<(usize, FrameEvent)>,
        /// Stream positions where a frame starts (and the end of the stream).
        starts: Vec<usize>,
        /// Position ranges [a, b) after which `in_fragmented_message` must be true.
        fragmented: Vec<(usize, usize)>,
        message: Option<(OpCode, u64, Option<usize>)>,
    }

    impl Script {
        fn frame(&mut self, fin: bool, op: OpCode, payload: &[u8], mask: Option<[u8; 4]>) {
            let wire = encode(fin, op_bits(op), payload, mask);
            let start = self.bytes.len();
            let header_end = start + wire.len() - payload.len();
            let end = start + wire.len();
            self.starts.push(start);
            self.bytes.extend_from_slice(&wire);
            let len = payload.len() as u64;
            let message_len = match op {
                Text | Binary => {
                    self.message = Some((op, len, (!fin).then_some(header_end)));
                    len
                }
                Continuation => {
                    let m = self.message.as_mut().expect("script: continuation without message");
                    m.1 += len;
                    m.1
                }
                _ => len,
            };
            self.events
                .push((header_end, Header { opcode: op, fin, masked: mask.is_some(), payload_len: len, message_len }));
            match op {
                Close => {
                    let code = (payload.len() >= 2).then(|| u16::from_be_bytes([payload[0], payload[1]]));
                    self.events.push((end, Close { code }));
                }
                Ping | Pong => {}
                _ if fin => {
                    let (opcode, bytes, frag_start) = self.message.take().unwrap();
                    if let Some(a) = frag_start {
                        self.fragmented.push((a, end));
                    }
                    self.events.push((end, Message { opcode, bytes }));
                }
                _ => {}
            }
        }

        fn close(&mut self, code: Option<u16>, reason: &str, mask: Option<[u8; 4]>) {
            let mut payload = Vec::new();
            if let Some(c) = code {
                payload.extend_from_slice(&c.to_be_bytes());
            }
            payload.extend_from_slice(reason.as_bytes());
            self.frame(true, Close, &payload, mask);
        }

        fn finish(mut self) -> Self {
            self.starts.push(self.bytes.len());
            self
        }
    }

    fn payload(n: usize, seed: u8) -> Vec<u8> {
        (0..n).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)).collect()
    }

    /// Every frame shape in one stream: all length encodings masked and unmasked, all
    /// opcodes, closes of every kind, fragmented messages with control frames in between.
    fn everything() -> Script {
        let mut s = Script::default();
        let keys = [None, Some([0x37, 0xFA, 0x21, 0x3D])];
        for (i, &n) in [0usize, 1, 125, 126].iter().enumerate() {
            for (j, &key) in keys.iter().enumerate() {
                let op = if (i + j) % 2 == 0 { Text } else { Binary };
                s.frame(true, op, &payload(n, i as u8), key);
            }
        }
        // The big shapes once each (the split test is O(bytes x frames)): 16-bit max,
        // 64-bit masked, 64-bit unmasked.
        s.frame(true, Text, &payload(65535, 7), None);
        s.frame(true, Binary, &payload(65536, 8), keys[1]);
        s.frame(true, Binary, &payload(70_001, 9), None);
        s.frame(true, Ping, b"", None);
        s.frame(true, Ping, &payload(125, 3), keys[1]);
        s.frame(true, Pong, b"pong!", None);
        s.frame(true, Pong, b"", keys[1]);
        // Text start + 2 Continuations, with a Ping and a Pong between the fragments.
        s.frame(false, Text, b"hello ", keys[1]);
        s.frame(true, Ping, b"p", keys[1]);
        s.frame(false, Continuation, &payload(300, 1), keys[1]);
        s.frame(true, Pong, b"", keys[1]);
        s.frame(true, Continuation, b"world", keys[1]);
        // Binary fragments, empty final fragment, a Close between fragments.
        s.frame(false, Binary, &payload(200, 5), None);
        s.close(Some(1001), "", None);
        s.frame(false, Continuation, b"", None);
        s.frame(true, Continuation, b"", None);
        s.close(Some(1000), "", keys[1]);
        s.close(Some(4000), "bye, see you ☺", None);
        s.close(Some(1011), "masked reason", Some([1, 2, 3, 4]));
        s.close(None, "", keys[1]);
        s.close(None, "", None);
        s.finish()
    }

    /// Feeds `chunks` in order; events with offsets made absolute in the whole stream.
    fn run<'a>(chunks: impl IntoIterator<Item = &'a [u8]>) -> Vec<(usize, FrameEvent)> {
        let mut r = FrameReader::new();
        let mut out = Vec::new();
        let mut base = 0;
        for chunk in chunks {
            r.feed(chunk, |off, ev| {
                assert!(off <= chunk.len());
                out.push((base + off, ev));
            });
            base += chunk.len();
        }
        out
    }

    #[test]
    fn whole_stream_yields_the_expected_events() {
        let s = everything();
        assert_eq!(run([&s.bytes[..]]), s.events);
    }

    #[test]
    fn every_two_chunk_split_yields_the_same_events() {
        let s = everything();
        for cut in 0..=s.bytes.len() {
            let mut r = FrameReader::new();
            let mut k = 0;
            for (base, chunk) in [(0, &s.bytes[..cut]), (cut, &s.bytes[cut..])] {
                r.feed(chunk, |off, ev| {
                    assert!(
                        k < s.events.len() && (base + off, &ev) == (s.events[k].0, &s.events[k].1),
                        "cut {cut}, event {k}: {ev:?} at {}",
                        base + off
                    );
                    k += 1;
                });
            }
            assert_eq!(k, s.events.len(), "cut {cut}");
        }
    }

    #[test]
    fn byte_at_a_time_yields_the_same_events_and_tracks_boundaries() {
        let s = everything();
        let mut r = FrameReader::new();
        let mut events = Vec::new();
        let mut starts = s.starts.iter().peekable();
        for q in 0..=s.bytes.len() {
            // `q` bytes have been fed.
            let boundary = starts.peek() == Some(&&q);
            if boundary {
                starts.next();
            }
            assert_eq!(r.at_frame_boundary(), boundary, "at {q}");
            let fragmented = s.fragmented.iter().any(|&(a, b)| a <= q && q < b);
            assert_eq!(r.in_fragmented_message(), fragmented, "at {q}");
            if q < s.bytes.len() {
                r.feed(&s.bytes[q..q + 1], |off, ev| events.push((q + off, ev)));
            }
        }
        assert!(!s.fragmented.is_empty() && !r.is_passthrough());
        assert_eq!(events, s.events);
    }

    #[test]
    fn random_chunk_sizes_yield_the_same_events() {
        let s = everything();
        let mut rng = Rng(42);
        for round in 0..100 {
            let max = [7, 64, 1000, 20_000, 100_000][round % 5];
            let mut chunks = Vec::new();
            let mut at = 0;
            while at < s.bytes.len() {
                let n = (rng.below(max) + 1).min(s.bytes.len() - at);
                chunks.push(&s.bytes[at..at + n]);
                at += n;
            }
            // Empty chunks are legal too.
            chunks.insert(rng.below(chunks.len()), &[]);
            assert_eq!(run(chunks), s.events, "round {round}");
        }
    }

    #[test]
    fn masked_close_code_split_between_its_two_bytes() {
        let wire = close_frame(1001, "going away", Some([0xAA, 0x55, 0xF0, 0x0F]));
        // 2 header bytes + 4 mask bytes, then the code.
        let (a, b) = wire.split_at(7);
        let events = run([a, b]);
        assert_eq!(events.last(), Some(&(wire.len(), Close { code: Some(1001) })));
        // The masked wire bytes are not the code; the reader must have unmasked them.
        assert_ne!(u16::from_be_bytes([wire[6], wire[7]]), 1001);
        for cut in 0..=wire.len() {
            assert_eq!(run([&wire[..cut], &wire[cut..]]).last().unwrap().1, Close { code: Some(1001) });
        }
    }

    #[test]
    fn message_len_accumulates_across_fragments_and_ignores_control_frames() {
        let mut s = Script::default();
        s.frame(false, Binary, &[1; 10], None);
        s.frame(true, Ping, &[2; 50], None);
        s.frame(false, Continuation, &[3; 20], None);
        s.close(Some(1000), "", None);
        s.frame(true, Continuation, &[4; 5], None);
        let events: Vec<_> = run([&s.bytes[..]]).into_iter().map(|(_, e)| e).collect();
        let lens: Vec<_> = events
            .iter()
            .filter_map(|e| if let Header { message_len, .. } = e { Some(*message_len) } else { None })
            .collect();
        assert_eq!(lens, [10, 50, 30, 2, 35]);
        assert_eq!(events.last(), Some(&Message { opcode: Binary, bytes: 35 }));
    }

    /// One case per Malformed rule: (valid prefix, bad bytes, reason, how many bad bytes
    /// decide it, i.e. where the event must be reported relative to the bad bytes).
    fn malformed_cases() -> Vec<(Vec<u8>, Vec<u8>, &'static str, usize)> {
        let mut cases = Vec::new();
        for op in [0x3, 0x7, 0xB, 0xF] {
            cases.push((vec![], vec![0x80 | op, 0x00], "reserved opcode", 1));
        }
        for op in [0x8, 0x9, 0xA] {
            cases.push((vec![], vec![op, 0x00], "fragmented control frame", 1));
            cases.push((vec![], vec![0x80 | op, 126, 0, 126], "control frame payload over 125 bytes", 2));
            cases.push((
                vec![],
                vec![0x80 | op, 0x80 | 127, 0, 0, 0, 0, 0, 0, 0, 126],
                "control frame payload over 125 bytes",
                2,
            ));
        }
        cases.push((vec![], vec![0x80, 0x00], "continuation frame without a message in progress", 1));
        // A finished message does not leave one in progress.
        cases.push((
            encode(true, 0x1, b"done", None),
            vec![0x00, 0x00],
            "continuation frame without a message in progress",
            1,
        ));
        let open = encode(false, 0x1, b"part", Some([9, 8, 7, 6]));
        cases.push((open.clone(), vec![0x81, 0x00], "new data frame inside a fragmented message", 1));
        cases.push((open, vec![0x02, 0x00], "new data frame inside a fragmented message", 1));
        let msb = "64-bit payload length with the most significant bit set";
        cases.push((vec![], vec![0x82, 127, 0x80, 0, 0, 0, 0, 0, 0, 0], msb, 3));
        cases.push((vec![], vec![0x82, 0x80 | 127, 0xFF, 0, 0, 0, 0, 0, 0, 0], msb, 3));
        cases.push((vec![], vec![0x88, 0x01, 0x03], "close payload of 1 byte", 2));
        cases.push((vec![], vec![0x88, 0x81, 1, 2, 3, 4, 0x03], "close payload of 1 byte", 2));
        cases
    }

    #[test]
    fn each_malformed_case_reports_once_then_passes_through() {
        let trailer = encode(true, 0x1, b"more frames that must not be reported", None);
        for (prefix, bad, reason, decided_by) in malformed_cases() {
            let stream = [&prefix[..], &bad, &trailer].concat();
            let whole = run([&stream[..]]);
            let bad_events: Vec<_> = whole.iter().filter(|(_, e)| matches!(e, Malformed(_))).collect();
            assert_eq!(bad_events.len(), 1, "{reason}: {whole:?}");
            assert_eq!(whole.last(), Some(&(prefix.len() + decided_by, Malformed(reason))));
            assert_eq!(run(stream.chunks(1)), whole, "{reason}");
            for cut in 0..=stream.len() {
                assert_eq!(run([&stream[..cut], &stream[cut..]]), whole, "{reason}, cut {cut}");
            }

            let mut r = FrameReader::new();
            r.feed(&stream, |_, _| {});
            assert!(r.is_passthrough() && !r.at_frame_boundary(), "{reason}");
            let mut rng = Rng(7);
            for _ in 0..20 {
                let junk: Vec<u8> = (0..rng.below(64)).map(|_| rng.next() as u8).collect();
                r.feed(&junk, |off, ev| panic!("{reason}: event after Malformed: {ev:?} at {off}"));
                r.feed(&trailer, |off, ev| panic!("{reason}: event after Malformed: {ev:?} at {off}"));
            }
            assert!(r.is_passthrough());
        }
    }

    #[test]
    fn session_rules_check_masking_and_rsv_bits() {
        let key = Some([1, 2, 3, 4]);
        let first_malformed = |rules: Rules, stream: &[u8]| {
            let mut events = Vec::new();
            FrameReader::with_rules(rules).feed(stream, |off, ev| events.push((off, ev)));
            events.into_iter().find(|(_, e)| matches!(e, Malformed(_)))
        };
        let (client, server) = Rules::session(Extensions::None);
        assert_eq!(first_malformed(client, &encode(true, 0x1, b"hi", key)), None);
        assert_eq!(first_malformed(server, &encode(true, 0x1, b"hi", None)), None);
        assert_eq!(
            first_malformed(client, &encode(true, 0x1, b"hi", None)),
            Some((2, Malformed("unmasked frame from the client")))
        );
        assert_eq!(
            first_malformed(server, &encode(true, 0x2, b"hi", key)),
            Some((2, Malformed("masked frame from the server")))
        );
        let rsv = |bits: u8, frame: Vec<u8>| [&[frame[0] | bits][..], &frame[1..]].concat();
        let rsv_error = Some((1, Malformed("RSV bits that no negotiated extension allows")));
        assert_eq!(first_malformed(client, &rsv(0x40, encode(true, 0x1, b"z", key))), rsv_error);

        let (client, server) = Rules::session(Extensions::Deflate);
        assert_eq!(
            first_malformed(client, &rsv(0x40, encode(true, 0x1, b"z", key))),
            None,
            "RSV1 marks a compressed message"
        );
        assert_eq!(first_malformed(server, &rsv(0x40, encode(false, 0x2, b"z", None))), None);
        assert_eq!(
            first_malformed(client, &rsv(0x20, encode(true, 0x1, b"z", key))),
            rsv_error,
            "RSV2 is not deflate's"
        );
        assert_eq!(
            first_malformed(client, &rsv(0x40, encode(true, 0x9, b"", key))),
            rsv_error,
            "never on control frames"
        );
        let continued = [encode(false, 0x1, b"a", None), rsv(0x40, encode(true, 0x0, b"b", None))].concat();
        assert_eq!(first_malformed(server, &continued).map(|(off, _)| off), Some(4), "never on continuations");

        let (client, _) = Rules::session(Extensions::Unknown);
        assert_eq!(first_malformed(client, &rsv(0x70, encode(true, 0x8, &[3, 232], key))), None);
        assert_eq!(first_malformed(Rules::ANY, &rsv(0x70, encode(true, 0x1, b"z", None))), None);
    }

    #[test]
    fn random_bytes_never_panic_and_events_stay_consistent() {
        let mut rng = Rng(0xC0FFEE);
        let mut r = FrameReader::new();
        let mut buf = [0u8; 512];
        for n in 0..10_000 {
            if n % 8 == 0 {
                r = FrameReader::new();
            }
            let len = rng.below(buf.len() + 1);
            for b in &mut buf[..len] {
                *b = rng.next() as u8;
            }
            // Steer some first bytes towards valid opcodes so parsing gets deep, not just
            // to the first reserved opcode.
            if len > 0 && r.at_frame_boundary() && rng.below(2) == 0 {
                buf[0] = [0x81, 0x82, 0x01, 0x00, 0x80, 0x88, 0x89, 0x8A][rng.below(8)];
            }
            let was_passthrough = r.is_passthrough();
            let mut last = 0;
            r.feed(&buf[..len], |off, ev| {
                assert!(!was_passthrough && off >= last && off <= len, "{ev:?} at {off}");
                last = off;
            });
        }
        // Lengths summing past u64 (two 2^63-1 fragments) saturate instead of panicking.
        let huge = |first: u8| [&[first, 127][..], &(u64::MAX >> 1).to_be_bytes()].concat();
        let mut events = Vec::new();
        let mut r = FrameReader::new();
        r.feed(&huge(0x02), |_, _| {});
        r.feed(&[0; 4096], |_, _| {});
        assert!(!r.at_frame_boundary() && !r.is_passthrough());
        let mut r2 = FrameReader::new();
        r2.feed(&encode(false, 0x2, &[0; 3], None), |_, _| {});
        r2.feed(&huge(0x00), |_, ev| events.push(ev));
        r2.feed(&huge(0x00), |_, ev| events.push(ev)); // still inside the first's payload: nothing
        assert_eq!(
            events,
            [Header {
                opcode: Continuation,
                fin: false,
                masked: false,
                payload_len: u64::MAX >> 1,
                message_len: 3 + (u64::MAX >> 1)
            }]
        );
    }

    #[test]
    fn close_frame_round_trips() {
        let long = "é".repeat(100); // 200 bytes of 2-byte chars: must be cut to 122, not 123
        for mask in [None, Some([0x12, 0x34, 0x56, 0x78])] {
            for (code, reason) in [(1000, ""), (1001, "going away"), (4999, long.as_str())] {
                let wire = close_frame(code, reason, mask);
                let header = if mask.is_some() { 6 } else { 2 };
                let len = (wire[1] & 0x7F) as usize;
                assert_eq!(wire.len(), header + len);
                assert!(len <= 125 && wire[0] == 0x88 && (wire[1] & 0x80 != 0) == mask.is_some());
                let body: Vec<u8> =
                    wire[header..].iter().enumerate().map(|(i, b)| b ^ mask.map_or(0, |k| k[i % 4])).collect();
                let text = std::str::from_utf8(&body[2..]).expect("reason cut at a char boundary");
                assert!(reason.starts_with(text));
                if reason.len() <= 123 {
                    assert_eq!(text, reason);
                } else {
                    assert_eq!(text.len(), 122);
                }
                let events = run(wire.chunks(1));
                let expected_header = Header {
                    opcode: Close,
                    fin: true,
                    masked: mask.is_some(),
                    payload_len: len as u64,
                    message_len: len as u64,
                };
                assert_eq!(events, [(header, expected_header), (wire.len(), Close { code: Some(code) })]);
            }
        }
    }
}

/// Property tests: any valid frame sequence, cut anywhere, reads the same; any bytes at
/// all never panic. (The exhaustive split tests above cover one fixed stream.)
#[cfg(test)]
mod proptests {
    use super::*;
    use proptest::prelude::*;

    fn frame(opcode: u8, fin: bool, mask: Option<[u8; 4]>, payload: &[u8]) -> Vec<u8> {
        super::tests::encode(fin, opcode, payload, mask)
    }

    /// A valid stream: messages of 1-3 fragments, control frames between any two frames.
    fn stream() -> impl Strategy<Value = Vec<u8>> {
        let message = (1u8..=2, prop::collection::vec(0usize..70_000, 1..4), any::<bool>());
        let control = (prop::sample::select(vec![0x8u8, 0x9, 0xA]), 0usize..126);
        prop::collection::vec((message, prop::option::of(control), any::<[u8; 4]>()), 1..6).prop_map(|parts| {
            let mut out = Vec::new();
            for ((opcode, sizes, masked), control, key) in parts {
                let mask = masked.then_some(key);
                let last = sizes.len() - 1;
                for (i, size) in sizes.iter().enumerate() {
                    let op = if i == 0 { opcode } else { 0 };
                    out.extend(frame(op, i == last, mask, &vec![0x5a; *size]));
                    if let (Some((cop, clen)), true) = (control, i < last) {
                        let len = if cop == 0x8 { clen.max(2) } else { clen };
                        out.extend(frame(cop, true, mask, &vec![3u8; len]));
                    }
                }
            }
            out
        })
    }

    fn read_all(chunks: &[&[u8]]) -> Vec<(usize, FrameEvent)> {
        let mut reader = FrameReader::new();
        let mut events = Vec::new();
        let mut base = 0;
        for chunk in chunks {
            reader.feed(chunk, |offset, event| events.push((base + offset, event)));
            base += chunk.len();
        }
        events
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn any_split_reads_the_same(bytes in stream(), cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..8)) {
            let whole = read_all(&[&bytes]);
            prop_assert!(!whole.iter().any(|(_, e)| matches!(e, FrameEvent::Malformed(_))), "a valid stream is never malformed");
            let mut points: Vec<usize> = cuts.iter().map(|i| i.index(bytes.len() + 1)).collect();
            points.sort_unstable();
            let mut chunks = Vec::new();
            let mut start = 0;
            for p in points {
                chunks.push(&bytes[start..p]);
                start = p;
            }
            chunks.push(&bytes[start..]);
            prop_assert_eq!(read_all(&chunks), whole);
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..4096), cut in any::<prop::sample::Index>()) {
            let at = cut.index(bytes.len() + 1);
            let events = read_all(&[&bytes[..at], &bytes[at..]]);
            prop_assert!(events.windows(2).all(|w| w[0].0 <= w[1].0), "offsets never go back");
            prop_assert!(events.iter().all(|(o, _)| *o <= bytes.len()));
        }
    }
}
