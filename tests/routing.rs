//! Routing: host (exact, wildcard, port ignored) and path prefix (longest wins, on segment
//! boundaries); no route is a 404.
mod common;
use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_go_to_the_most_specific_route() {
    let (chat, api, wild, web) =
        (HttpBackend::start("chat"), HttpBackend::start("api"), HttpBackend::start("wild"), HttpBackend::start("web"));
    let port = free_port();
    let cfg = Config::new()
        .listen(port)
        .upstream("chat", Upstream::one(chat.addr()))
        .upstream("api", Upstream::one(api.addr()))
        .upstream("wild", Upstream::one(wild.addr()))
        .upstream("web", Upstream::one(web.addr()))
        .route(Route::to("chat").path_prefix("/ws").host("chat.example.com"))
        .route(Route::to("api").path_prefix("/api"))
        .route(Route::to("wild").path_prefix("/api").host("*.example.com"))
        .route(Route::to("web").path_prefix("/"));
    let gw = Wsgate::start_and_wait(&cfg, &[port]);
    let addr = format!("127.0.0.1:{port}").parse().unwrap();
    let cases = [
        ("chat.example.com", "/ws", "chat"),
        ("CHAT.example.com:8080", "/ws/room?x=1", "chat"),
        ("chat.example.com", "/wsx", "web"),
        ("other.example.com", "/ws", "web"),
        ("plain.test", "/api/v1", "api"),
        ("a.example.com", "/api/v1", "wild"),
        ("a.b.example.com", "/api", "wild"),
        ("example.com", "/api", "api"),
        ("plain.test", "/apix", "web"),
        ("plain.test", "/", "web"),
    ];
    for (host, path, expected) in cases {
        let (status, headers, body) = get(addr, host, path).await;
        assert_eq!(status, 200, "{host}{path}: {body}\n{}", gw.log());
        assert_eq!(header(&headers, "x-backend"), Some(expected), "{host}{path}");
        assert!(body.starts_with(&format!("GET {path}")), "the backend gets the path unchanged: {body}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_matching_route_is_404() {
    let web = HttpBackend::start("web");
    let port = free_port();
    let cfg = Config::new()
        .listen(port)
        .upstream("web", Upstream::one(web.addr()))
        .route(Route::to("web").host("only.example.com"));
    let _gw = Wsgate::start_and_wait(&cfg, &[port]);
    let addr = format!("127.0.0.1:{port}").parse().unwrap();
    let (status, _, body) = get(addr, "other.example.com", "/").await;
    assert_eq!(status, 404);
    assert!(body.contains("no route"), "{body}");
    assert_eq!(web.hits(), 0);
    let (status, _, _) = get(addr, "only.example.com", "/").await;
    assert_eq!(status, 200);
}

/// Routes are chosen on the normalised path (RFC 3986 §6.2.2: dot segments, doubled `/`,
/// escaped unreserved characters), so another spelling of `/ws` cannot reach another route
/// and escape its policy; the backend still gets the path as the client sent it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_spellings_of_a_path_take_its_route() {
    let (ws, web) = (HttpBackend::start("ws"), HttpBackend::start("web"));
    let port = free_port();
    let cfg = Config::new()
        .listen(port)
        .upstream("ws", Upstream::one(ws.addr()))
        .upstream("web", Upstream::one(web.addr()))
        .route(Route::to("ws").path_prefix("/ws").websocket(WebSocket::new().allowed_origins(["https://good.example"])))
        .route(Route::to("web").path_prefix("/"));
    let gw = Wsgate::start_and_wait(&cfg, &[port]);
    let addr = format!("127.0.0.1:{port}").parse().unwrap();
    for path in ["/ws", "//ws", "/./ws", "/a/../ws", "/%77s", "/%2e%2e/ws/x"] {
        let (status, headers, body) = get(addr, "x.test", path).await;
        assert_eq!(status, 200, "{path}: {body}\n{}", gw.log());
        assert_eq!(header(&headers, "x-backend"), Some("ws"), "{path} must take the /ws route");
        assert_eq!(body.lines().next(), Some(format!("GET {path}").as_str()), "the backend gets the path as sent");
        // The /ws route's Origin allowlist holds whatever the spelling.
        let upgrade =
            ws_upgrade_request(path, "x.test").replace("\r\n\r\n", "\r\nOrigin: https://evil.example\r\n\r\n");
        let r = raw_request(addr, upgrade.as_bytes()).await;
        assert_eq!(r.status, Some(403), "{path}: {}", r.summary());
    }
    for (path, expected) in [("/ws%2Fx", "web"), ("/wsx", "web"), ("/ws/..", "web")] {
        let (status, headers, _) = get(addr, "x.test", path).await;
        assert_eq!((status, header(&headers, "x-backend")), (200, Some(expected)), "{path}");
    }
}
