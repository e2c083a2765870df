//! Requests refused before routing, on RFC 9112 grounds Pingora leaves to the application.
//! A pure function of the request head.

use pingora::http::RequestHeader;

/// Longer request targets get 414 (nginx's default large_client_header_buffers is 8 KiB).
pub const MAX_TARGET_BYTES: usize = 8 * 1024;

/// Length of the request target as sent, without formatting the URI (this runs per request).
pub fn target_len(uri: &http::Uri) -> usize {
    let authority = uri.authority().map_or(0, |a| a.as_str().len());
    let scheme = uri.scheme_str().map_or(0, |s| s.len() + 3);
    scheme + authority + uri.path_and_query().map_or(0, |p| p.as_str().len())
}

/// Why a request must not be proxied (it is answered with `status()`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Violation {
    /// 414: longer than `MAX_TARGET_BYTES`.
    TargetTooLong,
    /// 400: HTTP/1.1 without Host.
    MissingHost,
    /// 501: a transfer coding other than `chunked`.
    UnsupportedTransferCoding,
}

impl Violation {
    pub fn status(self) -> u16 {
        match self {
            Violation::TargetTooLong => 414,
            Violation::MissingHost => 400,
            Violation::UnsupportedTransferCoding => 501,
        }
    }

    pub fn reason(self) -> &'static str {
        match self {
            Violation::TargetTooLong => "request target too long",
            Violation::MissingHost => "missing Host header",
            Violation::UnsupportedTransferCoding => "unsupported transfer coding",
        }
    }
}

/// The first rule `req` breaks, if any.
pub fn check(req: &RequestHeader) -> Result<(), Violation> {
    if target_len(&req.uri) > MAX_TARGET_BYTES {
        return Err(Violation::TargetTooLong);
    }
    // RFC 9112 §3.2: a server MUST answer 400 to an HTTP/1.1 request without Host.
    if req.version == http::Version::HTTP_11 && !req.headers.contains_key(http::header::HOST) {
        return Err(Violation::MissingHost);
    }
    // RFC 9112 §6.1: a transfer coding we do not understand is 501; forwarding
    // `gzip, chunked` with the gzip silently dropped would hand the backend bytes it cannot read.
    for te in req.headers.get_all(http::header::TRANSFER_ENCODING) {
        if !te.as_bytes().eq_ignore_ascii_case(b"chunked") {
            return Err(Violation::UnsupportedTransferCoding);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(target: &str, version: http::Version, headers: &[(&str, &str)]) -> RequestHeader {
        let mut r = RequestHeader::build("GET", target.as_bytes(), None).unwrap();
        r.set_version(version);
        for (n, v) in headers {
            r.append_header(n.to_string(), *v).unwrap();
        }
        r
    }

    #[test]
    fn measures_targets_like_they_were_sent() {
        for target in ["/", "/a/b?c=d", "http://example.com:8080/x?y"] {
            let uri: http::Uri = target.parse().unwrap();
            assert_eq!(target_len(&uri), uri.to_string().len(), "{target}");
        }
    }

    #[test]
    fn refuses_what_rfc_9112_refuses() {
        let host = [("Host", "a")];
        assert_eq!(check(&req("/", http::Version::HTTP_11, &host)), Ok(()));
        assert_eq!(check(&req("/", http::Version::HTTP_11, &[])).unwrap_err().status(), 400);
        assert_eq!(check(&req("/", http::Version::HTTP_10, &[])), Ok(()));
        let long = format!("/{}", "a".repeat(MAX_TARGET_BYTES));
        assert_eq!(check(&req(&long, http::Version::HTTP_11, &host)).unwrap_err().status(), 414);
        assert_eq!(
            check(&req("/", http::Version::HTTP_11, &[("Host", "a"), ("Transfer-Encoding", "Chunked")])),
            Ok(())
        );
        assert_eq!(
            check(&req("/", http::Version::HTTP_11, &[("Host", "a"), ("Transfer-Encoding", "gzip, chunked")]))
                .unwrap_err()
                .status(),
            501
        );
    }
}
