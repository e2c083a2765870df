//! nginx's inheritance of the directives a location uses: a level inherits each from the
//! level around it unless it sets that directive itself; for the list-like ones
//! (`proxy_set_header`, `ssl_certificate`) one occurrence at a level replaces the whole
//! inherited list, which is the rule that makes a lone `proxy_set_header` in a location
//! silently drop the server's others.

use crate::import::syntax::Directive;

/// Directives resolved through the scope rather than where they stand.
pub(crate) const INHERITED: &[&str] = &[
    "proxy_set_header",
    "proxy_read_timeout",
    "proxy_send_timeout",
    "proxy_connect_timeout",
    "proxy_http_version",
    "proxy_ssl_verify",
    "proxy_ssl_server_name",
    "proxy_ssl_name",
    "proxy_ssl_trusted_certificate",
    "ssl_certificate",
    "ssl_certificate_key",
    "http2",
];

#[derive(Debug, Clone, Default)]
pub(crate) struct Scope<'a> {
    pub(crate) headers: Vec<&'a Directive>,
    pub(crate) read_timeout: Option<&'a Directive>,
    pub(crate) send_timeout: Option<&'a Directive>,
    pub(crate) connect_timeout: Option<&'a Directive>,
    pub(crate) http_version: Option<&'a Directive>,
    pub(crate) ssl_verify: Option<&'a Directive>,
    pub(crate) ssl_server_name: Option<&'a Directive>,
    pub(crate) ssl_name: Option<&'a Directive>,
    pub(crate) ssl_trusted_certificate: Option<&'a Directive>,
    pub(crate) certificates: Vec<&'a Directive>,
    pub(crate) certificate_keys: Vec<&'a Directive>,
    /// `http2 on` (nginx 1.25.1+; `http` or `server`).
    pub(crate) http2: Option<&'a Directive>,
}

impl<'a> Scope<'a> {
    /// The scope inside a block whose directives are `block`.
    pub(crate) fn enter(&self, block: &'a [Directive]) -> Scope<'a> {
        let mut s = self.clone();
        let all = |name: &str| -> Vec<&'a Directive> { block.iter().filter(|d| d.name() == name).collect() };
        let first = |name: &str| block.iter().find(|d| d.name() == name);
        for (name, list) in [
            ("proxy_set_header", &mut s.headers),
            ("ssl_certificate", &mut s.certificates),
            ("ssl_certificate_key", &mut s.certificate_keys),
        ] {
            let here = all(name);
            if !here.is_empty() {
                *list = here;
            }
        }
        for (name, slot) in [
            ("proxy_read_timeout", &mut s.read_timeout),
            ("proxy_send_timeout", &mut s.send_timeout),
            ("proxy_connect_timeout", &mut s.connect_timeout),
            ("proxy_http_version", &mut s.http_version),
            ("proxy_ssl_verify", &mut s.ssl_verify),
            ("proxy_ssl_server_name", &mut s.ssl_server_name),
            ("proxy_ssl_name", &mut s.ssl_name),
            ("proxy_ssl_trusted_certificate", &mut s.ssl_trusted_certificate),
            ("http2", &mut s.http2),
        ] {
            if let Some(d) = first(name) {
                *slot = Some(d);
            }
        }
        s
    }

    /// Whether a flag directive (`proxy_ssl_verify on`) is on here.
    pub(crate) fn on(d: Option<&Directive>) -> bool {
        d.and_then(|d| d.arg(0)).is_some_and(|v| v.eq_ignore_ascii_case("on"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::import::parser::parse;

    #[test]
    fn a_list_at_a_level_replaces_the_inherited_one() {
        let tree = parse(
            "proxy_set_header A 1; proxy_set_header B 2; proxy_read_timeout 1h;\n\
             location /a { proxy_set_header C 3; }\n location /b { proxy_read_timeout 5s; }",
            0,
        )
        .unwrap();
        let http = Scope::default().enter(&tree);
        let a = http.enter(tree[3].children());
        let b = http.enter(tree[4].children());
        let names = |s: &Scope| s.headers.iter().map(|d| d.arg(0).unwrap().to_string()).collect::<Vec<_>>();
        assert_eq!(names(&http), ["A", "B"]);
        assert_eq!(names(&a), ["C"]);
        assert_eq!(names(&b), ["A", "B"]);
        assert_eq!(a.read_timeout.and_then(|d| d.arg(0)), Some("1h"));
        assert_eq!(b.read_timeout.and_then(|d| d.arg(0)), Some("5s"));
    }
}
