//! The `limits` section: what one client, and all of them, may hold.

use super::values::Problems;
use crate::config::locate::KeyPath;
use crate::config::model::LimitsConfig;
use crate::config::raw::RawLimits;
use std::time::Duration;

/// A /64 is the smallest network an IPv6 host is usually given (RFC 6177), so a single
/// client can hold every address in it.
const DEFAULT_IPV6_PREFIX: u8 = 64;

pub(super) fn limits(raw: Option<&RawLimits>, path: &KeyPath, problems: &mut Problems) -> LimitsConfig {
    let count = |get: fn(&RawLimits) -> Option<usize>, key: &str, default: usize, problems: &mut Problems| {
        let value = raw.and_then(get).unwrap_or(default);
        if value == 0 {
            problems.push((path.key(key), "must be at least 1".into()));
        }
        value
    };
    let duration = |get: fn(&RawLimits) -> Option<Duration>, default: u64| {
        raw.and_then(get).unwrap_or(Duration::from_secs(default))
    };
    let limits = LimitsConfig {
        max_concurrent_per_ip: count(|l| l.max_concurrent_per_ip, "max_concurrent_per_ip", 10_000, problems),
        requests_per_second_per_ip: raw.and_then(|l| l.requests_per_second_per_ip).filter(|r| *r > 0),
        max_websocket_sessions: count(|l| l.max_websocket_sessions, "max_websocket_sessions", 100_000, problems),
        max_request_header_bytes: count(
            |l| l.max_request_header_bytes.map(|b| usize::try_from(b.as_u64()).unwrap_or(usize::MAX)),
            "max_request_header_bytes",
            32 * 1024,
            problems,
        ),
        max_request_headers: count(|l| l.max_request_headers, "max_request_headers", 100, problems),
        max_connections: count(|l| l.max_connections, "max_connections", 10_000, problems),
        max_connections_per_ip: count(|l| l.max_connections_per_ip, "max_connections_per_ip", 1_024, problems),
        header_timeout: duration(|l| l.header_timeout.map(|d| d.0), 10),
        keepalive_timeout: duration(|l| l.keepalive_timeout.map(|d| d.0), 60),
        send_timeout: duration(|l| l.send_timeout.map(|d| d.0), 60),
        connections_per_second_per_ip: raw.and_then(|l| l.connections_per_second_per_ip).filter(|r| *r > 0),
        ipv6_prefix: ipv6_prefix(raw.and_then(|l| l.ipv6_prefix), path, problems),
    };
    check_timeouts(&limits, path, problems);
    limits
}

fn ipv6_prefix(bits: Option<usize>, path: &KeyPath, problems: &mut Problems) -> u8 {
    match bits {
        None => DEFAULT_IPV6_PREFIX,
        Some(bits @ 1..=128) => bits as u8,
        Some(bits) => {
            problems.push((path.key("ipv6_prefix"), format!("{bits} is not a prefix length from 1 to 128")));
            DEFAULT_IPV6_PREFIX
        }
    }
}

fn check_timeouts(limits: &LimitsConfig, path: &KeyPath, problems: &mut Problems) {
    if limits.header_timeout.is_zero() {
        problems.push((path.key("header_timeout"), "must be longer than 0s".into()));
    }
    // Pingora counts keep-alive timeouts in whole seconds, and 0 would mean "no limit".
    if limits.keepalive_timeout < Duration::from_secs(1) || limits.keepalive_timeout.subsec_nanos() != 0 {
        problems.push((path.key("keepalive_timeout"), "must be whole seconds, at least 1s".into()));
    }
    // Shorter would cut off clients over an ordinary stall (a lost packet's retransmission
    // timeout is 1 s and more).
    if limits.send_timeout < Duration::from_secs(1) {
        problems.push((path.key("send_timeout"), "must be at least 1s".into()));
    }
}
