//! Directives that become one of wsgate's global settings (`server`, `access_log`,
//! `limits`, `trusted_proxies`) wherever they stand, the `limit_*_zone`s they refer to,
//! and the `map` blocks (the recipe's, checked for stray tokens).
//!
//! wsgate has one value of each for every route, where nginx may set them per server or
//! location: the first value is kept and a different one later is reported.

use crate::import::model::{LimitsOut, ServerOut};
use crate::import::report::{Level, Report};
use crate::import::syntax::{shown, Directive};
use crate::import::values::{nginx_time, variables, wsgate_duration};
use std::collections::BTreeMap;
use std::time::Duration;

/// Where a directive stands, for what "applies to every route" means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Depth {
    /// Top level or `http`.
    Http,
    Server,
    Location,
}

/// A `limit_conn_zone` or `limit_req_zone`: its key and (for requests) rate per second.
#[derive(Debug, Clone)]
struct Zone {
    key: String,
    per_second: Option<f64>,
}

#[derive(Debug, Default)]
pub(crate) struct Globals {
    pub(crate) server: ServerOut,
    pub(crate) access_log_off: bool,
    pub(crate) limits: LimitsOut,
    pub(crate) trusted_proxies: Vec<String>,
    conn_zones: BTreeMap<String, Zone>,
    req_zones: BTreeMap<String, Zone>,
    /// Where each global value came from (`limits.send_timeout` → `file:line`).
    set_at: BTreeMap<&'static str, String>,
}

impl Globals {
    /// Reads the zones and checks the maps among the `http`-level directives.
    pub(crate) fn prepare(&mut self, http: &[&Directive], report: &mut Report) {
        for d in http {
            match d.name() {
                "limit_conn_zone" | "limit_req_zone" => self.zone(d, report),
                "map" => map(d, report),
                _ => {}
            }
        }
    }

    fn zone(&mut self, d: &Directive, report: &mut Report) {
        let key = d.arg(0).unwrap_or_default().to_string();
        let param = |p: &str| d.args().iter().find_map(|w| w.text.strip_prefix(p).map(str::to_string));
        let Some(name) = param("zone=").map(|z| z.split(':').next().unwrap_or_default().to_string()) else {
            return report.at(d, Level::Mistake, "has no zone=NAME:SIZE; nothing can refer to it");
        };
        let per_second = param("rate=").and_then(|r| {
            let (n, per) = r.split_once("r/")?;
            let n: f64 = n.parse().ok()?;
            match per {
                "s" => Some(n),
                "m" => Some(n / 60.0),
                _ => None,
            }
        });
        let zones = if d.name() == "limit_conn_zone" { &mut self.conn_zones } else { &mut self.req_zones };
        zones.insert(name, Zone { key, per_second });
    }

    /// Handles `d` if it is one of the global settings; false if it is not.
    pub(crate) fn setting(
        &mut self,
        d: &Directive,
        at: Depth,
        siblings: &[Directive],
        place: &str,
        report: &mut Report,
    ) -> bool {
        match d.name() {
            "worker_processes" => self.worker_processes(d, report),
            "pid" => self.pid(d, report),
            "access_log" if d.arg(0) == Some("off") => {
                if at == Depth::Http {
                    self.access_log_off = true;
                } else {
                    report.at(
                        d,
                        Level::Warning,
                        "not translated: wsgate's access log is on or off for every route (access_log.path: off)",
                    );
                }
            }
            "limit_conn" => self.limit_conn(d, at, place, report),
            "limit_req" => self.limit_req(d, at, place, report),
            "limit_conn_zone" | "limit_req_zone" => {}
            "client_max_body_size" => client_max_body_size(d, report),
            "keepalive_timeout" => self.keepalive_timeout(d, place, report),
            "send_timeout" => {
                self.timeout(d, "send_timeout", place, report);
            }
            "client_header_timeout" => {
                if self.timeout(d, "header_timeout", place, report) {
                    let why = "approximately: wsgate's limits.header_timeout also bounds the TLS handshake, and each later request head on a kept-alive connection";
                    report.at(d, Level::Info, why);
                }
            }
            "set_real_ip_from" => self.real_ip_from(d, siblings, report),
            "real_ip_header" | "real_ip_recursive" => {}
            _ => return false,
        }
        true
    }

