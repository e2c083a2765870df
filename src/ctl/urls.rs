//! Request targets for the admin API. Pool names and backend addresses go into paths and
//! queries percent-encoded: an IPv6 backend (`[::1]:9001`) has `[` and `]`, which a path
//! segment may not carry raw (RFC 3986 §3.3), and a name could hold `/`, `?`, `&` or `%`.

/// `/upstreams/{pool}/backends/{addr}/{action}`.
pub(crate) fn backend(pool: &str, addr: &str, action: &str) -> String {
    format!("/upstreams/{}/backends/{}/{action}", encode(pool), encode(addr))
}

/// `path?k=v&...` with the parameters that are set, values percent-encoded.
pub(crate) fn with_query<'a>(path: &str, params: impl IntoIterator<Item = (&'a str, Option<&'a str>)>) -> String {
    let pairs: Vec<String> =
        params.into_iter().filter_map(|(key, value)| Some(format!("{key}={}", encode(value?)))).collect();
    if pairs.is_empty() {
        path.to_string()
    } else {
        format!("{path}?{}", pairs.join("&"))
    }
}

/// Percent-encodes everything but RFC 3986's unreserved characters, `:` and `@`, which is
/// safe in a path segment and in a query value alike (`/`, `?`, `&`, `=`, `+` and `%` are
/// encoded). `:` stays so `127.0.0.1:9001` reads as itself in the server's logs.
pub(crate) fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~' | b':' | b'@') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backend_addresses_are_percent_encoded_into_one_segment() {
        assert_eq!(backend("app", "127.0.0.1:9001", "drain"), "/upstreams/app/backends/127.0.0.1:9001/drain");
        assert_eq!(backend("app", "[::1]:80", "enable"), "/upstreams/app/backends/%5B::1%5D:80/enable");
        assert_eq!(backend("a/b c", "x", "drain"), "/upstreams/a%2Fb%20c/backends/x/drain");
    }

    #[test]
    fn non_ascii_text_is_encoded_byte_by_byte() {
        assert_eq!(encode("é~ok"), "%C3%A9~ok");
        assert_eq!(encode("50%+1"), "50%25%2B1");
    }

    #[test]
    fn only_set_parameters_reach_the_query() {
        assert_eq!(with_query("/sessions", [("upstream", None), ("limit", None)]), "/sessions");
        assert_eq!(
            with_query("/sessions", [("upstream", Some("app")), ("backend", Some("[::1]:80")), ("route", None)]),
            "/sessions?upstream=app&backend=%5B::1%5D:80"
        );
        assert_eq!(
            with_query("/sessions/17", [("code", Some("1008")), ("reason", Some("bye & thanks"))]),
            "/sessions/17?code=1008&reason=bye%20%26%20thanks"
        );
    }
}
