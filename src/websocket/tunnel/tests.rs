//! The tunnel over in-memory streams: what each peer receives, and the session's stats.
use super::*;
use crate::websocket::frames::Rules;
use pingora_prometheus::prometheus::IntCounter;
use tokio::io::{duplex, AsyncReadExt, AsyncWriteExt};

pub(super) fn direction(sender: Initiator) -> Direction {
    let counter = || IntCounter::new("test", "test").unwrap();
    let (client, backend) = Rules::session(super::super::frames::Extensions::None);
    let rules = if sender == Initiator::Client { client } else { backend };
    Direction {
        sender,
        meters: Meters { bytes: counter(), messages: counter() },
        max_message: None,
        rules,
        send_timeout: Duration::from_secs(5),
        rate: None,
    }
}

pub(super) fn endpoint(stream: tokio::io::DuplexStream, early: &[u8]) -> Endpoint {
    Endpoint { stream: Box::new(stream), early: early.to_vec() }
}

async fn tunnel(
    client: tokio::io::DuplexStream,
    backend: tokio::io::DuplexStream,
    prefix: &'static [u8],
    idle: Duration,
) -> TunnelStats {
    let (up, down) = (direction(Initiator::Client), direction(Initiator::Backend));
    run(endpoint(client, b""), endpoint(backend, prefix), &up, &down, ends(idle, std::future::pending::<Departure>()))
        .await
}

use crate::websocket::frames::{close_frame, FrameEvent, FrameReader};

pub(super) fn ends<F>(idle_timeout: Duration, ending: F) -> Ends<F> {
    Ends { idle_timeout, keepalive: None, ending, card: crate::websocket::card::Card::for_tests() }
}

/// A masked text frame, as a client sends it.
pub(super) fn client_text(text: &[u8]) -> Vec<u8> {
    let key = [1, 2, 3, 4];
    let mut frame = vec![0x81, 0x80 | text.len() as u8];
    frame.extend_from_slice(&key);
    frame.extend(text.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
    frame
}

/// An unmasked frame, as a server sends it.
pub(super) fn server_frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mut frame = vec![0x80 | opcode];
    match payload.len() {
        n @ 0..=125 => frame.push(n as u8),
        n => {
            frame.push(126);
            frame.extend_from_slice(&(n as u16).to_be_bytes());
        }
    }
    frame.extend_from_slice(payload);
    frame
}

/// Reads `peer` until a Close frame (or the end of the stream): every event seen and
/// whether the stream then ended.
pub(super) async fn read_until_close(peer: &mut tokio::io::DuplexStream) -> (Vec<FrameEvent>, Vec<u8>) {
    let (mut reader, mut events, mut bytes) = (FrameReader::new(), Vec::new(), Vec::new());
    while !events.iter().any(|e| matches!(e, FrameEvent::Close { .. })) {
        let mut chunk = [0u8; 4096];
        let n = tokio::time::timeout(Duration::from_secs(5), peer.read(&mut chunk))
            .await
            .expect("a Close in time")
            .unwrap();
        if n == 0 {
            break;
        }
        bytes.extend_from_slice(&chunk[..n]);
        reader.feed(&chunk[..n], |_, e| events.push(e));
    }
    (events, bytes)
}

pub(super) async fn at_eof(peer: &mut tokio::io::DuplexStream) -> bool {
    let mut rest = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), peer.read_to_end(&mut rest)).await;
    matches!(read, Ok(Ok(_))) && rest.is_empty()
}

#[tokio::test]
async fn copies_both_ways_and_sends_the_early_bytes_first() {
    let (client, mut client_peer) = duplex(1024);
    let (backend, mut backend_peer) = duplex(1024);
    let hello = server_frame(0x1, b"hello");
    let early: &'static [u8] = Box::leak(hello.clone().into_boxed_slice());
    let tunnel = tokio::spawn(tunnel(client, backend, early, Duration::from_secs(5)));
    let mut got = vec![0u8; hello.len()];
    client_peer.read_exact(&mut got).await.unwrap();
    assert_eq!(got, hello);
    let ping = client_text(b"ping");
    client_peer.write_all(&ping).await.unwrap();
    let mut got = vec![0u8; ping.len()];
    backend_peer.read_exact(&mut got).await.unwrap();
    assert_eq!(got, ping);
    drop(client_peer);
    drop(backend_peer);
    let stats = tunnel.await.unwrap();
    assert_eq!((stats.client_to_backend_bytes, stats.backend_to_client_bytes), (ping.len() as u64, hello.len() as u64));
    assert_eq!(
        (stats.client_to_backend_messages, stats.backend_to_client_messages),
        (1, 1),
        "early bytes are frames too"
    );
}

