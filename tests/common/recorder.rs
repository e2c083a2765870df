//! `WsRecorder`: a WebSocket backend at the byte level. It accepts every upgrade with a
//! valid 101 (plus a greeting of its own in the same write, if given), records every byte
//! each session receives, answers the first Close it reads with a Close 1000, and never
//! echoes. Tests read what a backend really got, frame by frame, with wsgate's own
//! `FrameReader`.
#![allow(dead_code)]

use super::backends::read_head;
use super::raw::{ws_accept, RawBackend};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use wsgate::websocket::frames::{FrameEvent, FrameReader};

/// A client connection upgraded on `path`, with `behind` sent in the same write as the
/// request; the 101's head has been read, nothing after it.
pub async fn ws_upgraded(addr: SocketAddr, path: &str, behind: &[u8]) -> tokio::net::TcpStream {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(&[super::raw::ws_upgrade_request(path, "x").as_bytes(), behind].concat()).await.unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8; 1];
        let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut byte)).await.expect("a 101 in time").unwrap();
        assert_eq!(n, 1, "closed before the 101 ended: {:?}", String::from_utf8_lossy(&head));
        head.push(byte[0]);
    }
    assert!(head.starts_with(b"HTTP/1.1 101"), "{:?}", String::from_utf8_lossy(&head));
    s
}

/// What one session's backend side received after its handshake.
#[derive(Debug, Default, Clone)]
pub struct Recorded {
    /// The handshake's request target.
    pub path: String,
    /// Every byte after the request head.
    pub bytes: Vec<u8>,
    /// wsgate closed the connection.
    pub ended: bool,
}

impl Recorded {
    /// The frame events of `bytes` (any masking, any RSV bits).
    pub fn events(&self) -> Vec<FrameEvent> {
        let mut events = Vec::new();
        FrameReader::new().feed(&self.bytes, |_, e| events.push(e));
        events
    }
    /// The codes of the Close frames received, in order.
    pub fn close_codes(&self) -> Vec<Option<u16>> {
        self.events()
            .into_iter()
            .filter_map(|e| if let FrameEvent::Close { code } = e { Some(code) } else { None })
            .collect()
    }
    pub fn frame_count(&self) -> usize {
        self.events().iter().filter(|e| matches!(e, FrameEvent::Header { .. })).count()
    }
}

pub struct WsRecorder {
    backend: RawBackend,
    sessions: Arc<Mutex<Vec<Arc<Mutex<Recorded>>>>>,
}

impl WsRecorder {
    /// A recorder whose 101 is followed, in the same write, by `greeting`.
    pub fn start(greeting: Vec<u8>) -> WsRecorder {
        let sessions: Arc<Mutex<Vec<Arc<Mutex<Recorded>>>>> = Arc::default();
        let all = sessions.clone();
        let greeting = Arc::new(greeting);
        let backend = RawBackend::start(move |mut s| {
            let (all, greeting) = (all.clone(), greeting.clone());
            async move {
                let mut buf = Vec::new();
                let Ok(Some(head)) = read_head(&mut s, &mut buf).await else { return };
                let key = head.headers.iter().find(|(n, _)| n == "sec-websocket-key").map(|(_, v)| v.clone());
                let Some(key) = key else { return }; // a health check
                let record = Arc::new(Mutex::new(Recorded {
                    path: head.path.clone(),
                    bytes: buf[head.len..].to_vec(),
                    ended: false,
                }));
                all.lock().unwrap().push(record.clone());
                let mut answer = format!("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {}\r\n\r\n", ws_accept(&key)).into_bytes();
                answer.extend_from_slice(&greeting);
                // Writes and reads at once: a large greeting that the client does not read
                // must not stop the recording.
                let (mut rd, mut wr) = tokio::io::split(s);
                let (reply, replied) = tokio::sync::oneshot::channel::<()>();
                tokio::spawn(async move {
                    if wr.write_all(&answer).await.is_ok() && replied.await.is_ok() {
                        let _ = wr.write_all(&[0x88, 0x02, 0x03, 0xE8]).await;
                    }
                });
                let mut reply = Some(reply);
                let mut chunk = vec![0u8; 64 * 1024];
                loop {
                    let n = rd.read(&mut chunk).await.unwrap_or(0);
                    let closed = {
                        let mut r = record.lock().unwrap();
                        r.ended = n == 0;
                        r.bytes.extend_from_slice(&chunk[..n]);
                        !r.close_codes().is_empty()
                    };
                    if n == 0 {
                        return;
                    }
                    if closed {
                        if let Some(reply) = reply.take() {
                            let _ = reply.send(());
                        }
                    }
                }
            }
        });
        WsRecorder { backend, sessions }
    }

    pub fn addr(&self) -> SocketAddr {
        self.backend.addr
    }

    /// The session whose handshake asked for `path`, once wsgate has closed it (bounded: 15 s).
    pub async fn ended_session(&self, path: &str) -> Recorded {
        self.session_once(path, "ended by wsgate", |r| r.ended).await
    }

    /// The session for `path` as it stands now, once it has received at least one Close
    /// (bounded: 15 s).
    pub async fn closed_session(&self, path: &str) -> Recorded {
        self.session_once(path, "given a Close", |r| !r.close_codes().is_empty()).await
    }

    async fn session_once(&self, path: &str, what: &str, done: impl Fn(&Recorded) -> bool) -> Recorded {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let found =
                self.sessions.lock().unwrap().iter().map(|r| r.lock().unwrap().clone()).find(|r| r.path == path);
            match found {
                Some(r) if done(&r) => return r,
                other => assert!(Instant::now() < deadline, "session {path} not {what} within 15 s: {other:?}"),
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}
