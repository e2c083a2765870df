//! `wsgate import-nginx FILE [-o OUT] [--prefix DIR]`: an nginx config (the WebSocket
//! recipe, its upstreams, servers and locations) → a wsgate YAML config on stdout or OUT,
//! and a report on stderr: one line per directive translated approximately or not at all,
//! and one per likely mistake, each `file:line: level: directive: message`.
//!
//! Exit codes: 0 the YAML is written and passes wsgate's own checks (`wsgate -t`, run
//! in-process on the text, relative paths taken from the YAML's directory); 1 nothing could
//! be routed (no server with a `proxy_pass` that translates: nothing written), or the YAML
//! is written but fails those checks here (a certificate or host name that exists only on
//! the nginx machine, say: the report quotes the check); 2 a file does not parse, cannot be
//! read, includes itself, or OUT cannot be written.
//!
//! The pipeline, one concern per file: `lexer.rs` and `parser.rs` (nginx's grammar →
//! `syntax.rs`'s directive tree with file and line), `include.rs` (following `include`
//! from nginx's configuration prefix, with `glob.rs` patterns), `translate/` (the tree →
//! `model.rs`, reporting into `report.rs`), `yaml.rs` (the model → text, keys in a fixed
//! order), `paths.rs` (nginx paths → the YAML's). Same input, same bytes out.
//!
//! The parser is our own: the crates that parse nginx configs are either unmaintained
//! (`nginx-config`, last released 2019, and it refuses directives it does not know) or a
//! linter's tokenizer that departs from nginx where it matters here (`nginx-lint-parser`:
//! `$var` split out of words, `}` ending a word, `\"` kept in single quotes, heuristics for
//! regex braces). nginx's tokenizer is one small state machine (`ngx_conf_read_token`);
//! `lexer.rs` follows it rule for rule, and is proptested never to panic.

mod args;
mod glob;
mod include;
mod lexer;
mod model;
mod parser;
mod paths;
mod report;
mod syntax;
mod translate;
mod values;
mod yaml;

pub use args::ImportArgs;

use include::{Disk, Files};
use paths::PathRules;
use report::{Level, Report};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// What one run produced.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Outcome {
    /// The YAML, unless nothing could be routed or a file did not parse.
    pub(crate) yaml: Option<String>,
    /// The report's lines, then a summary line.
    pub(crate) report: Vec<String>,
    pub(crate) code: u8,
}

/// Runs `wsgate import-nginx` and returns the process's exit code.
pub fn run(args: ImportArgs) -> ExitCode {
    let outcome = import(&args, &Disk);
    let mut code = outcome.code;
    if let Some(yaml) = &outcome.yaml {
        let written = match &args.output {
            Some(path) => std::fs::write(path, yaml).map_err(|e| format!("cannot write {}: {e}", path.display())),
            None => std::io::stdout().write_all(yaml.as_bytes()).map_err(|e| format!("cannot write to stdout: {e}")),
        };
        if let Err(e) = written {
            eprintln!("wsgate import-nginx: {e}");
            code = 2;
        }
    }
    let mut stderr = std::io::stderr().lock();
    for line in &outcome.report {
        let _ = writeln!(stderr, "{line}");
    }
    ExitCode::from(code)
}

/// The whole import, reading files through `files`.
pub(crate) fn import(args: &ImportArgs, files: &dyn Files) -> Outcome {
    let prefix = args.prefix.clone().unwrap_or_else(|| args.file.parent().map(Path::to_path_buf).unwrap_or_default());
    let out_name = args.output.as_ref().map_or("<stdout>".to_string(), |p| p.display().to_string());
    let loaded = match include::load(&args.file, &prefix, files) {
        Ok(loaded) => loaded,
        Err(e) => {
            let summary = format!(
                "wsgate import-nginx: {} does not read as nginx configuration; nothing written",
                args.file.display()
            );
            return Outcome { yaml: None, report: vec![e.to_string(), summary], code: 2 };
        }
    };
    let out_dir = args.output.as_ref().and_then(|p| p.parent()).map(Path::to_path_buf).unwrap_or_default();
    let rules = PathRules { prefix, out_dir: out_dir.clone() };
    let mut report = Report::new();
    for f in loaded.findings.iter().cloned() {
        report.push(f);
    }
    let output = translate::translate(&loaded.tree, &loaded.files, &rules, &mut report);
    let yaml = output.as_ref().map(yaml::render);
    if let Some(text) = &yaml {
        let base = if out_dir.as_os_str().is_empty() { PathBuf::from(".") } else { out_dir };
        if let Err(errors) = crate::config::parse(text, &out_name, &base) {
            for e in &errors.0 {
                report.global(Level::Error, format!("the translation fails wsgate's own check here: {e}"));
            }
        }
    }
    let code = if yaml.is_some() && report.count(Level::Error) == 0 { 0 } else { 1 };
    let mut lines = report.lines(&loaded.files);
    lines.push(summary(&args.file, &report, yaml.is_some(), &out_name));
    Outcome { yaml, report: lines, code }
}

/// For the fuzz target: `text` as the nginx file `fuzz.conf` (whose includes are never
/// found), translated and written without wsgate's own check (which would resolve names):
/// the YAML, if any, and the report's lines.
pub fn translate_text(text: &str) -> (Option<String>, Vec<String>) {
    struct One<'a>(&'a str);
    impl Files for One<'_> {
        fn read(&self, path: &Path) -> std::io::Result<Vec<u8>> {
            match path.to_str() {
                Some("fuzz.conf") => Ok(self.0.as_bytes().to_vec()),
                _ => Err(std::io::ErrorKind::NotFound.into()),
            }
        }
        fn entries(&self, _: &Path) -> std::io::Result<Vec<String>> {
            Ok(vec!["fuzz.conf".into()])
        }
    }
    let loaded = match include::load(Path::new("fuzz.conf"), Path::new(""), &One(text)) {
        Ok(loaded) => loaded,
        Err(e) => return (None, vec![e.to_string()]),
    };
    let rules = PathRules { prefix: PathBuf::new(), out_dir: PathBuf::new() };
    let mut report = Report::new();
    loaded.findings.iter().cloned().for_each(|f| report.push(f));
    let output = translate::translate(&loaded.tree, &loaded.files, &rules, &mut report);
    (output.as_ref().map(yaml::render), report.lines(&loaded.files))
}

fn summary(file: &Path, report: &Report, written: bool, out_name: &str) -> String {
    let counts = [
        (Level::Error, "error"),
        (Level::Mistake, "likely mistake"),
        (Level::Warning, "warning"),
        (Level::Info, "note"),
    ]
    .iter()
    .map(|(level, word)| {
        let n = report.count(*level);
        format!("{n} {word}{}", if n == 1 { "" } else { "s" })
    })
    .collect::<Vec<_>>()
    .join(", ");
    let what = if written { format!("wsgate config written to {out_name}") } else { "nothing written".to_string() };
    format!("wsgate import-nginx: {}: {counts}; {what}", file.display())
}

#[cfg(test)]
mod tests;