    fn worker_processes(&mut self, d: &Directive, report: &mut Report) {
        match d.arg(0).map(|a| (a, a.parse::<u64>())) {
            Some((_, Ok(n))) if n > 0 => self.server.threads = Some(n),
            Some(("auto", _)) => report.at(
                d,
                Level::Info,
                "auto: not translated, so the output does not depend on this machine; set server.threads to the CPU count where wsgate runs (default 1)",
            ),
            _ => report.at(d, Level::Mistake, format!("`{}` is not a number of processes", d.args_text())),
        }
    }

    fn pid(&mut self, d: &Directive, report: &mut Report) {
        let Some(path) = d.arg(0) else { return };
        self.server.pid_file = Some(path.to_string());
        let why = if path.starts_with('/') {
            "server.pid_file is nginx's pid file: while both run (moving over), give wsgate its own"
        } else {
            "relative: nginx reads it from its install prefix, wsgate from the YAML's directory: check it, and give wsgate its own while both run"
        };
        report.at(d, Level::Info, why);
    }

    fn limit_conn(&mut self, d: &Directive, at: Depth, place: &str, report: &mut Report) {
        let (Some(zone), Some(Ok(n))) = (d.arg(0), d.arg(1).map(str::parse::<u64>)) else {
            return report.at(d, Level::Mistake, "expects a zone and a number");
        };
        let Some(z) = self.conn_zones.get(zone) else {
            return report.at(d, Level::Mistake, format!("no limit_conn_zone named `{zone}`: nginx refuses this"));
        };
        if !per_address(&z.key) {
            let why =
                format!("not translated: the zone counts per `{}`; wsgate's limits count per client address", z.key);
            return report.at(d, Level::Warning, why);
        }
        let value = min(self.limits.max_concurrent_per_ip, n);
        self.limits.max_concurrent_per_ip = Some(value);
        self.set_at.entry("max_concurrent_per_ip").or_insert_with(|| place.to_string());
        if at != Depth::Http {
            let why =
                format!("approximately: limits.max_concurrent_per_ip: {value} applies to every route, not only here");
            report.at(d, Level::Warning, why);
        }
    }

    fn limit_req(&mut self, d: &Directive, at: Depth, place: &str, report: &mut Report) {
        let Some(zone) = d.args().iter().find_map(|w| w.text.strip_prefix("zone=")) else {
            return report.at(d, Level::Mistake, "has no zone=NAME");
        };
        let Some(z) = self.req_zones.get(zone).cloned() else {
            return report.at(d, Level::Mistake, format!("no limit_req_zone named `{zone}`: nginx refuses this"));
        };
        if !per_address(&z.key) {
            let why =
                format!("not translated: the zone counts per `{}`; wsgate's limits count per client address", z.key);
            return report.at(d, Level::Warning, why);
        }
        let Some(rate) = z.per_second.filter(|r| *r >= 1.0 && r.fract() == 0.0) else {
            let why = "not translated: wsgate's limits.requests_per_second_per_ip is a whole number of requests per second, at least 1";
            return report.at(d, Level::Warning, why);
        };
        let value = min(self.limits.requests_per_second_per_ip, rate as u64);
        self.limits.requests_per_second_per_ip = Some(value);
        self.set_at.entry("requests_per_second_per_ip").or_insert_with(|| place.to_string());
        let mut why = format!(
            "approximately: limits.requests_per_second_per_ip: {value}: nginx spaces requests out evenly (queueing a burst), wsgate counts them per second and answers 429 past the limit"
        );
        if at != Depth::Http {
            why.push_str(", on every route");
        }
        report.at(d, Level::Info, why);
    }

