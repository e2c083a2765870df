//! Key paths (`upstreams.chat.health_check.interval`) and where they are in the YAML text.
//!
//! serde_yaml reports a line only for errors raised while deserializing; errors found later
//! (a route naming a missing upstream, a duplicate listener) need the line looked up. YAML
//! written by people is block style, so we walk indentation: good enough to point at the
//! right line, and for flow style (`[a, b]`) we point at the enclosing key.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Segment {
    Key(String),
    Index(usize),
}

/// A path to a value in the document, e.g. `routes[1].upstream`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct KeyPath(pub Vec<Segment>);

impl KeyPath {
    pub(crate) fn root() -> Self {
        KeyPath(Vec::new())
    }
    pub(crate) fn key(&self, key: &str) -> Self {
        let mut segments = self.0.clone();
        segments.push(Segment::Key(key.to_string()));
        KeyPath(segments)
    }
    pub(crate) fn index(&self, index: usize) -> Self {
        let mut segments = self.0.clone();
        segments.push(Segment::Index(index));
        KeyPath(segments)
    }
}

impl fmt::Display for KeyPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, segment) in self.0.iter().enumerate() {
            match segment {
                Segment::Key(k) if i == 0 => write!(f, "{k}")?,
                Segment::Key(k) => write!(f, ".{k}")?,
                Segment::Index(n) => write!(f, "[{n}]")?,
            }
        }
        Ok(())
    }
}

/// One meaningful line: its number (1-based), the column where its key starts, and its text
/// from there on (any `- ` sequence markers are treated as indentation).
#[derive(Debug, Clone, Copy)]
struct Line<'a> {
    number: usize,
    indent: usize,
    dash: Option<usize>,
    text: &'a str,
}

fn meaningful_lines(text: &str) -> Vec<Line<'_>> {
    let mut lines = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let trimmed = raw.trim_start();
        if trimmed.is_empty() || trimmed.starts_with('#') || trimmed.starts_with("---") {
            continue;
        }
        let mut indent = raw.len() - trimmed.len();
        let mut rest = trimmed;
        let mut dash = None;
        while let Some(after) = rest.strip_prefix("- ").or_else(|| (rest == "-").then_some("")) {
            dash.get_or_insert(indent);
            let after_trimmed = after.trim_start();
            indent += rest.len() - after_trimmed.len();
            rest = after_trimmed;
        }
        lines.push(Line { number: i + 1, indent, dash, text: rest });
    }
    lines
}

fn key_of(text: &str) -> Option<&str> {
    let colon = text.find(':')?;
    let key = text[..colon].trim();
    Some(key.trim_matches(|c| c == '"' || c == '\''))
}

/// Returns the 1-based (line, column) of `path` in `text`, or of its nearest enclosing key.
pub(crate) fn locate(text: &str, path: &KeyPath) -> Option<(usize, usize)> {
    let lines = meaningful_lines(text);
    let mut scope: &[Line] = &lines;
    let mut found: Option<Line> = None;
    for segment in &path.0 {
        let Some(first) = scope.first() else { break };
        match segment {
            Segment::Key(key) => {
                let level = scope.iter().map(|l| l.indent).min().unwrap_or(first.indent);
                let Some(pos) = scope.iter().position(|l| l.indent == level && key_of(l.text) == Some(key.as_str()))
                else {
                    break;
                };
                let end = scope[pos + 1..].iter().position(|l| l.indent <= level).map_or(scope.len(), |e| pos + 1 + e);
                found = Some(scope[pos]);
                scope = &scope[pos + 1..end];
            }
            Segment::Index(n) => {
                let Some(level) = scope.iter().filter_map(|l| l.dash).min() else { break };
                let starts: Vec<usize> =
                    scope.iter().enumerate().filter(|(_, l)| l.dash == Some(level)).map(|(i, _)| i).collect();
                let Some(&start) = starts.get(*n) else { break };
                let end = starts.get(n + 1).copied().unwrap_or(scope.len());
                found = Some(scope[start]);
                // The item's first key sits on the dash line itself: keep that line in scope.
                scope = &scope[start..end];
                if key_of(scope[0].text).is_none() {
                    scope = &scope[1..];
                }
            }
        }
    }
    found.map(|l| (l.number, l.indent + 1))
}

/// serde_yaml appends " at line L column C" (and sometimes prefixes its own path); we
/// print the location and the key path ourselves, once.
pub(super) fn strip_location(message: &str) -> String {
    let message = match message.rfind(" at line ") {
        Some(i) => &message[..i],
        None => message,
    };
    message.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = "\
server:
  threads: 2
listeners:
  - address: 127.0.0.1:8080
  - address: 127.0.0.1:8443
    tls:
      cert: a.pem
upstreams:
  chat:
    backends:
      - 127.0.0.1:3001
      - address: 127.0.0.1:3002
        weight: 2
    health_check:
      kind: http
      interval: 2s
  web:
    backends: [127.0.0.1:3003]
routes:
  # the websocket route
  - path_prefix: /websocket
    upstream: chat
  - path_prefix: /
    upstream: nowhere
";

    fn path(segments: &[Segment]) -> KeyPath {
        KeyPath(segments.to_vec())
    }
    fn k(s: &str) -> Segment {
        Segment::Key(s.into())
    }

    #[test]
    fn displays_dotted_paths_with_indices() {
        let p = KeyPath::root().key("routes").index(1).key("upstream");
        assert_eq!(p.to_string(), "routes[1].upstream");
    }

    #[test]
    fn finds_nested_keys() {
        let p = path(&[k("upstreams"), k("chat"), k("health_check"), k("interval")]);
        assert_eq!(locate(DOC, &p), Some((16, 7)));
        assert_eq!(locate(DOC, &path(&[k("server"), k("threads")])), Some((2, 3)));
    }

    #[test]
    fn finds_sequence_items_and_keys_on_dash_lines() {
        assert_eq!(locate(DOC, &KeyPath::root().key("routes").index(1).key("upstream")), Some((24, 5)));
        assert_eq!(locate(DOC, &KeyPath::root().key("routes").index(0).key("path_prefix")), Some((21, 5)));
        assert_eq!(locate(DOC, &KeyPath::root().key("listeners").index(1).key("tls").key("cert")), Some((7, 7)));
        let weight = KeyPath::root().key("upstreams").key("chat").key("backends").index(1).key("weight");
        assert_eq!(locate(DOC, &weight), Some((13, 9)));
    }

    #[test]
    fn falls_back_to_the_nearest_enclosing_key() {
        let flow = KeyPath::root().key("upstreams").key("web").key("backends").index(0);
        assert_eq!(locate(DOC, &flow), Some((18, 5)));
        let missing = KeyPath::root().key("upstreams").key("chat").key("nope");
        assert_eq!(locate(DOC, &missing), Some((9, 3)));
        assert_eq!(locate(DOC, &KeyPath::root().key("absent")), None);
        assert_eq!(locate("", &KeyPath::root().key("x")), None);
    }
}
