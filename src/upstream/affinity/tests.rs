use super::*;
use std::time::Duration;

fn pinning(secret: Option<&[u8]>, pool: &str) -> Pinning {
    let spec =
        Affinity { cookie: "wsgate_affinity".into(), ttl: Duration::from_secs(3600), key: derive_key(secret, pool) };
    Pinning::new(&spec)
}

fn req(cookies: &[&str]) -> RequestHeader {
    let mut r = RequestHeader::build("GET", b"/", None).unwrap();
    for c in cookies {
        r.append_header("Cookie", *c).unwrap();
    }
    r
}

/// `name=value` of a Set-Cookie.
fn pair(set_cookie: &str) -> &str {
    set_cookie.split(';').next().unwrap()
}

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

#[test]
fn the_cookie_names_its_backend_opaquely_and_is_read_back() {
    let p = pinning(None, "chat");
    let (a, b) = (addr("10.0.0.1:3001"), addr("10.0.0.2:3001"));
    p.learn([a, b].into_iter());
    let cookie = p.set_cookie(a, false);
    assert!(!cookie.contains("10.0.0") && !cookie.contains("3001"), "{cookie}");
    assert_eq!(pair(&cookie).len(), "wsgate_affinity=".len() + 22, "16 bytes, base64url: {cookie}");
    assert_eq!(p.pinned(&req(&[pair(&cookie)])), Some(a));
    assert_eq!(p.pinned(&req(&[pair(&p.set_cookie(b, false))])), Some(b));
    assert_ne!(p.set_cookie(a, false), p.set_cookie(b, false));
}

#[test]
fn the_set_cookie_has_the_attributes_and_secure_only_on_tls() {
    let p = pinning(None, "chat");
    let a = addr("10.0.0.1:3001");
    let plain = p.set_cookie(a, false);
    assert!(plain.ends_with("; Path=/; Max-Age=3600; HttpOnly; SameSite=Lax"), "{plain}");
    assert_eq!(p.set_cookie(a, true), format!("{plain}; Secure"));
}

#[test]
fn the_key_is_stable_and_differs_by_secret_and_pool() {
    assert_eq!(derive_key(None, "chat"), derive_key(None, "chat"), "a new process reads old cookies");
    assert_eq!(derive_key(Some(b"s3cret-s3cret-16"), "chat"), derive_key(Some(b"s3cret-s3cret-16"), "chat"));
    assert_ne!(derive_key(None, "chat"), derive_key(None, "web"));
    assert_ne!(derive_key(None, "chat"), derive_key(Some(b"s3cret-s3cret-16"), "chat"));
    assert_ne!(derive_key(Some(b"s3cret-s3cret-16"), "chat"), derive_key(Some(b"other-secret-key"), "chat"));
    let (ours, theirs) = (pinning(None, "chat"), pinning(Some(b"s3cret-s3cret-16"), "chat"));
    let a = addr("10.0.0.1:3001");
    ours.learn([a].into_iter());
    assert_eq!(ours.pinned(&req(&[pair(&theirs.set_cookie(a, false))])), None, "another key's cookie");
}

#[test]
fn a_cookie_naming_no_backend_of_the_pool_pins_nothing() {
    let p = pinning(None, "chat");
    let (a, gone) = (addr("10.0.0.1:3001"), addr("10.0.0.9:3001"));
    p.learn([a, gone].into_iter());
    let stale = p.set_cookie(gone, false);
    p.learn([a].into_iter());
    let valid = p.set_cookie(a, false);
    for cookies in [
        vec![pair(&stale)],
        vec!["wsgate_affinity=garbage"],
        vec!["wsgate_affinity="],
        vec!["wsgate_affinity=AAAAAAAAAAAAAAAAAAAAAA"],
        vec!["wsgate_affinity=%%%%"],
        vec!["other=1"],
        vec![],
    ] {
        assert_eq!(p.pinned(&req(&cookies)), None, "{cookies:?}");
    }
    // Another cookie's value is not read as ours, and a valid one among invalid ones counts.
    let value = pair(&valid).split_once('=').unwrap().1;
    assert_eq!(p.pinned(&req(&[&format!("x_wsgate_affinity={value}")])), None);
    let mixed = format!("theme=dark; wsgate_affinity=garbage; wsgate_affinity=\"{value}\"");
    assert_eq!(p.pinned(&req(&[&mixed])), Some(a));
    assert_eq!(p.pinned(&req(&["theme=dark", pair(&valid)])), Some(a), "one Cookie field per cookie (HTTP/2)");
}

