//! Routing: host (exact, wildcard, port ignored) and path prefix (longest wins, on segment
//! boundaries); no route is a 404.
mod common;
use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_go_to_the_most_specific_route() {
    let (chat, api, wild, web) = (HttpBackend::start("chat"), HttpBackend::start("api"), HttpBackend::start("wild"), HttpBackend::start("web"));
    let port = free_port();
    let yaml = format!(
        "listeners:\n  - address: 127.0.0.1:{port}\n\
         upstreams:\n  chat: {{backends: ['{}']}}\n  api: {{backends: ['{}']}}\n  wild: {{backends: ['{}']}}\n  web: {{backends: ['{}']}}\n\
         routes:\n\
         \x20 - {{path_prefix: /ws, host: chat.example.com, upstream: chat}}\n\
         \x20 - {{path_prefix: /api, upstream: api}}\n\
         \x20 - {{path_prefix: /api, host: '*.example.com', upstream: wild}}\n\
         \x20 - {{path_prefix: /, upstream: web}}\n",
        chat.addr(), api.addr(), wild.addr(), web.addr()
    );
    let gw = Wsgate::start_and_wait(&yaml, &[port]);
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
    let yaml = format!(
        "listeners:\n  - address: 127.0.0.1:{port}\nupstreams:\n  web: {{backends: ['{}']}}\nroutes:\n  - {{host: only.example.com, upstream: web}}\n",
        web.addr()
    );
    let _gw = Wsgate::start_and_wait(&yaml, &[port]);
    let addr = format!("127.0.0.1:{port}").parse().unwrap();
    let (status, _, body) = get(addr, "other.example.com", "/").await;
    assert_eq!(status, 404);
    assert!(body.contains("no route"), "{body}");
    assert_eq!(web.hits(), 0);
    let (status, _, _) = get(addr, "only.example.com", "/").await;
    assert_eq!(status, 200);
}
