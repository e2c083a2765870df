//! The open-files limit: each proxied connection holds two sockets, and container runtimes
//! and login shells commonly start processes with a soft limit of 1024 under a much higher
//! hard one. As nginx's `worker_rlimit_nofile` does, wsgate raises its soft limit to the hard
//! limit at start (no privilege needed), so the hard limit is the one to set.

use log::{info, warn};

/// Raises RLIMIT_NOFILE's soft limit to its hard limit; returns the limit now in force.
pub(crate) fn raise_open_files() -> Option<libc::rlim_t> {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit writes into the struct we own.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        warn!("cannot read the open-files limit: {}", std::io::Error::last_os_error());
        return None;
    }
    if limit.rlim_cur >= limit.rlim_max {
        return Some(limit.rlim_cur);
    }
    let before = limit.rlim_cur;
    limit.rlim_cur = limit.rlim_max;
    // SAFETY: setrlimit reads the struct we own.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) } != 0 {
        warn!("cannot raise the open-files limit from {before}: {}", std::io::Error::last_os_error());
        return Some(before);
    }
    info!("open-files limit raised from {before} to its hard limit {}", limit.rlim_max);
    Some(limit.rlim_max)
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_soft_limit_ends_at_the_hard_limit() {
        let now = super::raise_open_files().expect("the limit is readable");
        let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
        // SAFETY: as above.
        assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) }, 0);
        assert_eq!((limit.rlim_cur, now), (limit.rlim_max, limit.rlim_max));
    }
}
