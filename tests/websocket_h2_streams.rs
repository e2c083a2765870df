//! WebSocket over HTTP/2 (RFC 8441) at scale: many sessions on one connection, a stream whose
//! reader stops, draining, and the setting changed by a reload.
mod common;
use common::*;

use futures_util::{SinkExt, StreamExt};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::Message;

/// One text echo on `ws`, timed; bounded by 10 s.
async fn timed_echo(ws: &mut H2Ws, text: &str) -> Result<Duration, String> {
    let started = Instant::now();
    let echo = async {
        ws.send(Message::text(text)).await.map_err(|e| format!("send: {e}"))?;
        loop {
            match ws.next().await {
                Some(Ok(Message::Text(t))) if t.as_str() == text => return Ok(started.elapsed()),
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                other => return Err(format!("instead of the echo: {other:?}")),
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(10), echo).await.map_err(|_| "no echo within 10 s".to_string())?
}

/// `rounds` echoes on each session at once; every latency, or the first failure.
async fn echo_round(sessions: Vec<H2Ws>, rounds: usize) -> (Vec<H2Ws>, Result<Vec<Duration>, String>) {
    let tasks: Vec<_> = sessions
        .into_iter()
        .enumerate()
        .map(|(i, mut ws)| {
            tokio::spawn(async move {
                let mut took = Vec::with_capacity(rounds);
                for r in 0..rounds {
                    match timed_echo(&mut ws, &format!("s{i} r{r}")).await {
                        Ok(t) => took.push(t),
                        Err(e) => return (ws, Err(format!("session {i}: {e}"))),
                    }
                }
                (ws, Ok(took))
            })
        })
        .collect();
    let (mut sessions, mut all, mut failure) = (Vec::new(), Vec::new(), None);
    for t in tasks {
        let (ws, took) = t.await.expect("echo task");
        sessions.push(ws);
        match took {
            Ok(t) => all.extend(t),
            Err(e) => failure = failure.or(Some(e)),
        }
    }
    (sessions, failure.map_or(Ok(all), Err))
}

fn p99(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[(samples.len() * 99 / 100).min(samples.len() - 1)]
}

/// 200 sessions on one HTTP/2 connection all echo; then one more session's client stops
/// reading while it keeps sending (its stream and its backend fill up and wsgate stops reading
/// it): the others' echoes are not held up beyond 2× their p99.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_sessions_share_a_connection_and_a_stalled_one_holds_none_back() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = write_self_signed_cert(dir.path());
    let ws = WsBackend::start("ws");
    let port = free_port();
    let gw = Wsgate::start_and_wait(&h2_ws_gateway(port, &cert, &key, ws.addr()), &[port]);

    let mut client = h2_ws_client(port, &cert).await;
    let mut sessions = Vec::new();
    for i in 0..200 {
        let (_, ws) = h2_ws_connect_on(&mut client, port, "/ws", &[])
            .await
            .unwrap_or_else(|e| panic!("session {i}: {e}\n{}", gw.logs()));
        sessions.push(ws);
    }
    let (sessions, warm_up) = echo_round(sessions, 5).await;
    let warm_up = warm_up.unwrap_or_else(|e| panic!("{e}\n{}", gw.logs()));
    assert_eq!(warm_up.len(), 1000, "0 failures in 200 × 5 echoes");
    // The first round after a quiet spell is slower (measured: up to 2-3x); the rounds
    // compared both come after one, as long as the stall takes to set in.
    tokio::time::sleep(Duration::from_millis(600)).await;
    let (sessions, before) = echo_round(sessions, 5).await;
    let before = before.unwrap_or_else(|e| panic!("{e}\n{}", gw.logs()));

    // The stalled session: 64 KiB messages sent (up to 64 MiB, far beyond what the socket
    // buffers on the way hold), nothing read.
    let (_, stalled) = h2_ws_connect_on(&mut client, port, "/ws", &[]).await.expect("the stalled session");
    let sent = Arc::new(AtomicU64::new(0));
    let (mut sink, _unread) = stalled.split();
    let writer = {
        let sent = sent.clone();
        tokio::spawn(async move {
            let payload = vec![7u8; 64 * 1024];
            for _ in 0..1024 {
                if sink.send(Message::binary(payload.clone())).await.is_err() {
                    return;
                }
                sent.fetch_add(payload.len() as u64, Ordering::Relaxed);
            }
        })
    };
    // Stalled: no progress for 500 ms, after more than the stream's and the backend's buffers.
    let (mut last, mut since) = (0, Instant::now());
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let now = sent.load(Ordering::Relaxed);
        if now != last {
            (last, since) = (now, Instant::now());
        } else if since.elapsed() > Duration::from_millis(500) {
            break;
        }
        assert!(Instant::now() < deadline && !writer.is_finished(), "the writer never stalled: {now} bytes sent");
    }
    eprintln!("stalled after {} KiB sent", last / 1024);

    // Head-of-line blocking would hold every echo for seconds; scheduling noise on a busy
    // machine moves a p99 by tens of percent, so a round over the bound is measured again,
    // up to three times.
    let (p_before, bound) = (p99(before), |p: Duration| 2 * p.max(Duration::from_millis(2)));
    let mut sessions = sessions;
    for attempt in 1..=3 {
        let (back, during) = echo_round(sessions, 5).await;
        sessions = back;
        let during = during.unwrap_or_else(|e| panic!("while one session is stalled: {e}\n{}", gw.logs()));
        let p_during = p99(during);
        eprintln!("echo p99 of 200 sessions: {p_before:?} before, {p_during:?} beside a stalled session");
        if p_during <= bound(p_before) {
            break;
        }
        assert!(attempt < 3, "{p_during:?} beside a stalled session vs {p_before:?} before, three times");
    }
    // A plain request on the same connection is answered too.
    let get = http::Request::get(format!("https://localhost:{port}/plain")).body(()).unwrap();
    let (answer, _) = client.send_request(get, true).unwrap();
    let answer = tokio::time::timeout(Duration::from_secs(5), answer).await.expect("an answer within 5 s").unwrap();
    assert_eq!(answer.status(), 200, "{}", gw.logs());
    writer.abort();
}

