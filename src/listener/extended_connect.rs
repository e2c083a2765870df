//! WebSocket over HTTP/2 (RFC 8441), the listener's part: HTTP/2 connections on listeners
//! with `tls.websocket_over_http2` advertise `SETTINGS_ENABLE_CONNECT_PROTOCOL`. Pingora
//! reads a connection's HTTP/2 settings from its app's `h2_options()`, once per connection;
//! this wrapper gives the same proxy other settings, so one proxy serves both kinds of
//! listener (docs/design/h2-websocket.md).

use async_trait::async_trait;
use pingora::apps::{HttpServerApp, HttpServerOptions, ReusedHttpStream};
use pingora::protocols::http::v2::server::{default_h2_options, H2Options};
use pingora::protocols::http::ServerSession;
use pingora::server::ShutdownWatch;
use std::sync::Arc;

/// `proxy`, with extended CONNECT enabled on its HTTP/2 connections.
pub(crate) struct ExtendedConnect<A> {
    proxy: Arc<A>,
    h2: H2Options,
}

/// Streams one connection may hold at once: each WebSocket keeps its stream for its whole
/// life, so a page with many tabs' sessions must not starve its own requests.
const MAX_STREAMS: u32 = 256;
/// A stream's receive window: 256 KiB rather than h2's 64 KiB, which bounds one stream's
/// throughput to a window per round trip (measured in bench/RESULTS.md, bench/h2ws.sh). It is
/// also what a stream wsgate stops reading (a slow backend, a throttled client) may hold.
const STREAM_WINDOW: u32 = 256 * 1024;
/// The connection's receive window: 32 stalled streams fit in it before the connection's other
/// streams wait (head-of-line blocking); it bounds what one connection's clients can make
/// wsgate hold.
const CONNECTION_WINDOW: u32 = 32 * STREAM_WINDOW;
/// What h2 lets the client's unread small DATA frames cost (about 250 bytes each, under 256
/// bytes of payload) before it closes the connection with ENHANCE_YOUR_CALM. Browsers send
/// each WebSocket frame as its own DATA frame: a stalled stream of 50-byte messages holds about
/// 4,700 of them (one stream window, ~1 MiB of budget), so h2's default (half the connection
/// window) would end a connection at its fifth such stream. This allows about 67,000 frames,
/// some 4 MiB of bookkeeping beside the window's bytes.
const SMALL_FRAME_BUDGET: usize = 16 * 1024 * 1024;

impl<A> ExtendedConnect<A> {
    pub(crate) fn new(proxy: Arc<A>) -> ExtendedConnect<A> {
        let mut h2 = default_h2_options();
        h2.enable_connect_protocol()
            .max_concurrent_streams(MAX_STREAMS)
            .initial_window_size(STREAM_WINDOW)
            .initial_connection_window_size(CONNECTION_WINDOW)
            .data_frame_budget(SMALL_FRAME_BUDGET);
        ExtendedConnect { proxy, h2 }
    }
}

#[async_trait]
impl<A: HttpServerApp + Send + Sync + 'static> HttpServerApp for ExtendedConnect<A> {
    async fn process_new_http(
        self: &Arc<Self>,
        session: ServerSession,
        shutdown: &ShutdownWatch,
    ) -> Option<ReusedHttpStream> {
        self.proxy.process_new_http(session, shutdown).await
    }

    fn h2_options(&self) -> Option<H2Options> {
        Some(self.h2.clone())
    }

    fn server_options(&self) -> Option<&HttpServerOptions> {
        self.proxy.server_options()
    }
}