#[test]
fn cookie_names_are_tokens() {
    for ok in ["wsgate_affinity", "a", "A-B.c~1", "x!#$%&'*+^`|"] {
        assert!(is_cookie_name(ok), "{ok}");
    }
    for bad in ["", "a b", "a=b", "a;b", "a,b", "é", "a\"", "(a)", "a/b", "a\t"] {
        assert!(!is_cookie_name(bad), "{bad}");
    }
}

// ---------------------------------------------------------------- the pool's choice

mod pool {
    use super::{pair, req};
    use crate::telemetry::metrics::Metrics;
    use crate::upstream::health::BackendSeries;
    use crate::upstream::{initial_backends, Attempts, Failure, Pool};
    use pingora::http::ResponseHeader;
    use pingora::lb::HealthRegistry;
    use std::net::SocketAddr;
    use std::sync::Arc;
    use std::time::Duration;

    const CONFIG: &str = "\
listeners: [{address: 127.0.0.1:8080}]
upstreams:
  app:
    backends: [10.0.0.1:80, 10.0.0.2:80, 10.0.0.3:80]
    affinity: {}
routes: [{upstream: app}]
";

    fn pool() -> (Pool, [SocketAddr; 3]) {
        let config = crate::config::parse(CONFIG, "test.yaml", std::path::Path::new(".")).unwrap();
        let spec = &config.upstreams[0];
        let series = BackendSeries::new(&spec.name, &Metrics::new());
        let pool = Pool::new(spec, Arc::new(HealthRegistry::new()), initial_backends(spec), &series);
        (pool, ["10.0.0.1:80", "10.0.0.2:80", "10.0.0.3:80"].map(|a| a.parse().unwrap()))
    }

    /// The answer's Set-Cookie for a request that went to `attempts.backend`.
    fn answer(pool: &Pool, attempts: &Attempts, status: u16) -> Option<String> {
        let mut response = ResponseHeader::build(status, None).unwrap();
        pool.set_affinity_cookie(&mut response, attempts, false);
        response.headers.get("set-cookie").map(|v| v.to_str().unwrap().to_string())
    }

    /// What a client pinned to `backend` sends.
    fn pinned_to(pool: &Pool, backend: SocketAddr) -> Attempts {
        let set = answer(pool, &Attempts { backend: Some(backend), ..Attempts::default() }, 200).unwrap();
        Attempts { pinned: pool.pinned(&req(&[pair(&set)])), ..Attempts::default() }
    }

    #[test]
    fn a_pinned_request_goes_to_its_backend_until_it_is_excluded_full_or_drained() {
        let (pool, [_, b, _]) = pool();
        let mut attempts = pinned_to(&pool, b);
        assert_eq!(attempts.pinned, Some(b));
        for _ in 0..20 {
            assert_eq!(pool.pick(b"", &mut attempts), Ok(b), "round robin would move on");
        }
        let chosen = |attempts: &Attempts, room: &dyn Fn(&SocketAddr) -> bool| {
            pool.select(b"", attempts, room).and_then(|b| b.addr.as_inet().copied()).unwrap()
        };
        assert!((0..20).all(|_| chosen(&attempts, &|a| *a != b) != b), "no room (the session cap)");
        assert!(attempts.connect_failed(Failure::ConnectFailed, 2));
        assert!((0..20).all(|_| pool.pick(b"", &mut attempts) != Ok(b)), "its connect failed: retried elsewhere");
        let attempts = pinned_to(&pool, b);
        pool.loads.drain(&b, Duration::from_secs(1)).unwrap();
        assert!((0..20).all(|_| chosen(&attempts, &|_| true) != b), "drained");
    }

    #[test]
    fn the_answer_pins_the_client_unless_its_cookie_named_the_backend_that_served() {
        let (pool, [a, b, _]) = pool();
        let unpinned = Attempts { backend: Some(a), ..Attempts::default() };
        let set = answer(&pool, &unpinned, 200).expect("a client without a cookie is pinned");
        assert_eq!(pinned_to(&pool, a).pinned, Some(a), "{set}");
        let stays = Attempts { backend: Some(a), pinned: Some(a), ..Attempts::default() };
        assert_eq!(answer(&pool, &stays, 200), None, "the cookie is not set again");
        let moved = Attempts { backend: Some(a), pinned: Some(b), ..Attempts::default() };
        assert_eq!(answer(&pool, &moved, 503), Some(set.clone()), "re-pinned, whatever the status");
        assert_eq!(answer(&pool, &moved, 101), Some(set), "an upgrade's 101 is the answer");
        assert_eq!(answer(&pool, &moved, 100), None, "an interim answer is not");
        assert_eq!(answer(&pool, &Attempts::default(), 200), None, "no backend answered");
    }
}
