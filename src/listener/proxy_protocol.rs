//! The PROXY protocol (HAProxy's, v1 text and v2 binary) on listeners that say
//! `proxy_protocol: true`: an L4 load balancer in front of wsgate prefixes each connection
//! with the client's address, which then stands for the client everywhere (limits,
//! hashing, `X-Forwarded-For`, the access log) because it replaces the peer address in the
//! connection's socket digest, where Pingora's `client_addr()` reads it.
//!
//! The header is read before TLS, parsed by the `ppp` crate; bytes read past it are put
//! back into the stream. A connection without a valid header is closed: the spec leaves a
//! receiver no way to tell a header it cannot parse from a client's first bytes.

use pingora::protocols::l4::socket::SocketAddr as PingoraAddr;
use pingora::protocols::l4::stream::Stream as L4Stream;
use pingora::protocols::{GetSocketDigest, SocketDigest, Stream};
use ppp::{v1, v2, HeaderResult, PartialResult};
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use tokio::io::AsyncReadExt;

/// The largest header taken: a v1 line is at most 107 bytes; a v2 header's TLVs (AWS's VPC
/// endpoint id, GCP's PSC id, an SSL block) fit well within this.
pub(crate) const MAX_HEADER: usize = 1024;

/// A v1 line's longest form, CRLF included.
const V1_MAX: usize = 107;

/// Why a connection's PROXY header was not taken.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum BadHeader {
    /// Not a PROXY header, or one that breaks the spec (the parser's reason).
    Invalid(String),
    /// A v2 header declaring more than `MAX_HEADER` bytes.
    TooLong,
    /// The connection ended before the header did.
    Closed,
    /// The connection ended without a byte: a balancer's TCP health check, not a refusal.
    Silent,
}

/// What a complete header says.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Header {
    /// Its length in bytes.
    pub(crate) len: usize,
    /// The client's address; `None` for v1 `UNKNOWN`, v2 `LOCAL` (the balancer's own
    /// health check) and non-TCP families: the connection's own peer address stands.
    pub(crate) client: Option<SocketAddr>,
}

/// Parses the start of a connection: `Ok(None)` while more bytes may complete a header.
pub(crate) fn parse(buf: &[u8]) -> Result<Option<Header>, BadHeader> {
    // A v1 line is parsed whole: cut inside a field, the parser takes it for a bad one, and
    // a whole line missing a field for one that is still coming.
    if buf.first() == Some(&b'P') {
        let Some(end) = buf.windows(2).take(V1_MAX).position(|w| w == b"\r\n") else {
            return if buf.len() < V1_MAX { Ok(None) } else { Err(BadHeader::TooLong) };
        };
        return match v1::Header::try_from(&buf[..end + 2]) {
            Ok(header) => Ok(Some(Header { len: end + 2, client: v1_client(&header) })),
            Err(e) => Err(BadHeader::Invalid(e.to_string())),
        };
    }
    let parsed = HeaderResult::parse(buf);
    if let HeaderResult::V2(Err(v2::ParseError::Partial(_, declared))) = &parsed {
        if 16 + declared > MAX_HEADER {
            return Err(BadHeader::TooLong);
        }
    }
    if parsed.is_incomplete() {
        return if buf.len() >= MAX_HEADER { Err(BadHeader::TooLong) } else { Ok(None) };
    }
    match parsed {
        // Unreached: a v1 line starts with `P`, handled above.
        HeaderResult::V1(Ok(header)) => Ok(Some(Header { len: header.header.len(), client: v1_client(&header) })),
        HeaderResult::V2(Ok(header)) => Ok(Some(Header { len: header.len(), client: v2_client(&header) })),
        HeaderResult::V1(Err(e)) => Err(BadHeader::Invalid(e.to_string())),
        HeaderResult::V2(Err(e)) => Err(BadHeader::Invalid(e.to_string())),
    }
}

fn v1_client(header: &v1::Header) -> Option<SocketAddr> {
    match header.addresses {
        v1::Addresses::Tcp4(a) => Some(SocketAddr::from((a.source_address, a.source_port))),
        v1::Addresses::Tcp6(a) => Some(SocketAddr::from((a.source_address, a.source_port))),
        v1::Addresses::Unknown => None,
    }
}

fn v2_client(header: &v2::Header) -> Option<SocketAddr> {
    if header.command != v2::Command::Proxy || header.protocol != v2::Protocol::Stream {
        return None;
    }
    match header.addresses {
        v2::Addresses::IPv4(a) => Some(SocketAddr::from((a.source_address, a.source_port))),
        v2::Addresses::IPv6(a) => Some(SocketAddr::from((a.source_address, a.source_port))),
        v2::Addresses::Unspecified | v2::Addresses::Unix(_) => None,
    }
}

