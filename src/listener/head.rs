//! Request-head deadlines: when a head is due, and where it ends in the bytes read (an
//! HTTP/1 head's empty line; on an HTTP/2 connection, the end of its first header block).

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::Context;
use std::time::Duration;

impl HeadDeadline {
    /// A connection's first head: a timer, so that a client sending nothing at all is cut
    /// off too.
    pub(super) fn first(header_timeout: Duration, first_heads: Arc<AtomicUsize>) -> HeadDeadline {
        first_heads.fetch_add(1, Ordering::AcqRel);
        let due = Due::Timer(Box::pin(tokio::time::sleep(header_timeout)));
        HeadDeadline { due, end: HeadParser::Http1(HeadEnd::default()), _pending: Some(PendingHead(first_heads)) }
    }

    /// A later head on a keep-alive connection, from its first byte: checked as its bytes
    /// arrive, which costs no timer per request. A client that stops sending altogether is
    /// `keepalive_timeout`'s (Pingora's timeout on each read while it waits for a request).
    pub(super) fn later(header_timeout: Duration) -> HeadDeadline {
        HeadDeadline {
            due: Due::At(tokio::time::Instant::now() + header_timeout),
            end: HeadParser::Http1(HeadEnd::default()),
            _pending: None,
        }
    }

    /// The connection speaks HTTP/2 (negotiated by ALPN): its first request is complete at
    /// the end of its first header block.
    pub(super) fn expect_http2(&mut self) {
        self.end = HeadParser::Http2(H2FirstRequest::default());
    }

    pub(super) fn is_http2(&self) -> bool {
        matches!(self.end, HeadParser::Http2(_))
    }

    /// Feeds bytes read; true once the head is complete.
    pub(super) fn feed(&mut self, bytes: &[u8]) -> bool {
        match &mut self.end {
            HeadParser::Http1(end) => end.feed(bytes),
            HeadParser::Http2(end) => end.feed(bytes),
        }
    }

    pub(super) fn deadline(&self) -> tokio::time::Instant {
        match &self.due {
            Due::Timer(timer) => timer.deadline(),
            Due::At(at) => *at,
        }
    }

    /// Whether the deadline has passed; a timer is polled with the reader's waker, so a
    /// reader parked on a silent client is woken when it passes.
    pub(super) fn passed(&mut self, cx: &mut Context<'_>) -> bool {
        match &mut self.due {
            Due::Timer(timer) => timer.as_mut().poll(cx).is_ready(),
            Due::At(at) => tokio::time::Instant::now() >= *at,
        }
    }
}

enum Due {
    Timer(Pin<Box<tokio::time::Sleep>>),
    At(tokio::time::Instant),
}

pub(super) struct HeadDeadline {
    due: Due,
    end: HeadParser,
    /// Only for a connection's first head: what a draining process waits for.
    _pending: Option<PendingHead>,
}

/// Counts a connection among those whose first head is still on its way, until dropped.
struct PendingHead(Arc<AtomicUsize>);

impl Drop for PendingHead {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl std::fmt::Debug for HeadDeadline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HeadDeadline").field("end", &self.end).finish()
    }
}

#[derive(Debug)]
enum HeadParser {
    Http1(HeadEnd),
    Http2(H2FirstRequest),
}

/// Finds where a request head ends (its first empty line) in bytes that arrive in pieces.
/// Line ends may be CRLF or a bare LF, as Pingora's parser accepts both; empty lines
/// before the request line are skipped (RFC 9112 §2.2), so they cannot end the head early.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct HeadEnd {
    seen_content: bool,
    line_empty: bool,
}

impl HeadEnd {
    /// Feeds the next bytes; true once the head is complete.
    pub fn feed(&mut self, bytes: &[u8]) -> bool {
        for &b in bytes {
            match b {
                b'\n' if self.seen_content && self.line_empty => return true,
                b'\n' => self.line_empty = true,
                b'\r' => {}
                _ => {
                    self.seen_content = true;
                    self.line_empty = false;
                }
            }
        }
        false
    }
}

/// Finds where an HTTP/2 connection's first request head is complete: after the client
/// preface (RFC 9113 §3.4), the last frame of the first header block, a HEADERS or
/// CONTINUATION frame with END_HEADERS (§6.2, §6.10), has arrived in full. Only frame
/// headers are read; every length is skipped as it stands (the h2 codec refuses what is
/// malformed), so no input can make it fail, and it keeps 16 bytes of state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct H2FirstRequest {
    preface_left: u8,
    frame_header: [u8; 9],
    header_len: u8,
    payload_left: u32,
    /// The frame whose payload is being skipped ends a header block.
    ends_block: bool,
}

impl Default for H2FirstRequest {
    fn default() -> Self {
        H2FirstRequest { preface_left: 24, frame_header: [0; 9], header_len: 0, payload_left: 0, ends_block: false }
    }
}

impl H2FirstRequest {
    const HEADERS: u8 = 0x1;
    const CONTINUATION: u8 = 0x9;
    const END_HEADERS: u8 = 0x4;

