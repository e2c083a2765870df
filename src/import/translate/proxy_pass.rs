//! `proxy_pass URL` → the pool a route sends to: `http://NAME` (an `upstream` block),
//! `http://host:port` (a one-backend pool named after it), `https://...` (TLS to the
//! pool). A URL naming no upstream while exactly one upstream block exists is the recipe's
//! classic typo: the one upstream is suggested and used, and the report says so.

use super::drafts::{Ctx, Target};
use super::scope::Scope;
use crate::import::model::UpstreamTlsOut;
use crate::import::report::{Level, Report};
use crate::import::syntax::Directive;
use crate::import::values::host_port;

/// Where `d` (a `proxy_pass` in the location with path `prefix`) sends requests; None
/// when that cannot be translated (reported).
pub(crate) fn target(d: &Directive, prefix: &str, scope: &Scope, ctx: &Ctx, report: &mut Report) -> Option<Target> {
    let url = match d.args() {
        [] => {
            report.at(d, Level::Mistake, "expects a URL");
            return None;
        }
        [one] => one.text.as_str(),
        [one, ..] => {
            let why = format!(
                "takes one URL, got `{}`: a `;` missing at the end of the line? Reading `{}`",
                d.args_text(),
                one.text
            );
            report.at(d, Level::Mistake, why);
            one.text.as_str()
        }
    };
    if url.contains('$') {
        report.at(
            d,
            Level::Warning,
            "not translated: a URL with variables is chosen per request; a wsgate route names one pool",
        );
        return None;
    }
    let (tls, rest) = if let Some(rest) = url.strip_prefix("http://") {
        (false, rest)
    } else if let Some(rest) = url.strip_prefix("https://") {
        (true, rest)
    } else {
        report.at(d, Level::Mistake, format!("`{url}` is not an http:// or https:// URL: nginx refuses it"));
        return None;
    };
    let (authority, path) = match rest.find('/') {
        Some(at) => rest.split_at(at),
        None => (rest, ""),
    };
    if authority.starts_with("unix:") {
        report.at(d, Level::Warning, "not translated: wsgate connects to backends over TCP only");
        return None;
    }
    let Some(hp) = host_port(authority) else {
        report.at(d, Level::Mistake, format!("`{authority}` is not a host or host:port"));
        return None;
    };
    let default_port = if tls { 443 } else { 80 };
    let upstream = |name: &str| ctx.upstreams.iter().find(|(n, _)| n == name);
    let bare_name = hp.port.is_none() && !hp.is_ip() && !hp.host.contains('.') && hp.host != "localhost";
    let (pool, implicit) = if hp.port.is_none() && upstream(&hp.host).is_some() {
        (hp.host.clone(), None)
    } else if bare_name && ctx.upstreams.len() == 1 {
        let (only, block) = &ctx.upstreams[0];
        let why = format!(
            "no upstream `{}`; the only upstream is `{only}` ({}): using it, as that is most likely what was meant (nginx would look `{}` up as a host name)",
            hp.host,
            ctx.place(block),
            hp.host
        );
        report.at(d, Level::Mistake, why);
        (only.clone(), None)
    } else {
        if bare_name && !ctx.upstreams.is_empty() {
            let names: Vec<&str> = ctx.upstreams.iter().map(|(n, _)| n.as_str()).collect();
            let why = format!(
                "no upstream `{}` (defined: {}): nginx looks it up as a host name, and so does this translation",
                hp.host,
                names.join(", ")
            );
            report.at(d, Level::Mistake, why);
        }
        let address = hp.with_port(default_port);
        (implicit_name(&hp.host, hp.port.unwrap_or(default_port)), Some(address))
    };
    if ctx.unusable.contains(&pool) {
        report.at(
            d,
            Level::Warning,
            format!("upstream `{pool}` has no server wsgate can use: this location is left out"),
        );
        return None;
    }
    if !path.is_empty() && path != prefix {
        let why = format!(
            "the URL's path `{path}` replaces the location's `{prefix}`: nginx sends {prefix}x to the backend as {path}x; wsgate sends the path unchanged"
        );
        report.at(d, Level::Warning, why);
    }
    let proxy_host = match hp.port {
        Some(p) if p != default_port => hp.with_port(p),
        _ => hp.host.clone(),
    };
    let tls = tls.then(|| upstream_tls(&hp.host, hp.is_ip(), d, scope, ctx, report));
    Some(Target { pool, implicit, tls, proxy_host })
}

/// The name of the one-backend pool for `host:port`.
fn implicit_name(host: &str, port: u16) -> String {
    let host: String =
        host.chars().map(|c| if c.is_ascii_alphanumeric() || c == '.' || c == '-' { c } else { '_' }).collect();
    format!("{host}_{port}")
}