/// Early bytes that end inside a frame: the reader goes on from where they stopped.
#[tokio::test]
async fn a_frame_split_between_the_early_bytes_and_the_first_read_is_one_frame() {
    let (client, mut client_peer) = duplex(1 << 16);
    let (backend, mut backend_peer) = duplex(1 << 16);
    let wire = [server_frame(0x1, b"hi"), server_frame(0x2, &[7; 3000])].concat();
    let early: &'static [u8] = Box::leak(wire[..100].to_vec().into_boxed_slice());
    let task = tokio::spawn(tunnel(client, backend, early, Duration::from_secs(5)));
    backend_peer.write_all(&wire[100..]).await.unwrap();
    backend_peer.write_all(&close_frame(1000, "", None)).await.unwrap();
    let (events, bytes) = read_until_close(&mut client_peer).await;
    assert!(bytes.starts_with(&wire), "both frames arrive whole");
    assert!(events.contains(&FrameEvent::Close { code: Some(1000) }), "{events:?}");
    drop((client_peer, backend_peer));
    let stats = tokio::time::timeout(Duration::from_secs(15), task).await.unwrap().unwrap();
    assert_eq!(stats.backend_to_client_messages, 2);
    assert_eq!(stats.protocol_error, None);
}

#[tokio::test]
async fn counts_messages_and_the_first_close_and_forwards_nothing_after_a_close() {
    let (client, mut client_peer) = duplex(4096);
    let (backend, mut backend_peer) = duplex(4096);
    let task = tokio::spawn(tunnel(client, backend, b"", Duration::from_secs(5)));
    // Client: two masked text frames, then its Close 1000.
    let mut wire = [client_text(b"hi"), client_text(b"hi")].concat();
    wire.extend(close_frame(1000, "", Some([9, 9, 9, 9])));
    client_peer.write_all(&wire).await.unwrap();
    let mut got = vec![0u8; wire.len()];
    backend_peer.read_exact(&mut got).await.unwrap();
    assert_eq!(got, wire, "bytes pass unchanged");
    // Backend: its Close reply, then more frames (64 KiB of empty Closes, garbage): after
    // a Close nothing may follow (§5.5.1), so none of it passes and none is kept.
    let reply = close_frame(1000, "", None);
    let mut after = [0x88u8, 0x00].repeat(32 * 1024);
    after.extend_from_slice(&[0x83, 0x00, 0xff]);
    backend_peer.write_all(&[reply.clone(), after].concat()).await.unwrap();
    drop(backend_peer);
    let mut got = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), client_peer.read_to_end(&mut got)).await.unwrap().unwrap();
    assert_eq!(got, reply, "one Close, then the end of the stream");
    let stats = tokio::time::timeout(Duration::from_secs(5), task).await.expect("ends once both closed").unwrap();
    assert_eq!(stats.client_to_backend_messages, 2);
    assert_eq!(stats.backend_to_client_messages, 0);
    assert_eq!(stats.first_close, Some((Initiator::Client, Some(1000))));
    assert_eq!(stats.protocol_error, None);
    assert_eq!(stats.client_to_backend_bytes, wire.len() as u64);
}

