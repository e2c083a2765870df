//! `upstream NAME { server ADDR [weight=N] [max_fails=N] [fail_timeout=T] [backup] [down];
//! least_conn; ip_hash; hash KEY [consistent]; keepalive N; }` → a pool, with the mistakes
//! the copied recipes carry: an entry without `server`, a port that looks truncated.

use super::drafts::Ctx;
use crate::import::model::{BackendOut, PoolOut};
use crate::import::report::{Level, Report};
use crate::import::syntax::{Directive, Word};
use crate::import::values::{host_port, looks_like_address, nginx_time, wsgate_duration};
use std::time::Duration;

/// nginx's defaults for a server's passive check.
const NGINX_MAX_FAILS: u32 = 1;
const NGINX_FAIL_TIMEOUT: Duration = Duration::from_secs(10);

/// One usable `server` entry.
struct Entry<'a> {
    d: &'a Directive,
    address: String,
    weight: u32,
    max_fails: Option<u32>,
    fail_timeout: Option<Duration>,
}

/// The pool an `upstream` block stands for; None when it has no usable server.
pub(crate) fn pool(d: &Directive, ctx: &Ctx, report: &mut Report) -> Option<PoolOut> {
    let name = d.arg(0).unwrap_or_default();
    let mut pool = PoolOut::new(name, ctx.origin(d, &format!("upstream {name}")));
    let mut entries: Vec<Entry> = Vec::new();
    let mut ports: Vec<(&Directive, String)> = Vec::new();
    for c in d.children() {
        match c.name() {
            "server" => entry(c, c.args(), &mut entries, &mut ports, &mut pool, report),
            addr if looks_like_address(addr) && !c.words[0].quoted => {
                let why = format!(
                    "`{addr}` has no `server` keyword: nginx refuses this file (unknown directive \"{addr}\"); read as `server {addr};`"
                );
                report.push(finding(c, "server", why));
                entry(c, &c.words, &mut entries, &mut ports, &mut pool, report);
            }
            "least_conn" => pool.balance = Some("least_sessions"),
            "ip_hash" => {
                (pool.balance, pool.hash_key) = (Some("consistent_hash"), Some("client_ip".into()));
                let why = "approximately: balance: consistent_hash on client_ip; nginx keys an IPv4 client on its first three octets (a /24), wsgate on the whole address";
                report.at(c, Level::Info, why);
            }
            "hash" => hash(c, &mut pool, report),
            "random" => {
                pool.balance = Some("random");
                if c.args().len() > 1 {
                    report.at(c, Level::Info, "approximately: balance: random (wsgate picks one at random by weight, not the less loaded of two)");
                }
            }
            "keepalive" | "keepalive_requests" | "keepalive_time" | "keepalive_timeout" => report.at(
                c,
                Level::Info,
                "not needed: wsgate keeps backend connections alive itself (server.upstream_keepalive_pool_size, default 128)",
            ),
            "zone" => report.at(c, Level::Info, "not needed: wsgate's pools are shared by all its threads"),
            "sticky" => sticky(c, &mut pool, report),
            _ => super::known::report(c, report),
        }
    }
    truncated_ports(&ports, ctx, report);
    pool.passive_health = passive_health(&entries, ctx, report);
    pool.backends = entries.iter().map(|e| BackendOut { address: e.address.clone(), weight: e.weight }).collect();
    if pool.backends.is_empty() {
        let any = d.children().iter().any(|c| c.name() == "server" || looks_like_address(c.name()));
        let (level, why) = if any {
            (Level::Warning, "no server wsgate can use: nothing that proxies to it is translated")
        } else {
            (Level::Mistake, "no server: nginx refuses this; nothing that proxies to it is translated")
        };
        report.at(d, level, why);
        return None;
    }
    Some(pool)
}

/// A finding named after what the directive should have been.
fn finding(at: &Directive, directive: &str, message: String) -> crate::import::report::Finding {
    crate::import::report::Finding {
        file: at.file,
        line: Some(at.line),
        level: Level::Mistake,
        directive: directive.into(),
        message,
    }
}

