//! `server { listen ...; server_name ...; ssl_certificate ...; location ... }` → a server
//! draft: where it listens (TLS when `ssl`), the hosts its routes match (one route per
//! name; `*.example.com` kept, `.example.com` as both, regular expressions reported), its
//! certificates, and its locations' routes.

use super::drafts::{Ctx, Listen, ServerDraft};
use super::globals::{Depth, Globals};
use super::scope::{Scope, INHERITED};
use crate::import::report::{Level, Report};
use crate::import::syntax::Directive;
use crate::import::values::host_port;

pub(crate) fn server<'a>(
    d: &'a Directive,
    parent: &Scope<'a>,
    ctx: &Ctx,
    g: &mut Globals,
    report: &mut Report,
) -> ServerDraft<'a> {
    let scope = parent.enter(d.children());
    let mut draft = ServerDraft {
        directive: d,
        listens: Vec::new(),
        hosts: Vec::new(),
        server_name: None,
        certificates: Vec::new(),
        routes: Vec::new(),
    };
    let mut ssl_on = false;
    let http2_on = Scope::on(scope.http2);
    for c in d.children() {
        match c.name() {
            "listen" => draft.listens.extend(listen(c, report)),
            "server_name" => {
                draft.server_name = Some(c);
                draft.hosts.extend(names(c, report));
            }
            "ssl" => {
                ssl_on = c.arg(0) == Some("on");
                report.at(c, Level::Info, "deprecated in nginx; read as `ssl` on every listen of this server");
            }
            "location" => super::locations::location(c, &scope, ctx, g, report, &mut draft.routes),
            "proxy_pass" => {
                report.at(c, Level::Mistake, "only allowed in a location: nginx refuses it here; not translated")
            }
            n if INHERITED.contains(&n) => {}
            _ => {
                if !g.setting(c, Depth::Server, d.children(), &ctx.place(c), report) {
                    super::known::report(c, report);
                }
            }
        }
    }
    if !d.children().iter().any(|c| c.name() == "listen") {
        report.at(
            d,
            Level::Info,
            "no listen: nginx listens on *:80 (*:8000 when not started as root); so does this translation",
        );
        let default = Listen {
            directive: d,
            address: "0.0.0.0:80".into(),
            ssl: false,
            http2: false,
            proxy_protocol: false,
            default_server: false,
        };
        draft.listens.push(default);
    }
    for l in &mut draft.listens {
        l.ssl |= ssl_on;
        l.http2 |= http2_on && l.ssl;
    }
    if draft.listens.iter().any(|l| l.ssl) {
        draft.certificates = certificates(d, &scope, ctx, report);
    }
    draft
}

/// One `listen`; None when it cannot be translated (reported).
fn listen<'a>(d: &'a Directive, report: &mut Report) -> Option<Listen<'a>> {
    let spec = d.arg(0)?;
    let address = if spec.chars().all(|c| c.is_ascii_digit()) {
        format!("0.0.0.0:{spec}")
    } else if let Some(port) = spec.strip_prefix("*:") {
        format!("0.0.0.0:{port}")
    } else if spec.starts_with("unix:") {
        report.at(d, Level::Warning, "not translated: wsgate listens on TCP only");
        return None;
    } else {
        let Some(hp) = host_port(spec) else {
            report.at(d, Level::Mistake, format!("`{spec}` is not an address:port"));
            return None;
        };
        if hp.is_ip() {
            hp.with_port(80)
        } else if hp.host == "localhost" {
            report.at(d, Level::Info, "localhost: written as 127.0.0.1 (wsgate listens on addresses, not names)");
            format!("127.0.0.1:{}", hp.port.unwrap_or(80))
        } else {
            let why = format!("not translated: `{}` is a name; wsgate listens on IP addresses", hp.host);
            report.at(d, Level::Warning, why);
            return None;
        }
    };
    if address.parse::<std::net::SocketAddr>().is_err() {
        report.at(d, Level::Mistake, format!("`{spec}` is not an address:port"));
        return None;
    }
    let mut l =
        Listen { directive: d, address, ssl: false, http2: false, proxy_protocol: false, default_server: false };
    if d.args().iter().any(|w| w.text == "quic") {
        report.at(d, Level::Info, "not translated: QUIC (HTTP/3); wsgate serves HTTP/1.1 and HTTP/2 over TCP");
        return None;
    }
    let mut ignored = Vec::new();
    for w in &d.args()[1..] {
        match w.text.as_str() {
            "ssl" => l.ssl = true,
            "http2" => l.http2 = true,
            "proxy_protocol" => l.proxy_protocol = true,
            "default_server" | "default" => l.default_server = true,
            other => ignored.push(other.split('=').next().unwrap_or(other).to_string()),
        }
    }
    if l.http2 && !l.ssl {
        report.at(d, Level::Warning, "not translated: http2 without ssl (h2c); this listener speaks HTTP/1.1");
        l.http2 = false;
    }
    if !ignored.is_empty() {
        let why = format!("not translated: {} (socket options wsgate does not set)", ignored.join(", "));
        report.at(d, Level::Info, why);
    }
    Some(l)
}

