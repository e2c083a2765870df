//! A location's `proxy_set_header` lines (after inheritance) → `host_header` and
//! `request_headers`. The recipe's lines (`Upgrade`, `Connection`, `X-Forwarded-*`,
//! `X-Real-IP`) become nothing, said once each, since wsgate does them itself; a value
//! with variables cannot be written (wsgate sets fixed values), and is reported.

use super::drafts::Target;
use super::scope::Scope;
use crate::import::report::{Level, Report};
use crate::import::syntax::Directive;
use crate::import::values::variables;

#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct HeaderPlan {
    pub(crate) host_header: Option<String>,
    pub(crate) set: Vec<(String, String)>,
    pub(crate) remove: Vec<String>,
    /// The location carries WebSocket upgrades (it passes `Upgrade`, or a `Connection`
    /// that says upgrade).
    pub(crate) websocket: bool,
    /// `Connection "upgrade"` on every request, not only on upgrades.
    pub(crate) unconditional_upgrade: Option<usize>,
}

/// What wsgate itself sets, and the nginx values that ask for the same.
const FORWARDED: &[(&str, &[&str])] = &[
    ("x-forwarded-for", &["$proxy_add_x_forwarded_for", "$remote_addr"]),
    ("x-forwarded-proto", &["$scheme"]),
    ("x-forwarded-host", &["$host", "$http_host", "$server_name"]),
    ("x-real-ip", &["$remote_addr"]),
];

pub(crate) fn plan(scope: &Scope, location: &Directive, target: &Target, report: &mut Report) -> HeaderPlan {
    let mut plan = HeaderPlan::default();
    let mut host_set = false;
    for d in &scope.headers {
        let (Some(name), Some(value)) = (d.arg(0), d.arg(1)) else {
            report.at(d, Level::Mistake, "expects a header name and a value");
            continue;
        };
        if d.args().len() > 2 {
            let why = format!(
                "takes a name and one value, got `{}`: a `;` missing, or a value that needs quotes?",
                d.args_text()
            );
            report.at(d, Level::Mistake, why);
        }
        let lower = name.to_ascii_lowercase();
        match lower.as_str() {
            "host" => {
                host_set = true;
                plan.host_header = host(d, value, target, report);
            }
            "upgrade" => {
                plan.websocket = true;
                recipe(d, report);
            }
            "connection" => connection(d, value, &mut plan, report),
            _ if FORWARDED.iter().any(|(n, values)| *n == lower && values.contains(&value)) => report.once(
                "forwarded-recipe",
                d,
                Level::Info,
                "not needed: wsgate sets X-Forwarded-For, X-Forwarded-Proto, X-Forwarded-Host and X-Real-IP itself",
            ),
            _ => other(d, name, value, &mut plan, report),
        }
    }
    if !host_set {
        let why = format!(
            "no proxy_set_header Host: nginx sent `Host: {}` ($proxy_host, its default); wsgate sends the client's Host (host_header: preserve)",
            target.proxy_host
        );
        report.at(location, Level::Info, why);
    }
    plan
}

fn host(d: &Directive, value: &str, target: &Target, report: &mut Report) -> Option<String> {
    match value {
        "$host" | "$http_host" => None,
        "$proxy_host" => {
            let is_address = target.implicit.as_deref() == Some(target.proxy_host.as_str())
                && target.proxy_host.starts_with(|c: char| c.is_ascii_digit() || c == '[');
            Some(if is_address { "backend".to_string() } else { target.proxy_host.clone() })
        }
        v if variables(v).is_empty() && !v.contains('$') => {
            if matches!(v, "preserve" | "backend") {
                let why = format!("not translated: `{v}` is a keyword of host_header, not a literal Host");
                report.at(d, Level::Warning, why);
                return None;
            }
            Some(v.to_string())
        }
        v => {
            let why =
                format!("not translated: Host from `{v}`; wsgate sends the client's Host (host_header: preserve)");
            report.at(d, Level::Warning, why);
            None
        }
    }
}

fn recipe(d: &Directive, report: &mut Report) {
    report.once(
        "ws-recipe",
        d,
        Level::Info,
        "not needed: wsgate forwards WebSocket upgrades itself (Upgrade and Connection only on an upgrade, HTTP/1.1 to the backend)",
    );
}

