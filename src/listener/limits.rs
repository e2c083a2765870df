//! Admission limits: how much one client, and everyone together, may hold or ask for.
//! Counting uses Pingora's `pingora-limits` estimators (fixed memory, no lock on the
//! request path). Every refusal is counted in `wsgate_refusals_total{cause}` and logged
//! the first time per cause only, so a flood cannot flood the log too.

use crate::config::model::LimitsConfig;
use crate::lifecycle::drain::InFlight;
use crate::telemetry::metrics::Metrics;
use pingora_limits::inflight::{Guard, Inflight};
use pingora_limits::rate::Rate;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    RatePerIp,
    ConcurrencyPerIp,
    WebSocketSessions,
    RouteWebSocketSessions,
    HeadersTooLarge,
    Connections,
    ConnectionsPerIp,
    HeaderTimeout,
    ConnectionRatePerIp,
    SendTimeout,
    /// A connection on a `proxy_protocol` listener without a valid PROXY header.
    ProxyProtocol,
}

impl Refusal {
    /// How many causes there are (the last variant + 1): each has its own "logged once" flag,
    /// indexed by `self as usize`.
    const COUNT: usize = Refusal::ProxyProtocol as usize + 1;

    pub(crate) fn label(self) -> &'static str {
        match self {
            Refusal::RatePerIp => "rate_per_ip",
            Refusal::ConcurrencyPerIp => "concurrency_per_ip",
            Refusal::WebSocketSessions => "websocket_sessions",
            Refusal::RouteWebSocketSessions => "route_websocket_sessions",
            Refusal::HeadersTooLarge => "headers_too_large",
            Refusal::Connections => "connections",
            Refusal::ConnectionsPerIp => "connections_per_ip",
            Refusal::HeaderTimeout => "header_timeout",
            Refusal::ConnectionRatePerIp => "connection_rate_per_ip",
            Refusal::SendTimeout => "send_timeout",
            Refusal::ProxyProtocol => "proxy_protocol",
        }
    }
}

/// The counters; the thresholds come from the request's config snapshot, so a reload
/// changes them without resetting what is counted.
pub(crate) struct Limits {
    metrics: Arc<Metrics>,
    per_ip: Inflight,
    rate: Rate,
    sessions: Inflight,
    // Separate estimators for the total and per address, so that no address's estimate can
    // collide with the total's.
    all_connections: Inflight,
    connections: Inflight,
    connection_rate: Rate,
    logged: [AtomicBool; Refusal::COUNT],
}

