//! Keepalive over in-memory streams: Pings to a silent side, its Pongs consumed, a side that
//! answers nothing found dead, Pings only between frames.
use super::tests::{client_text, direction, endpoint, ends, server_frame};
use super::*;
use crate::websocket::frames::ping_payload;
use tokio::io::{duplex, AsyncReadExt, AsyncWriteExt, DuplexStream};

fn keepalive(interval_ms: u64, timeout_ms: u64) -> Keepalive {
    Keepalive { interval: Duration::from_millis(interval_ms), timeout: Duration::from_millis(timeout_ms) }
}

fn with_pongs(mut d: Direction) -> Direction {
    d.rules.own_pongs = true;
    d
}

/// Runs a tunnel with keepalive between in-memory peers.
fn start(ka: Keepalive, idle: Duration) -> (DuplexStream, DuplexStream, tokio::task::JoinHandle<TunnelStats>) {
    let (client, client_peer) = duplex(1 << 16);
    let (backend, backend_peer) = duplex(1 << 16);
    let task = tokio::spawn(async move {
        let (up, down) = (with_pongs(direction(Initiator::Client)), with_pongs(direction(Initiator::Backend)));
        let ends = Ends { keepalive: Some(ka), ..ends(idle, std::future::pending::<Departure>()) };
        run(endpoint(client, b""), endpoint(backend, b""), &up, &down, ends).await
    });
    (client_peer, backend_peer, task)
}

/// The complete frames in `bytes`: opcode and unmasked payload.
fn frames(bytes: &[u8]) -> Vec<(u8, Vec<u8>)> {
    let (mut out, mut i) = (Vec::new(), 0);
    while i + 2 <= bytes.len() {
        let (opcode, masked, len7) = (bytes[i] & 0x0F, bytes[i + 1] & 0x80 != 0, (bytes[i + 1] & 0x7F) as usize);
        let (len, mut at) = match len7 {
            126 => (u16::from_be_bytes([bytes[i + 2], bytes[i + 3]]) as usize, i + 4),
            n => (n, i + 2),
        };
        let key = masked.then(|| [bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]]);
        at += if masked { 4 } else { 0 };
        if at + len > bytes.len() {
            break;
        }
        let payload = bytes[at..at + len].iter().enumerate().map(|(k, b)| b ^ key.map_or(0, |m| m[k % 4])).collect();
        out.push((opcode, payload));
        i = at + len;
    }
    out
}

/// A masked Pong, as a client answers a Ping.
fn client_pong(payload: &[u8]) -> Vec<u8> {
    let mut frame = client_text(payload);
    frame[0] = 0x8A;
    frame
}

/// Answers every Ping on `peer` with a Pong (masked when `client`) for `for_how_long` or
/// until the stream ends: all bytes received, and whether it ended.
async fn answer_pings(peer: &mut DuplexStream, client: bool, for_how_long: Duration) -> (Vec<u8>, bool) {
    let (mut seen, mut answered) = (Vec::new(), 0);
    let until = tokio::time::Instant::now() + for_how_long;
    let mut chunk = [0u8; 4096];
    while let Ok(Ok(n)) = tokio::time::timeout_at(until, peer.read(&mut chunk)).await {
        if n == 0 {
            return (seen, true);
        }
        seen.extend_from_slice(&chunk[..n]);
        let pings: Vec<Vec<u8>> = frames(&seen).into_iter().filter(|f| f.0 == 0x9).map(|f| f.1).collect();
        for ping in &pings[answered..] {
            let pong = if client { client_pong(ping) } else { server_frame(0xA, ping) };
            let _ = peer.write_all(&pong).await;
        }
        answered = pings.len();
    }
    (seen, false)
}

