//! The output model → YAML text, by hand: keys in the order of docs/configuration.md,
//! comments naming the nginx line each item came from, and a scalar written plain only
//! when serde_yaml (the parser wsgate itself uses) reads it back as that very string.

use super::model::*;
use super::values::wsgate_duration;
use std::fmt::Write;
use std::time::Duration;

/// The whole file.
pub(crate) fn render(out: &Output) -> String {
    let mut y = String::new();
    header(&mut y, &out.sources);
    server(&mut y, &out.server);
    y.push_str("listeners:\n");
    for l in &out.listeners {
        listener(&mut y, l);
    }
    if !out.trusted_proxies.is_empty() {
        y.push_str("trusted_proxies:\n");
        for p in &out.trusted_proxies {
            line(&mut y, 1, &format!("- {}", scalar(p)));
        }
    }
    if out.access_log_off {
        y.push_str("access_log:\n  path: off\n");
    }
    y.push_str("upstreams:\n");
    for p in &out.upstreams {
        pool(&mut y, p);
    }
    y.push_str("routes:\n");
    for r in &out.routes {
        route(&mut y, r);
    }
    limits(&mut y, &out.limits);
    y
}

fn header(y: &mut String, sources: &[String]) {
    y.push_str("# wsgate configuration translated by `wsgate import-nginx` from:\n");
    for s in sources {
        let _ = writeln!(y, "#   {}", comment_text(s));
    }
    y.push_str("# Read the report it printed (each line names the nginx line) before using it.\n");
    y.push_str("# Every key left out has wsgate's default: docs/configuration.md.\n\n");
}

fn server(y: &mut String, s: &ServerOut) {
    if s.threads.is_none() && s.pid_file.is_none() {
        return;
    }
    y.push_str("server:\n");
    if let Some(t) = s.threads {
        key_value(y, 1, "threads", &t.to_string());
    }
    if let Some(p) = &s.pid_file {
        key_value(y, 1, "pid_file", &scalar(p));
    }
}

fn listener(y: &mut String, l: &ListenerOut) {
    comment(y, 1, &l.origin);
    line(y, 1, &format!("- address: {}", scalar(&l.address)));
    if let Some(tls) = &l.tls {
        line(y, 2, "tls:");
        key_value(y, 3, "cert", &scalar(&tls.cert));
        key_value(y, 3, "key", &scalar(&tls.key));
        if !tls.more.is_empty() {
            line(y, 3, "certificates:");
            for (cert, key) in &tls.more {
                line(y, 4, &format!("- {{cert: {}, key: {}}}", scalar(cert), scalar(key)));
            }
        }
        if !tls.http2 {
            key_value(y, 3, "http2", "false");
        }
    }
    if l.proxy_protocol {
        key_value(y, 2, "proxy_protocol", "true");
    }
}

fn pool(y: &mut String, p: &PoolOut) {
    comment(y, 1, &p.origin);
    line(y, 1, &format!("{}:", scalar(&p.name)));
    line(y, 2, "backends:");
    for b in &p.backends {
        if b.weight == 1 {
            line(y, 3, &format!("- {}", scalar(&b.address)));
        } else {
            line(y, 3, &format!("- {{address: {}, weight: {}}}", scalar(&b.address), b.weight));
        }
    }
    if let Some(balance) = p.balance {
        key_value(y, 2, "balance", balance);
    }
    if let Some(k) = &p.hash_key {
        key_value(y, 2, "hash_key", &scalar(k));
    }
    duration(y, 2, "connect_timeout", p.connect_timeout);
    duration(y, 2, "read_timeout", p.read_timeout);
    if let Some(tls) = &p.tls {
        line(y, 2, "tls:");
        if let Some(sni) = &tls.sni {
            key_value(y, 3, "sni", &scalar(sni));
        }
        if !tls.verify {
            key_value(y, 3, "verify", "false");
        }
        if let Some(ca) = &tls.ca_file {
            key_value(y, 3, "ca_file", &scalar(ca));
        }
    }
    if let Some((failures, eject)) = p.passive_health {
        line(y, 2, "passive_health:");
        key_value(y, 3, "failures", &failures.to_string());
        key_value(y, 3, "eject", &wsgate_duration(eject));
    }
    duration(y, 2, "slow_start", p.slow_start);
    if let Some((cookie, ttl)) = &p.affinity {
        line(y, 2, "affinity:");
        key_value(y, 3, "cookie", &scalar(cookie));
        duration(y, 3, "ttl", *ttl);
    }
}

