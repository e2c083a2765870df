//! `wsgate -d`'s parent waits for its daemon's SIGUSR1 (Pingora's `daemon_wait_for_ready`),
//! but Pingora 0.9.1 installs its handler only after forking, so a daemon that signals first
//! used to kill the parent (and fail `systemctl start`/`reload` while the daemon ran).
//! `ready::release_parent_on_ready_signal` closes that window. Each test plays both sides in
//! a helper process (this test binary run again, for one role) where the "daemon" signals at
//! once and the "parent" never installs a handler of its own: the slowest possible Pingora.
use std::os::unix::process::ExitStatusExt;
use std::process::{Command, ExitStatus};
use std::time::{Duration, Instant};

const ROLE: &str = "WSGATE_READY_SIGNAL_ROLE";
/// How long the helper's parent waits for a signal that would release it.
const PARENT_WAIT: Duration = Duration::from_secs(3);
/// Exit code of a parent that was not released within PARENT_WAIT.
const NOT_RELEASED: i32 = 3;

/// Runs this binary again as the helper for `role`; returns its status and how long it took.
fn helper(role: &str) -> (ExitStatus, Duration) {
    let started = Instant::now();
    let status = Command::new(std::env::current_exe().expect("test binary"))
        .args(["--exact", "helper_process", "--nocapture", "--test-threads=1"])
        .env(ROLE, role)
        .stdout(std::process::Stdio::null())
        .status()
        .expect("run the helper process");
    (status, started.elapsed())
}

/// The helper's body; a no-op when run as a test.
#[test]
fn helper_process() {
    let Ok(role) = std::env::var(ROLE) else { return };
    wsgate::lifecycle::ready::release_parent_on_ready_signal();
    // SAFETY: after fork the child only makes async-signal-safe calls (getppid, kill, raise,
    // _exit); the parent only sleeps, waits and exits.
    unsafe {
        match role.as_str() {
            // The daemon is ready before the parent waits.
            "ready-before-parent-waits" => {
                if libc::fork() == 0 {
                    libc::kill(libc::getppid(), libc::SIGUSR1);
                    libc::_exit(0);
                }
                std::thread::sleep(PARENT_WAIT);
                libc::_exit(NOT_RELEASED);
            }
            // Someone signals wsgate before it has forked a daemon.
            "signal-before-fork" => {
                libc::raise(libc::SIGUSR1);
                libc::_exit(NOT_RELEASED);
            }
            // Someone signals the daemon: the parent reports how the daemon ended.
            "signal-to-the-daemon" => {
                let child = libc::fork();
                if child == 0 {
                    libc::raise(libc::SIGUSR1);
                    libc::_exit(0);
                }
                let mut status = 0;
                libc::waitpid(child, &mut status, 0);
                let code =
                    if libc::WIFSIGNALED(status) { 100 + libc::WTERMSIG(status) } else { libc::WEXITSTATUS(status) };
                libc::_exit(code);
            }
            other => panic!("unknown role {other}"),
        }
    }
}

#[test]
fn a_daemon_ready_before_its_parent_waits_releases_the_parent_with_success() {
    let (status, took) = helper("ready-before-parent-waits");
    assert_eq!(status.signal(), None, "the parent was killed by signal {:?} (10 = SIGUSR1)", status.signal());
    assert_eq!(status.code(), Some(0), "the parent was not released: {status}");
    assert!(took < PARENT_WAIT, "released only after {took:?}");
}

#[test]
fn sigusr1_before_the_fork_keeps_its_default_action() {
    let (status, _) = helper("signal-before-fork");
    assert_eq!(status.signal(), Some(libc::SIGUSR1), "{status}");
}

#[test]
fn sigusr1_to_the_daemon_keeps_its_default_action() {
    let (status, _) = helper("signal-to-the-daemon");
    assert_eq!(status.code(), Some(100 + libc::SIGUSR1), "{status}");
}
