//! Route selection: which configured route serves a request, from its Host and path.
//!
//! The longest matching `path_prefix` wins; among routes with the same prefix an exact host
//! beats a wildcard (longer suffix first), which beats a route without `host`. Prefixes match
//! on segment boundaries: `/ws` matches `/ws` and `/ws/x`, never `/wsx`.
//!
//! Paths are matched in normal form (`normalize_path`), so that spellings of one path that
//! a backend would resolve alike (`//ws`, `/./ws`, `/a/../ws`, `/%77s`) cannot pick another
//! route, and with it another Origin allowlist or WebSocket policy. The backend still
//! receives the path as the client sent it.

use crate::config::model::{HostPattern, Route};
use std::borrow::Cow;

pub(crate) struct Router {
    /// Route indices, most specific first, so the first match is the answer.
    order: Vec<usize>,
    routes: Vec<(Option<HostPattern>, String)>,
}

fn host_rank(host: &Option<HostPattern>) -> usize {
    match host {
        Some(HostPattern::Exact(_)) => usize::MAX,
        Some(HostPattern::WildcardSuffix(suffix)) => suffix.len(),
        None => 0,
    }
}

impl Router {
    pub(crate) fn new(routes: &[Route]) -> Self {
        let routes: Vec<_> = routes.iter().map(|r| (r.host.clone(), r.path_prefix.clone())).collect();
        let mut order: Vec<usize> = (0..routes.len()).collect();
        // Stable sort: equally specific routes keep their file order.
        order.sort_by_key(|&i| std::cmp::Reverse((routes[i].1.len(), host_rank(&routes[i].0))));
        Router { order, routes }
    }

    /// `host` is the request's Host (any port is ignored); `path` excludes the query and is
    /// matched in normal form.
    pub(crate) fn select(&self, host: Option<&str>, path: &str) -> Option<usize> {
        let host = host.map(normalize_host);
        let path = normalize_path(path);
        let path = path.as_ref();
        self.order.iter().copied().find(|&i| {
            let (pattern, prefix) = &self.routes[i];
            host_matches(pattern.as_ref(), host.as_deref()) && prefix_matches(prefix, path)
        })
    }
}

/// Lower-cases and strips the port: `Chat.Example.com:8443` → `chat.example.com`.
fn normalize_host(host: &str) -> String {
    let host = host.trim();
    let without_port = if host.starts_with('[') {
        host.split_inclusive(']').next().unwrap_or(host)
    } else {
        host.rsplit_once(':').map_or(host, |(h, _)| h)
    };
    without_port.trim_end_matches('.').to_ascii_lowercase()
}

/// `path` in the normal form of RFC 3986 §6.2.2: percent-encoded unreserved characters
/// decoded, the hex digits of other escapes upper-cased, dot segments removed (§5.2.4; `..`
/// stops at the root), plus runs of `/` merged into one (as nginx's `merge_slashes`). Escapes
/// of other characters stay encoded: `%2F` is data, not a separator. Borrowed, without
/// allocating, when the path is already normal, as nearly every path is.
pub(crate) fn normalize_path(path: &str) -> Cow<'_, str> {
    let bytes = path.as_bytes();
    if bytes.first() != Some(&b'/') || !needs_normalizing(bytes) {
        return Cow::Borrowed(path);
    }
    let decoded = decode_unreserved(bytes);
    // Only whole ASCII segments are dropped and ASCII escapes decoded, so valid UTF-8 in
    // gives valid UTF-8 out; lossy only to need no unwrap.
    Cow::Owned(String::from_utf8_lossy(&remove_dot_segments(&decoded)).into_owned())
}

/// RFC 3986 §2.3.
fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// The byte escaped at `bytes[i..i + 3]` (`%XX`), if that is a valid escape.
fn escape_at(bytes: &[u8], i: usize) -> Option<u8> {
    let hex = |b: Option<&u8>| b.and_then(|b| (*b as char).to_digit(16));
    Some((hex(bytes.get(i + 1))? * 16 + hex(bytes.get(i + 2))?) as u8)
}

/// Whether `normalize_path` would change `path` (which starts with `/`): one pass, no allocation.
fn needs_normalizing(path: &[u8]) -> bool {
    let mut segment_start = 1;
    for i in 1..=path.len() {
        let at_end = i == path.len();
        if at_end || path[i] == b'/' {
            let segment = &path[segment_start..i];
            // An empty segment is a doubled `/`, except the one after a trailing `/`.
            if (segment.is_empty() && !at_end) || segment == b"." || segment == b".." {
                return true;
            }
            segment_start = i + 1;
        } else if path[i] == b'%' {
            match escape_at(path, i) {
                Some(b) if is_unreserved(b) => return true,
                Some(_) if path[i + 1..i + 3].iter().any(u8::is_ascii_lowercase) => return true,
                Some(_) => {}
                // A `%` that starts no escape.
                None => return true,
            }
        }
    }
    false
}

