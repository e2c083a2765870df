//! The gated stream: a downstream connection's stream, holding its place under the limits
//! and enforcing its request heads' deadlines.

use super::head::HeadDeadline;
use super::send::SendClock;
use crate::lifecycle::drain::InFlight;
use crate::listener::limits::{Admitted, Limits, Refusal};
use async_trait::async_trait;
use pingora::protocols::raw_connect::ProxyDigest;
use pingora::protocols::tls::{SslDigest, TlsRef};
use pingora::protocols::{GetProxyDigest, GetSocketDigest, GetTimingDigest, SocketDigest, TimingDigest};
use pingora::protocols::{Peek, Shutdown, Ssl, Stream, UniqueID, UniqueIDType, ALPN};
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Sent when a request's head is not complete in time.
const HEADER_TIMEOUT_RESPONSE: &[u8] = b"HTTP/1.1 408 Request Timeout\r\nContent-Type: text/plain\r\nContent-Length: 24\r\nConnection: close\r\n\r\nrequest header timeout\r\n";

/// Sent when an HTTP/2 connection's first request is not complete in time: GOAWAY
/// (RFC 9113 §6.8) with last stream 0, so the client knows no request was processed and
/// may retry it elsewhere, and NO_ERROR, as for a server closing an idle connection.
const HEADER_TIMEOUT_GOAWAY: &[u8] = &[0, 0, 8, 0x7, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];

/// A downstream stream holding its place under the connection limits, with the deadline
/// of the first request's head while that is still being read.
pub(crate) struct GatedStream {
    inner: Stream,
    head: Option<HeadDeadline>,
    /// Set (to the header timeout, in ms) when a keep-alive connection's request is done:
    /// the next head gets a deadline of its own from its first byte on.
    next_head_ms: AtomicU64,
    limits: Arc<Limits>,
    send: SendClock,
    /// The last write took only part of its bytes: a frame of the h2 codec may be cut, so
    /// no GOAWAY can be put behind it.
    mid_write: bool,
    /// Keeps a draining process alive until the connection's first answer is on its way
    /// (by then the request counts as in flight itself), so a connection accepted just
    /// before the drain began is served, not cut off by the process's exit.
    unanswered: Option<InFlight>,
    /// The connection's place under the limits, held by the layer nearest the socket: on a
    /// TLS listener the one inside the TLS stream, which exists from accept on.
    _admitted: Option<Admitted>,
}

impl std::fmt::Debug for GatedStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GatedStream").field("inner", &self.inner).field("head", &self.head).finish()
    }
}

impl AsyncRead for GatedStream {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.head.as_mut().is_some_and(|head| head.passed(cx)) {
            return this.header_timed_out(cx);
        }
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.inner).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            if this.head.is_none() {
                let next_head_ms = this.next_head_ms.swap(0, Ordering::AcqRel);
                if next_head_ms > 0 {
                    this.head = Some(HeadDeadline::later(Duration::from_millis(next_head_ms)));
                }
            }
            if let Some(head) = &mut this.head {
                if head.passed(cx) {
                    return this.header_timed_out(cx);
                }
                if head.feed(&buf.filled()[before..]) {
                    this.head = None;
                }
            }
        }
        polled
    }
}

impl GatedStream {
    /// Answers 408, or on HTTP/2 a GOAWAY (written without waiting: it fits any socket
    /// buffer, and the connection is closed right after), and fails the read.
    fn header_timed_out(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.limits.refuse(Refusal::HeaderTimeout);
        let answer = match self.head.as_ref().is_some_and(|head| head.is_http2()) {
            true if self.mid_write => None,
            true => Some(HEADER_TIMEOUT_GOAWAY),
            false => Some(HEADER_TIMEOUT_RESPONSE),
        };
        if let Some(answer) = answer {
            let _ = Pin::new(&mut self.inner).poll_write(cx, answer);
            let _ = Pin::new(&mut self.inner).poll_flush(cx);
        }
        self.head = None;
        Poll::Ready(Err(io::Error::new(io::ErrorKind::TimedOut, "request header timeout")))
    }

    /// `send_timeout`: `None` where something else bounds the writes (below a TLS layer,
    /// on an HTTP/2 connection).
    pub(super) fn new(
        inner: Stream,
        head: Option<HeadDeadline>,
        send_timeout: Option<Duration>,
        unanswered: Option<InFlight>,
        admitted: Option<Admitted>,
        limits: Arc<Limits>,
    ) -> GatedStream {
        GatedStream {
            inner,
            head,
            next_head_ms: AtomicU64::new(0),
            limits,
            send: SendClock::new(send_timeout),
            mid_write: false,
            unanswered,
            _admitted: admitted,
        }
    }