fn entry<'a>(
    d: &'a Directive,
    words: &[Word],
    entries: &mut Vec<Entry<'a>>,
    ports: &mut Vec<(&'a Directive, String)>,
    pool: &mut PoolOut,
    report: &mut Report,
) {
    let Some(first) = words.first() else {
        return report.at(d, Level::Mistake, "expects an address");
    };
    let Some(hp) = host_port(&first.text) else {
        let why = if first.text.starts_with("unix:") {
            format!("not translated: `{}`: wsgate connects to backends over TCP only", first.text)
        } else {
            format!("`{}` is not a host:port; left out", first.text)
        };
        let level = if first.text.starts_with("unix:") { Level::Warning } else { Level::Mistake };
        return report.at(d, level, why);
    };
    if let Some(p) = &hp.port_text {
        ports.push((d, p.clone()));
    }
    let mut e = Entry { d, address: hp.with_port(80), weight: 1, max_fails: None, fail_timeout: None };
    let mut keep = true;
    for w in &words[1..] {
        let (key, value) = w.text.split_once('=').map_or((w.text.as_str(), None), |(k, v)| (k, Some(v)));
        match (key, value) {
            ("weight", Some(v)) => match v.parse::<u32>() {
                Ok(n) if n > 0 => e.weight = n,
                _ => report.at(d, Level::Mistake, format!("weight `{v}` is not a number from 1 up; 1 used")),
            },
            ("max_fails", Some(v)) => e.max_fails = v.parse().ok(),
            ("fail_timeout", Some(v)) => e.fail_timeout = nginx_time(v),
            ("backup", None) => {
                let why = format!("not translated: backup server {}: wsgate has no backup servers (in the pool it would take its share of every request); left out", e.address);
                report.at(d, Level::Warning, why);
                keep = false;
            }
            ("down", None) => {
                report.at(d, Level::Info, format!("{} is marked down: left out", e.address));
                keep = false;
            }
            ("max_conns", Some(_)) => report.at(
                d,
                Level::Warning,
                "not translated: max_conns; wsgate caps WebSocket sessions per backend instead (max_sessions_per_backend)",
            ),
            ("slow_start", Some(v)) => match nginx_time(v).filter(|t| !t.is_zero()) {
                Some(t) => {
                    pool.slow_start = Some(pool.slow_start.map_or(t, |s| s.max(t)));
                    report.at(d, Level::Info, format!("approximately: the pool's slow_start: {} applies to every backend", wsgate_duration(t)));
                }
                None => report.at(d, Level::Mistake, format!("slow_start `{v}` is not a time")),
            },
            ("resolve", None) => report.at(
                d,
                Level::Warning,
                "not translated: resolve; a pool with `discovery: dns` re-resolves its names (docs/configuration.md)",
            ),
            _ => report.at(d, Level::Mistake, format!("unknown parameter `{}`: nginx refuses it", w.text)),
        }
    }
    if !keep {
        return;
    }
    if entries.iter().any(|x| x.address == e.address) {
        return report.at(
            d,
            Level::Mistake,
            format!("{} is listed twice in this pool: the second is left out", e.address),
        );
    }
    entries.push(e);
}

/// `:300` beside `:3000`: a port that is the start of another entry's port.
fn truncated_ports(ports: &[(&Directive, String)], ctx: &Ctx, report: &mut Report) {
    for (d, p) in ports {
        let longer = ports.iter().find(|(_, q)| q.len() > p.len() && q.starts_with(p.as_str()));
        if let Some((other, q)) = longer {
            let why = format!(
                "port {p} looks truncated: port {q} ({}) is in the same pool; kept as written",
                ctx.place(other)
            );
            report.push(finding(d, "server", why));
        }
    }
}

/// nginx's per-server `max_fails`/`fail_timeout` → wsgate's per-pool `passive_health`.
fn passive_health(entries: &[Entry], ctx: &Ctx, report: &mut Report) -> Option<(u32, Duration)> {
    let explicit: Vec<&Entry> = entries.iter().filter(|e| e.max_fails.is_some() || e.fail_timeout.is_some()).collect();
    let first = explicit.first()?;
    let pair = |e: &Entry| (e.max_fails.unwrap_or(NGINX_MAX_FAILS), e.fail_timeout.unwrap_or(NGINX_FAIL_TIMEOUT));
    let (failures, eject) = pair(first);
    for other in &explicit[1..] {
        if pair(other) != (failures, eject) {
            let why = format!(
                "approximately: wsgate's passive_health is one setting per pool: failures {failures}, eject {} from {} for every backend",
                wsgate_duration(eject),
                ctx.place(first.d)
            );
            report.at(other.d, Level::Warning, why);
        }
    }
    if failures == 0 || eject.is_zero() {
        report.at(first.d, Level::Info, "max_fails=0 (or fail_timeout=0): no passive health check, as in nginx");
        return None;
    }
    let why = format!(
        "approximately: passive_health {{failures: {failures}, eject: {}}}: nginx takes a server out after that many failures within fail_timeout, wsgate after that many in a row",
        wsgate_duration(eject)
    );
    report.at(first.d, Level::Info, why);
    Some((failures, eject))
}

fn hash(d: &Directive, pool: &mut PoolOut, report: &mut Report) {
    let key = d.arg(0).unwrap_or_default();
    pool.balance = Some("consistent_hash");
    let mapped = if matches!(key, "$remote_addr" | "$binary_remote_addr") {
        Some("client_ip".to_string())
    } else if let Some(name) = key.strip_prefix("$cookie_").filter(|n| !n.is_empty()) {
        Some(format!("cookie:{name}"))
    } else if let Some(name) = key.strip_prefix("$http_").filter(|n| !n.is_empty()) {
        Some(format!("header:{}", name.replace('_', "-")))
    } else if key == "$uri" {
        Some("path".to_string())
    } else if key == "$request_uri" {
        report.at(d, Level::Info, "approximately: hash_key: path; nginx's $request_uri includes the query string, wsgate hashes the path without it");
        Some("path".to_string())
    } else {
        None
    };
    match mapped {
        Some(k) => pool.hash_key = Some(k),
        None => {
            pool.hash_key = Some("client_ip".into());
            let why =
                format!("not translated: hash key `{key}`; hashing the client address instead (hash_key: client_ip)");
            report.at(d, Level::Warning, why);
        }
    }
}