/// Reads the header off `stream` (the caller bounds the time), puts back what followed it,
/// and makes the carried address the stream's peer address. Returns the stream and the
/// carried address.
pub(crate) async fn take(mut stream: Stream) -> Result<(Stream, Option<SocketAddr>), BadHeader> {
    let mut buf = vec![0; MAX_HEADER];
    let mut filled = 0;
    let header = loop {
        let n = stream.read(&mut buf[filled..]).await.map_err(|_| BadHeader::Closed)?;
        if n == 0 {
            return Err(if filled == 0 { BadHeader::Silent } else { BadHeader::Closed });
        }
        filled += n;
        if let Some(header) = parse(&buf[..filled])? {
            break header;
        }
    };
    let Ok(mut l4) = stream.into_any().downcast::<L4Stream>() else {
        // Only a plain TCP stream comes from Pingora's accept; nothing to rewind otherwise.
        return Err(BadHeader::Invalid("not a TCP connection".into()));
    };
    l4.rewind(&buf[header.len..filled]);
    if let Some(client) = header.client {
        let digest = SocketDigest::from_raw_fd(l4.as_raw_fd());
        let _ = digest.peer_addr.set(Some(PingoraAddr::Inet(client)));
        l4.set_socket_digest(digest);
    }
    Ok((l4, header.client))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v2_header(command: u8, family: u8, addresses: &[u8], tlvs: &[u8]) -> Vec<u8> {
        let mut h = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
        h.extend([0x20 | command, family]);
        h.extend(((addresses.len() + tlvs.len()) as u16).to_be_bytes());
        h.extend(addresses);
        h.extend(tlvs);
        h
    }

    #[test]
    fn v1_tcp4_tcp6_and_unknown() {
        let h = b"PROXY TCP4 203.0.113.7 10.0.0.1 51000 443\r\nGET / HTTP/1.1\r\n";
        let got = parse(h).unwrap().unwrap();
        assert_eq!(got, Header { len: 43, client: Some("203.0.113.7:51000".parse().unwrap()) });
        let h = b"PROXY TCP6 2001:db8::7 2001:db8::1 51000 443\r\n";
        assert_eq!(parse(h).unwrap().unwrap().client, Some("[2001:db8::7]:51000".parse().unwrap()));
        assert_eq!(parse(b"PROXY UNKNOWN\r\n").unwrap().unwrap(), Header { len: 15, client: None });
    }

    #[test]
    fn v2_ipv4_ipv6_local_and_tlvs() {
        let ipv4 = [203, 0, 113, 7, 10, 0, 0, 1, 0xc7, 0x38, 0x01, 0xbb];
        let h = v2_header(1, 0x11, &ipv4, &[0x04, 0, 1, 0]); // a NOOP TLV, ignored
        let got = parse(&h).unwrap().unwrap();
        assert_eq!(got, Header { len: 16 + 16, client: Some("203.0.113.7:51000".parse().unwrap()) });
        let mut ipv6 = [0u8; 36];
        ipv6[..16].copy_from_slice(&"2001:db8::7".parse::<std::net::Ipv6Addr>().unwrap().octets());
        ipv6[32..34].copy_from_slice(&51000u16.to_be_bytes());
        let got = parse(&v2_header(1, 0x21, &ipv6, &[])).unwrap().unwrap();
        assert_eq!(got.client, Some("[2001:db8::7]:51000".parse().unwrap()));
        // LOCAL: the balancer's own connection; UDP: not a client of this stream.
        assert_eq!(parse(&v2_header(0, 0x11, &ipv4, &[])).unwrap().unwrap().client, None);
        assert_eq!(parse(&v2_header(1, 0x12, &ipv4, &[])).unwrap().unwrap().client, None);
    }

    #[test]
    fn partial_headers_wait_for_more_at_every_cut() {
        let v1 = b"PROXY TCP4 203.0.113.7 10.0.0.1 51000 443\r\n".to_vec();
        let v2 = v2_header(1, 0x11, &[203, 0, 113, 7, 10, 0, 0, 1, 0xc7, 0x38, 0x01, 0xbb], &[]);
        for whole in [v1, v2] {
            for cut in 0..whole.len() {
                assert_eq!(parse(&whole[..cut]), Ok(None), "cut at {cut}");
            }
            assert!(parse(&whole).unwrap().is_some());
        }
    }

    #[test]
    fn plain_http_bad_signatures_and_lengths_are_refused() {
        for bad in [
            &b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"[..],
            b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",
            b"PROXY TCP4 203.0.113.7 10.0.0.1 51000\r\n",
            b"PROXY TCP4 203.0.113.7 10.0.0.1\r\nGET / HTTP/1.1\r\n",
            b"PROXY TCP4 999.0.113.7 10.0.0.1 51000 443\r\n",
            b"PROXY TCP9 1.2.3.4 1.2.3.4 1 2\r\n",
            b"\r\n\r\n\0\r\nQUIT\n\x31\x11\x00\x0c",
        ] {
            assert!(matches!(parse(bad), Err(BadHeader::Invalid(_))), "{bad:?}: {:?}", parse(bad));
        }
        // A v2 address block shorter than its family needs.
        let short = v2_header(1, 0x11, &[1, 2, 3, 4], &[]);
        assert!(matches!(parse(&short), Err(BadHeader::Invalid(_))), "{:?}", parse(&short));
        // A v1 line with no end within 107 bytes.
        let long = format!("PROXY TCP4 {}", "1".repeat(120));
        assert!(parse(long.as_bytes()).is_err());
    }

    #[test]
    fn an_oversized_v2_header_is_refused_from_its_first_16_bytes() {
        let mut h = b"\r\n\r\n\0\r\nQUIT\n\x21\x11".to_vec();
        h.extend(((MAX_HEADER - 15) as u16).to_be_bytes());
        assert_eq!(parse(&h), Err(BadHeader::TooLong));
        let mut h = b"\r\n\r\n\0\r\nQUIT\n\x21\x11".to_vec();
        h.extend(((MAX_HEADER - 16) as u16).to_be_bytes());
        assert_eq!(parse(&h), Ok(None));
    }
}
