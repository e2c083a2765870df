//! The file-name patterns `include` accepts (`conf.d/*.conf`), as glob(3) matches them:
//! `*` any run of characters, `?` one, `[abc]`, `[a-z]`, `[!a]` or `[^a]` one of a set; a
//! leading `.` only matched by a pattern that starts with one. No `**`, as in nginx.

/// Whether `text` has a character nginx takes as a pattern (`*`, `?`, `[`).
pub(crate) fn is_pattern(text: &str) -> bool {
    text.contains(['*', '?', '['])
}

/// Whether one path component `name` matches one pattern component `pattern`.
pub(crate) fn matches(pattern: &str, name: &str) -> bool {
    if name.starts_with('.') && !pattern.starts_with('.') {
        return false;
    }
    let (p, n): (Vec<char>, Vec<char>) = (pattern.chars().collect(), name.chars().collect());
    match_from(&p, &n)
}

/// Iterative matching with one backtrack point for the last `*` (linear in practice, never
/// exponential).
fn match_from(p: &[char], n: &[char]) -> bool {
    let (mut pi, mut ni) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        match p.get(pi) {
            Some('*') => {
                star = Some((pi, ni));
                pi += 1;
                continue;
            }
            Some('?') => {
                pi += 1;
                ni += 1;
                continue;
            }
            Some('[') => {
                if let Some((matched, next)) = class(p, pi, n[ni]) {
                    if matched {
                        pi = next;
                        ni += 1;
                        continue;
                    }
                } else if n[ni] == '[' {
                    // An unclosed `[` is an ordinary character.
                    pi += 1;
                    ni += 1;
                    continue;
                }
            }
            Some(c) if *c == n[ni] => {
                pi += 1;
                ni += 1;
                continue;
            }
            _ => {}
        }
        match star {
            Some((sp, sn)) => {
                pi = sp + 1;
                ni = sn + 1;
                star = Some((sp, sn + 1));
            }
            None => return false,
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

/// The class starting at `p[at] == '['`: whether `c` is in it and where the pattern goes on;
/// None when the `[` is never closed.
fn class(p: &[char], at: usize, c: char) -> Option<(bool, usize)> {
    let mut i = at + 1;
    let negated = matches!(p.get(i), Some('!' | '^'));
    if negated {
        i += 1;
    }
    let mut found = false;
    let mut first = true;
    loop {
        let lo = *p.get(i)?;
        if lo == ']' && !first {
            return Some((found != negated, i + 1));
        }
        first = false;
        if p.get(i + 1) == Some(&'-') && p.get(i + 2).is_some_and(|hi| *hi != ']') {
            let hi = p[i + 2];
            found |= lo <= c && c <= hi;
            i += 3;
        } else {
            found |= lo == c;
            i += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn glob3_rules() {
        assert!(matches("*.conf", "chat.conf"));
        assert!(!matches("*.conf", "chat.conf.bak"));
        assert!(!matches("*.conf", ".hidden.conf"));
        assert!(matches(".*.conf", ".hidden.conf"));
        assert!(matches("site-?.conf", "site-a.conf"));
        assert!(matches("[a-c]*", "beta"));
        assert!(!matches("[!a-c]*", "beta"));
        assert!(matches("[^a-c]*", "delta"));
        assert!(matches("[]x]", "]"));
        assert!(matches("a[b", "a[b"));
        assert!(matches("*", "x") && matches("**", "") && !matches("?", ""));
        assert!(is_pattern("conf.d/*.conf") && !is_pattern("conf.d/a.conf"));
    }

    proptest! {
        #[test]
        fn never_panics(p in "[a-c*?\\[\\]!^-]{0,12}", n in "[a-c\\[\\]-]{0,12}") {
            let _ = matches(&p, &n);
        }

        #[test]
        fn a_name_matches_itself_and_star(n in "[a-z0-9_-]{1,12}") {
            prop_assert!(matches(&n, &n));
            prop_assert!(matches("*", &n));
        }
    }
}
