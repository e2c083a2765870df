//! The report on stderr: one line per directive translated approximately or not at all,
//! and one per likely mistake, each `file:line: level: directive: message`, in file order.

use super::syntax::{Directive, FileId};
use std::collections::BTreeSet;
use std::fmt;

/// How much a finding matters, most first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Level {
    /// The output cannot be used as it is.
    Error,
    /// Very likely a mistake in the nginx config itself (nginx may even refuse it).
    Mistake,
    /// Not translated, or translated with a difference in behaviour worth a look.
    Warning,
    /// Not needed in wsgate, or translated with a difference that rarely matters.
    Info,
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Level::Error => "error",
            Level::Mistake => "mistake",
            Level::Warning => "warning",
            Level::Info => "info",
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Finding {
    pub(crate) file: FileId,
    /// None for a finding about the whole configuration.
    pub(crate) line: Option<usize>,
    pub(crate) level: Level,
    /// The directive it is about (`proxy_pass`), or empty.
    pub(crate) directive: String,
    pub(crate) message: String,
}

/// Every finding, once each.
#[derive(Debug, Default)]
pub(crate) struct Report {
    findings: Vec<Finding>,
    /// Keys of the things said once per run ("wsgate does the WebSocket recipe itself").
    said: BTreeSet<&'static str>,
}

impl Report {
    pub(crate) fn new() -> Report {
        Report::default()
    }

    /// A finding about directive `at`.
    pub(crate) fn at(&mut self, at: &Directive, level: Level, message: impl Into<String>) {
        self.push(Finding {
            file: at.file,
            line: Some(at.line),
            level,
            directive: at.name().to_string(),
            message: message.into(),
        });
    }

    /// Like `at`, but only the first time `key` is used in this run.
    pub(crate) fn once(&mut self, key: &'static str, at: &Directive, level: Level, message: impl Into<String>) {
        if self.said.insert(key) {
            self.at(at, level, message);
        }
    }

    /// A finding about the whole configuration (reported against the main file).
    pub(crate) fn global(&mut self, level: Level, message: impl Into<String>) {
        self.push(Finding { file: 0, line: None, level, directive: String::new(), message: message.into() });
    }

    /// Adds a finding unless the very same one is already there (a directive inherited by
    /// several locations is evaluated once per location).
    pub(crate) fn push(&mut self, finding: Finding) {
        if !self.findings.contains(&finding) {
            self.findings.push(finding);
        }
    }

    pub(crate) fn count(&self, level: Level) -> usize {
        self.findings.iter().filter(|f| f.level == level).count()
    }

    /// The report's lines: by file (in the order they were read), then line; findings on
    /// the same line keep the order they were made in.
    pub(crate) fn lines(&self, files: &[String]) -> Vec<String> {
        let mut sorted: Vec<&Finding> = self.findings.iter().collect();
        sorted.sort_by_key(|f| (f.file, f.line.is_some(), f.line));
        sorted
            .into_iter()
            .map(|f| {
                let file = files.get(f.file).map_or("?", String::as_str);
                let place = match f.line {
                    Some(line) => format!("{file}:{line}"),
                    None => file.to_string(),
                };
                let message = f.message.replace(['\n', '\r'], " ");
                if f.directive.is_empty() {
                    format!("{place}: {}: {message}", f.level)
                } else {
                    format!("{place}: {}: {}: {message}", f.level, f.directive.replace(['\n', '\r'], " "))
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::import::syntax::Word;

    fn directive(file: FileId, line: usize, name: &str) -> Directive {
        let word = Word { text: name.into(), quoted: false, line };
        Directive { file, line, words: vec![word], block: None, unterminated: false }
    }

    #[test]
    fn lines_are_in_file_then_line_order_and_said_once() {
        let mut r = Report::new();
        r.at(&directive(1, 3, "listen"), Level::Info, "b");
        r.at(&directive(0, 9, "proxy_pass"), Level::Mistake, "a");
        r.once("recipe", &directive(0, 2, "proxy_http_version"), Level::Info, "c");
        r.once("recipe", &directive(0, 1, "proxy_http_version"), Level::Info, "not again");
        r.at(&directive(0, 9, "proxy_pass"), Level::Mistake, "a");
        r.global(Level::Error, "nothing to route");
        let files = ["main.conf".to_string(), "conf.d/a.conf".to_string()];
        assert_eq!(
            r.lines(&files),
            [
                "main.conf: error: nothing to route",
                "main.conf:2: info: proxy_http_version: c",
                "main.conf:9: mistake: proxy_pass: a",
                "conf.d/a.conf:3: info: listen: b",
            ]
        );
        assert_eq!((r.count(Level::Mistake), r.count(Level::Info)), (1, 2));
    }
}
