//! The directive tree → the output model, level by level as nginx reads it: the main
//! context (`worker_processes`, `pid`), `http` (or a snippet file's top level: `upstream`,
//! `map`, `server`, global settings), each `server` (`servers.rs`) and its locations
//! (`locations.rs`, with `proxy_pass.rs` and `headers.rs`), then `assemble.rs` turns the
//! drafts into listeners, pools and routes. Every directive is either translated or
//! reported (`known.rs` says why it is not).

mod assemble;
mod drafts;
mod globals;
mod headers;
mod known;
mod locations;
mod proxy_pass;
mod scope;
mod servers;
mod upstreams;

use super::model::{Output, PoolOut};
use super::paths::PathRules;
use super::report::{Level, Report};
use super::syntax::Directive;
use drafts::{Ctx, ServerDraft};
use globals::{Depth, Globals};
use scope::{Scope, INHERITED};
use std::collections::BTreeMap;

/// The translation of `tree`; None when nothing proxies (reported as an error).
pub(crate) fn translate(
    tree: &[Directive],
    files: &[String],
    paths: &PathRules,
    report: &mut Report,
) -> Option<Output> {
    unterminated(tree, report);
    let http: Vec<&Directive> =
        tree.iter().flat_map(|d| if d.name() == "http" { d.children().iter().collect() } else { vec![d] }).collect();
    let mut ctx = Ctx { files, upstreams: Vec::new(), unusable: Vec::new(), paths };
    for d in http.iter().filter(|d| d.name() == "upstream" && d.block.is_some()) {
        let name = d.arg(0).unwrap_or_default().to_string();
        if let Some((_, first)) = ctx.upstreams.iter().find(|(n, _)| *n == name) {
            report.at(
                d,
                Level::Mistake,
                format!(
                    "duplicate upstream `{name}` (first at {}): nginx refuses this; the first is used",
                    ctx.place(first)
                ),
            );
        } else {
            ctx.upstreams.push((name, *d));
        }
    }
    let mut pools: BTreeMap<String, PoolOut> = BTreeMap::new();
    let mut unusable = Vec::new();
    for (name, d) in &ctx.upstreams {
        match upstreams::pool(d, &ctx, report) {
            Some(pool) => {
                pools.insert(name.clone(), pool);
            }
            None => unusable.push(name.clone()),
        }
    }
    ctx.unusable = unusable;
    let mut g = Globals::default();
    g.prepare(&http, report);
    let mut walk = Walk { ctx: &ctx, g: &mut g, servers: Vec::new() };
    let top = Scope::default().enter(tree);
    for d in tree {
        match d.name() {
            "http" => {
                let scope = top.enter(d.children());
                for c in d.children() {
                    walk.http(c, &scope, d.children(), report);
                }
            }
            "events" => d.children().iter().for_each(|c| known::report(c, report)),
            _ => walk.http(d, &top, tree, report),
        }
    }
    let servers = walk.servers;
    let assembled = assemble::assemble(&servers, &pools, &ctx, report);
    for (name, d) in &ctx.upstreams {
        if pools.contains_key(name)
            && !assembled.pools.iter().any(|p| p.name == *name || p.name == format!("{name}_tls"))
        {
            report.at(d, Level::Info, "not used by any translated proxy_pass: left out");
        }
    }
    if assembled.routes.is_empty() {
        report.global(Level::Error, "nothing to route: no server has a location whose proxy_pass could be translated");
        return None;
    }
    if assembled.listeners.is_empty() {
        report.global(Level::Error, "nowhere to listen: no listen of a server that proxies could be translated");
        return None;
    }
    Some(Output {
        sources: files.to_vec(),
        server: g.server,
        listeners: assembled.listeners,
        trusted_proxies: g.trusted_proxies,
        access_log_off: g.access_log_off,
        upstreams: assembled.pools,
        routes: assembled.routes,
        limits: g.limits,
    })
}

struct Walk<'c, 'a> {
    ctx: &'c Ctx<'a>,
    g: &'c mut Globals,
    servers: Vec<ServerDraft<'a>>,
}

impl<'a> Walk<'_, 'a> {
    /// A directive of the `http` level (or of the main level, which a snippet shares).
    fn http(&mut self, d: &'a Directive, scope: &Scope<'a>, siblings: &[Directive], report: &mut Report) {
        match d.name() {
            "server" if d.block.is_some() => self.servers.push(servers::server(d, scope, self.ctx, self.g, report)),
            "upstream" | "map" | "limit_conn_zone" | "limit_req_zone" => {}
            n if INHERITED.contains(&n) => {}
            "location" => {
                report.at(d, Level::Mistake, "only allowed in a server: nginx refuses it here; not translated")
            }
            _ => {
                if !self.g.setting(d, Depth::Http, siblings, &self.ctx.place(d), report) {
                    known::report(d, report);
                }
            }
        }
    }
}

/// A directive ended by `}` instead of `;` (outside maps, which say it their own way).
fn unterminated(tree: &[Directive], report: &mut Report) {
    for d in tree {
        if d.unterminated {
            report.at(
                d,
                Level::Mistake,
                "missing `;` before `}`: nginx refuses this file (unexpected \"}\"); read as if it were there",
            );
        }
        if d.name() != "map" {
            unterminated(d.children(), report);
        }
    }
}

#[cfg(test)]
mod tests;
