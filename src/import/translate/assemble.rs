//! Server drafts → wsgate's listeners, pools and routes. wsgate's routes answer on every
//! listener and its pools are shared, where nginx scopes both to a server; what that
//! changes is reported here: listeners of servers that proxy nothing are left out, a host
//! and path two servers both claim is kept once, per-location pool timeouts are merged.

use super::drafts::{Ctx, RouteDraft, ServerDraft};
use crate::import::model::{BackendOut, ListenerOut, PoolOut, RouteOut, TlsOut};
use crate::import::report::{Level, Report};
use crate::import::syntax::Directive;
use crate::import::values::wsgate_duration;
use std::collections::BTreeMap;
use std::time::Duration;

/// What the assembly produces.
pub(crate) struct Assembled {
    pub(crate) listeners: Vec<ListenerOut>,
    pub(crate) pools: Vec<PoolOut>,
    pub(crate) routes: Vec<RouteOut>,
}

pub(crate) fn assemble(
    servers: &[ServerDraft],
    upstream_pools: &BTreeMap<String, PoolOut>,
    ctx: &Ctx,
    report: &mut Report,
) -> Assembled {
    let mut pools: Vec<PoolOut> = Vec::new();
    let mut routes: Vec<RouteOut> = Vec::new();
    let mut claimed: BTreeMap<(Option<String>, String), String> = BTreeMap::new();
    let mut proxying: Vec<&ServerDraft> = Vec::new();
    for s in servers {
        let before = routes.len();
        for r in &s.routes {
            let Some(pool) = pool_for(r, upstream_pools, &mut pools, ctx, report) else { continue };
            let hosts: Vec<Option<&String>> =
                if s.hosts.is_empty() { vec![None] } else { s.hosts.iter().map(Some).collect() };
            for host in hosts {
                let key = (host.cloned(), normal_prefix(&r.path));
                if let Some(first) = claimed.get(&key) {
                    let why = format!(
                        "host {} and path {} are already routed by {first}: left out (wsgate has one route per host and path, on every listener)",
                        host.map_or("(any)", String::as_str),
                        r.path
                    );
                    report.at(r.location, Level::Warning, why);
                    continue;
                }
                claimed.insert(key, ctx.place(r.location));
                routes.push(route(r, host, &pool, s, ctx));
            }
        }
        if routes.len() > before {
            proxying.push(s);
        } else if !s.listens.is_empty() {
            report.at(s.directive, Level::Info, "nothing here is proxied: this server's listeners are left out");
        }
    }
    let listeners = listeners(&proxying, ctx, report);
    notes(&proxying, &routes, &listeners, report);
    Assembled { listeners, pools, routes }
}

/// The pool a route sends to (made or merged on first use); None when its upstream block
/// had no usable server.
fn pool_for(
    r: &RouteDraft,
    upstream_pools: &BTreeMap<String, PoolOut>,
    pools: &mut Vec<PoolOut>,
    ctx: &Ctx,
    report: &mut Report,
) -> Option<String> {
    let t = &r.target;
    let mut name = t.pool.clone();
    if pools.iter().any(|p| p.name == name && p.tls != t.tls) {
        name.push_str("_tls");
    }
    let index = match pools.iter().position(|p| p.name == name) {
        Some(i) => i,
        None => {
            let mut pool = match (&t.implicit, upstream_pools.get(&t.pool)) {
                (Some(address), _) => {
                    let mut p = PoolOut::new(&name, ctx.origin(r.location, &format!("proxy_pass to {address}")));
                    p.backends.push(BackendOut { address: address.clone(), weight: 1 });
                    p
                }
                (None, Some(p)) => p.clone(),
                (None, None) => {
                    let why = format!("upstream `{}` has no usable server: this location is left out", t.pool);
                    report.at(r.location, Level::Warning, why);
                    return None;
                }
            };
            pool.name = name.clone();
            pool.tls = t.tls.clone();
            pools.push(pool);
            pools.len() - 1
        }
    };
    let pool = &mut pools[index];
    merge(&mut pool.connect_timeout, r.connect_timeout, "connect_timeout", &name, report);
    merge(&mut pool.read_timeout, r.read_timeout, "read_timeout", &name, report);
    Some(name)
}

/// A pool's timeout is one value for every route to it: the longest wins.
fn merge(slot: &mut Option<Duration>, new: Option<(Duration, &Directive)>, key: &str, pool: &str, report: &mut Report) {
    let Some((t, d)) = new else { return };
    match *slot {
        None => *slot = Some(t),
        Some(kept) if kept == t => {}
        Some(kept) => {
            let longest = kept.max(t);
            *slot = Some(longest);
            let why = format!(
                "approximately: pool {pool}'s {key} is one value for every route to it: {}",
                wsgate_duration(longest)
            );
            report.at(d, Level::Warning, why);
        }
    }
}

fn route(r: &RouteDraft, host: Option<&String>, pool: &str, s: &ServerDraft, ctx: &Ctx) -> RouteOut {
    let what = match (s.server_name, host) {
        (Some(_), Some(h)) => format!("server_name {h}, location {}", r.path),
        _ => format!("location {}", r.path),
    };
    RouteOut {
        origin: ctx.origin(r.location, &what),
        host: host.cloned(),
        path_prefix: r.path.clone(),
        upstream: pool.to_string(),
        host_header: r.host_header.clone(),
        set_headers: r.set_headers.clone(),
        remove_headers: r.remove_headers.clone(),
        idle_timeout: r.idle_timeout,
    }
}

