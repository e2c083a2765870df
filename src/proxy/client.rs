//! Who the client is. Its address is the connection's peer (on a `proxy_protocol`
//! listener, the address the PROXY header carried), unless that peer is one of
//! `trusted_proxies`: then it is the rightmost `X-Forwarded-For` entry that is not itself
//! trusted, as the last hop that no trusted proxy vouches for. Entries that are not
//! addresses are skipped, never trusted; a chain of trusted proxies only gives its
//! leftmost entry.

use crate::config::model::Config;
use pingora::http::RequestHeader;
use std::net::{IpAddr, SocketAddr};

/// The client's address for a request from `peer` (canonical: IPv4-mapped IPv6 as IPv4).
pub(crate) fn client_ip(peer: Option<IpAddr>, req: &RequestHeader, config: &Config) -> Option<IpAddr> {
    let peer = peer?.to_canonical();
    if config.trusted_proxies.is_empty() || !config.trusts(peer) {
        return Some(peer);
    }
    let chain: Vec<IpAddr> = req
        .headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(entry)
        .collect();
    let untrusted = chain.iter().rev().find(|ip| !config.trusts(**ip));
    Some(untrusted.or(chain.first()).copied().unwrap_or(peer))
}

/// One `X-Forwarded-For` entry: an address, maybe with a port (`1.2.3.4:80`, `[::1]:80`).
fn entry(text: &str) -> Option<IpAddr> {
    let text = text.trim();
    let ip = text.parse::<IpAddr>().or_else(|_| text.parse::<SocketAddr>().map(|a| a.ip())).ok()?;
    Some(ip.to_canonical())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(trusted: &str) -> Config {
        let yaml = format!(
            "listeners: [{{address: '127.0.0.1:1'}}]\ntrusted_proxies: {trusted}\n\
             upstreams: {{a: {{backends: ['127.0.0.1:2']}}}}\nroutes: [{{upstream: a}}]\n"
        );
        crate::config::parse(&yaml, "test.yaml", std::path::Path::new("/")).unwrap()
    }

    fn client(config: &Config, peer: &str, xff: &[&str]) -> IpAddr {
        let mut req = RequestHeader::build("GET", b"/", None).unwrap();
        for value in xff {
            req.append_header("X-Forwarded-For", *value).unwrap();
        }
        client_ip(Some(peer.parse().unwrap()), &req, config).unwrap()
    }

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_it_claims() {
        let c = config("['10.0.0.0/8']");
        assert_eq!(client(&c, "203.0.113.9", &["1.2.3.4"]), "203.0.113.9".parse::<IpAddr>().unwrap());
        assert_eq!(client(&config("[]"), "10.0.0.1", &["1.2.3.4"]), "10.0.0.1".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn a_trusted_peer_gives_the_rightmost_untrusted_entry() {
        let c = config("['10.0.0.0/8', 'fd00::/8', '192.0.2.1']");
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(client(&c, "10.0.0.1", &["1.1.1.1, 2.2.2.2, 10.9.9.9"]), ip("2.2.2.2"));
        assert_eq!(client(&c, "10.0.0.1", &["1.1.1.1", "2.2.2.2:5000, 192.0.2.1"]), ip("2.2.2.2"));
        assert_eq!(client(&c, "fd00::1", &["[2001:db8::7]:443, fd00::2"]), ip("2001:db8::7"));
        assert_eq!(client(&c, "::ffff:10.0.0.1", &["::ffff:1.1.1.1"]), ip("1.1.1.1"));
        // Garbage is skipped, never taken for a trusted hop or for the client.
        assert_eq!(client(&c, "10.0.0.1", &["1.1.1.1, unknown, , 10.1.1.1, x"]), ip("1.1.1.1"));
        // Only trusted hops: the leftmost; nothing usable: the peer.
        assert_eq!(client(&c, "10.0.0.1", &["10.3.3.3, 10.2.2.2"]), ip("10.3.3.3"));
        assert_eq!(client(&c, "10.0.0.1", &["unknown"]), ip("10.0.0.1"));
        assert_eq!(client(&c, "10.0.0.1", &[]), ip("10.0.0.1"));
    }

    #[test]
    fn trusted_proxies_that_are_not_addresses_are_config_errors() {
        let yaml = "listeners: [{address: '127.0.0.1:1'}]\ntrusted_proxies: ['10.0.0.0/8', 'ten', '10.0.0.0/33']\n\
                    upstreams: {a: {backends: ['127.0.0.1:2']}}\nroutes: [{upstream: a}]\n";
        let err = crate::config::parse(yaml, "test.yaml", std::path::Path::new("/")).unwrap_err().to_string();
        assert!(err.contains("trusted_proxies[1]") && err.contains("`ten`"), "{err}");
        assert!(err.contains("trusted_proxies[2]"), "{err}");
    }
}
