//! `wsgate::websocket::frames::FrameReader::feed` on arbitrary bytes, split at
//! fuzz-chosen points: the events and their offsets must not depend on how the stream is
//! split (the tunnel sees whatever chunks the sockets give it), the reader never panics, and
//! every event agrees with the bytes it describes.
//!
//! Input layout: byte 0 = number of cuts (bits 0-2) and the reader's rules (bits 3-4: any,
//! a client's, a server's with permessage-deflate, a client's with an unknown extension;
//! bit 5: report Pongs answering wsgate's own Ping), then 2 bytes per cut (big-endian, taken mod stream length + 1), then the stream itself.

#![no_main]

use libfuzzer_sys::fuzz_target;
use wsgate::websocket::frames::{ping_payload, Extensions, FrameEvent, FrameReader, OpCode, Rules, PING_LEN};

/// What a reader reports for a stream fed in `chunks`, offsets made absolute, plus its
/// state queries at the end.
fn read(chunks: &[&[u8]], rules: Rules) -> (Vec<(usize, FrameEvent)>, [u64; 5]) {
    let mut reader = FrameReader::with_rules(rules);
    let mut events = Vec::new();
    let mut base = 0;
    for chunk in chunks {
        let was_passthrough = reader.is_passthrough();
        reader.feed(chunk, |offset, event| {
            assert!(!was_passthrough, "event after Malformed: {event:?}");
            assert!(offset <= chunk.len(), "offset {offset} past a chunk of {}", chunk.len());
            events.push((base + offset, event));
        });
        base += chunk.len();
        assert!(reader.partial_header_len() <= 14, "a frame header is at most 14 bytes");
        assert_eq!(reader.at_frame_boundary(), reader.bytes_to_boundary() == Some(0) && reader.partial_header_len() == 0 && !reader.is_passthrough());
    }
    let state = [
        reader.at_frame_boundary() as u64,
        reader.bytes_to_boundary().map_or(u64::MAX, |b| b),
        reader.partial_header_len() as u64,
        reader.is_passthrough() as u64,
        reader.in_fragmented_message() as u64,
    ];
    (events, state)
}

fn is_data(op: OpCode) -> bool {
    matches!(op, OpCode::Text | OpCode::Binary | OpCode::Continuation)
}

/// Each event against the stream and the events before it.
fn check_events(stream: &[u8], events: &[(usize, FrameEvent)], passthrough: bool, rules: Rules) {
    let mut last_offset = 0;
    let mut header: Option<(usize, OpCode, bool, bool, u64, u64)> = None;
    let mut message: Option<OpCode> = None;
    let mut malformed = 0;
    for (i, (offset, event)) in events.iter().enumerate() {
        assert!(*offset >= last_offset && *offset <= stream.len(), "offsets go back or past the end: {events:?}");
        last_offset = *offset;
        match event {
            FrameEvent::Header { opcode, fin, masked, payload_len, message_len } => {
                assert!(rules.masked.is_none_or(|m| m == *masked), "a header against the masking rule: {event:?}");
                if !is_data(*opcode) {
                    assert!(*fin && *payload_len <= 125, "bad control frame reported: {event:?}");
                    assert_eq!(message_len, payload_len);
                }
                match opcode {
                    OpCode::Text | OpCode::Binary => {
                        assert!(message.is_none(), "new message inside a message");
                        assert_eq!(message_len, payload_len);
                        message = Some(*opcode);
                    }
                    OpCode::Continuation => assert!(message.is_some(), "continuation without a message"),
                    _ => {}
                }
                header = Some((*offset, *opcode, *fin, *masked, *payload_len, *message_len));
            }
            FrameEvent::Message { opcode, bytes } => {
                let (at, op, fin, _, len, message_len) = header.expect("Message before any Header");
                assert!(is_data(op) && fin, "Message after {op:?} fin={fin}");
                assert_eq!(at as u64 + len, *offset as u64, "Message not at the end of its frame");
                assert_eq!(message_len, *bytes);
                assert_eq!(Some(*opcode), message, "Message opcode is not the message's first opcode");
                message = None;
            }
            FrameEvent::Close { code } => {
                let (at, op, _, masked, len, _) = header.expect("Close before any Header");
                assert_eq!(op, OpCode::Close);
                assert_eq!(at as u64 + len, *offset as u64, "Close not at the end of its frame");
                assert_eq!(code.is_some(), len >= 2);
                if let Some(code) = code {
                    // The status code is the payload's first two bytes, unmasked (§5.5.1, §5.3).
                    let key = if masked { [stream[at - 4], stream[at - 3]] } else { [0, 0] };
                    assert_eq!(*code, u16::from_be_bytes([stream[at] ^ key[0], stream[at + 1] ^ key[1]]));
                }
            }
            FrameEvent::OwnPong => {
                let (at, op, _, masked, len, _) = header.expect("OwnPong before any Header");
                assert!(rules.own_pongs && op == OpCode::Pong, "OwnPong for {op:?}");
                assert_eq!((at as u64 + len, len), (*offset as u64, PING_LEN as u64), "OwnPong not a whole Pong of wsgate's length");
                let key: [u8; 4] = if masked { stream[at - 4..at].try_into().unwrap() } else { [0; 4] };
                let payload: Vec<u8> = stream[at..*offset].iter().enumerate().map(|(k, b)| b ^ key[k % 4]).collect();
                assert_eq!(payload, ping_payload(), "OwnPong whose payload is not wsgate's Ping's");
            }
            FrameEvent::Malformed(reason) => {
                assert!(!reason.is_empty());
                assert_eq!(i, events.len() - 1, "events after Malformed");
                malformed += 1;
            }
        }
    }
    assert_eq!(malformed == 1, passthrough, "passthrough iff one Malformed was reported");
}

fuzz_target!(|data: &[u8]| {
    let Some((&n, rest)) = data.split_first() else { return };
    let mut rules = match (n >> 3) % 4 {
        0 => Rules::ANY,
        1 => Rules::session(Extensions::None).0,
        2 => Rules::session(Extensions::Deflate).1,
        _ => Rules::session(Extensions::Unknown).0,
    };
    rules.own_pongs = n & 0x20 != 0;
    let n = (n % 8) as usize;
    if rest.len() < 2 * n {
        return;
    }
    let (cut_bytes, stream) = rest.split_at(2 * n);
    let mut cuts: Vec<usize> =
        cut_bytes.chunks(2).map(|c| u16::from_be_bytes([c[0], c[1]]) as usize % (stream.len() + 1)).collect();
    cuts.sort_unstable();
    let mut chunks = Vec::with_capacity(n + 1);
    let mut start = 0;
    for cut in cuts {
        chunks.push(&stream[start..cut]); // equal cuts give empty chunks, which are legal
        start = cut;
    }
    chunks.push(&stream[start..]);

    let (whole, whole_state) = read(&[stream], rules);
    check_events(stream, &whole, whole_state[3] == 1, rules);
    let (split, split_state) = read(&chunks, rules);
    assert_eq!(split, whole, "cut at {chunks:?}");
    assert_eq!(split_state, whole_state, "state after the stream differs when cut");
    if stream.len() <= 4096 {
        let bytes: Vec<&[u8]> = stream.chunks(1).collect();
        let (one_by_one, state) = read(&bytes, rules);
        assert_eq!(one_by_one, whole, "byte at a time");
        assert_eq!(state, whole_state);
    }
});