/// `/ws/` and `/ws` are the same route to wsgate.
fn normal_prefix(path: &str) -> String {
    let trimmed = path.trim_end_matches('/');
    if trimmed.is_empty() {
        "/".into()
    } else {
        trimmed.to_string()
    }
}

/// One listener per address among the servers that proxy something.
fn listeners(servers: &[&ServerDraft], ctx: &Ctx, report: &mut Report) -> Vec<ListenerOut> {
    /// What the servers on one address say about it.
    struct Port<'a> {
        first: &'a Directive,
        address: String,
        ssl: bool,
        http2: bool,
        proxy_protocol: bool,
        /// (cert, key) of each TLS server on it, the default server's first.
        pairs: Vec<(String, String)>,
    }
    let mut ports: Vec<Port> = Vec::new();
    for s in servers {
        for l in &s.listens {
            let index = ports.iter().position(|p| p.address == l.address).unwrap_or_else(|| {
                let port = Port {
                    first: l.directive,
                    address: l.address.clone(),
                    ssl: false,
                    http2: false,
                    proxy_protocol: false,
                    pairs: Vec::new(),
                };
                ports.push(port);
                ports.len() - 1
            });
            let p = &mut ports[index];
            p.proxy_protocol |= l.proxy_protocol;
            if p.ssl != l.ssl && !std::ptr::eq(p.first, l.directive) {
                let why = format!("{} is TLS in one server and not in another: nginx makes the whole port TLS; so does this translation", l.address);
                report.at(l.directive, Level::Mistake, why);
            }
            p.ssl |= l.ssl;
            p.http2 |= l.http2;
            if let Some(pair) = s.certificates.first().filter(|_| l.ssl) {
                if !p.pairs.contains(pair) {
                    if l.default_server {
                        p.pairs.insert(0, pair.clone())
                    } else {
                        p.pairs.push(pair.clone())
                    }
                }
            }
        }
    }
    let mut out = Vec::new();
    for p in ports {
        let tls = match (p.ssl, p.pairs.split_first()) {
            (false, _) => None,
            (true, None) => continue,
            (true, Some(((cert, key), more))) => {
                if !p.http2 {
                    report.at(p.first, Level::Info, "no http2: written as tls.http2: false, as nginx served HTTP/1.1 only here; drop it to offer HTTP/2 (and WebSocket over HTTP/2)");
                }
                Some(TlsOut { cert: cert.clone(), key: key.clone(), more: more.to_vec(), http2: p.http2 })
            }
        };
        let origin = ctx.origin(p.first, &format!("listen {}", p.first.args_text()));
        out.push(ListenerOut { origin, address: p.address, tls, proxy_protocol: p.proxy_protocol });
    }
    dual_stack(&mut out, servers, report);
    out
}

/// `listen 80` and `listen [::]:80` are one dual-stack socket to wsgate, which does not
/// set IPV6_V6ONLY: binding both would fail.
fn dual_stack(out: &mut Vec<ListenerOut>, servers: &[&ServerDraft], report: &mut Report) {
    let v6_ports: Vec<String> = out.iter().filter_map(|o| o.address.strip_prefix("[::]:").map(String::from)).collect();
    let before: Vec<String> = out.iter().map(|o| o.address.clone()).collect();
    out.retain(|o| !o.address.strip_prefix("0.0.0.0:").is_some_and(|p| v6_ports.iter().any(|q| q == p)));
    for address in before.iter().filter(|a| !out.iter().any(|o| &o.address == *a)) {
        if let Some(l) = servers.iter().flat_map(|s| &s.listens).find(|l| &l.address == address) {
            let why = format!(
                "{address} and [::]:{}: one dual-stack listener [::] takes both (wsgate does not set IPV6_V6ONLY)",
                address.trim_start_matches("0.0.0.0:")
            );
            report.at(l.directive, Level::Info, why);
        }
    }
}

/// What wsgate's global routing changes: routes on every listener, and no default server.
fn notes(servers: &[&ServerDraft], routes: &[RouteOut], listeners: &[ListenerOut], report: &mut Report) {
    if servers.len() > 1 {
        for s in servers {
            let own: Vec<&str> = s.listens.iter().map(|l| l.address.as_str()).collect();
            let others: Vec<&str> = listeners.iter().map(|l| l.address.as_str()).filter(|a| !own.contains(a)).collect();
            if let (false, Some(first)) = (others.is_empty(), s.listens.first()) {
                let why = format!(
                    "wsgate's routes answer on every listener: this server's routes also answer on {}",
                    others.join(", ")
                );
                report.at(first.directive, Level::Info, why);
            }
        }
    }
    if !routes.is_empty() && routes.iter().all(|r| r.host.is_some()) {
        if let Some(d) = servers.iter().find_map(|s| s.server_name) {
            report.once(
                "no-default-server",
                d,
                Level::Info,
                "every route names a host: nginx sent requests for other names to the port's default server, wsgate answers them 404 (add a route without host to catch them)",
            );
        }
    }
}
