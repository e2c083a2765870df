//! Affinity cookies (`upstreams.<name>.affinity`): the first answer to a client without a
//! valid cookie pins it to its backend; later requests and WebSocket upgrades with the
//! cookie go there while it may serve, else the client is pinned again with a new cookie.
//! A cookie that names no backend of the pool is replaced, never refused.
mod common;
use common::*;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

const TOKEN: &str = "t0ken";

/// `config` as YAML with `affinity` (flow YAML) on its pool `pool` (the typed builder has no
/// `affinity` key).
fn with_affinity(config: &Config, pool: &str, affinity: &str) -> String {
    let mut doc: serde_yaml::Value = serde_yaml::from_str(&config.to_yaml()).unwrap();
    doc["upstreams"][pool]["affinity"] = serde_yaml::from_str(affinity).unwrap();
    serde_yaml::to_string(&doc).unwrap()
}

fn local(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// The affinity `Set-Cookie` among `headers`, if any (there is at most one).
fn set_cookie(headers: &Headers) -> Option<String> {
    let mut found = headers.iter().filter(|(n, _)| n.eq_ignore_ascii_case("set-cookie")).map(|(_, v)| v.clone());
    let first = found.next();
    assert!(found.next().is_none(), "one Set-Cookie at most: {headers:?}");
    first
}

/// `name=value` of a Set-Cookie: what the client sends back.
fn pair(set_cookie: &str) -> String {
    set_cookie.split(';').next().unwrap().to_string()
}

/// One `GET /` with `Cookie: cookie` (if any): the status, the backend that answered and the
/// Set-Cookie of the answer.
async fn get_with(addr: SocketAddr, cookie: Option<&str>) -> (u16, String, Option<String>) {
    let extra = cookie.map_or_else(String::new, |c| format!("Cookie: theme=dark; {c}\r\n"));
    let raw = format!("GET / HTTP/1.1\r\nHost: x\r\n{extra}Connection: close\r\n\r\n");
    let (status, headers, _) = http_request(addr, &raw).await;
    (status, header(&headers, "x-backend").unwrap_or("-").to_string(), set_cookie(&headers))
}

async fn admin_post(admin: SocketAddr, path: &str) -> u16 {
    let raw = format!(
        "POST {path} HTTP/1.1\r\nHost: admin\r\nAuthorization: Bearer {TOKEN}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    );
    http_request(admin, &raw).await.0
}

/// `n` requests with `cookie`: how many each backend answered, and how many carried a new cookie.
async fn spread(addr: SocketAddr, cookie: &str, n: usize) -> (HashMap<String, usize>, usize) {
    let (mut counts, mut new_cookies) = (HashMap::new(), 0);
    for _ in 0..n {
        let (status, backend, set) = get_with(addr, Some(cookie)).await;
        assert_eq!(status, 200);
        *counts.entry(backend).or_insert(0) += 1;
        new_cookies += usize::from(set.is_some());
    }
    (counts, new_cookies)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cookie_pins_requests_to_its_backend_until_that_one_is_drained() {
    let backends = [HttpBackend::start("a"), HttpBackend::start("b"), HttpBackend::start("c")];
    let (port, aport) = (free_port(), free_port());
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("admin.token"), TOKEN).unwrap();
    let config = Config::new()
        .listen(port)
        .admin(loopback(aport), Some("admin.token"))
        .upstream("app", Upstream::new(backends.iter().map(|b| b.addr())).balance("round_robin"))
        .route(Route::to("app"));
    let yaml = with_affinity(&config, "app", "{cookie: wsgate_affinity, ttl: 1h}");
    let _gw = Wsgate::start_in_and_wait(dir, &RawYaml(&yaml), &[port, aport]);
    let (proxy, admin) = (local(port), local(aport));

    // Without a cookie the balancer picks as before (round robin: three backends in turn),
    // and each answer pins its client to the backend that gave it.
    let mut first = Vec::new();
    for _ in 0..3 {
        let (status, backend, set) = get_with(proxy, None).await;
        let set = set.unwrap_or_else(|| panic!("no Set-Cookie from {backend}"));
        assert_eq!(status, 200);
        assert!(set.starts_with("wsgate_affinity=") && set.ends_with("; Path=/; Max-Age=3600; HttpOnly; SameSite=Lax"));
        assert!(!set.contains("127.0.0.1") && !backends.iter().any(|b| set.contains(&b.port().to_string())), "{set}");
        first.push((backend, pair(&set)));
    }
    let mut names: Vec<&str> = first.iter().map(|(b, _)| b.as_str()).collect();
    names.sort();
    assert_eq!(names, ["a", "b", "c"], "round robin still picks for clients without a cookie");

    let (pinned, cookie) = first[0].clone();
    let (counts, new_cookies) = spread(proxy, &cookie, 100).await;
    println!("100 requests with the cookie of {pinned}: {counts:?}, {new_cookies} new cookies");
    assert_eq!((counts.get(&pinned), counts.len(), new_cookies), (Some(&100), 1, 0), "{counts:?}");

    // Drained: the cookie's client goes elsewhere, gets a cookie for it and sticks there.
    let drain = format!("/upstreams/app/backends/{}/drain", backends.iter().find(|b| b.name == pinned).unwrap().addr());
    assert_eq!(admin_post(admin, &drain).await, 200);
    let (status, moved_to, set) = get_with(proxy, Some(&cookie)).await;
    let new_cookie = pair(&set.expect("a new cookie once the pinned backend is drained"));
    assert_eq!(status, 200);
    assert_ne!(moved_to, pinned);
    assert_ne!(new_cookie, cookie);
    let (counts, new_cookies) = spread(proxy, &new_cookie, 50).await;
    println!("drained {pinned}: re-pinned to {moved_to}; 50 requests with the new cookie: {counts:?}, {new_cookies} new cookies");
    assert_eq!((counts.get(&moved_to), counts.len(), new_cookies), (Some(&50), 1, 0), "{counts:?}");

    // Back in rotation, the old backend takes its old cookie's clients again; the new pin holds.
    assert_eq!(admin_post(admin, &drain.replace("/drain", "/enable")).await, 200);
    assert_eq!(get_with(proxy, Some(&cookie)).await, (200, pinned, None));
    assert_eq!(get_with(proxy, Some(&new_cookie)).await, (200, moved_to, None));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cookie_naming_no_backend_of_the_pool_is_replaced_never_refused() {
    let (a, b) = (HttpBackend::start("a"), HttpBackend::start("b"));
    let dir = tempfile::tempdir().unwrap();
    write_self_signed_cert(dir.path());
    std::fs::write(dir.path().join("one.key"), "a secret of at least sixteen bytes\n").unwrap();
    std::fs::write(dir.path().join("two.key"), "another secret, just as long").unwrap();
    let config = |port: u16, tls_port: u16, pool: Upstream, key: &str| {
        let config = Config::new()
            .listen(port)
            .listener(Listener::on(tls_port).tls(Tls::self_signed()))
            .upstream("app", pool)
            .route(Route::to("app"));
        with_affinity(&config, "app", &format!("{{key_file: {key}}}"))
    };
    let start = |pool: Upstream, key: &str| {
        let (port, tls_port) = (free_port(), free_port());
        let yaml = config(port, tls_port, pool, key);
        std::fs::write(dir.path().join("wsgate.yaml"), &yaml).unwrap();
        let gw = Wsgate::start_with(&dir.path().join("wsgate.yaml"), &[]);
        gw.wait_port(port);
        gw.wait_port(tls_port);
        (gw, local(port), local(tls_port))
    };
    let both = || Upstream::new([a.addr(), b.addr()]);

    let (gw, proxy, tls) = start(both(), "one.key");
    for garbage in [
        "wsgate_affinity=garbage".to_string(),
        "wsgate_affinity=".to_string(),
        "wsgate_affinity=AAAAAAAAAAAAAAAAAAAAAA".to_string(),
        "wsgate_affinity=%00%ff;;==".to_string(),
        format!("wsgate_affinity={}", "x".repeat(4000)),
    ] {
        let (status, backend, set) = get_with(proxy, Some(&garbage)).await;
        assert_eq!(status, 200, "{garbage}");
        assert!(set.is_some(), "{garbage}: re-pinned to {backend} with a new cookie");
    }
    // On a TLS listener the cookie is Secure.
    let raw = "GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
    let (status, headers, _) = https_request(tls, "localhost", &dir.path().join("cert.pem"), raw).await;
    let secure = set_cookie(&headers).expect("a cookie over TLS too");
    assert!(status == 200 && secure.ends_with("; SameSite=Lax; Secure"), "{secure}");
    let (_, pinned, set) = get_with(proxy, None).await;
    let cookie = pair(&set.unwrap());
    drop(gw);

    // A new process with the same key reads the cookie (restarts and upgrades keep pins)...
    let (gw, proxy, _) = start(both(), "one.key");
    assert_eq!(spread(proxy, &cookie, 10).await, (HashMap::from([(pinned.clone(), 10)]), 0));
    drop(gw);
    // ...one with another key does not, nor one whose pool lost the pinned backend.
    let (gw, proxy, _) = start(both(), "two.key");
    let (status, _, set) = get_with(proxy, Some(&cookie)).await;
    assert!(status == 200 && set.is_some_and(|s| pair(&s) != cookie), "another key: re-pinned");
    drop(gw);
    let other = if pinned == "a" { &b } else { &a };
    let (_gw, proxy, _) = start(Upstream::one(other.addr()), "one.key");
    let (status, backend, set) = get_with(proxy, Some(&cookie)).await;
    assert!(status == 200 && backend == other.name && set.is_some(), "a removed backend: re-pinned");
}

/// Waits (bounded) until `backends` have counted `total` sessions: a backend counts one just
/// after its 101 is out, so possibly after the client has it.
async fn settle(backends: &[WsBackend], total: usize) -> Vec<usize> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let counts: Vec<usize> = backends.iter().map(|b| b.sessions()).collect();
        if counts.iter().sum::<usize>() >= total || Instant::now() > deadline {
            return counts;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_upgrades_follow_the_cookie_set_on_their_101_up_to_the_session_cap() {
    let backends = [WsBackend::start("a"), WsBackend::start("b"), WsBackend::start("c")];
    let port = free_port();
    let pool = Upstream::new(backends.iter().map(|b| b.addr())).balance("least_sessions").max_sessions_per_backend(6);
    let config = Config::new().listen(port).upstream("chat", pool).route(Route::to("chat"));
    let yaml = with_affinity(&config, "chat", "{}");
    let _gw = Wsgate::start_and_wait(&RawYaml(&yaml), &[port]);
    let url = format!("ws://127.0.0.1:{port}/");
    let set_cookie_of = |resp: &WsResponse| {
        let mut all = resp.headers().get_all("set-cookie").iter();
        let first = all.next().map(|v| v.to_str().unwrap().to_string());
        assert!(all.next().is_none());
        first
    };

    let (first, resp) = ws_connect(&url, &[]).await.unwrap();
    let set = set_cookie_of(&resp).expect("the first 101 pins the client");
    assert!(set.starts_with("wsgate_affinity=") && set.ends_with("; Max-Age=3600; HttpOnly; SameSite=Lax"), "{set}");
    let cookie = pair(&set);
    let pinned = settle(&backends, 1).await.iter().position(|&n| n == 1).unwrap();
    // least_sessions would spread these; the cookie keeps them on one backend, up to its cap.
    let mut open = vec![first];
    for i in 0..5 {
        let (ws, resp) = ws_connect(&url, &[("Cookie", &cookie)]).await.unwrap();
        assert_eq!(set_cookie_of(&resp), None, "upgrade {i} with the cookie");
        open.push(ws);
    }
    let counts = settle(&backends, 6).await;
    println!("6 upgrades pinned to {}: sessions per backend {counts:?}", backends[pinned].name);
    assert_eq!(counts[pinned], 6, "{counts:?}");
    // At max_sessions_per_backend the balancer picks another, and the 101 re-pins the client.
    let (ws, resp) = ws_connect(&url, &[("Cookie", &cookie)]).await.unwrap();
    let repinned = pair(&set_cookie_of(&resp).expect("re-pinned at the cap"));
    open.push(ws);
    let counts = settle(&backends, 7).await;
    let moved = counts.iter().position(|&n| n == 1).unwrap();
    assert_ne!(moved, pinned);
    assert_ne!(repinned, cookie);
    let (ws, resp) = ws_connect(&url, &[("Cookie", &repinned)]).await.unwrap();
    assert_eq!(set_cookie_of(&resp), None);
    open.push(ws);
    let counts = settle(&backends, 8).await;
    println!("at the cap: re-pinned to {}; sessions per backend {counts:?}", backends[moved].name);
    assert_eq!((counts[pinned], counts[moved]), (6, 2), "{counts:?}");
}

#[test]
fn affinity_settings_are_checked_with_their_key_path() {
    let base = Config::proxy(8080, "app", "127.0.0.1:3001".parse::<SocketAddr>().unwrap());
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("short.key"), "short\n").unwrap();
    for (affinity, key, why) in [
        ("{cookie: 'a b'}", "upstreams.app.affinity.cookie", "not a valid cookie name"),
        ("{cookie: 'a;b'}", "upstreams.app.affinity.cookie", "not a valid cookie name"),
        ("{ttl: 0s}", "upstreams.app.affinity.ttl", "at least 1s"),
        ("{ttl: 500ms}", "upstreams.app.affinity.ttl", "at least 1s"),
        ("{key_file: missing.key}", "upstreams.app.affinity.key_file", "cannot read missing.key"),
        ("{key_file: short.key}", "upstreams.app.affinity.key_file", "at least 16"),
        ("{cokie: x}", "upstreams.app.affinity", "cokie"),
    ] {
        let yaml = with_affinity(&base, "app", affinity);
        let (ok, out) = check_config_in(dir.path(), "wsgate.yaml", &RawYaml(&yaml));
        assert!(!ok && out.contains(key) && out.contains(why), "{affinity}: {out}");
    }
    let (ok, out) = check_config_in(dir.path(), "wsgate.yaml", &RawYaml(&with_affinity(&base, "app", "{}")));
    assert!(ok, "every key is optional: {out}");
}
