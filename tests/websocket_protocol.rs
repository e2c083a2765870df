//! The WebSocket protocol after the 101, through the real binary: every byte of each
//! direction is read as RFC 6455 frames exactly once, from the first byte after the
//! handshake (bytes that arrive with either side's handshake included); a peer that breaks
//! framing fails the session (§7.1.7: Close 1002 to it, 1001 to the other, nothing from
//! the bad frame on forwarded); each peer gets at most one Close (§5.5.1).
mod common;
use common::*;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const MAX_MESSAGE: usize = 1000;
const KEY: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

struct Gate {
    gw: Wsgate,
    addr: SocketAddr,
    metrics: SocketAddr,
}

/// wsgate with one WebSocket route (`/ws`, messages up to `MAX_MESSAGE`) to `backend`,
/// and the drain `window` given (`None`: the default).
fn gate(backend: SocketAddr, drain_window: Option<&str>) -> Gate {
    let (port, mport) = (free_port(), free_port());
    let mut cfg = Config::new().listen(port).metrics(mport).upstream("chat", Upstream::one(backend)).route(
        Route::to("chat")
            .name("chat")
            .path_prefix("/ws")
            .websocket(WebSocket::new().max_message_bytes(MAX_MESSAGE as u64)),
    );
    if let Some(window) = drain_window {
        cfg = cfg.drain_window(window);
    }
    let gw = Wsgate::start_and_wait(&cfg, &[port, mport]);
    Gate {
        gw,
        addr: format!("127.0.0.1:{port}").parse().unwrap(),
        metrics: format!("127.0.0.1:{mport}").parse().unwrap(),
    }
}

/// A masked frame with an arbitrary first byte and payload length field (as declared).
fn masked(b0: u8, payload: &[u8]) -> Vec<u8> {
    let mut f = ws_frame(b0 & 0x0F, payload, true);
    f[0] = b0;
    f
}

/// Reads frames until a Close: its code (`None` for an empty one).
async fn close_code(s: &mut TcpStream) -> Option<u16> {
    loop {
        let (b0, payload) = read_ws_frame(s).await.expect("a Close frame");
        if b0 & 0x0F == 0x8 {
            return (payload.len() >= 2).then(|| u16::from_be_bytes([payload[0], payload[1]]));
        }
    }
}

async fn at_eof(s: &mut TcpStream) -> bool {
    let mut rest = Vec::new();
    matches!(tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut rest)).await, Ok(Ok(0)))
}

/// Each way a client can break §5 framing, as in the frame parser's malformed table: the
/// bytes, and how many of their frames are valid and pass before the bad one.
fn malformed_client_frames() -> Vec<(&'static str, Vec<u8>, usize)> {
    let control_126 = [vec![0x89, 0x80 | 126, 0, 126], KEY.to_vec(), vec![0; 126]].concat();
    let msb_length = [vec![0x82, 0x80 | 127, 0x80, 0, 0, 0, 0, 0, 0, 1], KEY.to_vec()].concat();
    let second_opener = [masked(0x01, b"part"), masked(0x81, b"new")].concat();
    vec![
        ("reserved-opcode-3", masked(0x83, b""), 0),
        ("reserved-opcode-b", masked(0x8B, b""), 0),
        ("fragmented-ping", masked(0x09, b""), 0),
        ("control-over-125", control_126, 0),
        ("one-byte-close-body", masked(0x88, &[3]), 0),
        ("continuation-first", masked(0x80, b"x"), 0),
        ("data-frame-inside-a-message", second_opener, 1),
        ("64-bit-length-msb", msb_length, 0),
        ("rsv1-without-deflate", masked(0xC1, b"x"), 0),
        ("unmasked-client-frame", ws_frame(0x1, b"x", false), 0),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_client_frame_that_breaks_rfc6455_fails_the_session_with_1002() {
    let backend = WsRecorder::start(Vec::new());
    let g = gate(backend.addr(), None);
    let cases = malformed_client_frames();
    for (case, bad, valid) in &cases {
        let path = format!("/ws/{case}");
        let good = masked(0x81, b"before");
        // A well-formed message over max_message_bytes behind the bad frame: with the old
        // byte tunnel it reached the backend whole.
        let behind = masked(0x82, &vec![7; 200 * 1024]);
        let mut s = ws_upgraded(g.addr, &path, b"").await;
        s.write_all(&[good.clone(), bad.clone(), behind].concat()).await.unwrap();
        assert_eq!(close_code(&mut s).await, Some(1002), "{case}");
        assert!(at_eof(&mut s).await, "{case}: the offender's connection is closed after its Close");
        drop(s);
        let got = backend.ended_session(&path).await;
        assert!(got.bytes.starts_with(&good), "{case}: the frame before the bad one passes");
        assert_eq!(
            got.frame_count(),
            2 + valid,
            "{case}: the valid frames, then wsgate's Close, nothing else: {:?}",
            got.events()
        );
        assert_eq!(got.close_codes(), [Some(1001)], "{case}");
    }
    let n = cases.len() as f64;
    // The close is counted last of a session's figures.
    let closes = [("route", "chat"), ("initiator", "proxy"), ("code", "1002")];
    let text = wait_for(g.metrics, "wsgate_websocket_closes_total", &closes, Some(n)).await;
    let errors = [("route", "chat"), ("direction", "client_to_backend")];
    assert_eq!(sample(&text, "wsgate_websocket_protocol_errors_total", &errors), Some(n));
    drop(g.gw);
}

/// The backend's first bytes come with its 101; a masked one breaks §5.1.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_whose_greeting_is_masked_gets_1002_and_the_client_1001() {
    let backend = WsRecorder::start(masked(0x81, b"hello from a confused server"));
    let g = gate(backend.addr(), None);
    let mut s = ws_upgraded(g.addr, "/ws/masked-greeting", b"").await;
    assert_eq!(close_code(&mut s).await, Some(1001), "the client is told the session is going away");
    s.write_all(&masked(0x88, &1001u16.to_be_bytes())).await.unwrap();
    assert!(at_eof(&mut s).await);
    let got = backend.ended_session("/ws/masked-greeting").await;
    assert_eq!(got.close_codes(), [Some(1002)]);
    wait_for(
        g.metrics,
        "wsgate_websocket_protocol_errors_total",
        &[("route", "chat"), ("direction", "backend_to_client")],
        Some(1.0),
    )
    .await;
}

/// Frames a client sends in the same write as its upgrade request are its first frames:
/// never dropped (a frame cut at that boundary would desynchronise everything after it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frames_sent_behind_the_handshake_reach_the_backend_first() {
    let backend = WsRecorder::start(Vec::new());
    let g = gate(backend.addr(), None);
    let early = [masked(0x81, b"sent with the handshake"), masked(0x82, &[9; 900])].concat();
    // The second frame is cut: its rest follows once the 101 is in.
    let cut = early.len() - 500;
    let mut s = ws_upgraded(g.addr, "/ws/early", &early[..cut]).await;
    s.write_all(&early[cut..]).await.unwrap();
    s.write_all(&masked(0x88, &1000u16.to_be_bytes())).await.unwrap();
    assert_eq!(close_code(&mut s).await, Some(1000), "the backend's answer");
    drop(s);
    let got = backend.ended_session("/ws/early").await;
    assert!(got.bytes.starts_with(&early), "the early frames arrive first and whole");
    assert_eq!(got.close_codes(), [Some(1000)]);
    let text = scrape(g.metrics).await;
    assert_eq!(
        sample(&text, "wsgate_websocket_messages_total", &[("route", "chat"), ("direction", "client_to_backend")]),
        Some(2.0)
    );
    assert_eq!(sample(&text, "wsgate_websocket_protocol_errors_total", &[]), None, "{text}");
}