    /// A keep-alive connection's request is done: its next request head, from its first
    /// byte on, has `header_timeout` to be complete. `stream` is the downstream stream of an
    /// HTTP/1 session, if it is a gated one.
    pub(super) fn expect_next_head(stream: &Stream, header_timeout: Duration) {
        if let Some(gated) = stream.as_any().downcast_ref::<GatedStream>() {
            gated.next_head_ms.store(header_timeout.as_millis().clamp(1, u64::MAX as u128) as u64, Ordering::Release);
        }
    }

    /// The next request on an HTTP/1 connection has the `send_timeout` of the config then
    /// current (a reload changes it for open connections too).
    pub(super) fn renew_send_timeout(stream: &Stream, send_timeout: Duration) {
        if let Some(gated) = stream.as_any().downcast_ref::<GatedStream>() {
            gated.send.set(Some(send_timeout));
        }
    }

    fn note_written(&mut self, written: &Poll<io::Result<usize>>, len: usize) {
        if let Poll::Ready(Ok(n)) = written {
            self.mid_write = *n < len;
            if self.unanswered.is_some() && *n > 0 {
                self.unanswered = None;
            }
        }
    }

    /// The connection negotiated HTTP/2: its first request's head is its first header block.
    pub(super) fn expect_http2(&mut self) {
        if let Some(head) = &mut self.head {
            head.expect_http2();
        }
    }

    /// Fails a write, flush or shutdown that has taken no byte for `send_timeout`.
    fn bounded<T>(&mut self, cx: &mut Context<'_>, polled: Poll<io::Result<T>>) -> Poll<io::Result<T>> {
        if self.send.expired(cx, polled.is_pending()) {
            self.limits.refuse(Refusal::SendTimeout);
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "send timeout: the client accepted no bytes",
            )));
        }
        polled
    }

    /// A WebSocket tunnel has taken `stream` over and bounds its writes itself.
    pub(crate) fn leave_send_timeout_to_the_tunnel(stream: &Stream) {
        if let Some(gated) = stream.as_any().downcast_ref::<GatedStream>() {
            gated.send.set(None);
        }
    }
}

impl AsyncWrite for GatedStream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let written = Pin::new(&mut this.inner).poll_write(cx, buf);
        this.note_written(&written, buf.len());
        this.bounded(cx, written)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let written = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        this.note_written(&written, bufs.iter().map(|b| b.len()).sum());
        this.bounded(cx, written)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let flushed = Pin::new(&mut this.inner).poll_flush(cx);
        this.bounded(cx, flushed)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let shut = Pin::new(&mut this.inner).poll_shutdown(cx);
        this.bounded(cx, shut)
    }
}

// Everything else Pingora asks of a stream is the wrapped stream's.

#[async_trait]
impl Shutdown for GatedStream {
    async fn shutdown(&mut self) {
        self.inner.shutdown().await
    }
}

impl UniqueID for GatedStream {
    fn id(&self) -> UniqueIDType {
        self.inner.id()
    }
}

impl Ssl for GatedStream {
    fn get_ssl(&self) -> Option<&TlsRef> {
        self.inner.get_ssl()
    }

    fn get_ssl_digest(&self) -> Option<Arc<SslDigest>> {
        self.inner.get_ssl_digest()
    }

    fn selected_alpn_proto(&self) -> Option<ALPN> {
        self.inner.selected_alpn_proto()
    }
}

impl GetTimingDigest for GatedStream {
    fn get_timing_digest(&self) -> Vec<Option<TimingDigest>> {
        self.inner.get_timing_digest()
    }

    fn get_read_pending_time(&self) -> Duration {
        self.inner.get_read_pending_time()
    }

    fn get_write_pending_time(&self) -> Duration {
        self.inner.get_write_pending_time()
    }
}

impl GetProxyDigest for GatedStream {
    fn get_proxy_digest(&self) -> Option<Arc<ProxyDigest>> {
        self.inner.get_proxy_digest()
    }

    fn set_proxy_digest(&mut self, digest: ProxyDigest) {
        self.inner.set_proxy_digest(digest)
    }
}

impl GetSocketDigest for GatedStream {
    fn get_socket_digest(&self) -> Option<Arc<SocketDigest>> {
        self.inner.get_socket_digest()
    }

    fn set_socket_digest(&mut self, digest: SocketDigest) {
        self.inner.set_socket_digest(digest)
    }
}

#[async_trait]
impl Peek for GatedStream {
    async fn try_peek(&mut self, buf: &mut [u8]) -> io::Result<bool> {
        self.inner.try_peek(buf).await
    }
}
