//! Reading the main file and following `include`, as nginx does: a relative name is taken
//! from nginx's *configuration prefix*, which is the directory of the main file (what
//! `nginx -c FILE` uses), not from the directory of the file that says `include`; `-p`/
//! `--prefix` sets it. A name with `*`, `?` or `[` is a pattern: every match, in sorted
//! order, and no match is not an error. The included directives take the place of the
//! `include` line, each keeping its own file and line.
//!
//! Where nginx would stop, the importer goes on and reports, except for what makes the
//! result meaningless: a file that does not parse, an include cycle.

use super::glob;
use super::parser::parse;
use super::paths::lexical;
use super::report::{Finding, Level};
use super::syntax::{Directive, FileId};
use std::path::{Component, Path, PathBuf};

/// Includes nested deeper than this are refused (nginx has no limit; a cycle would be
/// caught first anyway).
const MAX_INCLUDE_DEPTH: usize = 16;

/// Where the files come from: the disk, or memory in tests.
pub(crate) trait Files {
    fn read(&self, path: &Path) -> std::io::Result<Vec<u8>>;
    /// The names in directory `dir`.
    fn entries(&self, dir: &Path) -> std::io::Result<Vec<String>>;
}

pub(crate) struct Disk;

impl Files for Disk {
    fn read(&self, path: &Path) -> std::io::Result<Vec<u8>> {
        std::fs::read(path)
    }

    fn entries(&self, dir: &Path) -> std::io::Result<Vec<String>> {
        let dir = if dir.as_os_str().is_empty() { Path::new(".") } else { dir };
        std::fs::read_dir(dir)?.map(|e| e.map(|e| e.file_name().to_string_lossy().into_owned())).collect()
    }
}

/// Everything read: the files (their names as shown in the report, the main file first),
/// one tree with the includes in place, and what was noticed on the way.
#[derive(Debug)]
pub(crate) struct Loaded {
    pub(crate) files: Vec<String>,
    pub(crate) tree: Vec<Directive>,
    pub(crate) findings: Vec<Finding>,
}

/// Why nothing can be translated: a file that cannot be read or parsed, an include cycle.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct LoadError {
    pub(crate) file: String,
    pub(crate) line: Option<usize>,
    pub(crate) message: String,
}

impl std::fmt::Display for LoadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.line {
            Some(line) => write!(f, "{}:{line}: error: {}", self.file, self.message),
            None => write!(f, "{}: error: {}", self.file, self.message),
        }
    }
}

/// Reads `main` and everything it includes; relative include names are taken from `prefix`.
pub(crate) fn load(main: &Path, prefix: &Path, files: &dyn Files) -> Result<Loaded, LoadError> {
    let name = main.display().to_string();
    let bytes = files.read(main).map_err(|e| LoadError {
        file: name.clone(),
        line: None,
        message: format!("cannot read it: {e}"),
    })?;
    let mut loader =
        Loader { files, prefix, names: vec![name.clone()], paths: vec![lexical(main)], findings: Vec::new() };
    let tree = parse(&String::from_utf8_lossy(&bytes), 0).map_err(|e| LoadError {
        file: name,
        line: Some(e.line),
        message: e.message,
    })?;
    let mut stack = vec![lexical(main)];
    let tree = loader.expand(tree, &mut stack)?;
    Ok(Loaded { files: loader.names, tree, findings: loader.findings })
}

struct Loader<'a> {
    files: &'a dyn Files,
    prefix: &'a Path,
    names: Vec<String>,
    /// The same file included twice keeps one id.
    paths: Vec<PathBuf>,
    findings: Vec<Finding>,
}

impl Loader<'_> {
    fn expand(&mut self, tree: Vec<Directive>, stack: &mut Vec<PathBuf>) -> Result<Vec<Directive>, LoadError> {
        let mut out = Vec::with_capacity(tree.len());
        for mut d in tree {
            if d.name() == "include" && d.block.is_none() && !d.words[0].quoted {
                self.include(&d, stack, &mut out)?;
                continue;
            }
            if let Some(block) = d.block.take() {
                d.block = Some(self.expand(block, stack)?);
            }
            out.push(d);
        }
        Ok(out)
    }

    fn include(&mut self, d: &Directive, stack: &mut Vec<PathBuf>, out: &mut Vec<Directive>) -> Result<(), LoadError> {
        let pattern = match d.args() {
            [one] if one.text.contains('$') => {
                self.note(d, Level::Warning, "not followed: nginx does not expand variables here either");
                return Ok(());
            }
            [one] if !one.text.is_empty() => one.text.clone(),
            _ => {
                self.note(d, Level::Mistake, "takes exactly one file name; not followed");
                return Ok(());
            }
        };
        let path = self.prefix.join(&pattern);
        let paths = if glob::is_pattern(&pattern) {
            let found = expand_pattern(self.files, &path);
            if found.is_empty() {
                let hint = match Path::new(&pattern).is_relative() {
                    true => " (relative names are read from nginx's prefix: --prefix sets it)",
                    false => "",
                };
                let why = format!("`{}` matches no file{hint}", path.display());
                self.note(d, Level::Info, why);
            }
            found
        } else {
            vec![path]
        };
        for path in paths {
            let key = lexical(&path);
            if stack.contains(&key) {
                return Err(self.error(d, format!("include cycle: `{}` includes itself", path.display())));
            }
            if stack.len() > MAX_INCLUDE_DEPTH {
                return Err(self.error(d, format!("includes nested deeper than {MAX_INCLUDE_DEPTH} files")));
            }
            let bytes = match self.files.read(&path) {
                Ok(bytes) => bytes,
                Err(_) if pattern.ends_with("mime.types") => {
                    self.note(
                        d,
                        Level::Info,
                        "not needed: wsgate serves no files (and mime.types is not here to read)",
                    );
                    continue;
                }
                Err(e) => {
                    let why = format!("cannot read `{}`: {e}; skipped, so nothing in it is translated (use --prefix if nginx reads it from another directory)", path.display());
                    self.note(d, Level::Warning, why);
                    continue;
                }
            };
            let id = self.id_of(&key, &path);
            let tree = parse(&String::from_utf8_lossy(&bytes), id).map_err(|e| LoadError {
                file: self.names[id].clone(),
                line: Some(e.line),
                message: e.message,
            })?;
            stack.push(key);
            let expanded = self.expand(tree, stack);
            stack.pop();
            out.extend(expanded?);
        }
        Ok(())
    }

    fn id_of(&mut self, key: &Path, path: &Path) -> FileId {
        if let Some(id) = self.paths.iter().position(|p| p == key) {
            return id;
        }
        self.paths.push(key.to_path_buf());
        self.names.push(path.display().to_string());
        self.names.len() - 1
    }

    fn note(&mut self, d: &Directive, level: Level, message: impl Into<String>) {
        let finding =
            Finding { file: d.file, line: Some(d.line), level, directive: "include".into(), message: message.into() };
        self.findings.push(finding);
    }

    fn error(&self, d: &Directive, message: String) -> LoadError {
        LoadError { file: self.names.get(d.file).cloned().unwrap_or_default(), line: Some(d.line), message }
    }
}

