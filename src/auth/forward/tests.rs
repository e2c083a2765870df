//! `auth::forward` against a real (tiny) auth service on loopback: each verdict of the
//! contract, what the subrequest carries, connection reuse, and odd answers. The cache is
//! in `tests/cache.rs`, the config in `tests/config.rs`.

use super::*;
use pingora::http::RequestHeader;
use service::{AuthService, Reply};
use std::time::Duration;

mod cache;
mod config;
mod service;

/// A `ForwardAuth` for the service at `addr`: `/check?from=wsgate`, no cache, 2 s.
fn settings(addr: SocketAddr) -> ForwardSettings {
    ForwardSettings {
        url: format!("http://{addr}/check?from=wsgate"),
        address: addr,
        tls: false,
        sni: String::new(),
        authority: HeaderValue::from_str(&addr.to_string()).unwrap(),
        path: "/check?from=wsgate".into(),
        timeout: Duration::from_secs(2),
        copy_headers: vec![],
        cache: None,
    }
}

fn copying(addr: SocketAddr, names: &[&str]) -> ForwardAuth {
    let copy_headers = names.iter().map(|n| HeaderName::from_bytes(n.as_bytes()).unwrap()).collect();
    ForwardAuth::new(ForwardSettings { copy_headers, ..settings(addr) })
}

fn request(method: &str, target: &str, headers: &[(&str, &[u8])]) -> RequestHeader {
    let mut req = RequestHeader::build(method, target.as_bytes(), None).unwrap();
    for (name, value) in headers {
        req.append_header(name.to_string(), HeaderValue::from_bytes(value).unwrap()).unwrap();
    }
    req
}

fn subject(req: &RequestHeader) -> Subject<'_> {
    Subject { req, client_ip: Some("203.0.113.7".parse().unwrap()), tls: true, host: "chat.example.com" }
}

async fn check(auth: &ForwardAuth, req: &RequestHeader) -> ForwardVerdict {
    auth.check(subject(req)).await
}