/// An HTTP/2 connection with its SETTINGS in, and the task driving it: the task ends when
/// the server has closed the connection (after its GOAWAY).
async fn connection(port: u16, cert: &Path) -> (h2::client::SendRequest<bytes::Bytes>, tokio::task::JoinHandle<()>) {
    let tls = h2_tls_connect(port, cert).await;
    let (client, mut conn) = h2_ws_builder().handshake(tls).await.expect("HTTP/2 handshake");
    let mut ping = conn.ping_pong().expect("PingPong");
    let driver = tokio::spawn(async move {
        let _ = conn.await;
    });
    tokio::time::timeout(Duration::from_secs(10), ping.ping(h2::Ping::opaque())).await.unwrap().unwrap();
    (client, driver)
}

/// The Close a session gets while it waits, and when; bounded by 15 s.
async fn close_of(mut ws: H2Ws) -> (Option<u16>, Instant) {
    let close = async {
        loop {
            match ws.next().await {
                Some(Ok(Message::Close(frame))) => return frame.map(|f| u16::from(f.code)),
                Some(Ok(_)) => continue,
                _ => return None,
            }
        }
    };
    let code = tokio::time::timeout(Duration::from_secs(15), close).await.expect("a Close within 15 s");
    (code, Instant::now())
}

/// SIGTERM with 100 sessions on 10 HTTP/2 connections: every session gets Close 1001, spread
/// over drain.window, and each connection is closed once its sessions are done.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn draining_closes_every_stream_with_1001_over_the_window_then_each_connection() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = write_self_signed_cert(dir.path());
    let ws = WsBackend::start("ws");
    let port = free_port();
    let gw = Wsgate::start_and_wait(&h2_ws_gateway(port, &cert, &key, ws.addr()).drain_window("2s"), &[port]);

    let (mut drivers, mut sessions) = (Vec::new(), Vec::new());
    for _ in 0..10 {
        let (mut client, driver) = connection(port, &cert).await;
        for _ in 0..10 {
            let (_, mut ws) = h2_ws_connect_on(&mut client, port, "/ws", &[]).await.expect("a session");
            timed_echo(&mut ws, "before").await.unwrap();
            sessions.push(ws);
        }
        drivers.push((client, driver));
    }
    let signalled = Instant::now();
    gw.signal("TERM");
    let closes: Vec<_> = sessions.into_iter().map(|ws| tokio::spawn(close_of(ws))).collect();
    let mut ends = Vec::new();
    for c in closes {
        ends.push(c.await.unwrap());
    }
    assert!(ends.iter().all(|(code, _)| *code == Some(1001)), "{:?}", ends.iter().map(|e| e.0).collect::<Vec<_>>());
    let first = ends.iter().map(|e| e.1).min().unwrap();
    let last = ends.iter().map(|e| e.1).max().unwrap();
    eprintln!("closes {:?} to {:?} after SIGTERM", first - signalled, last - signalled);
    assert!(last - first >= Duration::from_secs(1), "spread over the 2 s window: {:?}", last - first);
    let backend_closes = ws.close_codes();
    assert_eq!(backend_closes.iter().filter(|c| **c == Some(1001)).count(), 100, "{backend_closes:?}");

    // Each connection: GOAWAY (no new stream is accepted), then closed.
    for (mut client, driver) in drivers {
        let closed = tokio::time::timeout(Duration::from_secs(10), driver).await;
        assert!(closed.is_ok(), "a connection still open 10 s after its sessions ended\n{}", gw.logs());
        let refused = std::future::poll_fn(|cx| client.poll_ready(cx)).await;
        assert!(refused.is_err(), "a closed connection takes no new stream");
    }
    eprintln!("connections closed {:?} after the last session", last.elapsed());
}

