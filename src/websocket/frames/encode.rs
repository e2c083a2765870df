//! The control frames wsgate writes itself: its Close (drain, oversized message, protocol
//! error) and its keepalive Ping, whose payload marks it as wsgate's own so the Pong that
//! answers it can be told apart from one answering a peer's Ping (§5.5.3: a Pong echoes the
//! Ping's payload).

use std::sync::OnceLock;

/// Length of wsgate's Ping payload: `wsgate` and 8 bytes drawn once per process.
pub const PING_LEN: usize = 14;

/// The payload of every Ping wsgate sends (and so of every Pong meant for it).
pub fn ping_payload() -> &'static [u8; PING_LEN] {
    static PAYLOAD: OnceLock<[u8; PING_LEN]> = OnceLock::new();
    PAYLOAD.get_or_init(|| {
        let mut p = [0u8; PING_LEN];
        p[..6].copy_from_slice(b"wsgate");
        p[6..].copy_from_slice(&fastrand::u64(..).to_ne_bytes());
        p
    })
}

/// Encodes wsgate's Ping. `mask`: `Some(key)` towards a backend (§5.3), `None` to a client.
pub fn ping_frame(mask: Option<[u8; 4]>) -> Vec<u8> {
    control_frame(0x9, ping_payload(), mask)
}

/// Encodes a Close frame (§5.5.1) with `code` and `reason`, the reason cut at a char
/// boundary so the payload fits a control frame's 125 bytes. `mask`: `Some(key)` for
/// client-to-server frames (§5.3 requires them masked), `None` for server-to-client.
pub fn close_frame(code: u16, reason: &str, mask: Option<[u8; 4]>) -> Vec<u8> {
    let mut end = reason.len().min(125 - 2);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    let mut payload = Vec::with_capacity(2 + end);
    payload.extend_from_slice(&code.to_be_bytes());
    payload.extend_from_slice(&reason.as_bytes()[..end]);
    control_frame(0x8, &payload, mask)
}

/// A final frame with `opcode` and `payload` (at most 125 bytes), masked with `mask`.
fn control_frame(opcode: u8, payload: &[u8], mask: Option<[u8; 4]>) -> Vec<u8> {
    debug_assert!(payload.len() <= 125);
    let mut out = Vec::with_capacity(2 + 4 + payload.len());
    out.push(0x80 | opcode);
    out.push(payload.len() as u8 | if mask.is_some() { 0x80 } else { 0 });
    if let Some(key) = mask {
        out.extend_from_slice(&key);
    }
    let start = out.len();
    out.extend_from_slice(payload);
    if let Some(key) = mask {
        for (i, b) in out[start..].iter_mut().enumerate() {
            *b ^= key[i % 4];
        }
    }
    out
}