/// §7.1.7 for each way a client can break framing: nothing from the bad frame on
/// reaches the backend, which gets Close 1001; the client gets Close 1002 and its
/// connection closed.
#[tokio::test]
async fn a_client_that_breaks_framing_gets_1002_and_the_backend_1001() {
    let key = [1, 2, 3, 4];
    let masked = |b0: u8, len: u8| [vec![b0, 0x80 | len], key.to_vec(), vec![0; len as usize]].concat();
    let bad_frames: Vec<(&str, Vec<u8>)> = vec![
        ("reserved opcode", masked(0x83, 0)),
        ("fragmented control frame", masked(0x09, 0)),
        ("control payload over 125 bytes", [vec![0x89, 0x80 | 126, 0, 126], key.to_vec(), vec![0; 126]].concat()),
        ("1-byte close body", masked(0x88, 1)),
        ("continuation out of order", masked(0x80, 1)),
        ("64-bit length with MSB set", [vec![0x82, 0x80 | 127, 0x80], vec![0; 7], key.to_vec()].concat()),
        ("RSV bits without an extension", masked(0xC1, 1)),
        ("unmasked client frame", vec![0x81, 0x01, b'x']),
    ];
    for (case, bad) in bad_frames {
        let (client, mut client_peer) = duplex(1 << 16);
        let (backend, mut backend_peer) = duplex(1 << 16);
        let task = tokio::spawn(tunnel(client, backend, b"", Duration::from_secs(30)));
        let good = client_text(b"ok");
        // A big message behind the bad frame must not pass either.
        let behind = [vec![0x82, 0x80 | 126, 0x10, 0], key.to_vec(), vec![5; 4096]].concat();
        client_peer.write_all(&[good.clone(), bad, behind].concat()).await.unwrap();
        let (events, bytes) = read_until_close(&mut backend_peer).await;
        assert!(bytes.starts_with(&good), "{case}: the frame before passes");
        assert_eq!(
            events.iter().filter(|e| matches!(e, FrameEvent::Header { .. })).count(),
            2,
            "{case}: the good frame, then our Close: {events:?}"
        );
        assert!(events.contains(&FrameEvent::Close { code: Some(1001) }), "{case}: {events:?}");
        let (to_client, _) = read_until_close(&mut client_peer).await;
        assert_eq!(to_client.last(), Some(&FrameEvent::Close { code: Some(1002) }), "{case}");
        assert!(at_eof(&mut client_peer).await, "{case}: the offender's connection is closed after its 1002");
        backend_peer.write_all(&close_frame(1001, "", None)).await.unwrap();
        drop(client_peer);
        let stats =
            tokio::time::timeout(Duration::from_secs(5), task).await.expect("ends once the backend answered").unwrap();
        assert_eq!(stats.protocol_error, Some(Initiator::Client), "{case}");
        assert_eq!(stats.first_close, Some((Initiator::Proxy, Some(1002))), "{case}");
        assert_eq!(stats.client_to_backend_messages, 1, "{case}");
    }
}

#[tokio::test]
async fn a_backend_that_masks_its_frames_gets_1002_and_the_client_1001() {
    let (client, mut client_peer) = duplex(4096);
    let (backend, mut backend_peer) = duplex(4096);
    let task = tokio::spawn(tunnel(client, backend, b"", Duration::from_secs(30)));
    backend_peer.write_all(&client_text(b"masked")).await.unwrap();
    let (to_client, _) = read_until_close(&mut client_peer).await;
    assert_eq!(
        to_client,
        [
            FrameEvent::Header {
                opcode: crate::websocket::frames::OpCode::Close,
                fin: true,
                masked: false,
                payload_len: 12,
                message_len: 12
            },
            FrameEvent::Close { code: Some(1001) }
        ]
    );
    let (to_backend, _) = read_until_close(&mut backend_peer).await;
    assert_eq!(to_backend.last(), Some(&FrameEvent::Close { code: Some(1002) }));
    client_peer.write_all(&close_frame(1001, "", Some([1, 1, 1, 1]))).await.unwrap();
    drop(backend_peer);
    let stats = tokio::time::timeout(Duration::from_secs(5), task).await.unwrap().unwrap();
    assert_eq!(stats.protocol_error, Some(Initiator::Backend));
}

