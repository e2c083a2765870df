//! `ws-hold`: sessions held by clients that reconnect, as client libraries do: a session
//! closed by the proxy or dropped is reopened after a random delay. What the scale-out
//! workload (`bench/scaleout.sh`) counts: how each session ended while the pool changed.

use crate::{connect, emit, Ws};
use futures_util::StreamExt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::Message;

#[derive(Default)]
struct Ends {
    /// Close frames by code.
    codes: std::collections::BTreeMap<u16, u64>,
    /// Connections that ended without a Close frame (a reset, an EOF).
    abnormal: u64,
    failed_connects: u64,
    /// Clients whose session was ended more than once.
    moved_twice: u64,
}

enum End {
    /// A Close frame, with its code.
    Closed(Option<u16>),
    /// The connection ended without one.
    Abnormal,
}

/// How one session ended, or `None` when `until` came first.
async fn wait_end(ws: &mut Ws, until: Instant) -> Option<End> {
    let end = async {
        loop {
            match ws.next().await {
                Some(Ok(Message::Close(frame))) => {
                    // Reading on sends the Close reply.
                    let _ = ws.next().await;
                    return End::Closed(frame.map(|f| u16::from(f.code)));
                }
                Some(Ok(_)) => continue,
                Some(Err(_)) | None => return End::Abnormal,
            }
        }
    };
    tokio::time::timeout_at(until.into(), end).await.ok()
}

pub(crate) async fn ws_hold(url: String, sessions: usize, reconnect: Duration, duration: Duration) -> i32 {
    let until = Instant::now() + duration;
    let ends = Arc::new(Mutex::new(Ends::default()));
    let clients: Vec<_> = (0..sessions)
        .map(|i| {
            let (url, ends) = (url.clone(), ends.clone());
            tokio::spawn(async move {
                // Staggered, 1 ms apart, as a fleet of clients arrives.
                tokio::time::sleep(Duration::from_millis(i as u64)).await;
                let mut ended = 0;
                while Instant::now() < until {
                    let mut ws = match connect(&url).await {
                        Ok(ws) => ws,
                        Err(_) => {
                            ends.lock().unwrap().failed_connects += 1;
                            tokio::time::sleep(Duration::from_millis(100)).await;
                            continue;
                        }
                    };
                    let Some(how) = wait_end(&mut ws, until).await else {
                        let _ = ws.close(None).await;
                        return;
                    };
                    ended += 1;
                    {
                        let mut e = ends.lock().unwrap();
                        match how {
                            End::Closed(code) => *e.codes.entry(code.unwrap_or(1005)).or_default() += 1,
                            End::Abnormal => e.abnormal += 1,
                        }
                        if ended == 2 {
                            e.moved_twice += 1;
                        }
                    }
                    tokio::time::sleep(reconnect.mul_f64(fastrand::f64())).await;
                }
            })
        })
        .collect();
    for c in clients {
        let _ = c.await;
    }
    let e = ends.lock().unwrap();
    let codes: Vec<String> = e.codes.iter().map(|(c, n)| format!(r#""{c}":{n}"#)).collect();
    emit(format!(
        r#"{{"kind":"ws-hold","sessions":{sessions},"closes":{{{}}},"abnormal":{},"failed_connects":{},"moved_twice":{}}}"#,
        codes.join(","),
        e.abnormal,
        e.failed_connects,
        e.moved_twice
    ));
    0
}
