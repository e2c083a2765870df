//! Tokens → the directive tree of one file, with nginx's grammar errors (`unexpected ";"`,
//! `unexpected end of file, expecting "}"`), each with the line and what was expected.
//! `include` is not followed here (`include.rs` does it).

use super::lexer::{tokenize, Token};
use super::syntax::{Directive, FileId, SyntaxError, Word};

/// Deeper nesting than this is refused: real configs stop at five or six levels, and the
/// translation walks blocks recursively.
pub(crate) const MAX_DEPTH: usize = 64;

/// One open block: its directive (without the block yet) and what it holds so far.
struct Frame {
    head: Directive,
    children: Vec<Directive>,
}

/// Parses one file's text. `file` is stamped on every directive.
pub(crate) fn parse(text: &str, file: FileId) -> Result<Vec<Directive>, SyntaxError> {
    let tokens = tokenize(text)?;
    let mut top: Vec<Directive> = Vec::new();
    let mut stack: Vec<Frame> = Vec::new();
    let mut words: Vec<Word> = Vec::new();
    let directive = |words: Vec<Word>, unterminated| Directive {
        file,
        line: words.first().map_or(0, |w| w.line),
        words,
        block: None,
        unterminated,
    };
    for token in tokens {
        match token {
            Token::Word(w) => words.push(w),
            Token::Semicolon(line) => {
                if words.is_empty() {
                    return Err(unexpected(";", line));
                }
                let d = directive(std::mem::take(&mut words), false);
                current(&mut top, &mut stack).push(d);
            }
            Token::Open(line) => {
                if words.is_empty() {
                    return Err(unexpected("{", line));
                }
                if stack.len() >= MAX_DEPTH {
                    return Err(SyntaxError { line, message: format!("blocks nested deeper than {MAX_DEPTH} levels") });
                }
                stack.push(Frame { head: directive(std::mem::take(&mut words), false), children: Vec::new() });
            }
            Token::Close(line) => {
                if !words.is_empty() {
                    let d = directive(std::mem::take(&mut words), true);
                    current(&mut top, &mut stack).push(d);
                }
                let Some(frame) = stack.pop() else {
                    return Err(SyntaxError { line, message: "unexpected \"}\": no block is open here".into() });
                };
                let mut block = frame.head;
                block.block = Some(frame.children);
                current(&mut top, &mut stack).push(block);
            }
        }
    }
    if let Some(last) = words.last() {
        return Err(SyntaxError {
            line: last.line,
            message: "unexpected end of file; expected \";\" or \"}\" after this directive".into(),
        });
    }
    if let Some(frame) = stack.last() {
        return Err(SyntaxError {
            line: text.lines().count().max(1),
            message: format!(
                "unexpected end of file; expected \"}}\" closing `{}` opened on line {}",
                frame.head.name(),
                frame.head.line
            ),
        });
    }
    Ok(top)
}

fn current<'a>(top: &'a mut Vec<Directive>, stack: &'a mut [Frame]) -> &'a mut Vec<Directive> {
    match stack.last_mut() {
        Some(frame) => &mut frame.children,
        None => top,
    }
}

fn unexpected(what: &str, line: usize) -> SyntaxError {
    SyntaxError { line, message: format!("unexpected \"{what}\"; expected a directive name before it") }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn names(ds: &[Directive]) -> Vec<String> {
        ds.iter().map(|d| d.name().to_string()).collect()
    }

    #[test]
    fn blocks_nest_and_keep_their_lines() {
        let tree = parse("http {\n  server {\n    listen 80;\n  }\n}\n", 3).unwrap();
        assert_eq!(names(&tree), ["http"]);
        let server = &tree[0].children()[0];
        assert_eq!((server.name(), server.line, server.file), ("server", 2, 3));
        assert_eq!((server.children()[0].arg(0), server.children()[0].line), (Some("80"), 3));
    }

    #[test]
    fn a_directive_closed_by_a_brace_is_kept_and_marked() {
        let tree = parse("map $a $b {\n default x;\n '' y;\n upgrade\n}\n", 0).unwrap();
        let entries = tree[0].children();
        assert_eq!(entries.len(), 3);
        assert!(entries[2].unterminated && !entries[1].unterminated);
        assert_eq!((entries[2].name(), entries[2].line), ("upgrade", 4));
        assert_eq!((entries[1].name(), entries[1].words[0].quoted), ("", true));
    }

    #[test]
    fn grammar_errors_say_what_was_expected() {
        let e = parse("server {\n  listen 80;\n", 0).unwrap_err();
        assert!(e.message.contains("expected \"}\" closing `server` opened on line 1"), "{e:?}");
        let e = parse("a;\n;\n", 0).unwrap_err();
        assert_eq!(e.line, 2);
        assert!(parse("}\n", 0).unwrap_err().message.contains("no block is open"));
        let e = parse("a b", 0).unwrap_err();
        assert!(e.message.contains("expected \";\""), "{e:?}");
        assert!(parse("{ a; }", 0).is_err());
    }

    #[test]
    fn nesting_is_bounded() {
        let deep = "a {".repeat(MAX_DEPTH + 1);
        assert!(parse(&deep, 0).unwrap_err().message.contains("nested deeper"));
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

        #[test]
        fn never_panics(text in "[a-z0-9$ {};#'\"\\\\\n]{0,80}") {
            if let Ok(tree) = parse(&text, 0) {
                fn check(ds: &[Directive]) {
                    for d in ds {
                        assert!(!d.words.is_empty());
                        check(d.children());
                    }
                }
                check(&tree);
            }
        }
    }
}