#[tokio::test]
async fn peers_that_answer_pings_stay_open_and_never_see_wsgates_pongs() {
    let (mut client, mut backend, task) = start(keepalive(50, 100), Duration::from_secs(30));
    let ((to_client, ended_c), (to_backend, ended_b)) = tokio::join!(
        answer_pings(&mut client, true, Duration::from_millis(600)),
        answer_pings(&mut backend, false, Duration::from_millis(600)),
    );
    assert!(!ended_c && !ended_b && !task.is_finished(), "a session whose peers answer stays open");
    for (name, got) in [("client", frames(&to_client)), ("backend", frames(&to_backend))] {
        assert!(got.len() >= 4, "{name} pinged about every 50 ms for 600 ms: {got:?}");
        assert!(got.iter().all(|f| f.0 == 0x9 && f.1 == ping_payload()), "{name} saw only wsgate's Pings: {got:?}");
    }
    // Another endpoint's Ping and Pong pass untouched.
    client.write_all(&client_text(b"hi")).await.unwrap();
    let mut ping = client_text(b"their ping");
    ping[0] = 0x89;
    client.write_all(&ping).await.unwrap();
    backend.write_all(&server_frame(0xA, ping_payload()[..13].as_ref())).await.unwrap();
    let (to_backend, _) = answer_pings(&mut backend, false, Duration::from_millis(100)).await;
    let (to_client, _) = answer_pings(&mut client, true, Duration::from_millis(100)).await;
    let passed =
        |f: &[(u8, Vec<u8>)]| f.iter().filter(|f| f.1.as_slice() != ping_payload()).cloned().collect::<Vec<_>>();
    assert_eq!(passed(&frames(&to_backend)), [(0x1, b"hi".to_vec()), (0x9, b"their ping".to_vec())]);
    // The backend's own Pong, then its (the test peer's) answer to the client's Ping.
    assert_eq!(passed(&frames(&to_client)), [(0xA, ping_payload()[..13].to_vec()), (0xA, b"their ping".to_vec())]);
    task.abort();
}

#[tokio::test]
async fn a_client_that_answers_nothing_is_dead_and_the_backend_gets_1001() {
    let (client, mut backend, task) = start(keepalive(100, 100), Duration::from_secs(30));
    let started = std::time::Instant::now();
    let answering = tokio::spawn(async move { answer_pings(&mut backend, false, Duration::from_secs(3)).await });
    let stats = tokio::time::timeout(Duration::from_secs(3), task).await.expect("ends").unwrap();
    let took = started.elapsed();
    assert_eq!(stats.end, TunnelEnd::DeadPeer(Initiator::Client));
    assert_eq!(stats.departure, Some(Departure::DeadPeer));
    assert!(took >= Duration::from_millis(200) && took < Duration::from_millis(600), "interval + timeout: {took:?}");
    let (to_backend, ended) = answering.await.unwrap();
    assert!(ended, "the backend's connection is closed too");
    assert_eq!(
        frames(&to_backend).last().map(|f| (f.0, f.1[..2].to_vec())),
        Some((0x8, 1001u16.to_be_bytes().to_vec()))
    );
    drop(client);
}

#[tokio::test]
async fn a_silent_backend_is_dead_and_the_client_gets_1001() {
    let (mut client, backend, task) = start(keepalive(100, 100), Duration::from_secs(30));
    let (to_client, ended) = answer_pings(&mut client, true, Duration::from_secs(3)).await;
    assert!(ended);
    assert_eq!(
        frames(&to_client).last().map(|f| (f.0, f.1[..2].to_vec())),
        Some((0x8, 1001u16.to_be_bytes().to_vec()))
    );
    let stats = tokio::time::timeout(Duration::from_secs(3), task).await.expect("ends").unwrap();
    assert_eq!(stats.end, TunnelEnd::DeadPeer(Initiator::Backend));
    drop(backend);
}

/// A backend streaming large messages in small pieces to a slow client that answers Pings:
/// every Ping goes in between two messages, never inside one.
#[tokio::test]
async fn pings_never_split_a_frame() {
    let (mut client, mut backend, task) = start(keepalive(10, 60_000), Duration::from_secs(30));
    let writer = tokio::spawn(async move {
        for i in 0..20u8 {
            let frame = server_frame(0x2, &[i; 60_000]);
            for piece in frame.chunks(7_000) {
                backend.write_all(piece).await.unwrap();
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        }
        backend
    });
    let (mut seen, mut answered) = (Vec::new(), 0);
    let mut chunk = [0u8; 8192];
    while frames(&seen).iter().filter(|f| f.0 == 0x2).count() < 20 {
        let n = tokio::time::timeout(Duration::from_secs(10), client.read(&mut chunk)).await.expect("data").unwrap();
        if n == 0 {
            panic!("ended: {:?}", task.await);
        }
        seen.extend_from_slice(&chunk[..n]);
        let pings = frames(&seen).iter().filter(|f| f.0 == 0x9).count();
        for _ in answered..pings {
            client.write_all(&client_pong(ping_payload())).await.unwrap();
        }
        answered = pings;
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let got = frames(&seen);
    let data: Vec<_> = got.iter().filter(|f| f.0 == 0x2).collect();
    assert!(data.iter().enumerate().all(|(i, f)| f.1.len() == 60_000 && f.1.iter().all(|b| *b == i as u8)));
    assert!(got.iter().filter(|f| f.0 == 0x9).count() >= 2, "pinged while the backend streamed: {}", got.len());
    let _ = writer.await;
    assert!(!task.is_finished(), "{:?}", task.await);
    task.abort();
}