    fn keepalive_timeout(&mut self, d: &Directive, place: &str, report: &mut Report) {
        match d.arg(0).and_then(nginx_time) {
            Some(t) if t.is_zero() => {
                report.at(
                    d,
                    Level::Warning,
                    "not translated: 0 turns keep-alive off in nginx; wsgate always keeps client connections alive",
                );
            }
            Some(t) => {
                let whole = Duration::from_secs(t.as_secs().max(1));
                self.set_limit("keepalive_timeout", whole, d, place, report);
                if d.args().len() > 1 {
                    report.at(d, Level::Info, "the second value (the Keep-Alive header) is not translated");
                }
            }
            None => report.at(d, Level::Mistake, format!("`{}` is not a time", d.args_text())),
        }
    }

    /// A limits duration; true when it was taken.
    fn timeout(&mut self, d: &Directive, key: &'static str, place: &str, report: &mut Report) -> bool {
        match d.arg(0).and_then(nginx_time) {
            Some(t) if key == "send_timeout" && t < Duration::from_secs(1) => {
                report.at(d, Level::Warning, "not translated: wsgate's limits.send_timeout is at least 1s");
                false
            }
            Some(t) if t.is_zero() => {
                report.at(d, Level::Warning, "not translated: 0");
                false
            }
            Some(t) => self.set_limit(key, t, d, place, report),
            None => {
                report.at(d, Level::Mistake, format!("`{}` is not a time", d.args_text()));
                false
            }
        }
    }

    fn set_limit(
        &mut self,
        key: &'static str,
        value: Duration,
        d: &Directive,
        place: &str,
        report: &mut Report,
    ) -> bool {
        let slot = match key {
            "keepalive_timeout" => &mut self.limits.keepalive_timeout,
            "send_timeout" => &mut self.limits.send_timeout,
            _ => &mut self.limits.header_timeout,
        };
        match *slot {
            None => {
                *slot = Some(value);
                self.set_at.insert(key, place.to_string());
                true
            }
            Some(kept) if kept == value => true,
            Some(kept) => {
                let from = self.set_at.get(key).cloned().unwrap_or_default();
                let why = format!(
                    "not translated: wsgate's limits.{key} is one value for every route: {} from {from} is kept",
                    wsgate_duration(kept)
                );
                report.at(d, Level::Warning, why);
                false
            }
        }
    }

    fn real_ip_from(&mut self, d: &Directive, siblings: &[Directive], report: &mut Report) {
        let Some(net) = d.arg(0) else { return };
        if net.starts_with("unix:") {
            return report.at(d, Level::Info, "not needed: wsgate does not listen on unix sockets");
        }
        if !self.trusted_proxies.iter().any(|p| p == net) {
            self.trusted_proxies.push(net.to_string());
        }
        let header =
            siblings.iter().find(|s| s.name() == "real_ip_header").and_then(|s| s.arg(0)).unwrap_or("X-Real-IP");
        if !header.eq_ignore_ascii_case("X-Forwarded-For") {
            let why = format!(
                "approximately: trusted_proxies: wsgate takes the client from these proxies' X-Forwarded-For; nginx took it from {header}"
            );
            report.at(d, Level::Warning, why);
        }
    }
}

fn min(current: Option<u64>, new: u64) -> u64 {
    current.map_or(new, |c| c.min(new))
}

fn per_address(key: &str) -> bool {
    matches!(key, "$binary_remote_addr" | "$remote_addr")
}

fn client_max_body_size(d: &Directive, report: &mut Report) {
    if d.arg(0) == Some("0") {
        report.at(d, Level::Info, "not needed: 0 means no limit, and wsgate has none");
    } else {
        report.at(
            d,
            Level::Warning,
            "not translated: wsgate has no request body size limit (nginx answered 413 past it, 1m by default)",
        );
    }
}