/// Draining, then an oversized message from the client: the backend gets one Close
/// (1001), never a second (§5.5.1).
#[tokio::test]
async fn one_close_per_direction_when_draining_meets_an_oversized_message() {
    let (client, mut client_peer) = duplex(1 << 16);
    let (backend, mut backend_peer) = duplex(1 << 16);
    let (drain, drained) = tokio::sync::oneshot::channel::<()>();
    let up = Direction { max_message: Some(100), ..direction(Initiator::Client) };
    let down = direction(Initiator::Backend);
    let task = tokio::spawn(async move {
        let ending = async move {
            let _ = drained.await;
            Departure::Drain
        };
        run(endpoint(client, b""), endpoint(backend, b""), &up, &down, ends(Duration::from_secs(30), ending)).await
    });
    drain.send(()).unwrap();
    let (to_client, _) = read_until_close(&mut client_peer).await;
    assert_eq!(to_client.last(), Some(&FrameEvent::Close { code: Some(1001) }));
    let (to_backend, _) = read_until_close(&mut backend_peer).await;
    assert_eq!(to_backend.last(), Some(&FrameEvent::Close { code: Some(1001) }));
    let big = [vec![0x82, 0x80 | 126, 0, 200], vec![1, 2, 3, 4], vec![0; 200]].concat();
    client_peer.write_all(&big).await.unwrap();
    client_peer.write_all(&close_frame(1001, "", Some([1, 1, 1, 1]))).await.unwrap();
    backend_peer.write_all(&close_frame(1001, "", None)).await.unwrap();
    let stats = tokio::time::timeout(Duration::from_secs(5), task).await.expect("ends once both answered").unwrap();
    assert_eq!(stats.first_close, Some((Initiator::Proxy, Some(1001))));
    assert!(at_eof(&mut backend_peer).await, "nothing after the one Close");
}

#[tokio::test]
async fn an_oversized_message_never_reaches_the_backend_and_both_sides_get_1009() {
    let (client, mut client_peer) = duplex(1 << 16);
    let (backend, mut backend_peer) = duplex(1 << 16);
    let up = Direction { max_message: Some(100), ..direction(Initiator::Client) };
    let down = direction(Initiator::Backend);
    let task = tokio::spawn(async move {
        run(
            endpoint(client, b""),
            endpoint(backend, b""),
            &up,
            &down,
            ends(Duration::from_secs(5), std::future::pending()),
        )
        .await
    });
    // A 50-byte text message passes; a 200-byte binary one (masked, 16-bit length) does
    // not, and its header arrives cut in two reads.
    let small = [&[0x81u8, 0x80 | 50, 0, 0, 0, 0][..], &[b'a'; 50][..]].concat();
    let big_header = [0x82u8, 0x80 | 126, 0, 200, 0, 0, 0, 0];
    client_peer.write_all(&small).await.unwrap();
    client_peer.write_all(&big_header[..3]).await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    client_peer.write_all(&big_header[3..]).await.unwrap();
    client_peer.write_all(&[b'x'; 200]).await.unwrap();

    let mut to_backend = Vec::new();
    let mut reader = FrameReader::new();
    let mut events = Vec::new();
    while !events.iter().any(|e| matches!(e, FrameEvent::Close { .. })) {
        let mut chunk = [0u8; 512];
        let n = tokio::time::timeout(Duration::from_secs(5), backend_peer.read(&mut chunk)).await.unwrap().unwrap();
        assert!(n > 0, "backend stream ended before a Close");
        to_backend.extend_from_slice(&chunk[..n]);
        reader.feed(&chunk[..n], |_, e| events.push(e));
    }
    assert!(to_backend.starts_with(&small), "the small message passes whole");
    // (Not a byte search: the masked Close may contain any byte.)
    assert!(
        !events.iter().any(|e| matches!(e, FrameEvent::Header { payload_len: 200, .. })),
        "nothing of the oversized message reaches the backend: {events:?}"
    );
    assert_eq!(
        events.iter().filter(|e| matches!(e, FrameEvent::Header { .. })).count(),
        2,
        "the small message, then our Close: {events:?}"
    );
    assert!(events.contains(&FrameEvent::Close { code: Some(1009) }), "{events:?}");
    let mut to_client = [0u8; 64];
    let n = tokio::time::timeout(Duration::from_secs(5), client_peer.read(&mut to_client)).await.unwrap().unwrap();
    let mut client_events = Vec::new();
    FrameReader::new().feed(&to_client[..n], |_, e| client_events.push(e));
    assert!(client_events.contains(&FrameEvent::Close { code: Some(1009) }), "{client_events:?}");
    drop((client_peer, backend_peer));
    let stats = tokio::time::timeout(Duration::from_secs(15), task).await.unwrap().unwrap();
    assert_eq!(stats.first_close, Some((Initiator::Proxy, Some(1009))));
}

