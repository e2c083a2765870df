//! What a pump writes: forwarded bytes, bounded by `send_timeout`, and wsgate's own frames.

use crate::websocket::frames::{close_frame, ping_frame};
use crate::websocket::shared::{Initiator, MESSAGE_TOO_BIG, PROTOCOL_ERROR};
use futures_util::FutureExt;
use std::io;
use std::time::Duration;
use tokio::io::{AsyncWrite, AsyncWriteExt};

/// A client's frames are masked (§5.3): what goes to the backend gets a fresh key.
fn mask_towards_peer_of(sender: Initiator) -> Option<[u8; 4]> {
    (sender == Initiator::Client).then(|| fastrand::u32(..).to_ne_bytes())
}

/// wsgate's keepalive Ping for the peer that `sender`'s pump writes to.
pub(super) fn ping_to_peer(sender: Initiator) -> Vec<u8> {
    ping_frame(mask_towards_peer_of(sender))
}

/// The Close wsgate sends the peer that `sender`'s pump writes to: the backend gets it
/// masked (§5.3: a client's frames are masked), the client plain. `given`: an operator's
/// reason, instead of the code's own.
pub(super) fn close_to_peer(sender: Initiator, code: u16, given: Option<&str>) -> Vec<u8> {
    let reason = given.unwrap_or(match code {
        MESSAGE_TOO_BIG => "message too big",
        PROTOCOL_ERROR => "protocol error",
        1008 => "policy violation",
        1012 => "service restart",
        _ => "going away",
    });
    close_frame(code, reason, mask_towards_peer_of(sender))
}

/// What a write to a peer that accepted no bytes for `send_timeout` fails with (told apart
/// from an OS error of kind `TimedOut`, such as a TCP retransmission timeout).
#[derive(Debug)]
pub(crate) struct Stalled;

impl std::fmt::Display for Stalled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the peer accepted no bytes for send_timeout")
    }
}

impl std::error::Error for Stalled {}

impl Stalled {
    pub(crate) fn is(e: &io::Error) -> bool {
        e.get_ref().is_some_and(|inner| inner.is::<Stalled>())
    }
}

/// Writes all of `bytes`; a peer that accepts none of them for `send_timeout` fails it with
/// `Stalled`. The usual write completes at once and costs no timer (the timer is boxed: it
/// would otherwise take room in every idle session's future). True when it had to wait.
pub(super) async fn write_now<W: AsyncWrite + Unpin>(
    writer: &mut W,
    mut bytes: &[u8],
    send_timeout: Duration,
) -> io::Result<bool> {
    let stalled = || io::Error::new(io::ErrorKind::TimedOut, Stalled);
    let mut waited = false;
    while !bytes.is_empty() {
        let n = match writer.write(bytes).now_or_never() {
            Some(written) => written?,
            None => {
                waited = true;
                Box::pin(tokio::time::timeout(send_timeout, writer.write(bytes))).await.map_err(|_| stalled())??
            }
        };
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        bytes = &bytes[n..];
    }
    match writer.flush().now_or_never() {
        Some(flushed) => flushed.map(|()| waited),
        None => {
            Box::pin(tokio::time::timeout(send_timeout, writer.flush())).await.map_err(|_| stalled())?.map(|()| true)
        }
    }
}
