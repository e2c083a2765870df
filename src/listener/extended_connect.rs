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

impl<A> ExtendedConnect<A> {
    pub(crate) fn new(proxy: Arc<A>) -> ExtendedConnect<A> {
        let mut h2 = default_h2_options();
        h2.enable_connect_protocol();
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
