//! An HTTP/2 WebSocket session (RFC 8441) goes the way of an HTTP/1.1 upgrade at the edge:
//! authentication before any backend, the token taken out, the user forwarded, and the
//! upgrade counted with the protocol that carried it.
mod common;

use common::jwt::*;
use common::*;
use std::net::SocketAddr;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http2_session_is_authenticated_and_counted_with_its_protocol() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = write_self_signed_cert(dir.path());
    let chat = WsBackend::start("chat");
    let (port, mport) = (free_port(), free_port());
    let cfg = Config::new()
        .listener(Listener::on(port).tls(Tls::new(&cert, &key)))
        .metrics(mport)
        .upstream("chat", Upstream::one(chat.addr()))
        .route(Route::to("chat").name("chat").path_prefix("/ws").auth(jwt_auth(false)));
    let gw = Wsgate::start_and_wait(&cfg, &[port, mport]);

    // No token: 401 with its challenge, and the backend never hears of it.
    let refused = h2_ws_connect(port, &cert, "/ws", &[]).await.expect_err("no token, no session");
    let answer = refused.response().unwrap_or_else(|| panic!("{refused}\n{}", gw.logs()));
    assert_eq!(answer.status(), 401, "{refused}");
    assert!(answer.headers().get("www-authenticate").is_some(), "{refused}");
    assert_eq!(chat.hits(), 0, "refused before any backend");

    // A token in the query: admitted, taken out, the user forwarded.
    let token = rs256(&claims("alice"));
    let (_, mut ws) = h2_ws_connect(port, &cert, &format!("/ws?room=1&access_token={token}"), &[])
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", gw.logs()));
    assert_eq!(ws_echo_text(&mut ws, "hello").await, "hello");
    assert_eq!(chat.last_path().as_deref(), Some("/ws?room=1"), "the token does not reach the backend");
    assert_eq!(header_value(&chat.last_headers(), "x-user-id"), Some("alice"));

    let metrics = SocketAddr::from(([127, 0, 0, 1], mport));
    let text = scrape(metrics).await;
    let upgrades = |result: &str, protocol: &str| {
        sample(
            &text,
            "wsgate_websocket_upgrades_total",
            &[("route", "chat"), ("result", result), ("protocol", protocol)],
        )
    };
    assert_eq!(upgrades("accepted", "h2"), Some(1.0), "{text}");
    assert_eq!(upgrades("accepted", "h1"), None, "{text}");
}