/// A `map` block: the WebSocket recipe's is not needed; any other is reported; stray
/// tokens in either are mistakes.
fn map(d: &Directive, report: &mut Report) {
    let entries = d.children();
    for (i, e) in entries.iter().enumerate() {
        let words: Vec<String> = e.words.iter().map(shown).collect();
        let last = i + 1 == entries.len();
        let keyword = matches!(e.name(), "hostnames" | "volatile") && !e.words[0].quoted;
        let message = match (e.words.len(), e.unterminated) {
            (2, false) => continue,
            (1, false) if keyword => continue,
            (2, true) => {
                "missing `;` before `}`: nginx refuses this file (unexpected \"}\"); read as an entry".to_string()
            }
            (_, true) if last => format!(
                "stray `{}` after the last entry, with no `;`: nginx refuses this file (unexpected \"}}\"); left out",
                words.join(" ")
            ),
            _ => format!("stray `{}`: a map entry is a key and a value; left out", words.join(" ")),
        };
        report.push(crate::import::report::Finding {
            file: e.file,
            line: Some(e.line),
            level: Level::Mistake,
            directive: "map".into(),
            message,
        });
    }
    let recipe = d.arg(0) == Some("$http_upgrade");
    if recipe {
        report.once(
            "ws-recipe",
            d,
            Level::Info,
            "not needed: wsgate forwards WebSocket upgrades itself (Upgrade and Connection only on an upgrade, HTTP/1.1 to the backend)",
        );
    } else {
        let set = d.arg(1).map(|v| variables(v).join(", ")).unwrap_or_default();
        report.at(d, Level::Warning, format!("not translated: wsgate has no variables (${set})"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::import::parser::parse;

    #[test]
    fn limits_take_the_smallest_per_address_value() {
        let tree = parse(
            "limit_conn_zone $binary_remote_addr zone=addr:10m;\nlimit_req_zone $binary_remote_addr zone=r:10m rate=10r/s;\n\
             limit_conn_zone $server_name zone=srv:10m;\nlimit_conn addr 20;\nlimit_conn addr 10;\nlimit_req zone=r burst=5;\nlimit_conn srv 5;",
            0,
        )
        .unwrap();
        let all: Vec<&Directive> = tree.iter().collect();
        let (mut g, mut report) = (Globals::default(), Report::new());
        g.prepare(&all, &mut report);
        for d in &tree {
            g.setting(d, Depth::Http, &tree, "x:1", &mut report);
        }
        assert_eq!((g.limits.max_concurrent_per_ip, g.limits.requests_per_second_per_ip), (Some(10), Some(10)));
        let lines = report.lines(&["n.conf".into()]);
        assert!(lines[0].starts_with("n.conf:6: info: limit_req: approximately"), "{lines:?}");
        assert!(
            lines[1].contains("n.conf:7: warning: limit_conn: not translated: the zone counts per `$server_name`"),
            "{lines:?}"
        );
    }

    #[test]
    fn stray_tokens_in_a_map_are_mistakes() {
        let tree =
            parse("map $http_upgrade $connection_upgrade {\n default upgrade;\n '' close;\n upgrade\n}", 0).unwrap();
        let mut report = Report::new();
        map(&tree[0], &mut report);
        let lines = report.lines(&["m.conf".into()]);
        assert_eq!(lines.len(), 2, "{lines:?}");
        assert!(lines[0].starts_with("m.conf:1: info: map: not needed"), "{lines:?}");
        assert!(lines[1].starts_with("m.conf:4: mistake: map: stray `upgrade` after the last entry"), "{lines:?}");
    }

    #[test]
    fn one_value_for_every_route() {
        let tree = parse("keepalive_timeout 65;\nkeepalive_timeout 30s;\nsend_timeout 0.5;", 0).unwrap();
        let (mut g, mut report) = (Globals::default(), Report::new());
        for (i, d) in tree.iter().enumerate() {
            g.setting(d, Depth::Server, &tree, &format!("x:{}", i + 1), &mut report);
        }
        assert_eq!(g.limits.keepalive_timeout, Some(Duration::from_secs(65)));
        let lines = report.lines(&["k.conf".into()]);
        assert!(lines[0].contains("65s from x:1 is kept"), "{lines:?}");
        assert!(lines[1].contains("k.conf:3: mistake"), "{lines:?}");
    }
}