/// Decodes escapes of unreserved characters and upper-cases the others' hex digits. A `%`
/// that starts no escape becomes `%25`, so that decoding next to it cannot make a new
/// escape out of it (`/%a%41` would otherwise give `/%aA`, which normalises again).
fn decode_unreserved(path: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(path.len());
    let mut i = 0;
    while i < path.len() {
        match (path[i], escape_at(path, i)) {
            (b'%', Some(b)) if is_unreserved(b) => out.push(b),
            (b'%', Some(_)) => {
                out.push(b'%');
                out.extend(path[i + 1..i + 3].iter().map(u8::to_ascii_uppercase));
            }
            (b'%', None) => {
                out.extend_from_slice(b"%25");
                i += 1;
                continue;
            }
            (b, _) => {
                out.push(b);
                i += 1;
                continue;
            }
        }
        i += 3;
    }
    out
}

/// RFC 3986 §5.2.4 on an absolute path, with empty segments dropped: a path ending in `/`,
/// `/.` or `/..` keeps a trailing `/`.
fn remove_dot_segments(path: &[u8]) -> Vec<u8> {
    let mut segments: Vec<&[u8]> = Vec::new();
    let mut trailing_slash = false;
    for segment in path[1..].split(|&b| b == b'/') {
        trailing_slash = true;
        match segment {
            b"" | b"." => {}
            b".." => {
                segments.pop();
            }
            segment => {
                segments.push(segment);
                trailing_slash = false;
            }
        }
    }
    let mut out = Vec::with_capacity(path.len());
    for segment in &segments {
        out.push(b'/');
        out.extend_from_slice(segment);
    }
    if trailing_slash || out.is_empty() {
        out.push(b'/');
    }
    out
}

fn host_matches(pattern: Option<&HostPattern>, host: Option<&str>) -> bool {
    match (pattern, host) {
        (None, _) => true,
        (Some(_), None) => false,
        (Some(HostPattern::Exact(h)), Some(host)) => h == host,
        (Some(HostPattern::WildcardSuffix(suffix)), Some(host)) => {
            host.len() > suffix.len() && host.ends_with(suffix.as_str())
        }
    }
}

