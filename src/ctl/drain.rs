//! `ctl drain`: take a backend out of rotation, and with `--wait` return only once it holds
//! no session, so a Kubernetes preStop hook (or a deploy script) can stop the backend
//! without cutting anyone off.

use super::args::Window;
use super::client::AdminClient;
use super::error::CtlError;
use super::{urls, views};
use serde_json::Value;
use std::time::{Duration, Instant};

/// How often `--wait` asks how many sessions are left.
const POLL: Duration = Duration::from_millis(250);
/// wsgate's default `drain.window`, for `--admin` without `--window` (no config to read).
const DEFAULT_WINDOW: Duration = Duration::from_secs(30);
/// Beyond the window: each close waits up to 10 s for both ends' Close, and sessions of
/// slow clients may take longer still.
const TIMEOUT_MARGIN: Duration = Duration::from_secs(60);

pub(crate) struct Request<'a> {
    pub(crate) pool: &'a str,
    pub(crate) addr: &'a str,
    pub(crate) window: Option<&'a Window>,
    pub(crate) wait: bool,
    pub(crate) timeout: Option<Duration>,
}

pub(crate) async fn run(
    client: &AdminClient,
    request: &Request<'_>,
    config_window: Option<Duration>,
    json: bool,
) -> Result<(), CtlError> {
    let window = request.window.map(|w| w.text.as_str());
    let path = urls::with_query(&urls::backend(request.pool, request.addr, "drain"), [("window", window)]);
    views::show(&client.call("POST", &path).await?, json, started)?;
    if !request.wait {
        return Ok(());
    }
    let timeout = request.timeout.unwrap_or_else(|| default_timeout(request.window.map(|w| w.duration), config_window));
    wait(client, request, timeout, json).await
}

/// `--window` (or else the config's `drain.window`, or else wsgate's default) + a margin.
pub(crate) fn default_timeout(window: Option<Duration>, config_window: Option<Duration>) -> Duration {
    window.or(config_window).unwrap_or(DEFAULT_WINDOW) + TIMEOUT_MARGIN
}

/// What `GET .../drain` says.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Progress {
    pub(crate) draining: bool,
    pub(crate) sessions: u64,
}

impl Progress {
    pub(crate) fn from_answer(answer: &Value) -> Result<Progress, CtlError> {
        match (answer["draining"].as_bool(), answer["sessions"].as_u64()) {
            (Some(draining), Some(sessions)) => Ok(Progress { draining, sessions }),
            _ => Err(CtlError::Failed(format!("the drain status lacks `draining` or `sessions`: {answer}"))),
        }
    }
}

#[derive(Debug, PartialEq)]
pub(crate) enum Step {
    /// Still draining, no session left: safe to stop the backend.
    Done,
    /// Sessions left and time left: ask again.
    Poll,
    /// Someone put the backend back in rotation: stopping it now would cut new sessions.
    Cancelled {
        left: u64,
    },
    TimedOut {
        left: u64,
    },
}

/// The `--wait` loop's decision after each answer.
pub(crate) fn next_step(progress: Progress, elapsed: Duration, timeout: Duration) -> Step {
    let left = progress.sessions;
    if !progress.draining {
        Step::Cancelled { left }
    } else if left == 0 {
        Step::Done
    } else if elapsed >= timeout {
        Step::TimedOut { left }
    } else {
        Step::Poll
    }
}

/// Polls every [`POLL`] until [`next_step`] ends it; bounded by `timeout`, which
/// `next_step` turns into `TimedOut`.
async fn wait(client: &AdminClient, request: &Request<'_>, timeout: Duration, json: bool) -> Result<(), CtlError> {
    let path = urls::backend(request.pool, request.addr, "drain");
    let name = format!("{} {}", request.pool, request.addr);
    let start = Instant::now();
    let mut reported = None;
    loop {
        let body = client.call("GET", &path).await?;
        let progress = Progress::from_answer(&views::parse(&body)?)?;
        match next_step(progress, start.elapsed(), timeout) {
            Step::Poll => {
                // Progress goes to stderr (the hook's log); stdout stays the answer.
                if reported != Some(progress.sessions) {
                    eprintln!("{name}: waiting for {} session(s) to close", progress.sessions);
                    reported = Some(progress.sessions);
                }
                tokio::time::sleep(POLL.min(timeout.saturating_sub(start.elapsed()))).await;
            }
            Step::Done => return views::show(&body, json, |_| "drained: no session left\n".to_string()),
            Step::Cancelled { left } => {
                return Err(CtlError::Failed(format!(
                    "{name} is no longer draining (enabled again?) and holds {left} session(s)"
                )))
            }
            Step::TimedOut { left } => {
                return Err(CtlError::Failed(format!("{name} still holds {left} session(s) after {timeout:?}")))
            }
        }
    }
}

/// `POST .../drain`.
fn started(answer: &Value) -> String {
    format!(
        "{} {}: out of rotation, closing {} session(s)\n",
        views::text(&answer["upstream"]),
        views::text(&answer["backend"]),
        views::text(&answer["closing"])
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: fn(u64) -> Duration = Duration::from_secs;

    #[test]
    fn the_wait_ends_when_no_session_is_left_and_only_then() {
        let draining = |sessions| Progress { draining: true, sessions };
        assert_eq!(next_step(draining(0), S(0), S(90)), Step::Done);
        assert_eq!(next_step(draining(0), S(500), S(90)), Step::Done, "done beats a timeout");
        assert_eq!(next_step(draining(3), S(89), S(90)), Step::Poll);
        assert_eq!(next_step(draining(3), S(90), S(90)), Step::TimedOut { left: 3 });
    }

    #[test]
    fn a_backend_enabled_again_ends_the_wait_as_a_failure() {
        let enabled = |sessions| Progress { draining: false, sessions };
        assert_eq!(next_step(enabled(0), S(1), S(90)), Step::Cancelled { left: 0 });
        assert_eq!(next_step(enabled(4), S(1), S(90)), Step::Cancelled { left: 4 });
    }

    #[test]
    fn the_default_timeout_is_the_window_plus_a_minute() {
        assert_eq!(default_timeout(Some(S(10)), Some(S(45))), S(70), "--window first");
        assert_eq!(default_timeout(None, Some(S(45))), S(105), "then the config's drain.window");
        assert_eq!(default_timeout(None, None), S(90), "then wsgate's default of 30 s");
    }

    #[test]
    fn a_drain_status_without_its_fields_is_an_error() {
        let ok = serde_json::json!({"upstream": "app", "backend": "127.0.0.1:9001", "draining": true, "sessions": 3});
        assert_eq!(Progress::from_answer(&ok), Ok(Progress { draining: true, sessions: 3 }));
        assert!(Progress::from_answer(&serde_json::json!({"draining": true})).is_err());
    }
}
