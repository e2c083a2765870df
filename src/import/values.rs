//! nginx's value syntax (times, sizes, `host:port`) and wsgate's way of writing durations.

use std::net::{IpAddr, Ipv6Addr};
use std::time::Duration;

/// An nginx time (`ngx_parse_time`): `60`, `60s`, `500ms`, `1h30m`, `1h 30m`; a bare
/// number is seconds. Units: ms, s, m, h, d, w, M (30 days), y (365 days).
pub(crate) fn nginx_time(text: &str) -> Option<Duration> {
    let mut total: u64 = 0;
    let mut digits = String::new();
    let mut chars = text.trim().chars().peekable();
    let mut any = false;
    while let Some(c) = chars.next() {
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        if c == ' ' {
            if !digits.is_empty() {
                return None;
            }
            continue;
        }
        let n: u64 = digits.parse().ok()?;
        digits.clear();
        let millis: u64 = match c {
            'm' if chars.peek() == Some(&'s') => {
                chars.next();
                1
            }
            's' => 1_000,
            'm' => 60_000,
            'h' => 3_600_000,
            'd' => 86_400_000,
            'w' => 7 * 86_400_000,
            'M' => 30 * 86_400_000,
            'y' => 365 * 86_400_000,
            _ => return None,
        };
        total = total.checked_add(n.checked_mul(millis)?)?;
        any = true;
    }
    if !digits.is_empty() {
        total = total.checked_add(digits.parse::<u64>().ok()?.checked_mul(1_000)?)?;
        any = true;
    }
    any.then(|| Duration::from_millis(total))
}

/// A duration as wsgate writes it: the largest unit that divides it exactly (`1h`, `90s`,
/// `250ms`).
pub(crate) fn wsgate_duration(d: Duration) -> String {
    let ms = d.as_millis();
    for (unit, size) in [("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1_000)] {
        if ms >= size && ms.is_multiple_of(size) {
            return format!("{}{unit}", ms / size);
        }
    }
    format!("{ms}ms")
}

/// A host and port as nginx writes them in `server`, `listen` and `proxy_pass`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HostPort {
    /// Without brackets for IPv6.
    pub(crate) host: String,
    pub(crate) port: Option<u16>,
    /// The port's digits as written (a truncated-looking port is compared on its text).
    pub(crate) port_text: Option<String>,
}

impl HostPort {
    pub(crate) fn is_ip(&self) -> bool {
        self.host.parse::<IpAddr>().is_ok()
    }

    /// `host:port` with brackets around an IPv6 host, as wsgate reads it.
    pub(crate) fn with_port(&self, default: u16) -> String {
        let port = self.port.unwrap_or(default);
        if self.host.parse::<Ipv6Addr>().is_ok() {
            format!("[{}]:{port}", self.host)
        } else {
            format!("{}:{port}", self.host)
        }
    }
}

/// `host`, `host:port`, `[v6]`, `[v6]:port`; None for anything else (`unix:`, garbage).
pub(crate) fn host_port(text: &str) -> Option<HostPort> {
    if text.starts_with("unix:") || text.is_empty() {
        return None;
    }
    let (host, port) = if let Some(rest) = text.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        host.parse::<Ipv6Addr>().ok()?;
        match after {
            "" => (host, None),
            _ => (host, Some(after.strip_prefix(':')?)),
        }
    } else {
        match text.rsplit_once(':') {
            Some((host, port)) if !host.contains(':') => (host, Some(port)),
            Some(_) => return None,
            None => (text, None),
        }
    };
    let valid_host =
        !host.is_empty() && host.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | ':'));
    if !valid_host {
        return None;
    }
    let port_num = match port {
        Some(p) if !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()) => {
            Some(p.parse::<u16>().ok().filter(|n| *n > 0)?)
        }
        Some(_) => return None,
        None => None,
    };
    Some(HostPort { host: host.to_string(), port: port_num, port_text: port.map(String::from) })
}

/// Whether a word looks like a backend address (an `upstream` entry that lost its
/// `server` keyword): an IP with or without port, `[v6]:port`, `name:port`, `unix:...`.
pub(crate) fn looks_like_address(text: &str) -> bool {
    if text.starts_with("unix:/") {
        return true;
    }
    match host_port(text) {
        Some(hp) => hp.is_ip() || hp.port.is_some(),
        None => false,
    }
}

/// `$name` variables in a value (`$host`, `${host}`), in order.
pub(crate) fn variables(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find('$') {
        rest = &rest[at + 1..];
        let name: String = if let Some(inner) = rest.strip_prefix('{') {
            inner.chars().take_while(|c| *c != '}').collect()
        } else {
            rest.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect()
        };
        if !name.is_empty() {
            out.push(name);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn nginx_times() {
        let s = Duration::from_secs;
        assert_eq!(nginx_time("60"), Some(s(60)));
        assert_eq!(nginx_time("60s"), Some(s(60)));
        assert_eq!(nginx_time("1h30m"), Some(s(5400)));
        assert_eq!(nginx_time("1h 30m"), Some(s(5400)));
        assert_eq!(nginx_time("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(nginx_time("1d"), Some(s(86400)));
        for bad in ["", "s", "1x", "1 5", "-1", "99999999999999999999y"] {
            assert_eq!(nginx_time(bad), None, "{bad}");
        }
    }

    #[test]
    fn durations_in_wsgate_units() {
        assert_eq!(wsgate_duration(Duration::from_secs(86400)), "1d");
        assert_eq!(wsgate_duration(Duration::from_secs(3600)), "1h");
        assert_eq!(wsgate_duration(Duration::from_secs(5400)), "90m");
        assert_eq!(wsgate_duration(Duration::from_secs(75)), "75s");
        assert_eq!(wsgate_duration(Duration::from_millis(1500)), "1500ms");
        assert_eq!(wsgate_duration(Duration::ZERO), "0ms");
    }

    #[test]
    fn addresses() {
        let hp = host_port("127.0.0.1:3000").unwrap();
        assert_eq!((hp.host.as_str(), hp.port, hp.port_text.as_deref()), ("127.0.0.1", Some(3000), Some("3000")));
        assert_eq!(host_port("[::1]:80").unwrap().with_port(1), "[::1]:80");
        assert_eq!(host_port("[::1]").unwrap().with_port(443), "[::1]:443");
        assert_eq!(host_port("chat").unwrap().with_port(80), "chat:80");
        for bad in ["unix:/tmp/s", "a:b", "a:", "[x]:1", "a b", "a:0", "a:99999", "::1"] {
            assert_eq!(host_port(bad), None, "{bad}");
        }
        assert!(looks_like_address("192.168.3.1:3000") && looks_like_address("10.0.0.1"));
        assert!(
            looks_like_address("app:3000") && !looks_like_address("least_conn") && !looks_like_address("keepalive")
        );
    }

    #[test]
    fn variables_in_values() {
        assert_eq!(variables("$host:${server_port}x$"), ["host", "server_port"]);
        assert!(variables("upgrade").is_empty());
    }

    proptest! {
        #[test]
        fn never_panic(text in any::<String>()) {
            let _ = (nginx_time(&text), host_port(&text), variables(&text));
        }

        #[test]
        fn whole_seconds_read_back(n in 1u64..10_000_000) {
            let text = wsgate_duration(Duration::from_secs(n));
            prop_assert_eq!(crate::config::parse_duration(&text), Ok(Duration::from_secs(n)));
        }
    }
}