/// TLS to the backends as nginx does it: no certificate check unless `proxy_ssl_verify on`,
/// no SNI unless `proxy_ssl_server_name on`.
fn upstream_tls(
    host: &str,
    is_ip: bool,
    d: &Directive,
    scope: &Scope,
    ctx: &Ctx,
    report: &mut Report,
) -> UpstreamTlsOut {
    let named = scope.ssl_name.and_then(|n| n.arg(0)).filter(|n| !n.contains('$'));
    let server_name = Scope::on(scope.ssl_server_name);
    let mut sni = named.map(String::from).or_else(|| (server_name && !is_ip).then(|| host.to_string()));
    let verify = Scope::on(scope.ssl_verify);
    if verify && sni.is_none() && !is_ip {
        sni = Some(host.to_string());
    }
    let ca_file = scope.ssl_trusted_certificate.and_then(|c| c.arg(0)).map(|p| ctx.paths.output(p).0);
    if verify && sni.is_none() {
        report.at(d, Level::Warning, "proxy_ssl_verify on with an IP address: wsgate needs a name to verify (tls.sni); written with verify: false");
        return UpstreamTlsOut { sni: None, verify: false, ca_file };
    }
    if !verify {
        report.once(
            "no-verify",
            d,
            Level::Warning,
            "https:// backend: nginx does not check its certificate (proxy_ssl_verify off, the default), and neither does this translation (tls.verify: false); set tls.sni and drop verify: false to check it",
        );
    }
    UpstreamTlsOut { sni, verify, ca_file }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::import::parser::parse;
    use crate::import::paths::PathRules;

    fn resolve(text: &str, prefix: &str) -> (Option<Target>, Vec<String>) {
        let tree = parse(text, 0).unwrap();
        let files = ["p.conf".to_string()];
        let paths = PathRules { prefix: "".into(), out_dir: "".into() };
        let upstreams =
            tree.iter().filter(|d| d.name() == "upstream").map(|d| (d.arg(0).unwrap().to_string(), d)).collect();
        let ctx = Ctx { files: &files, upstreams, unusable: Vec::new(), paths: &paths };
        let pass = tree.iter().find(|d| d.name() == "proxy_pass").unwrap();
        let scope = Scope::default().enter(&tree);
        let mut report = Report::new();
        let target = target(pass, prefix, &scope, &ctx, &mut report);
        (target, report.lines(&files))
    }

    #[test]
    fn pools_by_name_or_address() {
        let (t, lines) = resolve("upstream chat { }\nproxy_pass http://chat;", "/");
        assert_eq!((t.unwrap().pool.as_str(), lines.len()), ("chat", 0));
        let (t, _) = resolve("proxy_pass http://127.0.0.1:3000;", "/");
        let t = t.unwrap();
        assert_eq!(
            (t.pool.as_str(), t.implicit.as_deref(), t.proxy_host.as_str()),
            ("127.0.0.1_3000", Some("127.0.0.1:3000"), "127.0.0.1:3000")
        );
        let (t, lines) = resolve("proxy_pass https://api.example.com;", "/");
        let t = t.unwrap();
        assert_eq!((t.implicit.as_deref(), t.tls.unwrap().verify), (Some("api.example.com:443"), false));
        assert!(lines[0].contains("does not check its certificate"), "{lines:?}");
        let (t, _) = resolve("proxy_ssl_verify on;\nproxy_pass https://api.example.com:8443;", "/");
        assert_eq!(t.unwrap().tls.unwrap().sni.as_deref(), Some("api.example.com"));
    }

    #[test]
    fn the_only_upstream_is_suggested_and_used() {
        let (t, lines) = resolve("upstream websocket { }\nproxy_pass http://websockets;", "/");
        assert_eq!(t.unwrap().pool, "websocket");
        assert!(lines[0].starts_with("p.conf:2: mistake: proxy_pass: no upstream `websockets`; the only upstream is `websocket` (p.conf:1): using it"), "{lines:?}");
        let (t, lines) = resolve("upstream a { }\nupstream b { }\nproxy_pass http://c;", "/");
        assert_eq!(t.unwrap().implicit.as_deref(), Some("c:80"));
        assert!(lines[0].contains("(defined: a, b)"), "{lines:?}");
    }

    #[test]
    fn a_path_that_rewrites_is_reported() {
        let (_, lines) = resolve("upstream api { }\nproxy_pass http://api/;", "/api/");
        assert!(lines[0].contains("nginx sends /api/x to the backend as /x"), "{lines:?}");
        let (_, lines) = resolve("upstream api { }\nproxy_pass http://api/api/;", "/api/");
        assert!(lines.is_empty());
        let (t, lines) = resolve("proxy_pass http://$backend;", "/");
        assert!(t.is_none() && lines[0].contains("variables"));
        let (t, lines) = resolve("proxy_pass http://a:1 proxy_http_version 1.1;", "/");
        assert!(t.is_some() && lines[0].contains("a `;` missing"), "{lines:?}");
    }
}