/// The route hosts of `server_name`; empty means any host.
fn names(d: &Directive, report: &mut Report) -> Vec<String> {
    let mut out = Vec::new();
    let valid = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.');
    for w in d.args() {
        let name = w.text.to_ascii_lowercase();
        if name.is_empty() || name == "_" {
            continue;
        }
        if name.starts_with('~') {
            let why = format!(
                "not translated: the regular-expression name `{}` (wsgate matches exact names and *.domain wildcards)",
                w.text
            );
            report.at(d, Level::Warning, why);
        } else if let Some(domain) = name.strip_prefix('.').filter(|s| valid(s)) {
            out.extend([domain.to_string(), format!("*.{domain}")]);
        } else if name.strip_prefix("*.").is_some_and(valid) || valid(&name) {
            out.push(name);
        } else {
            let why = format!("not translated: `{}` (wsgate matches exact names and *.domain wildcards)", w.text);
            report.at(d, Level::Warning, why);
        }
    }
    let catch_all = d.args().iter().any(|w| w.text.is_empty() || w.text == "_");
    if out.is_empty() && !catch_all && !d.args().is_empty() {
        report.at(d, Level::Warning, "none of these names could be translated: this server's routes match every host");
    }
    if catch_all && !out.is_empty() {
        report.at(d, Level::Info, "\"\" or `_` with other names: the routes are written for the names only");
    }
    out.dedup();
    out
}

/// The server's `(cert, key)` pairs, in the YAML's spelling of their paths.
fn certificates(server: &Directive, scope: &Scope, ctx: &Ctx, report: &mut Report) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (i, cert) in scope.certificates.iter().enumerate() {
        let Some(key) = scope.certificate_keys.get(i) else {
            report.at(cert, Level::Mistake, "has no matching ssl_certificate_key: nginx refuses this");
            continue;
        };
        let (Some(c), Some(k)) = (cert.arg(0), key.arg(0)) else { continue };
        if c.contains('$') || k.contains('$') || c.starts_with("data:") {
            report.at(cert, Level::Warning, "not translated: a certificate chosen by variables or given inline");
            continue;
        }
        let (c_out, c_moved) = ctx.paths.output(c);
        let (k_out, k_moved) = ctx.paths.output(k);
        for (d, moved, out_path) in [(cert, c_moved, &c_out), (key, k_moved, &k_out)] {
            if moved {
                let why = format!(
                    "a relative path is nginx's prefix + path: written as `{out_path}`, which wsgate reads relative to the YAML's directory"
                );
                report.at(d, Level::Info, why);
            }
        }
        if i > 0 {
            let why = "not translated: a second certificate for the same names (RSA beside ECDSA): wsgate serves one certificate per name";
            report.at(cert, Level::Warning, why);
            continue;
        }
        out.push((c_out, k_out));
    }
    if out.is_empty() {
        report.at(server, Level::Mistake, "listens with ssl but has no usable ssl_certificate/ssl_certificate_key: nginx refuses this; its TLS listeners are left out");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::import::parser::parse;

    #[test]
    fn listen_forms() {
        let tree = parse(
            "listen 80;\nlisten *:8080 default_server;\nlisten [::]:443 ssl http2 reuseport;\nlisten 127.0.0.1;\nlisten unix:/x;\nlisten localhost:81;",
            0,
        )
        .unwrap();
        let mut report = Report::new();
        let got: Vec<(String, bool, bool)> =
            tree.iter().filter_map(|d| listen(d, &mut report)).map(|l| (l.address, l.ssl, l.http2)).collect();
        assert_eq!(
            got,
            [
                ("0.0.0.0:80".to_string(), false, false),
                ("0.0.0.0:8080".into(), false, false),
                ("[::]:443".into(), true, true),
                ("127.0.0.1:80".into(), false, false),
                ("127.0.0.1:81".into(), false, false),
            ]
        );
        let lines = report.lines(&["s.conf".into()]);
        assert!(lines[0].starts_with("s.conf:3: info: listen: not translated: reuseport"), "{lines:?}");
        assert!(lines[1].starts_with("s.conf:5: warning"), "{lines:?}");
    }

    #[test]
    fn server_names() {
        let tree =
            parse("server_name chat.example.com .example.org *.example.net ~^(?<x>.+)$ www.example.*;", 0).unwrap();
        let mut report = Report::new();
        assert_eq!(names(&tree[0], &mut report), ["chat.example.com", "example.org", "*.example.org", "*.example.net"]);
        assert_eq!(report.count(Level::Warning), 2);
        let (tree, mut report) = (parse("server_name ~^a$;", 0).unwrap(), Report::new());
        assert!(names(&tree[0], &mut report).is_empty());
        let lines = report.lines(&["s.conf".into()]);
        assert!(lines[1].contains("match every host"), "{lines:?}");
    }
}