/// `tls.websocket_over_http2` is read per connection: a SIGHUP turns it on for new ones.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_turns_websocket_over_http2_on_for_new_connections() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = write_self_signed_cert(dir.path());
    let ws = WsBackend::start("ws");
    let port = free_port();
    let config = |on: bool| {
        Config::new()
            .listener(Listener::on(port).tls(Tls::new(&cert, &key).websocket_over_http2(on)))
            .upstream("ws", Upstream::one(ws.addr()))
            .route(Route::to("ws"))
    };
    let gw = Wsgate::start_and_wait(&config(false), &[port]);
    let refused = h2_ws_connect(port, &cert, "/ws", &[]).await.expect_err("not offered");
    assert!(matches!(refused, H2WsError::NoExtendedConnect), "{refused}");

    gw.write_config(&config(true));
    gw.signal("HUP");
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut ws = loop {
        match h2_ws_connect(port, &cert, "/ws", &[]).await {
            Ok((_, ws)) => break ws,
            Err(H2WsError::NoExtendedConnect) => {}
            Err(e) => panic!("{e}\n{}", gw.logs()),
        }
        assert!(Instant::now() < deadline, "still not offered 5 s after SIGHUP\n{}", gw.logs());
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    timed_echo(&mut ws, "after the reload").await.unwrap();
}

/// Tiny messages into streams wsgate is not reading (throttled clients): each stream buffers
/// a window's worth of 16-byte DATA frames (16,384 of them), which h2 charges to the
/// connection's small-frame budget. Three such streams leave the connection up: a session
/// beside them still echoes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_full_of_tiny_frames_do_not_get_the_connection_closed() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = write_self_signed_cert(dir.path());
    let ws = WsBackend::start("ws");
    let port = free_port();
    let throttled = WebSocket::new().client_messages_per_second(1.0, 1.0);
    let cfg =
        h2_ws_gateway(port, &cert, &key, ws.addr()).route(Route::to("ws").path_prefix("/slow").websocket(throttled));
    let gw = Wsgate::start_and_wait(&cfg, &[port]);
    let mut client = h2_ws_client(port, &cert).await;

    let mut writers = Vec::new();
    for _ in 0..STALLED_TINY_STREAMS {
        let (_, stalled) = h2_ws_connect_on(&mut client, port, "/slow", &[]).await.expect("a throttled session");
        let sent = Arc::new(AtomicU64::new(0));
        let (mut sink, unread) = stalled.split();
        let counter = sent.clone();
        let writer = tokio::spawn(async move {
            for _ in 0..100_000 {
                if sink.send(Message::text("0123456789")).await.is_err() {
                    return;
                }
                counter.fetch_add(1, Ordering::Relaxed);
            }
        });
        writers.push((writer, sent, unread));
    }
    // Every writer stalls (no progress for 500 ms) after more than a window of frames.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut last = vec![(0, Instant::now()); writers.len()];
    loop {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let mut stalled = 0;
        for ((_, sent, _), (count, since)) in writers.iter().zip(last.iter_mut()) {
            let now = sent.load(Ordering::Relaxed);
            if now != *count {
                (*count, *since) = (now, Instant::now());
            } else if since.elapsed() > Duration::from_millis(500) {
                stalled += 1;
            }
        }
        if stalled == writers.len() {
            break;
        }
        assert!(Instant::now() < deadline, "writers never stalled: {last:?}");
    }
    let frames: Vec<u64> = last.iter().map(|(count, _)| *count).collect();
    eprintln!("tiny frames sent per throttled stream before it stalled: {frames:?}");
    assert!(frames.iter().all(|&n| n > 16_000), "a stream window's worth each: {frames:?}");

    let (_, mut beside) = h2_ws_connect_on(&mut client, port, "/ws", &[])
        .await
        .unwrap_or_else(|e| panic!("the connection is gone: {e}\n{}", gw.logs()));
    timed_echo(&mut beside, "still here").await.unwrap();
    for (writer, _, _) in writers {
        writer.abort();
    }
}

/// How many streams `streams_full_of_tiny_frames_do_not_get_the_connection_closed` stalls.
const STALLED_TINY_STREAMS: usize = 3;