/// A client that stops reading while the backend sends: dropped after send_timeout, and
/// the backend is told the session is going away.
#[tokio::test]
async fn a_peer_that_accepts_nothing_for_send_timeout_is_dropped_and_the_other_gets_1001() {
    let (client, client_peer) = duplex(1024);
    let (backend, mut backend_peer) = duplex(1 << 17);
    let timeout = Duration::from_millis(200);
    let up = Direction { send_timeout: timeout, ..direction(Initiator::Client) };
    let down = Direction { send_timeout: timeout, ..direction(Initiator::Backend) };
    let task = tokio::spawn(async move {
        run(
            endpoint(client, b""),
            endpoint(backend, b""),
            &up,
            &down,
            ends(Duration::from_secs(30), std::future::pending()),
        )
        .await
    });
    backend_peer.write_all(&server_frame(0x2, &[0; 60_000])).await.unwrap();
    let (to_backend, _) = read_until_close(&mut backend_peer).await;
    assert_eq!(to_backend.last(), Some(&FrameEvent::Close { code: Some(1001) }));
    let stats = tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .expect("ends without waiting for the stalled client")
        .unwrap();
    assert_eq!(stats.end, TunnelEnd::SendTimeout(Initiator::Client));
    assert_eq!(stats.first_close, Some((Initiator::Proxy, Some(1001))));
    drop(client_peer);
}

#[tokio::test]
async fn ends_after_the_idle_timeout() {
    let (client, _client_peer) = duplex(64);
    let (backend, _backend_peer) = duplex(64);
    let stats = tokio::time::timeout(Duration::from_secs(5), tunnel(client, backend, b"", Duration::from_millis(100)))
        .await
        .expect("idle tunnel must end by itself");
    assert_eq!(stats.end, TunnelEnd::IdleTimeout);
}

/// The Pingora 0.9.1 deadlock shape: both peers write a lot before reading anything,
/// through small buffers. A single-loop copier stalls here; independent pumps do not.
#[tokio::test]
async fn does_not_deadlock_when_both_sides_write_at_once() {
    const TOTAL: usize = 4 * 1024 * 1024;
    let (client, client_peer) = duplex(4096);
    let (backend, backend_peer) = duplex(4096);
    let tunnel = tokio::spawn(tunnel(client, backend, b"", Duration::from_secs(5)));
    // One binary frame of TOTAL bytes each way (the client's masked with a zero key).
    let header = |masked: bool| {
        let mut h = vec![0x82, if masked { 0x80 | 127 } else { 127 }];
        h.extend_from_slice(&(TOTAL as u64).to_be_bytes());
        h.extend_from_slice(if masked { &[0; 4][..] } else { &[] });
        h
    };
    let blast = |peer: tokio::io::DuplexStream, header: Vec<u8>| async move {
        let (mut r, mut w) = tokio::io::split(peer);
        let writer = async move {
            w.write_all(&header).await.unwrap();
            let chunk = vec![7u8; 64 * 1024];
            for _ in 0..TOTAL / chunk.len() {
                w.write_all(&chunk).await.unwrap();
            }
            w.shutdown().await.unwrap();
        };
        let reader = async move {
            let mut sink = Vec::new();
            r.read_to_end(&mut sink).await.unwrap();
            sink.len()
        };
        tokio::join!(writer, reader).1
    };
    let both = async { tokio::join!(blast(client_peer, header(true)), blast(backend_peer, header(false))) };
    let (a, b) = tokio::time::timeout(Duration::from_secs(20), both).await.expect("tunnel stalled");
    assert_eq!((a, b), (TOTAL + 10, TOTAL + 14));
    let stats = tunnel.await.unwrap();
    assert_eq!(stats.end, TunnelEnd::Closed);
}