fn connection(d: &Directive, value: &str, plan: &mut HeaderPlan, report: &mut Report) {
    let lower = value.to_ascii_lowercase();
    if lower.contains("upgrade") {
        plan.websocket = true;
        if !value.contains('$') {
            plan.unconditional_upgrade = Some(d.line);
            let why = format!(
                "`Connection: {value}` on every request: nginx then asks the backend to upgrade plain requests too and loses keep-alive to it (the recipe's map $http_upgrade $connection_upgrade avoids that); harmless in wsgate, which sends it only on upgrades"
            );
            report.at(d, Level::Info, why);
        }
        recipe(d, report);
    } else if value.is_empty() {
        report.once("keepalive-recipe", d, Level::Info, "not needed: wsgate keeps backend connections alive itself");
    } else {
        report.at(d, Level::Warning, format!("not translated: wsgate manages Connection itself (`{value}`)"));
    }
}

fn other(d: &Directive, name: &str, value: &str, plan: &mut HeaderPlan, report: &mut Report) {
    if crate::config::connection_owned(&name.to_ascii_lowercase()) {
        report.at(d, Level::Warning, format!("not translated: wsgate manages {name} itself"));
        return;
    }
    if value.is_empty() {
        // nginx does not pass a header whose value is empty.
        plan.remove.retain(|n| !n.eq_ignore_ascii_case(name));
        plan.remove.push(name.to_string());
        return;
    }
    let vars = variables(value);
    if vars.is_empty() {
        plan.set.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
        plan.set.push((name.to_string(), value.to_string()));
        return;
    }
    let hint = match vars[0].as_str() {
        "remote_addr" | "binary_remote_addr" => {
            "; the client's address reaches the backend in X-Real-IP and X-Forwarded-For"
        }
        "proxy_add_x_forwarded_for" => "; wsgate sends the chain in X-Forwarded-For",
        "scheme" => "; wsgate sends it in X-Forwarded-Proto",
        "host" | "http_host" => "; wsgate sends it in X-Forwarded-Host (and Host)",
        _ => "",
    };
    let why = format!("not translated: {name} from `{value}`: wsgate sets headers to fixed values only{hint}");
    report.at(d, Level::Warning, why);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::import::parser::parse;

    fn plan_of(text: &str) -> (HeaderPlan, Vec<String>) {
        let tree = parse(text, 0).unwrap();
        let scope = Scope::default().enter(&tree);
        let target = Target { pool: "chat".into(), implicit: None, tls: None, proxy_host: "chat".into() };
        let mut report = Report::new();
        let plan = plan(&scope, &tree[0], &target, &mut report);
        (plan, report.lines(&["h.conf".into()]))
    }

    #[test]
    fn the_recipe_becomes_nothing_said_once() {
        let (plan, lines) = plan_of(
            "proxy_set_header Host $host;\nproxy_set_header Upgrade $http_upgrade;\nproxy_set_header Connection $connection_upgrade;\n\
             proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;\nproxy_set_header X-Real-IP $remote_addr;",
        );
        assert_eq!(plan, HeaderPlan { websocket: true, ..HeaderPlan::default() });
        assert_eq!(lines.len(), 2, "{lines:?}");
        assert!(lines[0].starts_with("h.conf:2: info: proxy_set_header: not needed: wsgate forwards WebSocket"));
        assert!(lines[1].starts_with("h.conf:4: info: proxy_set_header: not needed: wsgate sets X-Forwarded-For"));
    }

    #[test]
    fn literals_are_set_empty_values_removed_variables_reported() {
        let (plan, lines) = plan_of(
            "proxy_set_header Host chat.internal;\nproxy_set_header X-Env prod;\nproxy_set_header Accept-Encoding \"\";\n\
             proxy_set_header X-Client $remote_addr;\nproxy_set_header Connection \"upgrade\";\nproxy_set_header X-Forwarded-Proto https;",
        );
        assert_eq!(plan.host_header.as_deref(), Some("chat.internal"));
        assert_eq!(plan.set, [("X-Env".to_string(), "prod".to_string()), ("X-Forwarded-Proto".into(), "https".into())]);
        assert_eq!(plan.remove, ["Accept-Encoding"]);
        assert_eq!(plan.unconditional_upgrade, Some(5));
        assert!(
            lines[0].contains("h.conf:4: warning: proxy_set_header: not translated: X-Client from `$remote_addr`"),
            "{lines:?}"
        );
        assert!(
            lines[1].contains("h.conf:5: info: proxy_set_header: `Connection: upgrade` on every request"),
            "{lines:?}"
        );
    }

    #[test]
    fn without_host_nginx_sent_proxy_host() {
        let (plan, lines) = plan_of("proxy_set_header X-A b;");
        assert_eq!(plan.host_header, None);
        assert!(lines[0].contains("nginx sent `Host: chat`"), "{lines:?}");
    }
}
