//! File paths inside the nginx config (certificates, CA files, the pid file) → paths in the
//! YAML. nginx reads a relative one from its configuration prefix; wsgate reads a relative
//! one from the YAML's directory. An absolute result stays absolute; a relative one (the
//! user named the nginx file by a relative path) is rewritten relative to where the YAML
//! goes (`-o`'s directory, or the current directory for stdout), so both name the same
//! file and the output does not depend on where the command ran from.

use std::path::{Component, Path, PathBuf};

#[derive(Debug, Clone)]
pub(crate) struct PathRules {
    /// nginx's configuration prefix (the main file's directory unless `--prefix`).
    pub(crate) prefix: PathBuf,
    /// The directory the YAML is written to, relative to the current directory or absolute.
    pub(crate) out_dir: PathBuf,
}

impl PathRules {
    /// The YAML's spelling of nginx path `path`, and whether it had to be rewritten.
    pub(crate) fn output(&self, path: &str) -> (String, bool) {
        if Path::new(path).is_absolute() {
            return (path.to_string(), false);
        }
        let full = lexical(&self.prefix.join(path));
        if full.is_absolute() {
            return (full.display().to_string(), true);
        }
        if self.out_dir.is_absolute() {
            return (absolute_fallback(&full).display().to_string(), true);
        }
        // Both relative to the current directory: compare them component by component.
        let rel = relative(&full, &lexical(&self.out_dir));
        let text = rel.display().to_string();
        let rewritten = text != path;
        (text, rewritten)
    }
}

/// `.` dropped and `a/..` folded, without touching the disk (also how includes recognise
/// the same file named twice).
pub(super) fn lexical(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir if matches!(out.components().next_back(), Some(Component::Normal(_))) => {
                out.pop();
            }
            other => out.push(other.as_os_str()),
        }
    }
    out
}

/// `target` as seen from directory `base` (both lexical, both relative to the current
/// directory).
fn relative(target: &Path, base: &Path) -> PathBuf {
    let t: Vec<Component> = target.components().collect();
    let b: Vec<Component> = base.components().collect();
    let common = t.iter().zip(&b).take_while(|(x, y)| x == y).count();
    let mut out = PathBuf::new();
    for c in &b[common..] {
        match c {
            // Going up from `..` cannot be expressed without knowing the directory's name.
            Component::ParentDir => return absolute_fallback(target),
            _ => out.push(".."),
        }
    }
    for c in &t[common..] {
        out.push(c.as_os_str());
    }
    if out.as_os_str().is_empty() {
        out.push(".");
    }
    out
}

fn absolute_fallback(target: &Path) -> PathBuf {
    std::env::current_dir().map(|d| lexical(&d.join(target))).unwrap_or_else(|_| target.to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(prefix: &str, out_dir: &str) -> PathRules {
        PathRules { prefix: prefix.into(), out_dir: out_dir.into() }
    }

    #[test]
    fn absolute_stays_relative_is_rebased_on_the_output() {
        assert_eq!(rules("etc/nginx", ".").output("/etc/ssl/a.pem"), ("/etc/ssl/a.pem".into(), false));
        assert_eq!(rules("/etc/nginx", ".").output("ssl/a.pem"), ("/etc/nginx/ssl/a.pem".into(), true));
        assert_eq!(rules("", "").output("ssl/a.pem"), ("ssl/a.pem".into(), false));
        assert_eq!(rules("etc/nginx", "").output("ssl/a.pem"), ("etc/nginx/ssl/a.pem".into(), true));
        assert_eq!(rules("etc/nginx", "out").output("./ssl/../ssl/a.pem"), ("../etc/nginx/ssl/a.pem".into(), true));
        assert_eq!(rules("etc/nginx", "etc/nginx").output("ssl/a.pem"), ("ssl/a.pem".into(), false));
        // An output elsewhere by an absolute path: the file by its absolute path.
        let cwd = std::env::current_dir().unwrap();
        let (text, moved) = rules("etc", "/tmp/out").output("a.pem");
        assert_eq!((std::path::PathBuf::from(text), moved), (cwd.join("etc/a.pem"), true));
        // Up from a `..` cannot be spelled relatively either.
        assert_eq!(rules("", "../out").output("a.pem").0, cwd.join("a.pem").display().to_string());
    }
}
