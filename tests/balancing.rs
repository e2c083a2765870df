//! Pools: weighted round robin, consistent hashing (sticky by header and cookie), retry of
//! a failed connect on another backend, and the 502 / 503 / 504 answers.
mod common;
use common::*;
use std::collections::HashMap;

/// wsgate on 127.0.0.1:`port`, every request to the pool `app`.
fn config(port: u16, app: Upstream) -> Config {
    Config::new().listen(port).upstream("app", app).route(Route::to("app"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weighted_round_robin_follows_the_weights() {
    let (a, b) = (HttpBackend::start("a"), HttpBackend::start("b"));
    let port = free_port();
    let pool = Upstream::new([Backend::from(a.addr()), Backend::weighted(b.addr(), 2)]);
    let _gw = Wsgate::start_and_wait(&config(port, pool), &[port]);
    let addr = format!("127.0.0.1:{port}").parse().unwrap();
    let mut counts = HashMap::new();
    for _ in 0..30 {
        *counts.entry(backend_of(addr, "/").await.1).or_insert(0) += 1;
    }
    assert_eq!((counts["a"], counts["b"]), (10, 20), "{counts:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consistent_hash_sticks_by_header_and_by_cookie() {
    let backends: Vec<HttpBackend> = (0..4).map(|i| HttpBackend::start(&format!("b{i}"))).collect();
    for (key, make) in [
        ("header:X-User", Box::new(|u: usize| format!("X-User: user{u}\r\n")) as Box<dyn Fn(usize) -> String>),
        ("cookie:sid", Box::new(|u: usize| format!("Cookie: theme=dark; sid=s{u}\r\n"))),
    ] {
        let port = free_port();
        let pool = Upstream::new(backends.iter().map(|b| b.addr())).consistent_hash(key);
        let _gw = Wsgate::start_and_wait(&config(port, pool), &[port]);
        let addr = format!("127.0.0.1:{port}").parse().unwrap();
        let mut seen = std::collections::HashSet::new();
        for user in 0..12 {
            let first = backend_of_with(addr, "/", &make(user)).await.1;
            for _ in 0..3 {
                assert_eq!(backend_of_with(addr, "/", &make(user)).await.1, first, "{key}: user{user} must stick");
            }
            seen.insert(first);
        }
        assert!(seen.len() >= 2, "{key}: 12 users all hashed to one backend: {seen:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_connect_is_retried_on_another_backend() {
    let live = HttpBackend::start("live");
    let dead = free_port(); // nothing listens here
    let port = free_port();
    // The dead backend stays in rotation (it would take 5 failed checks to leave), so
    // requests really are sent to it first and must be retried.
    let pool = Upstream::new([loopback(dead), live.addr().to_string()])
        .health_check(HealthCheck::new().interval("1h").unhealthy_after(5));
    let gw = Wsgate::start_and_wait(&config(port, pool), &[port]);
    let addr = format!("127.0.0.1:{port}").parse().unwrap();
    for _ in 0..6 {
        assert_eq!(backend_of(addr, "/").await, (200, "live".to_string()));
    }
    assert!(gw.wait_log_contains("retrying on another backend", std::time::Duration::from_secs(5)), "{}", gw.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_answer_502_503_and_504_with_a_text_body() {
    let dead = free_port();
    let slow = HttpBackend::start("slow");
    let (p502, p503, p504) = (free_port(), free_port(), free_port());
    let cfg = Config::new()
        .listen(p502)
        .listen(p503)
        .listen(p504)
        .upstream(
            "refused",
            Upstream::one(loopback(dead)).health_check(HealthCheck::new().interval("1h").unhealthy_after(5)),
        )
        .upstream("down", Upstream::one(loopback(dead)).health_check(HealthCheck::new().interval("100ms")))
        .upstream("slow", Upstream::one(slow.addr()).read_timeout("300ms"))
        .route(Route::to("refused").path_prefix("/refused"))
        .route(Route::to("down").path_prefix("/down"))
        .route(Route::to("slow").path_prefix("/slow"));
    let gw = Wsgate::start_and_wait(&cfg, &[p502]);
    let addr = format!("127.0.0.1:{p502}").parse().unwrap();
    let (status, _, body) = get(addr, "x", "/refused").await;
    assert_eq!(status, 502, "{body}");
    assert!(body.contains("bad gateway"), "{body}");
    // The health check takes the dead backend out of rotation: 503.
    let mut status = 0;
    for _ in 0..100 {
        status = get(addr, "x", "/down").await.0;
        if status == 503 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(status, 503, "{}", gw.log());
    assert!(get(addr, "x", "/down").await.2.contains("no healthy backend"));
    let (status, _, body) = get(addr, "x", "/slow/2000").await;
    assert_eq!(status, 504, "{body}");
    assert!(body.contains("timeout"), "{body}");
}

/// A pooled keep-alive connection that the backend closed while idle (a race every Node,
/// gunicorn and uvicorn backend triggers) is retried on a fresh connection to the same
/// backend, not answered 502. The spacing of the requests walks across the backend's idle
/// timeout so that some of them meet a connection the backend is closing right then.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_pooled_connection_is_retried_on_a_fresh_one() {
    let env = |name: &str, default: u64| std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default);
    let (requests, idle_ms) = (env("WSGATE_STALE_REQUESTS", 600), env("WSGATE_STALE_IDLE_MS", 10));
    let backend = HttpBackend::start_closing_idle("only", std::time::Duration::from_millis(idle_ms));
    let port = free_port();
    let pool = Upstream::one(backend.addr()).health_check(HealthCheck::new().interval("1h"));
    let gw = Wsgate::start_and_wait(&config(port, pool), &[port]);
    let addr = format!("127.0.0.1:{port}").parse().unwrap();
    let mut errors = Vec::new();
    let started = std::time::Instant::now();
    for i in 0..requests {
        let (status, _, body) = get(addr, "x", &format!("/r{i}")).await;
        if status != 200 {
            errors.push(format!("request {i}: {status} {body}"));
        }
        // From well under the idle timeout to just over it, in 0.5 ms steps.
        let spacing = idle_ms * 1000 - 2000 + (i % 7) * 500;
        tokio::time::sleep(std::time::Duration::from_micros(spacing)).await;
    }
    eprintln!(
        "{requests} requests, {} errors, {} backend connections, {:?}",
        errors.len(),
        backend.connections(),
        started.elapsed()
    );
    assert!(
        errors.is_empty(),
        "{} of {requests} failed: {:?}\n{}",
        errors.len(),
        &errors[..errors.len().min(5)],
        gw.log()
    );
    assert_eq!(backend.hits(), requests as usize, "every request reached the backend once");
    assert!(backend.connections() < requests as usize, "connections were reused, so the race was run");
}

/// A backend that closes a new connection without answering (it restarted, or closed it as
/// idle the moment it accepted it): an idempotent request gets one more try on a new
/// connection; a POST is not retried (the backend may have acted on it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_connection_closed_before_any_answer_is_retried_once_for_idempotent_requests() {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (requests, fail_next) = (std::sync::Arc::new(AtomicUsize::new(0)), std::sync::Arc::new(AtomicBool::new(false)));
    let (seen, fail) = (requests.clone(), fail_next.clone());
    // A request on a connection that arrives while `fail_next` is set is read, then the
    // connection is closed unanswered (health checks send nothing and are not counted).
    let backend = RawBackend::start(move |mut s| {
        let (seen, fail) = (seen.clone(), fail.clone());
        async move {
            let mut buf = [0u8; 4096];
            if !matches!(s.read(&mut buf).await, Ok(n) if n > 0) {
                return;
            }
            seen.fetch_add(1, Ordering::SeqCst);
            if fail.swap(false, Ordering::SeqCst) {
                return;
            }
            let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok").await;
        }
    });
    let port = free_port();
    let pool = Upstream::one(backend.addr).health_check(HealthCheck::new().interval("1h"));
    let _gw = Wsgate::start_and_wait(&config(port, pool), &[port]);
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    fail_next.store(true, Ordering::SeqCst);
    let (status, _, body) = get(addr, "x", "/").await;
    assert_eq!((status, body.as_str()), (200, "ok"), "retried on a second connection");
    assert_eq!(requests.load(Ordering::SeqCst), 2, "the first try and the retry");
    fail_next.store(true, Ordering::SeqCst);
    let post = "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nConnection: close\r\n\r\nx";
    assert_eq!(http_request(addr, post).await.0, 502, "a POST is not retried");
    assert_eq!(requests.load(Ordering::SeqCst), 3);
}
