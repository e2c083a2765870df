//! Route selection: which configured route serves a request, from its Host and path.
//!
//! The longest matching `path_prefix` wins; among routes with the same prefix an exact host
//! beats a wildcard (longer suffix first), which beats a route without `host`. Prefixes match
//! on segment boundaries: `/ws` matches `/ws` and `/ws/x`, never `/wsx`.

use crate::config::model::{HostPattern, Route};

pub struct Router {
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
    pub fn new(routes: &[Route]) -> Self {
        let routes: Vec<_> = routes.iter().map(|r| (r.host.clone(), r.path_prefix.clone())).collect();
        let mut order: Vec<usize> = (0..routes.len()).collect();
        // Stable sort: equally specific routes keep their file order.
        order.sort_by_key(|&i| std::cmp::Reverse((routes[i].1.len(), host_rank(&routes[i].0))));
        Router { order, routes }
    }

    /// `host` is the request's Host (any port is ignored); `path` excludes the query.
    pub fn select(&self, host: Option<&str>, path: &str) -> Option<usize> {
        let host = host.map(normalize_host);
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
    use crate::config::model::{HostHeader, WebSocketPolicy};
    use std::time::Duration;

    pub(super) fn route(host: Option<&str>, prefix: &str) -> Route {
        Route {
            name: String::new(),
            host: host.map(|h| crate::config::validate_host_pattern(h).unwrap()),
            path_prefix: prefix.to_string(),
            upstream: 0,
            host_header: HostHeader::Preserve,
            set_headers: vec![],
            remove_headers: vec![],
            websocket: WebSocketPolicy { enabled: true, idle_timeout: Duration::from_secs(1), allowed_origins: None, max_message_bytes: 1 << 20, max_sessions: None },
        }
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

    proptest! {
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
