//! What the translation of one level hands to the next: the context every step reads, and
//! the drafts of servers and routes before they are assembled into listeners, pools and
//! routes (a leaf, so the steps share these types without importing each other).

use crate::import::model::UpstreamTlsOut;
use crate::import::paths::PathRules;
use crate::import::syntax::Directive;
use std::time::Duration;

/// What every step may read.
pub(crate) struct Ctx<'a> {
    /// The files read, by `FileId`.
    pub(crate) files: &'a [String],
    /// Every `upstream` block: its name and directive, in file order.
    pub(crate) upstreams: Vec<(String, &'a Directive)>,
    /// The upstream blocks with no server wsgate can use (reported there).
    pub(crate) unusable: Vec<String>,
    pub(crate) paths: &'a PathRules,
}

impl Ctx<'_> {
    /// `file:line: what`, the comment above an item in the YAML.
    pub(crate) fn origin(&self, d: &Directive, what: &str) -> String {
        format!("{}: {what}", self.place(d))
    }

    /// `file:line`.
    pub(crate) fn place(&self, d: &Directive) -> String {
        format!("{}:{}", self.files.get(d.file).map_or("?", String::as_str), d.line)
    }
}

/// Where a `proxy_pass` sends requests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Target {
    /// The pool's name in the YAML.
    pub(crate) pool: String,
    /// For a `proxy_pass http://host:port` without an upstream block: its one backend.
    pub(crate) implicit: Option<String>,
    /// `https://`: how wsgate talks TLS to the pool.
    pub(crate) tls: Option<UpstreamTlsOut>,
    /// nginx's `$proxy_host`: the URL's host (and port when not the scheme's default).
    pub(crate) proxy_host: String,
}

/// A location that proxies: one route per host name of its server.
pub(crate) struct RouteDraft<'a> {
    pub(crate) location: &'a Directive,
    pub(crate) path: String,
    pub(crate) target: Target,
    pub(crate) host_header: Option<String>,
    pub(crate) set_headers: Vec<(String, String)>,
    pub(crate) remove_headers: Vec<String>,
    pub(crate) idle_timeout: Option<Duration>,
    /// For the pool: `proxy_connect_timeout`, and `proxy_read_timeout` outside WebSocket
    /// locations, each with the directive it came from.
    pub(crate) connect_timeout: Option<(Duration, &'a Directive)>,
    pub(crate) read_timeout: Option<(Duration, &'a Directive)>,
}

/// One `listen`.
#[derive(Debug, Clone)]
pub(crate) struct Listen<'a> {
    pub(crate) directive: &'a Directive,
    pub(crate) address: String,
    pub(crate) ssl: bool,
    pub(crate) http2: bool,
    pub(crate) proxy_protocol: bool,
    pub(crate) default_server: bool,
}

/// One `server` block.
pub(crate) struct ServerDraft<'a> {
    pub(crate) directive: &'a Directive,
    pub(crate) listens: Vec<Listen<'a>>,
    /// Route hosts; empty: any host.
    pub(crate) hosts: Vec<String>,
    /// The `server_name` directive, for messages about names.
    pub(crate) server_name: Option<&'a Directive>,
    /// `(cert, key)` in the YAML's spelling; the first is the server's.
    pub(crate) certificates: Vec<(String, String)>,
    pub(crate) routes: Vec<RouteDraft<'a>>,
}