    /// Feeds the next bytes; true once the first header block is complete.
    pub fn feed(&mut self, mut bytes: &[u8]) -> bool {
        while !bytes.is_empty() {
            if self.preface_left > 0 {
                let n = bytes.len().min(usize::from(self.preface_left));
                self.preface_left -= n as u8;
                bytes = &bytes[n..];
            } else if self.payload_left > 0 {
                let n = bytes.len().min(self.payload_left as usize);
                self.payload_left -= n as u32;
                bytes = &bytes[n..];
                if self.payload_left == 0 && self.ends_block {
                    return true;
                }
            } else if let Some((&byte, rest)) = bytes.split_first() {
                bytes = rest;
                if let Some(slot) = self.frame_header.get_mut(usize::from(self.header_len)) {
                    *slot = byte;
                }
                self.header_len += 1;
                if usize::from(self.header_len) == self.frame_header.len() {
                    self.header_len = 0;
                    let [l0, l1, l2, kind, flags, ..] = self.frame_header;
                    self.payload_left = u32::from_be_bytes([0, l0, l1, l2]);
                    self.ends_block =
                        matches!(kind, Self::HEADERS | Self::CONTINUATION) && flags & Self::END_HEADERS != 0;
                    if self.payload_left == 0 && self.ends_block {
                        return true;
                    }
                }
            }
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::{H2FirstRequest, HeadEnd};

    fn ends_at(input: &[u8]) -> Option<usize> {
        let mut end = HeadEnd::default();
        (0..input.len()).find(|&i| end.feed(&input[i..i + 1])).map(|i| i + 1)
    }

    #[test]
    fn finds_the_end_of_a_head_fed_in_any_pieces() {
        let req = b"GET / HTTP/1.1\r\nHost: a\r\n\r\nbody";
        assert_eq!(ends_at(req), Some(req.len() - 4));
        for split in 0..req.len() {
            let mut end = HeadEnd::default();
            let done = end.feed(&req[..split]) || end.feed(&req[split..]);
            assert!(done, "split at {split}");
        }
        assert_eq!(ends_at(b"GET / HTTP/1.1\nHost: a\n\n"), Some(24), "bare LF line ends");
    }

    #[test]
    fn leading_empty_lines_and_partial_heads_do_not_end_it() {
        assert_eq!(ends_at(b"\r\n\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n"), None);
        assert_eq!(ends_at(b"GET / HTTP/1.1\r\nHost: a\r\n\r"), None);
        assert_eq!(ends_at(b"\r\n\r\nGET / HTTP/1.1\r\n\r\n"), Some(22));
    }

    const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

    fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
        let len = (payload.len() as u32).to_be_bytes();
        let mut f = vec![len[1], len[2], len[3], kind, flags];
        f.extend_from_slice(&stream.to_be_bytes());
        f.extend_from_slice(payload);
        f
    }

    fn h2_done(input: &[u8]) -> Option<usize> {
        let mut end = H2FirstRequest::default();
        (0..input.len()).find(|&i| end.feed(&input[i..i + 1])).map(|i| i + 1)
    }

    #[test]
    fn an_h2_first_request_ends_with_its_header_block() {
        let settings = frame(0x4, 0, 0, &[0, 3, 0, 0, 0, 100]);
        let mut input = [PREFACE, &settings].concat();
        assert_eq!(h2_done(&input), None, "the preface and SETTINGS are no request");
        input.extend(frame(0x1, 0x1, 1, b"block-start")); // HEADERS with END_STREAM only
        assert_eq!(h2_done(&input), None, "a header block without END_HEADERS is incomplete");
        input.extend(frame(0x8, 0x4, 0, &[0, 0, 0, 1])); // WINDOW_UPDATE: 0x4 is no END_HEADERS there
        input.extend(frame(0x9, 0, 1, b"more"));
        assert_eq!(h2_done(&input), None);
        input.extend(frame(0x9, 0x4, 1, b"end"));
        assert_eq!(h2_done(&input), Some(input.len()), "complete with the last CONTINUATION's last byte");
        for split in 0..input.len() {
            let mut end = H2FirstRequest::default();
            assert!(end.feed(&input[..split]) || end.feed(&input[split..]), "split at {split}");
        }
        let single = [PREFACE, &frame(0x1, 0x5, 1, &[0x82; 20])].concat();
        assert_eq!(h2_done(&single), Some(single.len()));
        let empty_block = [PREFACE, &frame(0x1, 0x4, 1, &[])].concat();
        assert_eq!(h2_done(&empty_block), Some(empty_block.len()));
    }

    #[test]
    fn any_bytes_are_fed_without_panicking_and_splits_do_not_matter() {
        let mut seed = 0x2545_f491_4f6c_dd1d_u64;
        for _ in 0..2000 {
            let mut end = H2FirstRequest::default();
            let mut input = PREFACE.to_vec();
            for _ in 0..(seed % 300) {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                input.push(seed as u8);
            }
            input.extend([0xff; 9]); // a frame claiming 16 MiB: skipped, not allocated
            let whole = end.feed(&input);
            let (a, b) = input.split_at((seed as usize) % input.len());
            let mut pieces = H2FirstRequest::default();
            assert_eq!(whole, pieces.feed(a) || pieces.feed(b), "how reads split the bytes never matters");
        }
    }
}
