//! `location PREFIX { proxy_pass ...; }` → a route draft: its path, pool, headers and
//! timeouts. Only prefix locations are routes (wsgate routes on path prefixes); `=` and
//! regular-expression locations are reported, not guessed at.

use super::drafts::{Ctx, RouteDraft};
use super::globals::{Depth, Globals};
use super::scope::{Scope, INHERITED};
use crate::import::report::{Level, Report};
use crate::import::syntax::Directive;
use crate::import::values::{nginx_time, wsgate_duration};
use std::time::Duration;

/// nginx's `proxy_read_timeout` when none is set: the WebSocket trap.
const NGINX_READ_TIMEOUT: Duration = Duration::from_secs(60);

/// Translates location `d` and the locations inside it into `out`.
pub(crate) fn location<'a>(
    d: &'a Directive,
    parent: &Scope<'a>,
    ctx: &Ctx,
    g: &mut Globals,
    report: &mut Report,
    out: &mut Vec<RouteDraft<'a>>,
) {
    let Some(path) = prefix(d, report) else { return };
    let scope = parent.enter(d.children());
    let mut proxy = None;
    for c in d.children() {
        match c.name() {
            "proxy_pass" if proxy.is_some() => {
                report.at(c, Level::Mistake, "is duplicate: nginx refuses this; the first is used")
            }
            "proxy_pass" => proxy = Some(c),
            "location" => {}
            n if INHERITED.contains(&n) => {}
            _ => {
                if !g.setting(c, Depth::Location, d.children(), &ctx.place(c), report) {
                    super::known::report(c, report);
                }
            }
        }
    }
    if let Some(pass) = proxy {
        if let Some(route) = route(d, pass, &path, &scope, ctx, report) {
            out.push(route);
        }
    }
    for c in d.children().iter().filter(|c| c.name() == "location") {
        location(c, &scope, ctx, g, report, out);
    }
}

/// The path prefix of a prefix location; None (reported) for any other kind.
fn prefix(d: &Directive, report: &mut Report) -> Option<String> {
    let uri = match d.args() {
        [m, uri] if m.text == "^~" => uri.text.clone(),
        [m, _] if m.text == "=" => return skip(d, report, "an exact-match location"),
        [m, _] if m.text == "~" || m.text == "~*" => return skip(d, report, "a regular-expression location"),
        [uri] if uri.text.starts_with('@') => {
            report.at(d, Level::Info, "not translated: a named location (a target of try_files or error_page)");
            return None;
        }
        [uri] if uri.text.starts_with('=') => return skip(d, report, "an exact-match location"),
        [uri] if uri.text.starts_with('~') => return skip(d, report, "a regular-expression location"),
        [uri] => uri.text.clone(),
        _ => {
            report.at(d, Level::Mistake, "expects a path, or a modifier and a path");
            return None;
        }
    };
    if !uri.starts_with('/') {
        report.at(
            d,
            Level::Warning,
            format!("`{uri}` does not start with `/`, so no request path matches it; left out"),
        );
        return None;
    }
    if uri.contains(|c: char| c == '?' || c == '#' || c.is_whitespace()) {
        report.at(d, Level::Warning, format!("not translated: `{uri}` is not a plain path"));
        return None;
    }
    Some(uri)
}

fn skip(d: &Directive, report: &mut Report, what: &str) -> Option<String> {
    let why = format!(
        "not translated: {what} (`{}`); wsgate routes on path prefixes only; what it does is left out",
        d.args_text()
    );
    report.at(d, Level::Warning, why);
    None
}

fn route<'a>(
    location: &'a Directive,
    pass: &'a Directive,
    path: &str,
    scope: &Scope<'a>,
    ctx: &Ctx,
    report: &mut Report,
) -> Option<RouteDraft<'a>> {
    let target = super::proxy_pass::target(pass, path, scope, ctx, report)?;
    let headers = super::headers::plan(scope, location, &target, report);
    let time = |d: Option<&'a Directive>, report: &mut Report| -> Option<(Duration, &'a Directive)> {
        let d = d?;
        match d.arg(0).and_then(nginx_time) {
            Some(t) if !t.is_zero() => Some((t, d)),
            _ => {
                report.at(d, Level::Mistake, format!("`{}` is not a time", d.args_text()));
                None
            }
        }
    };
    let read = time(scope.read_timeout, report);
    let send = time(scope.send_timeout, report);
    let connect = time(scope.connect_timeout, report);
    let mut draft = RouteDraft {
        location,
        path: path.to_string(),
        target,
        host_header: headers.host_header,
        set_headers: headers.set,
        remove_headers: headers.remove,
        idle_timeout: None,
        connect_timeout: connect,
        read_timeout: None,
    };
    if headers.websocket {
        draft.idle_timeout = websocket_timeouts(location, read, send, scope, report);
    } else {
        draft.read_timeout = read;
        if let Some((_, d)) = send {
            report.at(d, Level::Warning, "not translated: wsgate has no timeout for writing a request to the backend");
        }
    }
    Some(draft)
}

/// A WebSocket location's idle bound, and the recipe's `proxy_http_version` check.
fn websocket_timeouts(
    location: &Directive,
    read: Option<(Duration, &Directive)>,
    send: Option<(Duration, &Directive)>,
    scope: &Scope,
    report: &mut Report,
) -> Option<Duration> {
    match scope.http_version.and_then(|d| d.arg(0).map(|v| (d, v))) {
        Some((_, "1.1")) => {}
        Some((d, v)) => report.at(
            d,
            Level::Info,
            format!("{v}: nginx cannot pass a WebSocket upgrade over HTTP/{v} (it needs 1.1); wsgate does not need this line"),
        ),
        None => report.at(
            location,
            Level::Info,
            "no proxy_http_version 1.1 here: nginx talks HTTP/1.0 to the backend, so this WebSocket upgrade fails behind nginx; wsgate does not need it",
        ),
    }
    let idle = read.iter().chain(send.iter()).map(|(t, _)| *t).max();
    for (t, d) in read.iter().chain(send.iter()) {
        let why = format!(
            "approximately: websocket.idle_timeout: {}: nginx closes the session after {} without a byte {} the backend, wsgate after {} without a byte either way",
            wsgate_duration(idle.unwrap_or(*t)),
            wsgate_duration(*t),
            if d.name() == "proxy_read_timeout" { "from" } else { "to" },
            wsgate_duration(idle.unwrap_or(*t)),
        );
        report.at(d, Level::Info, why);
    }
    if idle.is_none() {
        let why = format!(
            "no proxy_read_timeout for this WebSocket location: nginx closed sessions idle for {}s (its default: the classic trap); wsgate keeps them for websocket.idle_timeout, 1h by default",
            NGINX_READ_TIMEOUT.as_secs()
        );
        report.at(location, Level::Info, why);
    }
    idle
}
