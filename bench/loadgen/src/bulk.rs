//! `ws-bulk`: one session echoing MiBs in large messages, writer and reader concurrent, a
//! watchdog failing the run when no echoed byte arrives for `--stall`. Generic over the
//! byte stream under the WebSocket: `ws://`, `wss://` (HTTP/1.1) or `--h2` (transport.rs).

use futures_util::{SinkExt, StreamExt};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use crate::echo::close;
use crate::transport::{connect_wss, Io, Transport};
use crate::{connect, emit, fail};

pub async fn ws_bulk(url: String, transport: Transport, mib: u64, msg_kib: usize, stall: Duration) -> i32 {
    let connected = match transport {
        Transport::Ws => match connect(&url).await {
            Ok(ws) => Ok(run(ws, transport, mib, msg_kib, stall).await),
            Err(e) => Err(e),
        },
        Transport::Wss => match connect_wss(&url, &[]).await {
            Ok(ws) => Ok(run(ws, transport, mib, msg_kib, stall).await),
            Err(e) => Err(e),
        },
        Transport::H2 => match crate::h2ws::connect_h2(&url, &[]).await {
            Ok(ws) => Ok(run(ws, transport, mib, msg_kib, stall).await),
            Err(e) => Err(e),
        },
    };
    connected.unwrap_or_else(|e| fail("ws-bulk", e))
}

fn h2_stats(transport: Transport) -> String {
    if transport == Transport::H2 {
        format!(",{}", crate::h2ws::send_stats())
    } else {
        String::new()
    }
}

async fn run<S: Io>(ws: WebSocketStream<S>, transport: Transport, mib: u64, msg_kib: usize, stall: Duration) -> i32 {
    let msg_len = msg_kib * 1024;
    let total = mib * 1024 * 1024;
    let count = total.div_ceil(msg_len as u64);
    let (mut sink, mut stream) = ws.split();
    let received = Arc::new(AtomicU64::new(0));
    let sent = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let start = Instant::now();

    let writer = {
        let sent = sent.clone();
        tokio::spawn(async move {
            let payload: Vec<u8> = (0..msg_len).map(|i| (i % 251) as u8).collect();
            for _ in 0..count {
                sink.feed(Message::Binary(payload.clone())).await.map_err(|e| format!("send: {e}"))?;
                sent.fetch_add(msg_len as u64, Ordering::Relaxed);
            }
            sink.flush().await.map_err(|e| format!("flush: {e}"))?;
            Ok::<_, String>(sink)
        })
    };
    let reader = {
        let received = received.clone();
        tokio::spawn(async move {
            let mut got = 0u64;
            while got < count * msg_len as u64 {
                match stream.next().await {
                    Some(Ok(Message::Binary(b))) => {
                        got += b.len() as u64;
                        received.store(got, Ordering::Relaxed);
                    }
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                    Some(Ok(_)) => return Err("unexpected message".to_string()),
                    Some(Err(e)) => return Err(format!("read: {e}")),
                    None => return Err("closed early".to_string()),
                }
            }
            Ok(stream)
        })
    };
    // Watchdog: fail on no progress for `stall`; bounded overall by 10 minutes. `queued` in
    // its report is what the writer had handed to the WebSocket by then.
    let watchdog = {
        let (received, done) = (received.clone(), done.clone());
        async move {
            let (mut last, mut last_change) = (0u64, Instant::now());
            let hard_stop = Instant::now() + Duration::from_secs(600);
            while !done.load(Ordering::Relaxed) && Instant::now() < hard_stop {
                tokio::time::sleep(Duration::from_millis(100)).await;
                let now = received.load(Ordering::Relaxed);
                if now != last {
                    (last, last_change) = (now, Instant::now());
                } else if last_change.elapsed() >= stall {
                    return Some(format!("stalled: no progress for {:?} at {} of {} bytes", stall, now, count * msg_len as u64));
                }
            }
            None
        }
    };
    tokio::pin!(watchdog);
    let reader_result = tokio::select! {
        r = reader => r.expect("reader task"),
        stalled = &mut watchdog => Err(stalled.unwrap_or_else(|| "time limit".to_string())),
    };
    done.store(true, Ordering::Relaxed);
    let secs = start.elapsed().as_secs_f64();
    let stream = match reader_result {
        Ok(s) => s,
        Err(e) => {
            emit(format!(
                r#"{{"kind":"ws-bulk","transport":"{}","mib":{mib},"stalled":true,"received":{},"queued":{},"secs":{secs:.3}{},"error":"{}"}}"#,
                transport.name(),
                received.load(Ordering::Relaxed),
                sent.load(Ordering::Relaxed),
                h2_stats(transport),
                e.replace('"', "'")
            ));
            return 1;
        }
    };
    let sink = match writer.await.expect("writer task") {
        Ok(s) => s,
        Err(e) => return fail("ws-bulk", e),
    };
    if let Ok(ws) = sink.reunite(stream) {
        close(ws).await;
    }
    emit(format!(
        r#"{{"kind":"ws-bulk","transport":"{}","mib":{mib},"msg_kib":{msg_kib},"stalled":false,"secs":{secs:.3},"mib_per_s":{:.1}{}}}"#,
        transport.name(),
        (count * msg_len as u64) as f64 / (1024.0 * 1024.0) / secs,
        h2_stats(transport),
    ));
    0
}