fn route(y: &mut String, r: &RouteOut) {
    comment(y, 1, &r.origin);
    let mut first = true;
    let mut field = |y: &mut String, k: &str, v: &str| {
        let text = format!("{}{k}: {v}", if first { "- " } else { "  " });
        line(y, 1, &text);
        first = false;
    };
    if let Some(h) = &r.host {
        field(y, "host", &scalar(h));
    }
    field(y, "path_prefix", &scalar(&r.path_prefix));
    field(y, "upstream", &scalar(&r.upstream));
    if let Some(h) = &r.host_header {
        key_value(y, 2, "host_header", &scalar(h));
    }
    if !r.set_headers.is_empty() || !r.remove_headers.is_empty() {
        line(y, 2, "request_headers:");
        if !r.set_headers.is_empty() {
            line(y, 3, "set:");
            for (name, value) in &r.set_headers {
                key_value(y, 4, &scalar(name), &scalar(value));
            }
        }
        if !r.remove_headers.is_empty() {
            line(y, 3, "remove:");
            for name in &r.remove_headers {
                line(y, 4, &format!("- {}", scalar(name)));
            }
        }
    }
    if let Some(idle) = r.idle_timeout {
        line(y, 2, "websocket:");
        key_value(y, 3, "idle_timeout", &wsgate_duration(idle));
    }
}

fn limits(y: &mut String, l: &LimitsOut) {
    if l.is_empty() {
        return;
    }
    y.push_str("limits:\n");
    let counts = [
        ("max_concurrent_per_ip", l.max_concurrent_per_ip),
        ("requests_per_second_per_ip", l.requests_per_second_per_ip),
    ];
    for (k, v) in counts {
        if let Some(v) = v {
            key_value(y, 1, k, &v.to_string());
        }
    }
    duration(y, 1, "header_timeout", l.header_timeout);
    duration(y, 1, "keepalive_timeout", l.keepalive_timeout);
    duration(y, 1, "send_timeout", l.send_timeout);
}

fn duration(y: &mut String, indent: usize, key: &str, d: Option<Duration>) {
    if let Some(d) = d {
        key_value(y, indent, key, &wsgate_duration(d));
    }
}

fn key_value(y: &mut String, indent: usize, key: &str, value: &str) {
    line(y, indent, &format!("{key}: {value}"));
}

fn line(y: &mut String, indent: usize, text: &str) {
    for _ in 0..indent {
        y.push_str("  ");
    }
    y.push_str(text);
    y.push('\n');
}

fn comment(y: &mut String, indent: usize, text: &str) {
    if !text.is_empty() {
        line(y, indent, &format!("# {}", comment_text(text)));
    }
}

/// A comment stays on its line whatever the nginx text held.
fn comment_text(text: &str) -> String {
    text.chars().map(|c| if c.is_control() { ' ' } else { c }).collect()
}

/// `text` as a YAML scalar that reads back as exactly `text`, plain when that is safe in
/// block and flow context alike, double-quoted otherwise.
pub(crate) fn scalar(text: &str) -> String {
    let safe_chars =
        |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '/' | ':' | '@' | '+' | '=' | '~' | '-' | '*');
    let plain_candidate = !text.is_empty()
        && text.chars().all(safe_chars)
        && text.starts_with(|c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '/'))
        && !text.ends_with(':');
    if plain_candidate && reads_back(text) {
        return text.to_string();
    }
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() || c == '\u{feff}' || c == '\u{2028}' || c == '\u{2029}' || c == '\u{85}' => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Whether serde_yaml reads `text`, unquoted, as the string `text` (not a number, a bool,
/// null, ...), both as a block value and inside a flow mapping.
fn reads_back(text: &str) -> bool {
    let block = serde_yaml::from_str::<serde_yaml::Value>(&format!("k: {text}\n"));
    let flow = serde_yaml::from_str::<serde_yaml::Value>(&format!("{{k: {text}, j: 1}}\n"));
    let is_text = |v: Result<serde_yaml::Value, _>| {
        v.ok().and_then(|v| v.get("k").and_then(|k| k.as_str().map(|s| s == text))).unwrap_or(false)
    };
    is_text(block) && is_text(flow)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn plain_only_when_it_reads_back_as_the_same_string() {
        for plain in
            ["127.0.0.1:3001", "0.0.0.0:443", "chat", "/ws", "1h", "off", "tls/cert.pem", "client_ip", "cookie:sid"]
        {
            assert_eq!(scalar(plain), plain);
        }
        assert_eq!(scalar("*.example.com"), "\"*.example.com\"");
        assert_eq!(scalar("[::1]:3000"), "\"[::1]:3000\"");
        for quoted in ["true", "null", "~", "123", "1e3", "0x1f", "", " a", "a: b", "#x", "a,b", "yes please"] {
            assert!(scalar(quoted).starts_with('"'), "{quoted} must be quoted");
        }
        assert_eq!(scalar("a\"b\\c\n"), r#""a\"b\\c\n""#);
    }

    proptest! {
        #[test]
        fn every_string_reads_back_in_block_and_flow_context(text in any::<String>()) {
            let s = scalar(&text);
            let block: serde_yaml::Value = serde_yaml::from_str(&format!("k: {s}\n")).unwrap();
            prop_assert_eq!(block.get("k").and_then(|v| v.as_str()), Some(text.as_str()));
            let flow: serde_yaml::Value = serde_yaml::from_str(&format!("- {{k: {s}, j: 1}}\n")).unwrap();
            prop_assert_eq!(flow[0].get("k").and_then(|v| v.as_str()), Some(text.as_str()));
        }
    }
}