/// Held for as long as the admitted request or session lives.
#[derive(Debug)]
pub(crate) struct Admitted(#[allow(dead_code)] Vec<Guard>);

/// What keeps a request (and the WebSocket session it may become) counted: its places under
/// the limits and in the drain's in-flight count. An open session takes it along to its own
/// task; everything is released when it is dropped.
#[derive(Default)]
pub(crate) struct Held {
    /// A guard: held, never read.
    _in_flight: Option<InFlight>,
    pub(crate) admitted: Vec<Admitted>,
}

impl Held {
    pub(crate) fn new(in_flight: InFlight) -> Held {
        Held { _in_flight: Some(in_flight), admitted: Vec::new() }
    }
}

impl Limits {
    pub(crate) fn new(metrics: Arc<Metrics>) -> Limits {
        Limits {
            metrics,
            per_ip: Inflight::new(),
            rate: Rate::new(Duration::from_secs(1)),
            sessions: Inflight::new(),
            all_connections: Inflight::new(),
            connections: Inflight::new(),
            connection_rate: Rate::new(Duration::from_secs(1)),
            logged: Default::default(),
        }
    }

    /// Counts (and logs, once) a refusal decided elsewhere, e.g. a header timeout.
    pub(crate) fn refuse(&self, why: Refusal) -> Refusal {
        self.metrics.refusals.with_label_values(&[why.label()]).inc();
        if !self.logged[why as usize].swap(true, Ordering::Relaxed) {
            log::warn!("refusing requests: limit `{}` reached; further refusals are counted in wsgate_refusals_total, not logged", why.label());
        }
        why
    }

    /// Header size and count (431), requests per second and concurrency per client (429).
    pub(crate) fn admit_request(
        &self,
        config: &LimitsConfig,
        ip: Option<IpAddr>,
        header_bytes: usize,
        header_count: usize,
    ) -> Result<Option<Admitted>, Refusal> {
        if header_bytes > config.max_request_header_bytes || header_count > config.max_request_headers {
            return Err(self.refuse(Refusal::HeadersTooLarge));
        }
        let Some(ip) = ip.map(|ip| client_key(ip, config.ipv6_prefix)) else { return Ok(None) };
        if let Some(max) = config.requests_per_second_per_ip {
            if self.rate.observe(&ip, 1) > max as isize {
                return Err(self.refuse(Refusal::RatePerIp));
            }
        }
        let (guard, count) = self.per_ip.incr(ip, 1);
        if count > config.max_concurrent_per_ip as isize {
            return Err(self.refuse(Refusal::ConcurrencyPerIp));
        }
        Ok(Some(Admitted(vec![guard])))
    }

    /// First look at a connection, in the accept loop before any task exists for it: a
    /// flood of connections is turned away at the cost of an accept and a close. Reads the
    /// counts `admit_connection` keeps (which decides exactly, later) and counts the rate.
    pub(crate) fn screen_connection(&self, config: &LimitsConfig, ip: Option<IpAddr>) -> Result<(), Refusal> {
        if self.all_connections.incr("", 0).1 >= config.max_connections as isize {
            return Err(self.refuse(Refusal::Connections));
        }
        let Some(ip) = ip.map(|ip| client_key(ip, config.ipv6_prefix)) else { return Ok(()) };
        if self.connections.incr(ip, 0).1 >= config.max_connections_per_ip as isize {
            return Err(self.refuse(Refusal::ConnectionsPerIp));
        }
        if let Some(max) = config.connections_per_second_per_ip {
            if self.connection_rate.observe(&ip, 1) > max as isize {
                return Err(self.refuse(Refusal::ConnectionRatePerIp));
            }
        }
        Ok(())
    }

    /// A new downstream connection, against the total and the per-client connection limits.
    pub(crate) fn admit_connection(&self, config: &LimitsConfig, ip: Option<IpAddr>) -> Result<Admitted, Refusal> {
        let (all, count) = self.all_connections.incr("", 1);
        if count > config.max_connections as isize {
            return Err(self.refuse(Refusal::Connections));
        }
        let mut admitted = Admitted(vec![all]);
        self.admit_client(config, ip, false, &mut admitted)?;
        Ok(admitted)
    }

    /// An admitted connection's client, once known (on a `proxy_protocol` listener, from
    /// its header), against the per-client limits: its count, and with `rate` its rate of
    /// new connections (which the accept filter checks where the client is the peer).
    pub(crate) fn admit_client(
        &self,
        config: &LimitsConfig,
        ip: Option<IpAddr>,
        rate: bool,
        admitted: &mut Admitted,
    ) -> Result<(), Refusal> {
        let Some(ip) = ip.map(|ip| client_key(ip, config.ipv6_prefix)) else { return Ok(()) };
        let (per_ip, count) = self.connections.incr(ip, 1);
        if count > config.max_connections_per_ip as isize {
            return Err(self.refuse(Refusal::ConnectionsPerIp));
        }
        admitted.0.push(per_ip);
        match config.connections_per_second_per_ip {
            Some(max) if rate && self.connection_rate.observe(&ip, 1) > max as isize => {
                Err(self.refuse(Refusal::ConnectionRatePerIp))
            }
            _ => Ok(()),
        }
    }

    /// A new WebSocket session, against the global and the route's session limits.
    pub(crate) fn admit_session(
        &self,
        config: &LimitsConfig,
        route: &str,
        route_max: Option<usize>,
    ) -> Result<Admitted, Refusal> {
        let (all, count) = self.sessions.incr("", 1);
        if count > config.max_websocket_sessions as isize {
            return Err(self.refuse(Refusal::WebSocketSessions));
        }
        let (per_route, count) = self.sessions.incr(route, 1);
        if route_max.is_some_and(|max| count > max as isize) {
            return Err(self.refuse(Refusal::RouteWebSocketSessions));
        }
        Ok(Admitted(vec![all, per_route]))
    }
}

/// What the per-address limits count a client under: an IPv4 address itself, an IPv6 one's
/// network of `ipv6_prefix` bits (a host usually holds a whole /64, so counting single
/// addresses would give it 2^64 allowances). `ip` must already be canonical (an IPv4-mapped
/// address as IPv4, as the proxy and the connection gate take it), or every IPv4 client of
/// a dual-stack listener would fall into one network (`::/64`).
pub(crate) fn client_key(ip: IpAddr, ipv6_prefix: u8) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => {
            let mask = u128::MAX.checked_shl(128 - u32::from(ipv6_prefix.min(128))).unwrap_or(0);
            IpAddr::V6(Ipv6Addr::from(u128::from(v6) & mask))
        }
    }
}