fn prefix_matches(prefix: &str, path: &str) -> bool {
    if prefix == "/" {
        return true;
    }
    match path.strip_prefix(prefix) {
        Some(rest) => rest.is_empty() || rest.starts_with('/'),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(super) fn route(host: Option<&str>, prefix: &str) -> Route {
        Route { host: host.map(|h| crate::config::validate_host_pattern(h).unwrap()), ..Route::for_tests(prefix) }
    }

    fn router() -> Router {
        Router::new(&[
            route(Some("chat.example.com"), "/websocket"), // 0
            route(None, "/websocket"),                     // 1
            route(None, "/"),                              // 2
            route(Some("*.example.com"), "/api"),          // 3
            route(Some("a.example.com"), "/api"),          // 4
            route(None, "/ws"),                            // 5
        ])
    }

    #[test]
    fn longest_prefix_wins_on_segment_boundaries() {
        let r = router();
        assert_eq!(r.select(None, "/ws"), Some(5));
        assert_eq!(r.select(None, "/ws/room/1"), Some(5));
        assert_eq!(r.select(None, "/wsx"), Some(2));
        assert_eq!(r.select(None, "/websocket"), Some(1));
        assert_eq!(r.select(None, "/websocketx"), Some(2));
        assert_eq!(r.select(None, "/"), Some(2));
        assert_eq!(r.select(None, ""), Some(2));
    }

    #[test]
    fn exact_host_beats_wildcard_beats_none_and_ports_are_ignored() {
        let r = router();
        assert_eq!(r.select(Some("chat.example.com"), "/websocket/x"), Some(0));
        assert_eq!(r.select(Some("CHAT.example.com:8443"), "/websocket"), Some(0));
        assert_eq!(r.select(Some("other.example.com"), "/websocket"), Some(1));
        assert_eq!(r.select(Some("a.example.com"), "/api/v1"), Some(4));
        assert_eq!(r.select(Some("b.example.com"), "/api"), Some(3));
        assert_eq!(r.select(Some("x.y.example.com"), "/api"), Some(3));
        // The bare domain is not covered by `*.example.com`.
        assert_eq!(r.select(Some("example.com"), "/api"), Some(2));
        assert_eq!(r.select(Some("[::1]:8080"), "/api"), Some(2));
    }

    #[test]
    fn no_matching_route_is_none() {
        let r = Router::new(&[route(Some("only.example.com"), "/")]);
        assert_eq!(r.select(Some("other.example.com"), "/"), None);
        assert_eq!(r.select(None, "/"), None);
    }

    #[test]
    fn normalizes_paths() {
        let cases = [
            ("/ws", "/ws"),
            ("//ws", "/ws"),
            ("/./ws", "/ws"),
            ("/a/../ws", "/ws"),
            ("/%77s", "/ws"),
            ("/%77%73/x", "/ws/x"),
            ("/%2e%2E/ws", "/ws"),
            ("/../../ws", "/ws"),
            ("/..", "/"),
            ("/a/..", "/"),
            ("/ws/", "/ws/"),
            ("/ws//", "/ws/"),
            ("/ws/.", "/ws/"),
            ("/ws/x/..", "/ws/"),
            ("/a//b///c", "/a/b/c"),
            ("/%7e", "/~"),
            ("/%7E", "/~"),
            ("/a%2Fb", "/a%2Fb"),
            ("/a%2fb", "/a%2Fb"),
            ("/x/%2F../ws", "/x/%2F../ws"),
            ("/a%2F..%2Fws", "/a%2F..%2Fws"),
            ("/%20", "/%20"),
            ("/%zz/%4", "/%25zz/%254"),
            ("/%a%41", "/%25aA"),
            ("/.well-known/x", "/.well-known/x"),
            ("/...", "/..."),
            ("/caf\u{e9}/../ws", "/ws"),
            ("/", "/"),
            ("", ""),
            ("*", "*"),
        ];
        for (raw, normal) in cases {
            assert_eq!(normalize_path(raw), normal, "{raw}");
            assert_eq!(
                matches!(normalize_path(raw), Cow::Borrowed(_)),
                raw == normal,
                "{raw}: allocates only when it changes something"
            );
            assert_eq!(normalize_path(normal), normal, "{normal} is normal");
        }
    }

    #[test]
    fn routes_on_the_normalized_path() {
        let r = router();
        for path in ["//ws", "/./ws", "/a/../ws", "/%77s", "/%2e/ws", "/ws/x/..", "/../ws"] {
            assert_eq!(r.select(None, path), Some(5), "{path}");
        }
        assert_eq!(r.select(None, "/ws%2Fx"), Some(2), "an encoded `/` is not a separator");
        assert_eq!(r.select(None, "/ws/.."), Some(2));
    }

    #[test]
    fn normalizes_hosts() {
        assert_eq!(normalize_host("Example.COM:80"), "example.com");
        assert_eq!(normalize_host("example.com."), "example.com");
        assert_eq!(normalize_host("[::1]:443"), "[::1]");
        assert_eq!(normalize_host("[::1]"), "[::1]");
    }
}

#[cfg(test)]
mod proptests {
    use super::*;
    use proptest::prelude::*;

    fn segment() -> impl Strategy<Value = String> {
        prop::sample::select(vec!["a", "ab", "ws", "wsx", "api", "v1", "x"]).prop_map(String::from)
    }
    fn path() -> impl Strategy<Value = String> {
        prop::collection::vec(segment(), 0..4).prop_map(|s| format!("/{}", s.join("/")))
    }

    fn messy_path() -> impl Strategy<Value = String> {
        let piece = prop::sample::select(vec![
            "/", "//", ".", "..", "%2e", "%2E", "%2F", "%2f", "a", "ws", "%77", "%7e", "%41", "%zz", "%",
        ]);
        prop::collection::vec(piece, 0..8).prop_map(|p| format!("/{}", p.concat()))
    }

    proptest! {
        /// Normalising is idempotent, borrows exactly when it changes nothing, and leaves
        /// no empty or dot segment behind.
        #[test]
        fn normal_form_is_a_fixed_point(path in messy_path()) {
            let normal = normalize_path(&path).into_owned();
            prop_assert_eq!(normalize_path(&normal).into_owned(), normal.clone());
            prop_assert!(matches!(normalize_path(&normal), Cow::Borrowed(_)));
            prop_assert_eq!(matches!(normalize_path(&path), Cow::Borrowed(_)), normal == path);
            let inner = normal.trim_end_matches('/');
            prop_assert!(inner.is_empty() || inner[1..].split('/').all(|s| !s.is_empty() && s != "." && s != ".."), "{}", normal);
        }

        /// The chosen route always matches on a segment boundary, and no matching route has
        /// a longer prefix: longest prefix wins, `/ws` never takes `/wsx`.
        #[test]
        fn longest_matching_prefix_on_segment_boundaries(prefixes in prop::collection::btree_set(path(), 1..6), request in path()) {
            let routes: Vec<Route> = prefixes.iter().map(|p| tests::route(None, p)).collect();
            let router = Router::new(&routes);
            let matches = |prefix: &str| prefix == "/" || request == prefix || request.starts_with(&format!("{prefix}/"));
            match router.select(None, &request) {
                Some(i) => {
                    let chosen = &routes[i].path_prefix;
                    prop_assert!(matches(chosen), "{chosen} does not match {request}");
                    prop_assert!(routes.iter().all(|r| !matches(&r.path_prefix) || r.path_prefix.len() <= chosen.len()));
                }
                None => prop_assert!(routes.iter().all(|r| !matches(&r.path_prefix))),
            }
        }
    }
}
