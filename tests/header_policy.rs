//! Header policy: what the backend actually receives.
mod common;
use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_backend_receives_the_policy_rewritten_request() {
    let web = HttpBackend::start("web");
    let port = free_port();
    let cfg = Config::new()
        .listen(port)
        .upstream("web", Upstream::one(web.addr()))
        .route(Route::to("web").path_prefix("/backend-host").host_header("backend"))
        .route(Route::to("web").path_prefix("/literal-host").host_header("internal.svc"))
        .route(Route::to("web").path_prefix("/").set_header("X-Served-By", "wsgate").remove_header("X-Debug"));
    let _gw = Wsgate::start_and_wait(&cfg, &[port]);
    let addr = format!("127.0.0.1:{port}").parse().unwrap();

    let (status, _, _) = http_request(
        addr,
        "GET /app?q=1 HTTP/1.1\r\nHost: public.example.com\r\nX-Forwarded-For: 192.0.2.7\r\nX-Real-IP: 6.6.6.6\r\n\
         X-Debug: secret\r\nX-Served-By: client\r\nKeep-Alive: timeout=5\r\nTE: trailers\r\nProxy-Authorization: Basic eA==\r\n\
         X-Hop: 1\r\nConnection: close, X-Hop\r\n\r\n",
    )
    .await;
    assert_eq!(status, 200);
    let got = web.last_request().unwrap();
    assert_eq!(got.path, "/app?q=1");
    assert_eq!(got.header("host"), Some("public.example.com"), "Host is preserved by default");
    assert_eq!(got.header("x-forwarded-for"), Some("192.0.2.7, 127.0.0.1"));
    assert_eq!(got.header("x-real-ip"), Some("127.0.0.1"));
    assert_eq!(got.header("x-forwarded-proto"), Some("http"));
    assert_eq!(got.header("x-forwarded-host"), Some("public.example.com"));
    assert_eq!(got.header("x-served-by"), Some("wsgate"));
    for stripped in ["x-debug", "keep-alive", "te", "proxy-authorization", "x-hop", "upgrade"] {
        assert_eq!(got.header(stripped), None, "{stripped} must not reach the backend");
    }

    get(addr, "public.example.com", "/backend-host").await;
    assert_eq!(web.last_request().unwrap().header("host"), Some(web.addr().to_string().as_str()));
    get(addr, "public.example.com", "/literal-host").await;
    let got = web.last_request().unwrap();
    assert_eq!(got.header("host"), Some("internal.svc"));
    assert_eq!(got.header("x-forwarded-host"), Some("public.example.com"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_header_naming_a_forwarding_field_is_refused() {
    let web = HttpBackend::start("web");
    let port = free_port();
    let cfg = Config::proxy(port, "web", web.addr());
    let _gw = Wsgate::start_and_wait(&cfg, &[port]);
    let addr = format!("127.0.0.1:{port}").parse().unwrap();
    let (status, _, _) =
        http_request(addr, "GET / HTTP/1.1\r\nHost: x\r\nConnection: close, X-Forwarded-For\r\n\r\n").await;
    assert_eq!(status, 400);
    assert_eq!(web.hits(), 0);
}

/// A client's `X-Forwarded-Host` and `Forwarded` never reach the backend (issue 13, item 8):
/// `X-Forwarded-Host` is the host wsgate routed on (none without one), `Forwarded` is
/// dropped; the same on the WebSocket handshake, which also loses `Expect`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clients_forwarding_headers_are_replaced_or_removed() {
    let (web, chat) = (RecordingBackend::start(), WsBackend::start("chat"));
    let port = free_port();
    let cfg = Config::new()
        .listen(port)
        .upstream("web", Upstream::one(web.addr()))
        .upstream("chat", Upstream::one(chat.addr()))
        .route(Route::to("chat").path_prefix("/ws"))
        .route(Route::to("web"));
    let gw = Wsgate::start_and_wait(&cfg, &[port]);
    let addr = format!("127.0.0.1:{port}").parse().unwrap();
    let forged = "X-Forwarded-Host: evil.example\r\nForwarded: for=10.9.9.9;host=admin.internal\r\n";

    let r = raw_request(addr, format!("GET /no-host HTTP/1.0\r\n{forged}\r\n").as_bytes()).await;
    assert_eq!(r.status, Some(200), "{}\n{}", r.summary(), gw.logs());
    let r = raw_request(
        addr,
        format!("GET /with-host HTTP/1.1\r\nHost: app.example.com\r\n{forged}Connection: close\r\n\r\n").as_bytes(),
    )
    .await;
    assert_eq!(r.status, Some(200), "{}\n{}", r.summary(), gw.logs());
    let (no_host, with_host) = (web.requests_to("/no-host"), web.requests_to("/with-host"));
    assert_eq!((no_host.len(), with_host.len()), (1, 1), "{:?}", web.paths());
    assert_eq!(no_host[0].header("x-forwarded-host"), None, "no Host: no X-Forwarded-Host, not the client's");
    assert_eq!(with_host[0].header("x-forwarded-host"), Some("app.example.com"));
    for got in [&no_host[0], &with_host[0]] {
        assert_eq!(got.header("forwarded"), None, "{:?}", got.headers);
    }

    let extra = [
        ("X-Forwarded-Host", "evil.example"),
        ("Forwarded", "for=10.9.9.9;host=admin.internal"),
        ("Expect", "100-continue"),
    ];
    let (mut ws, _) =
        ws_connect(&format!("ws://127.0.0.1:{port}/ws"), &extra).await.unwrap_or_else(|e| panic!("{e}\n{}", gw.logs()));
    assert_eq!(ws_echo_text(&mut ws, "hello").await, "hello");
    let seen = chat.last_headers();
    assert_eq!(header(&seen, "x-forwarded-host"), Some(format!("127.0.0.1:{port}").as_str()), "{seen:?}");
    assert_eq!(header(&seen, "forwarded"), None, "{seen:?}");
    assert_eq!(header(&seen, "expect"), None, "{seen:?}");
}
