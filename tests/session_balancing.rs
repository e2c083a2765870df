//! Session-aware balancing: `least_sessions` sends a new session to the backend with the
//! fewest open ones, the counts belong to the backends (a reload keeps them), and
//! `max_sessions_per_backend` with `queue` holds upgrades in line for a place, then 503.
mod common;
use common::*;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

fn addrs(port: u16, mport: u16) -> (SocketAddr, SocketAddr) {
    (format!("127.0.0.1:{port}").parse().unwrap(), format!("127.0.0.1:{mport}").parse().unwrap())
}

fn chat(port: u16, mport: u16, pool: Upstream) -> Config {
    Config::new().listen(port).metrics(mport).upstream("chat", pool).route(Route::to("chat").path_prefix("/ws"))
}

/// Waits until `backend` of pool `chat` holds `want` sessions (`None`: has no series).
async fn wait_sessions(maddr: SocketAddr, backend: SocketAddr, want: Option<f64>) {
    let backend = backend.to_string();
    wait_for(maddr, "wsgate_upstream_backend_sessions", &[("upstream", "chat"), ("backend", &backend)], want).await;
}

async fn open(port: u16, n: usize) -> Vec<Ws> {
    let mut sessions = Vec::new();
    for i in 0..n {
        let (mut ws, _) = ws_connect(&format!("ws://127.0.0.1:{port}/ws"), &[]).await.expect("upgrade");
        assert_eq!(ws_echo_text(&mut ws, &format!("m{i}")).await, format!("m{i}"));
        sessions.push(ws);
    }
    sessions
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn least_sessions_fills_the_emptiest_backend_and_a_reload_keeps_the_counts() {
    let (a, b) = (WsBackend::start("a"), WsBackend::start("b"));
    let (port, mport) = (free_port(), free_port());
    let (_, maddr) = addrs(port, mport);
    let config =
        |backends: &[SocketAddr]| chat(port, mport, Upstream::new(backends.to_vec()).balance("least_sessions"));
    let gw = Wsgate::start_and_wait(&config(&[a.addr()]), &[port, mport]);

    let mut on_a = open(port, 3).await;
    wait_sessions(maddr, a.addr(), Some(3.0)).await;

    // b joins: a new pool is built, but a keeps its 3 sessions, so the next 3 all go to b.
    gw.write_config(&config(&[a.addr(), b.addr()]));
    gw.signal("HUP");
    wait_for(maddr, "wsgate_config_reloads_total", &[("result", "ok")], Some(1.0)).await;
    wait_sessions(maddr, b.addr(), Some(0.0)).await;
    let on_b = open(port, 3).await;
    wait_sessions(maddr, b.addr(), Some(3.0)).await;
    wait_sessions(maddr, a.addr(), Some(3.0)).await;
    assert_eq!((a.sessions(), b.sessions()), (3, 3), "the backends saw 3 upgrades each");

    // Two sessions on a end: the next two go where the room is.
    for mut ws in on_a.drain(..2) {
        ws.close(None).await.unwrap();
    }
    wait_sessions(maddr, a.addr(), Some(1.0)).await;
    let refill = open(port, 2).await;
    wait_sessions(maddr, a.addr(), Some(3.0)).await;
    assert_eq!((a.sessions(), b.sessions()), (5, 3));

    // a leaves the pool: its series goes (its sessions are not counted as anyone's).
    gw.write_config(&config(&[b.addr()]));
    gw.signal("HUP");
    wait_for(maddr, "wsgate_config_reloads_total", &[("result", "ok")], Some(2.0)).await;
    wait_sessions(maddr, a.addr(), None).await;
    wait_sessions(maddr, b.addr(), Some(3.0)).await;
    drop((on_a, on_b, refill));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_the_cap_upgrades_wait_in_the_queue_then_get_503_with_a_jittered_retry_after() {
    let (a, b) = (WsBackend::start("a"), WsBackend::start("b"));
    let (port, mport) = (free_port(), free_port());
    let (_, maddr) = addrs(port, mport);
    let pool = Upstream::new([a.addr(), b.addr()]).balance("least_sessions").max_sessions_per_backend(2).queue(2, "2s");
    let _gw = Wsgate::start_and_wait(&chat(port, mport, pool), &[port, mport]);

    let mut full = open(port, 4).await;
    wait_sessions(maddr, a.addr(), Some(2.0)).await;
    wait_sessions(maddr, b.addr(), Some(2.0)).await;

    // Two more wait for a place; a third finds the queue full.
    let url = format!("ws://127.0.0.1:{port}/ws");
    let waiters: Vec<_> = (0..2)
        .map(|_| {
            let url = url.clone();
            tokio::spawn(async move {
                let started = Instant::now();
                (ws_connect(&url, &[]).await, started.elapsed())
            })
        })
        .collect();
    wait_for(maddr, "wsgate_upstream_queue_waiting", &[("upstream", "chat")], Some(2.0)).await;
    let retry_after = |e: &tokio_tungstenite::tungstenite::Error| match e {
        tokio_tungstenite::tungstenite::Error::Http(r) if r.status() == 503 => {
            r.headers().get("retry-after").and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
        }
        _ => None,
    };
    let refused = ws_connect(&url, &[]).await.expect_err("the queue is full");
    assert!(retry_after(&refused).is_some_and(|s| (1..=5).contains(&s)), "{refused:?}");

    // One place frees: one waiter gets it, at once; the other's wait runs out at 2 s.
    full.pop().unwrap().close(None).await.unwrap();
    let mut results = Vec::new();
    for w in waiters {
        results.push(w.await.unwrap());
    }
    let (admitted, timed_out): (Vec<_>, Vec<_>) = results.into_iter().partition(|(r, _)| r.is_ok());
    assert_eq!((admitted.len(), timed_out.len()), (1, 1), "one place, one admitted");
    let (refusal, waited) = (timed_out[0].0.as_ref().unwrap_err(), timed_out[0].1);
    assert!(retry_after(refusal).is_some_and(|s| (1..=5).contains(&s)), "{refusal:?}");
    assert!(waited >= Duration::from_millis(1900) && waited < Duration::from_secs(4), "waited {waited:?}");
    let total = |text: &str| {
        [a.addr(), b.addr()]
            .iter()
            .map(|x| sample(text, "wsgate_upstream_backend_sessions", &[("backend", &x.to_string())]).unwrap())
            .sum::<f64>()
    };
    let text = scrape(maddr).await;
    assert_eq!(total(&text), 4.0, "never more than the caps allow\n{text}");
    assert_eq!(sample(&text, "wsgate_upstream_queue_waiting", &[("upstream", "chat")]), Some(0.0));
    assert_eq!(sample(&text, "wsgate_upstream_queue_wait_seconds_count", &[("upstream", "chat")]), Some(2.0));
    drop(admitted);
}
