//! An HTTP/2 WebSocket stream (RFC 8441) as the byte stream wsgate's tunnel reads and
//! writes: the request body's DATA frames in, the response body's DATA frames out. Reading
//! is what returns flow-control credit to the client (Pingora releases it as a chunk is
//! handed out), so a pump that stops reading holds the client back; writing sends only
//! what the client's window allows and waits for more.

use async_trait::async_trait;
use bytes::Bytes;
use h2::SendStream;
use pingora::protocols::http::v2::server::HttpSession;
use pingora::protocols::raw_connect::ProxyDigest;
use pingora::protocols::{GetProxyDigest, GetSocketDigest, GetTimingDigest, Peek, Shutdown, Ssl};
use pingora::protocols::{SocketDigest, TimingDigest, UniqueID, UniqueIDType};
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The largest share of the client's window asked for at once.
const WRITE_CHUNK: usize = 64 * 1024;

pub(crate) struct H2Io {
    /// The stream's request side (its body reader); its response head is sent.
    session: Box<HttpSession>,
    tx: SendStream<Bytes>,
    /// Read from the client, not yet handed to the tunnel.
    pending: Bytes,
    ended: bool,
}

impl H2Io {
    pub(crate) fn new(session: Box<HttpSession>, tx: SendStream<Bytes>) -> H2Io {
        H2Io { session, tx, pending: Bytes::new(), ended: false }
    }
}

impl std::fmt::Debug for H2Io {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("H2Io").field("pending", &self.pending.len()).field("ended", &self.ended).finish()
    }
}

fn io_error(e: h2::Error) -> io::Error {
    io::Error::other(e)
}

impl AsyncRead for H2Io {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        // Bounded: each turn either fills `pending` or returns; empty DATA frames are skipped.
        while this.pending.is_empty() {
            match ready!(this.session.poll_read_body_bytes(cx)) {
                None => return Poll::Ready(Ok(())), // END_STREAM: the client's FIN
                Some(Err(e)) => return Poll::Ready(Err(io_error(e))),
                Some(Ok(bytes)) => this.pending = bytes,
            }
        }
        // DATA frames already received go along in the same read (a browser's are up to
        // 16 KiB each): one write to the backend for many frames, not one per frame.
        loop {
            let n = this.pending.len().min(buf.remaining());
            buf.put_slice(&this.pending.split_to(n));
            if buf.remaining() == 0 || !this.pending.is_empty() {
                break;
            }
            // The end, an error or nothing yet: the next read sees it again (h2 repeats both).
            match this.session.poll_read_body_bytes(cx) {
                Poll::Ready(Some(Ok(bytes))) => this.pending = bytes,
                _ => break,
            }
        }
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for H2Io {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        if this.tx.capacity() == 0 {
            this.tx.reserve_capacity(buf.len().min(WRITE_CHUNK));
        }
        // h2 reports capacity only when it grew: look before waiting.
        while this.tx.capacity() == 0 {
            match ready!(this.tx.poll_capacity(cx)) {
                None => return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into())),
                Some(Err(e)) => return Poll::Ready(Err(io_error(e))),
                Some(Ok(_)) => {}
            }
        }
        let n = this.tx.capacity().min(buf.len());
        this.tx.send_data(Bytes::copy_from_slice(&buf[..n]), false).map_err(io_error)?;
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    /// END_STREAM: the tunnel's FIN towards the client.
    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !std::mem::replace(&mut this.ended, true) {
            this.tx.send_data(Bytes::new(), true).map_err(io_error)?;
        }
        Poll::Ready(Ok(()))
    }
}

// What Pingora asks of any stream; an HTTP/2 stream has no socket of its own.

#[async_trait]
impl Shutdown for H2Io {
    async fn shutdown(&mut self) {
        let _ = tokio::io::AsyncWriteExt::shutdown(self).await;
    }
}

impl UniqueID for H2Io {
    fn id(&self) -> UniqueIDType {
        0
    }
}

impl Ssl for H2Io {}

impl GetTimingDigest for H2Io {
    fn get_timing_digest(&self) -> Vec<Option<TimingDigest>> {
        Vec::new()
    }
}

impl GetProxyDigest for H2Io {
    fn get_proxy_digest(&self) -> Option<Arc<ProxyDigest>> {
        None
    }
}

impl GetSocketDigest for H2Io {
    fn get_socket_digest(&self) -> Option<Arc<SocketDigest>> {
        None
    }
}

#[async_trait]
impl Peek for H2Io {}

/// RFC 8441 §5: the backend's 101 becomes the stream's 200, with what the handshake
/// negotiated (subprotocol, extensions) and the cookies it set, and the stream becomes the
/// tunnel's client side. `None` when the session is not HTTP/2 or the client left.
pub(super) fn switch_client(
    session: &mut pingora::proxy::Session,
    response: &pingora::http::ResponseHeader,
) -> Option<super::tunnel::Endpoint> {
    use pingora::protocols::http::ServerSession;
    if !matches!(&*session.downstream_session, ServerSession::H2(_)) {
        return None;
    }
    let (placeholder, _) = tokio::io::duplex(1);
    let placeholder = ServerSession::new_http1(Box::new(placeholder));
    let ServerSession::H2(mut h2) = std::mem::replace(&mut *session.downstream_session, placeholder) else {
        return None;
    };
    let mut ok = pingora::http::ResponseHeader::build(200, Some(4)).ok()?;
    for name in ["sec-websocket-protocol", "sec-websocket-extensions", "set-cookie"] {
        for value in response.headers.get_all(name) {
            ok.append_header(name, value.clone()).ok()?;
        }
    }
    if let Err(e) = h2.write_response_header(Box::new(ok), false) {
        log::debug!("client stream went away before its 200: {e}");
        return None;
    }
    let tx = h2.take_response_body_writer()?;
    Some(super::tunnel::Endpoint { stream: Box::new(H2Io::new(Box::new(h2), tx)), early: Vec::new() })
}