fn pairs(list: &[(&'static str, &[u8])]) -> Vec<(HeaderName, HeaderValue)> {
    list.iter().map(|(n, v)| (HeaderName::from_static(n), HeaderValue::from_bytes(v).unwrap())).collect()
}

#[tokio::test]
async fn a_2xx_admits_with_the_copied_headers_whatever_their_case() {
    let service = AuthService::answering("HTTP/1.1 200 OK\r\nx-user-id: 42\r\nX-ROLE: admin\r\nX-Role: ops", b"").await;
    let auth = copying(service.addr, &["X-User-Id", "x-role", "X-Absent"]);
    let verdict = check(&auth, &request("GET", "/ws", &[])).await;
    let expected = pairs(&[("x-user-id", b"42"), ("x-role", b"admin"), ("x-role", b"ops")]);
    assert_eq!(verdict, ForwardVerdict::Admit(expected));
    assert_eq!(auth.copy_headers().len(), 3);

    let no_content = AuthService::answering("HTTP/1.1 204 No Content", b"").await;
    assert_eq!(
        check(&copying(no_content.addr, &["x-user-id"]), &request("GET", "/", &[])).await,
        ForwardVerdict::Admit(vec![])
    );
}

#[tokio::test]
async fn a_403_is_relayed_with_its_body_and_a_401_with_its_challenge() {
    let service =
        AuthService::answering("HTTP/1.1 403 Forbidden\r\nContent-Type: text/plain\r\nX-Other: no", b"not you").await;
    let verdict = check(&copying(service.addr, &[]), &request("GET", "/ws", &[])).await;
    let headers = pairs(&[("content-type", b"text/plain")]);
    assert_eq!(verdict, ForwardVerdict::Refuse { status: 403, body: Bytes::from_static(b"not you"), headers });

    let service =
        AuthService::answering("HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Bearer realm=\"chat\"", b"").await;
    let verdict = check(&copying(service.addr, &[]), &request("GET", "/ws", &[])).await;
    let headers = pairs(&[("www-authenticate", b"Bearer realm=\"chat\"")]);
    assert_eq!(verdict, ForwardVerdict::Refuse { status: 401, body: Bytes::new(), headers });
}

#[tokio::test]
async fn any_other_status_fails_closed() {
    for status in
        ["500 Internal Server Error", "302 Found\r\nLocation: /login", "404 Not Found", "101 Switching Protocols"]
    {
        let service = AuthService::answering(&format!("HTTP/1.1 {status}"), b"").await;
        let verdict = check(&copying(service.addr, &[]), &request("GET", "/ws", &[])).await;
        let code = &status[..3];
        assert!(
            matches!(&verdict, ForwardVerdict::Unavailable(r) if r.contains(&format!("answered {code}"))),
            "{verdict:?}"
        );
    }
}

#[tokio::test]
async fn a_service_that_is_down_or_not_http_fails_closed() {
    // Bind and drop: nothing listens on the port for the test's few milliseconds.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let verdict = check(&copying(closed, &[]), &request("GET", "/ws", &[])).await;
    assert!(matches!(&verdict, ForwardVerdict::Unavailable(r) if r.contains("connection refused")), "{verdict:?}");

    for garbage in
        [&b"NOT HTTP AT ALL\r\n\r\n"[..], b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n"]
    {
        let service = AuthService::start(Reply::Canned(garbage.to_vec())).await;
        let verdict = check(&copying(service.addr, &[]), &request("GET", "/ws", &[])).await;
        assert!(matches!(verdict, ForwardVerdict::Unavailable(_)), "{verdict:?}");
    }
}

#[tokio::test]
async fn a_silent_service_fails_closed_at_the_timeout() {
    let service = AuthService::start(Reply::Silent).await;
    let auth = ForwardAuth::new(ForwardSettings { timeout: Duration::from_millis(200), ..settings(service.addr) });
    let started = std::time::Instant::now();
    let verdict = check(&auth, &request("GET", "/ws", &[])).await;
    let elapsed = started.elapsed();
    assert!(matches!(&verdict, ForwardVerdict::Unavailable(r) if r.contains("no answer within 200ms")), "{verdict:?}");
    assert!(elapsed >= Duration::from_millis(200) && elapsed < Duration::from_millis(600), "{elapsed:?}");
    assert_eq!(service.requests(), 1, "the request went out, the answer never came");
}

#[tokio::test]
async fn the_subrequest_carries_the_clients_credential_and_forwarded_facts_not_its_connection() {
    let service = AuthService::answering("HTTP/1.1 200 OK", b"").await;
    let auth = copying(service.addr, &[]);
    let req = request(
        "POST",
        "/ws/chat?room=1&t=%20x",
        &[
            ("Host", b"chat.example.com"),
            ("Authorization", b"Bearer abc"),
            ("Cookie", b"session=s1"),
            ("Connection", b"Upgrade, X-Hop"),
            ("X-Hop", b"hop"),
            ("Upgrade", b"websocket"),
            ("Content-Length", b"5"),
            ("Transfer-Encoding", b"chunked"),
            ("Sec-WebSocket-Key", b"dGhlIHNhbXBsZSBub25jZQ=="),
            ("Sec-WebSocket-Version", b"13"),
            ("Sec-WebSocket-Protocol", b"chat, token.abc"),
            ("X-Forwarded-For", b"10.9.9.9"),
            ("X-Forwarded-User", b"admin"),
            ("X-Real-IP", b"10.9.9.9"),
            ("Origin", b"https://chat.example.com"),
        ],
    );
    assert!(matches!(check(&auth, &req).await, ForwardVerdict::Admit(_)));
    let head = service.last();
    assert_eq!(head.line, "GET /check?from=wsgate");
    let expected = [
        ("host", service.addr.to_string()),
        ("authorization", "Bearer abc".into()),
        ("cookie", "session=s1".into()),
        ("sec-websocket-protocol", "chat, token.abc".into()),
        ("origin", "https://chat.example.com".into()),
        ("x-forwarded-method", "POST".into()),
        ("x-forwarded-uri", "/ws/chat?room=1&t=%20x".into()),
        ("x-forwarded-host", "chat.example.com".into()),
        ("x-forwarded-proto", "https".into()),
        ("x-forwarded-for", "203.0.113.7".into()),
    ];
    for (name, value) in expected {
        assert_eq!(head.text(name), Some(value.as_str()), "{name} in {head:#?}");
    }
    for absent in [
        "connection",
        "x-hop",
        "upgrade",
        "content-length",
        "transfer-encoding",
        "sec-websocket-key",
        "sec-websocket-version",
        "x-forwarded-user",
        "x-real-ip",
    ] {
        assert!(head.get(absent).is_none(), "{absent} in {head:#?}");
    }
    assert_eq!(head.headers.iter().filter(|(n, _)| n == "x-forwarded-for" || n == "host").count(), 2, "one of each");
}

#[tokio::test]
async fn a_plain_http_client_without_address_gets_no_x_forwarded_for() {
    let service = AuthService::answering("HTTP/1.1 200 OK", b"").await;
    let req = request("GET", "/", &[]);
    let subject = Subject { req: &req, client_ip: None, tls: false, host: "" };
    assert!(matches!(copying(service.addr, &[]).check(subject).await, ForwardVerdict::Admit(_)));
    let head = service.last();
    assert_eq!((head.text("x-forwarded-proto"), head.text("x-forwarded-uri")), (Some("http"), Some("/")));
    assert!(head.get("x-forwarded-for").is_none() && head.get("x-forwarded-host").is_none(), "{head:#?}");
}

#[tokio::test]
async fn connections_to_the_service_are_reused_and_a_stale_one_is_retried() {
    let service = AuthService::answering("HTTP/1.1 200 OK", b"").await;
    let auth = copying(service.addr, &[]);
    for _ in 0..10 {
        assert!(matches!(check(&auth, &request("GET", "/", &[])).await, ForwardVerdict::Admit(_)));
    }
    assert_eq!((service.requests(), service.connections()), (10, 1));

    let closing = AuthService::start(Reply::OnceThenClose(service::response("HTTP/1.1 200 OK", b""))).await;
    let auth = copying(closing.addr, &[]);
    for _ in 0..2 {
        assert!(matches!(check(&auth, &request("GET", "/", &[])).await, ForwardVerdict::Admit(_)));
    }
    // The second check went out on the pooled connection, found it closed, and was sent
    // again on a new one: the client never saw the service's keep-alive end.
    assert_eq!((closing.requests(), closing.connections()), (3, 2));
}

#[tokio::test]
async fn odd_bytes_pass_through_and_huge_bodies_are_not_read() {
    let latin1: &[u8] = b"J\xe9r\xf4me";
    let service = AuthService::answering("HTTP/1.1 200 OK\r\nX-User-Name: J\u{e9}r\u{f4}me", b"").await;
    let auth = copying(service.addr, &["x-user-name"]);
    let req = request("GET", "/", &[("Authorization", b"Bearer \xff\xfe\x80"), ("X-Odd", latin1)]);
    assert_eq!(check(&auth, &req).await, ForwardVerdict::Admit(pairs(&[("x-user-name", "Jérôme".as_bytes())])));
    assert_eq!(service.last().get("authorization"), Some(&b"Bearer \xff\xfe\x80"[..]));
    assert_eq!(service.last().get("x-odd"), Some(latin1));

    let huge = vec![b'x'; 1 << 20];
    let service = AuthService::answering("HTTP/1.1 403 Forbidden\r\nContent-Type: text/html", &huge).await;
    let verdict = check(&copying(service.addr, &[]), &request("GET", "/", &[])).await;
    assert_eq!(verdict, ForwardVerdict::Refuse { status: 403, body: Bytes::new(), headers: vec![] });

    let service = AuthService::answering("HTTP/1.1 200 OK", &huge).await;
    let auth = copying(service.addr, &[]);
    for _ in 0..2 {
        assert!(matches!(check(&auth, &request("GET", "/", &[])).await, ForwardVerdict::Admit(_)));
    }
    assert_eq!(service.connections(), 2, "a connection with an unread body is not reused");
    let at_cap = vec![b'y'; exchange::MAX_BODY];
    let service = AuthService::answering("HTTP/1.1 403 Forbidden", &at_cap).await;
    let verdict = check(&copying(service.addr, &[]), &request("GET", "/", &[])).await;
    assert!(matches!(verdict, ForwardVerdict::Refuse { body, .. } if body.len() == exchange::MAX_BODY));
}

#[tokio::test]
async fn informational_answers_before_the_final_one_are_skipped() {
    let mut bytes = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n".to_vec();
    bytes.extend(service::response("HTTP/1.1 200 OK\r\nX-User-Id: 7", b""));
    let service = AuthService::start(Reply::Canned(bytes)).await;
    let verdict = check(&copying(service.addr, &["x-user-id"]), &request("GET", "/", &[])).await;
    assert_eq!(verdict, ForwardVerdict::Admit(pairs(&[("x-user-id", b"7")])));
}

#[tokio::test]
async fn https_to_a_service_that_speaks_no_tls_fails_closed() {
    // A plain HTTP answer as soon as the connection opens: the ClientHello gets no TLS record back.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.unwrap();
        let _ = tokio::io::AsyncWriteExt::write_all(&mut stream, b"HTTP/1.1 200 OK\r\n\r\n").await;
        std::future::pending::<()>().await;
    });
    let tls = ForwardSettings { tls: true, sni: "localhost".into(), ..settings(addr) };
    let started = std::time::Instant::now();
    let verdict = check(&ForwardAuth::new(tls), &request("GET", "/", &[])).await;
    assert!(matches!(&verdict, ForwardVerdict::Unavailable(r) if !r.contains("no answer")), "{verdict:?}");
    assert!(started.elapsed() < Duration::from_secs(1), "failed at once, not at the timeout");
    server.abort();
}