/// After a Close nothing may follow: 32,768 empty Close frames in one write reach the
/// backend as one, and wsgate keeps nothing per frame.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_close_frames_reaches_the_backend_as_one() {
    let backend = WsRecorder::start(Vec::new());
    let g = gate(backend.addr(), None);
    let mut s = ws_upgraded(g.addr, "/ws/closes", b"").await;
    let burst = masked(0x88, b"").repeat(32 * 1024);
    s.write_all(&burst).await.unwrap();
    assert_eq!(close_code(&mut s).await, Some(1000), "the backend's answer");
    drop(s);
    let got = backend.ended_session("/ws/closes").await;
    assert_eq!(got.close_codes(), [None], "one empty Close");
    assert_eq!(got.bytes.len(), 6, "and nothing after it");
}

/// A stopping wsgate sends each session one Close 1001 at a frame boundary. The greeting
/// (a frame larger than one read, sent with the 101) must be read as frames for that
/// boundary to be found; a message over the limit after the drain's Close must not bring
/// the backend a second Close.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn draining_closes_each_session_once_whatever_came_before_or_after() {
    let greeting = [ws_frame(0x2, &vec![5; 150 * 1024], false), ws_frame(0x1, b"welcome", false)].concat();
    let backend = WsRecorder::start(greeting.clone());
    let g = gate(backend.addr(), Some("1s"));
    let mut s = ws_upgraded(g.addr, "/ws/drain", b"").await;
    let mut got = vec![0u8; greeting.len()];
    tokio::time::timeout(Duration::from_secs(5), s.read_exact(&mut got)).await.expect("the greeting in time").unwrap();
    assert!(got == greeting, "the greeting arrives whole");

    g.gw.signal("TERM");
    assert_eq!(close_code(&mut s).await, Some(1001), "a Close 1001, not a bare TCP close\n{}", g.gw.logs());
    let before = backend.closed_session("/ws/drain").await;
    assert_eq!(before.close_codes(), [Some(1001)]);
    // Over max_message_bytes, then the client's Close reply.
    s.write_all(&masked(0x82, &vec![1; 2 * MAX_MESSAGE])).await.unwrap();
    s.write_all(&masked(0x88, &1001u16.to_be_bytes())).await.unwrap();
    assert!(at_eof(&mut s).await);
    let after = backend.ended_session("/ws/drain").await;
    assert_eq!(after.close_codes(), [Some(1001)], "one Close to the backend, ever");
    assert_eq!(after.frame_count(), 1);
    assert!(g.gw.wait_exit(Duration::from_secs(10)).is_some(), "wsgate exits once the session ended");
}
