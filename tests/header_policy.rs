//! Header policy: what the backend actually receives.
mod common;
use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_backend_receives_the_policy_rewritten_request() {
    let web = HttpBackend::start("web");
    let port = free_port();
    let yaml = format!(
        "listeners:\n  - address: 127.0.0.1:{port}\n\
         upstreams:\n  web: {{backends: ['{backend}']}}\n\
         routes:\n\
         \x20 - path_prefix: /backend-host\n    upstream: web\n    host_header: backend\n\
         \x20 - path_prefix: /literal-host\n    upstream: web\n    host_header: internal.svc\n\
         \x20 - path_prefix: /\n    upstream: web\n    request_headers:\n      set: {{X-Served-By: wsgate}}\n      remove: [X-Debug]\n",
        backend = web.addr()
    );
    let _gw = Wsgate::start_and_wait(&yaml, &[port]);
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
    let yaml = format!("listeners:\n  - address: 127.0.0.1:{port}\nupstreams:\n  web: {{backends: ['{}']}}\nroutes:\n  - upstream: web\n", web.addr());
    let _gw = Wsgate::start_and_wait(&yaml, &[port]);
    let addr = format!("127.0.0.1:{port}").parse().unwrap();
    let (status, _, _) = http_request(addr, "GET / HTTP/1.1\r\nHost: x\r\nConnection: close, X-Forwarded-For\r\n\r\n").await;
    assert_eq!(status, 400);
    assert_eq!(web.hits(), 0);
}