/// Every file matching `pattern` (patterns allowed in any component), sorted.
fn expand_pattern(files: &dyn Files, pattern: &Path) -> Vec<PathBuf> {
    let mut candidates = vec![PathBuf::new()];
    for component in pattern.components() {
        let part = component.as_os_str().to_string_lossy();
        let mut next = Vec::new();
        for base in &candidates {
            if matches!(component, Component::Normal(_)) && glob::is_pattern(&part) {
                let mut names = files.entries(base).unwrap_or_default();
                names.retain(|n| glob::matches(&part, n));
                next.extend(names.into_iter().map(|n| base.join(n)));
            } else {
                next.push(base.join(component.as_os_str()));
            }
        }
        candidates = next;
    }
    candidates.sort();
    candidates
}

/// Files in memory (path → text), for tests.
#[cfg(test)]
pub(crate) struct Memory(pub(crate) std::collections::BTreeMap<&'static str, &'static str>);

#[cfg(test)]
impl Files for Memory {
    fn read(&self, path: &Path) -> std::io::Result<Vec<u8>> {
        let key = path.to_string_lossy();
        self.0.get(key.as_ref()).map(|t| t.as_bytes().to_vec()).ok_or_else(|| std::io::ErrorKind::NotFound.into())
    }

    fn entries(&self, dir: &Path) -> std::io::Result<Vec<String>> {
        let dir = dir.to_string_lossy();
        let prefix = if dir.is_empty() { String::new() } else { format!("{dir}/") };
        let names = self.0.keys().filter_map(|k| k.strip_prefix(prefix.as_str())).filter(|rest| !rest.contains('/'));
        Ok(names.map(String::from).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn names(ds: &[Directive]) -> Vec<(String, FileId, usize)> {
        ds.iter().map(|d| (d.name().to_string(), d.file, d.line)).collect()
    }

    #[test]
    fn includes_take_the_place_of_their_line_from_the_prefix() {
        let fs = Memory(BTreeMap::from([
            ("etc/nginx.conf", "a;\ninclude conf.d/*.conf;\nb;\n"),
            ("etc/conf.d/2.conf", "two;"),
            ("etc/conf.d/1.conf", "one;\ninclude snippets/x;"),
            ("etc/conf.d/skip.txt", "no;"),
            // Relative to the prefix, not to conf.d/ where the include is.
            ("etc/snippets/x", "\n\nx;"),
        ]));
        let loaded = load(Path::new("etc/nginx.conf"), Path::new("etc"), &fs).unwrap();
        assert_eq!(loaded.files, ["etc/nginx.conf", "etc/conf.d/1.conf", "etc/snippets/x", "etc/conf.d/2.conf"]);
        assert_eq!(
            names(&loaded.tree),
            [("a".into(), 0, 1), ("one".into(), 1, 1), ("x".into(), 2, 3), ("two".into(), 3, 1), ("b".into(), 0, 3)]
        );
        assert!(loaded.findings.is_empty());
    }

    #[test]
    fn what_cannot_be_followed_is_reported_or_refused() {
        let fs = Memory(BTreeMap::from([
            ("n.conf", "http {\n include missing.conf;\n include none/*.conf;\n include $x;\n include mime.types;\n}"),
            ("loop.conf", "include loop.conf;"),
            ("bad.conf", "include broken.conf;"),
            ("broken.conf", "\nserver {"),
        ]));
        let loaded = load(Path::new("n.conf"), Path::new(""), &fs).unwrap();
        let levels: Vec<(usize, Level)> = loaded.findings.iter().map(|f| (f.line.unwrap(), f.level)).collect();
        assert_eq!(levels, [(2, Level::Warning), (3, Level::Info), (4, Level::Warning), (5, Level::Info)]);
        let e = load(Path::new("loop.conf"), Path::new(""), &fs).unwrap_err();
        assert!(e.message.contains("include cycle"), "{e}");
        let e = load(Path::new("bad.conf"), Path::new(""), &fs).unwrap_err();
        assert_eq!((e.file.as_str(), e.line), ("broken.conf", Some(2)));
        assert!(load(Path::new("absent.conf"), Path::new(""), &fs).unwrap_err().message.contains("cannot read"));
    }
}
