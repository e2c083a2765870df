//! Request-head deadlines: when a head is due, and where it ends in the bytes read.

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
        HeadDeadline { due, end: HeadEnd::default(), _pending: Some(PendingHead(first_heads)) }
    }

    /// A later head on a keep-alive connection, from its first byte: checked as its bytes
    /// arrive, which costs no timer per request. A client that stops sending altogether is
    /// `keepalive_timeout`'s (Pingora's timeout on each read while it waits for a request).
    pub(super) fn later(header_timeout: Duration) -> HeadDeadline {
        HeadDeadline { due: Due::At(tokio::time::Instant::now() + header_timeout), end: HeadEnd::default(), _pending: None }
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
    pub(super) end: HeadEnd,
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

#[cfg(test)]
mod tests {
    use super::HeadEnd;

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
}