/// `sticky cookie NAME [expires=T] ...` (NGINX Plus) → `affinity`.
fn sticky(d: &Directive, pool: &mut PoolOut, report: &mut Report) {
    let (Some("cookie"), Some(name)) = (d.arg(0), d.arg(1)) else {
        return report.at(
            d,
            Level::Warning,
            "not translated: only `sticky cookie NAME` maps to wsgate's affinity cookie",
        );
    };
    let ttl = d
        .args()
        .iter()
        .find_map(|w| w.text.strip_prefix("expires="))
        .and_then(nginx_time)
        .filter(|t| *t >= Duration::from_secs(1));
    pool.affinity = Some((name.to_string(), ttl));
    report.at(d, Level::Info, "approximately: affinity cookie: wsgate's value names the backend by an HMAC, and is re-pinned when that backend is down or drained");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::import::parser::parse;
    use crate::import::paths::PathRules;

    fn translate(text: &str) -> (Option<PoolOut>, Vec<String>) {
        let tree = parse(text, 0).unwrap();
        let files = ["u.conf".to_string()];
        let paths = PathRules { prefix: "".into(), out_dir: "".into() };
        let ctx = Ctx { files: &files, upstreams: Vec::new(), unusable: Vec::new(), paths: &paths };
        let mut report = Report::new();
        let pool = pool(&tree[0], &ctx, &mut report);
        (pool, report.lines(&files))
    }

    #[test]
    fn weights_health_and_balance() {
        let (pool, lines) = translate(
            "upstream chat {\n least_conn;\n server 10.0.0.1:3001 max_fails=3 fail_timeout=30s;\n server 10.0.0.2:3001 weight=2;\n\
             server 10.0.0.3:3001 backup;\n server 10.0.0.4:3001 down;\n keepalive 32;\n}",
        );
        let pool = pool.unwrap();
        assert_eq!(pool.balance, Some("least_sessions"));
        let backends: Vec<(&str, u32)> = pool.backends.iter().map(|b| (b.address.as_str(), b.weight)).collect();
        assert_eq!(backends, [("10.0.0.1:3001", 1), ("10.0.0.2:3001", 2)]);
        assert_eq!(pool.passive_health, Some((3, Duration::from_secs(30))));
        let levels: Vec<&str> = lines.iter().map(|l| l.split(": ").nth(1).unwrap()).collect();
        assert_eq!(levels, ["info", "warning", "info", "info"], "{lines:?}");
    }

    #[test]
    fn the_recipe_typos() {
        let (pool, lines) = translate(
            "upstream websocket {\n server 192.168.3.1:3000;\n 192.168.3.2:3000;\n server 192.168.3.3:300;\n}",
        );
        assert_eq!(pool.unwrap().backends.len(), 3);
        assert!(
            lines[0].starts_with("u.conf:3: mistake: server: `192.168.3.2:3000` has no `server` keyword"),
            "{lines:?}"
        );
        assert!(
            lines[1].starts_with("u.conf:4: mistake: server: port 300 looks truncated: port 3000 (u.conf:2)"),
            "{lines:?}"
        );
        assert_eq!(lines.len(), 2);
    }

    #[test]
    fn hash_keys() {
        let key = |k: &str| {
            translate(&format!("upstream a {{ hash {k} consistent; server 127.0.0.1:1; }}")).0.unwrap().hash_key
        };
        assert_eq!(key("$cookie_session").as_deref(), Some("cookie:session"));
        assert_eq!(key("$http_x_user_id").as_deref(), Some("header:x-user-id"));
        assert_eq!(key("$request_uri").as_deref(), Some("path"));
        assert_eq!(key("$binary_remote_addr").as_deref(), Some("client_ip"));
        assert_eq!(key("$host$uri").as_deref(), Some("client_ip"));
        let (pool, lines) = translate("upstream a { ip_hash; server 127.0.0.1:1; }");
        assert_eq!((pool.unwrap().balance, lines.len()), (Some("consistent_hash"), 1));
    }

    #[test]
    fn a_pool_without_usable_servers_is_none() {
        let (pool, lines) = translate("upstream a { server unix:/tmp/s; server 127.0.0.1:1 down; }");
        assert!(pool.is_none());
        assert!(lines.last().unwrap().contains("warning: upstream: no server wsgate can use"), "{lines:?}");
        let (pool, lines) = translate("upstream a { keepalive 2; }");
        assert!(pool.is_none() && lines.last().unwrap().contains("mistake: upstream: no server: nginx refuses this"));
    }
}
