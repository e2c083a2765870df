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
    assert_eq!(first_malformed(client, &rsv(0x20, encode(true, 0x1, b"z", key))), rsv_error, "RSV2 is not deflate's");
    assert_eq!(first_malformed(client, &rsv(0x40, encode(true, 0x9, b"", key))), rsv_error, "never on control frames");
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

/// Property tests: any valid frame sequence, cut anywhere, reads the same; any bytes at
/// all never panic. (The exhaustive split tests above cover one fixed stream.)
mod proptests {
    use super::*;
    use proptest::prelude::*;

    fn frame(opcode: u8, fin: bool, mask: Option<[u8; 4]>, payload: &[u8]) -> Vec<u8> {
        super::encode(fin, opcode, payload, mask)
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
