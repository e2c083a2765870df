//! `ws-echo` (closed-loop or paced echo of small messages) and the echo/close steps other
//! subcommands share; generic over the byte stream under the WebSocket (see transport.rs).

use futures_util::{SinkExt, StreamExt};
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use crate::h2ws::connect_h2;
use crate::transport::{connect_wss, Io, Transport};
use crate::{connect_with, emit, fail, pct_us, Header, STEP_TIMEOUT};

/// Sends `payload` and waits for a binary echo of the same length.
pub async fn echo_once<S: Io>(ws: &mut WebSocketStream<S>, payload: &[u8]) -> Result<(), String> {
    let step = async {
        ws.send(Message::Binary(payload.to_vec())).await.map_err(|e| format!("send: {e}"))?;
        loop {
            match ws.next().await {
                Some(Ok(Message::Binary(b))) if b.len() == payload.len() => return Ok(()),
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                Some(Ok(other)) => return Err(format!("unexpected reply: {:?}", other.len())),
                Some(Err(e)) => return Err(format!("read: {e}")),
                None => return Err("closed before the echo".into()),
            }
        }
    };
    tokio::time::timeout(STEP_TIMEOUT, step).await.map_err(|_| "echo timed out".to_string())?
}

pub async fn close<S: Io>(mut ws: WebSocketStream<S>) {
    let _ = tokio::time::timeout(STEP_TIMEOUT, async {
        if ws.close(None).await.is_ok() {
            // Drain until the peer's Close arrives and the stream ends (bounded by the timeout).
            while let Some(Ok(_)) = ws.next().await {}
        }
    })
    .await;
}

/// Opens `n` sessions one after the other with `connect`.
pub async fn connect_n<S, F, Fut>(n: usize, mut connect: F) -> Result<Vec<WebSocketStream<S>>, String>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<WebSocketStream<S>, String>>,
{
    let mut sessions = Vec::with_capacity(n);
    for _ in 0..n {
        sessions.push(connect().await?);
    }
    Ok(sessions)
}

pub struct EchoArgs {
    pub connections: usize,
    pub size: usize,
    pub duration: Duration,
    pub interval: Option<Duration>,
}

/// `ws-echo` over `transport`: with `--h2` every connection is its own TLS + HTTP/2
/// connection carrying one WebSocket stream.
pub async fn ws_echo(url: String, transport: Transport, args: EchoArgs, headers: &[Header]) -> i32 {
    let n = args.connections;
    let done = match transport {
        Transport::Ws => match connect_n(n, || connect_with(&url, headers)).await {
            Ok(s) => Ok(run(s, args, transport).await),
            Err(e) => Err(e),
        },
        Transport::Wss => match connect_n(n, || connect_wss(&url, headers)).await {
            Ok(s) => Ok(run(s, args, transport).await),
            Err(e) => Err(e),
        },
        Transport::H2 => match connect_n(n, || connect_h2(&url, headers)).await {
            Ok(s) => Ok(run(s, args, transport).await),
            Err(e) => Err(e),
        },
    };
    done.unwrap_or_else(|e| fail("ws-echo", e))
}

async fn run<S: Io>(sessions: Vec<WebSocketStream<S>>, args: EchoArgs, transport: Transport) -> i32 {
    let EchoArgs { connections, size, duration, interval } = args;
    let payload: Arc<[u8]> = (0..size).map(|i| i as u8).collect::<Vec<_>>().into();
    let start = Instant::now();
    let deadline = start + duration;
    let tasks: Vec<_> = sessions
        .into_iter()
        .enumerate()
        .map(|(i, mut ws)| {
            let payload = payload.clone();
            // Paced connections start spread over one interval, not all on the same tick.
            let mut pace = interval.map(|every| {
                let first = tokio::time::Instant::now() + every.mul_f64(i as f64 / connections as f64);
                let mut tick = tokio::time::interval_at(first, every);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                tick
            });
            tokio::spawn(async move {
                let mut samples = Vec::with_capacity(1 << 16);
                let mut error = None;
                while Instant::now() < deadline {
                    if let Some(tick) = pace.as_mut() {
                        tick.tick().await;
                    }
                    let t0 = Instant::now();
                    if let Err(e) = echo_once(&mut ws, &payload).await {
                        error = Some(e);
                        break;
                    }
                    samples.push(t0.elapsed().as_nanos() as u64);
                }
                close(ws).await;
                (samples, error)
            })
        })
        .collect();
    let mut all = Vec::new();
    let mut errors = 0u64;
    let mut last_error = String::new();
    for t in tasks {
        let (samples, error) = t.await.expect("echo task");
        all.extend(samples);
        if let Some(e) = error {
            errors += 1;
            last_error = e;
        }
    }
    let secs = start.elapsed().as_secs_f64();
    all.sort_unstable();
    emit(format!(
        r#"{{"kind":"ws-echo","transport":"{}","connections":{connections},"size":{size},"interval_ms":{},"msgs":{},"secs":{secs:.3},"msgs_per_s":{:.1},"p50_us":{:.1},"p99_us":{:.1},"max_us":{:.1},"errors":{errors},"last_error":"{}"}}"#,
        transport.name(),
        interval.map_or(0.0, |i| i.as_secs_f64() * 1000.0),
        all.len(),
        all.len() as f64 / secs,
        pct_us(&all, 50.0),
        pct_us(&all, 99.0),
        pct_us(&all, 100.0),
        last_error.replace('"', "'"),
    ));
    if all.is_empty() || errors > 0 {
        1
    } else {
        0
    }
}