/// Bytes and number of the request's header fields, as the client sent them.
pub(crate) fn header_size(req: &pingora::http::RequestHeader) -> (usize, usize) {
    let bytes = req.headers.iter().map(|(n, v)| n.as_str().len() + v.len() + 4).sum::<usize>()
        + crate::proxy::admission::target_len(&req.uri);
    (bytes, req.headers.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> LimitsConfig {
        LimitsConfig {
            max_concurrent_per_ip: 2,
            requests_per_second_per_ip: Some(5),
            max_websocket_sessions: 3,
            max_request_header_bytes: 100,
            max_request_headers: 4,
            max_connections: 3,
            max_connections_per_ip: 2,
            header_timeout: Duration::from_secs(1),
            keepalive_timeout: Duration::from_secs(60),
            send_timeout: Duration::from_secs(60),
            connections_per_second_per_ip: Some(4),
            ipv6_prefix: 64,
        }
    }

    #[test]
    fn per_client_concurrency_and_rate() {
        let c = LimitsConfig { requests_per_second_per_ip: None, ..config() };
        let l = Limits::new(Arc::new(Metrics::new()));
        let ip: Option<IpAddr> = Some("10.0.0.1".parse().unwrap());
        let a = l.admit_request(&c, ip, 10, 1).unwrap();
        let _b = l.admit_request(&c, ip, 10, 1).unwrap();
        assert_eq!(l.admit_request(&c, ip, 10, 1).err(), Some(Refusal::ConcurrencyPerIp));
        assert!(l.admit_request(&c, Some("10.0.0.2".parse().unwrap()), 10, 1).is_ok(), "other clients unaffected");
        drop(a);
        assert!(l.admit_request(&c, ip, 10, 1).is_ok(), "a finished request frees its slot");

        let l = Limits::new(Arc::new(Metrics::new()));
        let results: Vec<bool> = (0..8).map(|_| l.admit_request(&config(), ip, 10, 1).map(drop).is_ok()).collect();
        assert_eq!(results.iter().filter(|ok| **ok).count(), 5, "{results:?}");
    }

    #[test]
    fn header_limits_and_session_limits() {
        let (c, l) = (config(), Limits::new(Arc::new(Metrics::new())));
        assert_eq!(l.admit_request(&c, None, 101, 1).err(), Some(Refusal::HeadersTooLarge));
        assert_eq!(l.admit_request(&c, None, 10, 5).err(), Some(Refusal::HeadersTooLarge));
        let s1 = l.admit_session(&c, "chat", Some(2)).unwrap();
        let _s2 = l.admit_session(&c, "chat", Some(2)).unwrap();
        assert_eq!(l.admit_session(&c, "chat", Some(2)).err(), Some(Refusal::RouteWebSocketSessions));
        let _s3 = l.admit_session(&c, "other", None).unwrap();
        assert_eq!(l.admit_session(&c, "other", None).err(), Some(Refusal::WebSocketSessions));
        drop(s1);
        assert!(l.admit_session(&c, "other", None).is_ok());
    }

    #[test]
    fn connection_limits_total_and_per_client() {
        let (c, l) = (config(), Limits::new(Arc::new(Metrics::new())));
        let (a, b): (Option<IpAddr>, Option<IpAddr>) =
            (Some("10.0.0.1".parse().unwrap()), Some("10.0.0.2".parse().unwrap()));
        let a1 = l.admit_connection(&c, a).unwrap();
        let _a2 = l.admit_connection(&c, a).unwrap();
        assert_eq!(l.admit_connection(&c, a).err(), Some(Refusal::ConnectionsPerIp));
        let _b1 = l.admit_connection(&c, b).unwrap();
        assert_eq!(l.admit_connection(&c, b).err(), Some(Refusal::Connections), "3 open in all");
        drop(a1);
        assert!(l.admit_connection(&c, b).is_ok(), "a closed connection frees its place in both counts");
    }

    #[test]
    fn ipv6_clients_are_counted_per_prefix() {
        let ip = |s: &str| -> IpAddr { s.parse().unwrap() };
        assert_eq!(client_key(ip("2001:db8:1:2:aaaa:bbbb:cccc:dddd"), 64), ip("2001:db8:1:2::"));
        assert_eq!(client_key(ip("2001:db8:1:2:aaaa:bbbb:cccc:dddd"), 48), ip("2001:db8:1::"));
        assert_eq!(client_key(ip("2001:db8:1:2:aaaa:bbbb:cccc:dddd"), 128), ip("2001:db8:1:2:aaaa:bbbb:cccc:dddd"));
        assert_eq!(client_key(ip("ffff::1"), 1), ip("8000::"));
        assert_eq!(client_key(ip("192.0.2.7"), 64), ip("192.0.2.7"), "IPv4 addresses are never masked");

        let (c, l) = (config(), Limits::new(Arc::new(Metrics::new())));
        let (a1, a2, b) = (Some(ip("2001:db8:0:1::1")), Some(ip("2001:db8:0:1:ffff::2")), Some(ip("2001:db8:0:2::1")));
        // Two addresses of one /64 are one client: max_connections_per_ip (2) for both together.
        let _held = [l.admit_connection(&c, a1).unwrap(), l.admit_connection(&c, a2).unwrap()];
        assert_eq!(l.admit_connection(&c, a1).err(), Some(Refusal::ConnectionsPerIp));
        assert_eq!(l.screen_connection(&c, a2).err(), Some(Refusal::ConnectionsPerIp));
        assert!(l.admit_connection(&c, b).is_ok(), "the next /64 is another client");
        // The same for requests (max_concurrent_per_ip: 2).
        let rc = LimitsConfig { requests_per_second_per_ip: None, ..config() };
        let _r = [l.admit_request(&rc, a1, 10, 1).unwrap(), l.admit_request(&rc, a2, 10, 1).unwrap()];
        assert_eq!(l.admit_request(&rc, Some(ip("2001:db8:0:1::99")), 10, 1).err(), Some(Refusal::ConcurrencyPerIp));
        // A longer prefix tells them apart again.
        let c128 = LimitsConfig { ipv6_prefix: 128, ..rc };
        assert!(l.admit_request(&c128, Some(ip("2001:db8:0:1::99")), 10, 1).is_ok());
    }

    #[test]
    fn screening_reads_the_counts_and_limits_the_rate() {
        let (c, l) = (config(), Limits::new(Arc::new(Metrics::new())));
        let (a, b): (Option<IpAddr>, Option<IpAddr>) =
            (Some("10.0.0.1".parse().unwrap()), Some("10.0.0.2".parse().unwrap()));
        let _held = [l.admit_connection(&c, a).unwrap(), l.admit_connection(&c, a).unwrap()];
        assert_eq!(l.screen_connection(&c, a).err(), Some(Refusal::ConnectionsPerIp), "2 open: a third is turned away");
        let admitted: Vec<bool> = (0..6).map(|_| l.screen_connection(&c, b).is_ok()).collect();
        assert_eq!(admitted, [true, true, true, true, false, false], "4 new connections per second");
        let _third = l.admit_connection(&c, b).unwrap();
        assert_eq!(l.screen_connection(&c, None).err(), Some(Refusal::Connections), "3 open in all");
    }
}
