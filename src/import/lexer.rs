//! nginx's tokenizer, rule for rule (`ngx_conf_read_token` in `src/core/ngx_conf_file.c`):
//!
//! - words are separated by space, tab, CR and LF, and end at `;` or `{`; a `}` inside a
//!   word is part of it (`foo}` is one word), and so is a `{` right after `$` (`${host}`);
//! - `#` starts a comment only where a word could start (`a#b` is one word);
//! - `"` and `'` quote a whole word only at its start; a quoted word must be followed by
//!   a space, `;`, `{` or `)` (`"a"b` is an error);
//! - a backslash makes the next character ordinary, in and out of quotes; when the word is
//!   stored, `\"`, `\'` and `\\` lose the backslash, `\t`, `\r`, `\n` become the control
//!   characters, and any other `\x` stays as written.
//!
//! Whether a `;`, `{` or `}` is allowed where it stands is the parser's business.

use super::syntax::{SyntaxError, Word};

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Token {
    Word(Word),
    Semicolon(usize),
    Open(usize),
    Close(usize),
}

fn is_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\r' | '\n')
}

/// The tokens of one file's text.
pub(crate) fn tokenize(text: &str) -> Result<Vec<Token>, SyntaxError> {
    let chars: Vec<char> = text.chars().collect();
    let mut tokens = Vec::new();
    let mut line = 1;
    // The state flags of ngx_conf_read_token, under the same names.
    let (mut last_space, mut need_space, mut sharp_comment) = (true, false, false);
    let (mut quoted, mut d_quoted, mut s_quoted, mut variable) = (false, false, false, false);
    let (mut start, mut start_line, mut word_quoted) = (0, 1, false);
    let mut i = 0;
    while i < chars.len() {
        let ch = chars[i];
        i += 1;
        if ch == '\n' {
            line += 1;
            sharp_comment = false;
        }
        if sharp_comment {
            continue;
        }
        if quoted {
            quoted = false;
            continue;
        }
        if need_space {
            need_space = false;
            last_space = true;
            match ch {
                c if is_space(c) => continue,
                ';' => {
                    tokens.push(Token::Semicolon(line));
                    continue;
                }
                '{' => {
                    tokens.push(Token::Open(line));
                    continue;
                }
                // `if ($a = "b")`: the `)` starts the next word.
                ')' => {}
                other => {
                    return Err(SyntaxError {
                        line,
                        message: format!(
                            "unexpected {other:?} right after a quoted string; expected a space, \";\" or \"{{\""
                        ),
                    })
                }
            }
        }
        if last_space {
            start = i - 1;
            start_line = line;
            word_quoted = false;
            match ch {
                c if is_space(c) => continue,
                ';' => tokens.push(Token::Semicolon(line)),
                '{' => tokens.push(Token::Open(line)),
                '}' => tokens.push(Token::Close(line)),
                '#' => sharp_comment = true,
                '\\' => {
                    quoted = true;
                    last_space = false;
                }
                '"' | '\'' => {
                    start = i;
                    word_quoted = true;
                    d_quoted = ch == '"';
                    s_quoted = ch == '\'';
                    last_space = false;
                }
                '$' => {
                    variable = true;
                    last_space = false;
                }
                _ => last_space = false,
            }
            continue;
        }
        if ch == '{' && variable {
            continue;
        }
        variable = false;
        if ch == '\\' {
            quoted = true;
            continue;
        }
        if ch == '$' {
            variable = true;
            continue;
        }
        let found = if d_quoted || s_quoted {
            let closing = (d_quoted && ch == '"') || (s_quoted && ch == '\'');
            if closing {
                (d_quoted, s_quoted, need_space) = (false, false, true);
            }
            closing
        } else if is_space(ch) || ch == ';' || ch == '{' {
            last_space = true;
            true
        } else {
            false
        };
        if found {
            let text = unescape(&chars[start..i - 1]);
            tokens.push(Token::Word(Word { text, quoted: word_quoted, line: start_line }));
            match ch {
                ';' if !word_quoted => tokens.push(Token::Semicolon(line)),
                '{' if !word_quoted => tokens.push(Token::Open(line)),
                _ => {}
            }
        }
    }
    if d_quoted || s_quoted {
        let quote = if d_quoted { '"' } else { '\'' };
        return Err(SyntaxError {
            line: start_line,
            message: format!("unexpected end of file inside the string quoted with {quote} on this line; expected the closing {quote}"),
        });
    }
    if !last_space && !need_space {
        // A last word with no `;` after it: the parser says what was expected.
        let text = unescape(&chars[start..]);
        tokens.push(Token::Word(Word { text, quoted: false, line: start_line }));
    }
    Ok(tokens)
}

/// A word's characters as nginx stores them.
fn unescape(chars: &[char]) -> String {
    let mut out = String::with_capacity(chars.len());
    let mut i = 0;
    while i < chars.len() {
        if chars[i] == '\\' {
            match chars.get(i + 1) {
                Some(&c @ ('"' | '\'' | '\\')) => {
                    out.push(c);
                    i += 2;
                    continue;
                }
                Some('t') => {
                    out.push('\t');
                    i += 2;
                    continue;
                }
                Some('r') => {
                    out.push('\r');
                    i += 2;
                    continue;
                }
                Some('n') => {
                    out.push('\n');
                    i += 2;
                    continue;
                }
                _ => {}
            }
        }
        out.push(chars[i]);
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn words(text: &str) -> Vec<(String, bool)> {
        tokenize(text)
            .unwrap()
            .into_iter()
            .map(|t| match t {
                Token::Word(w) => (w.text, w.quoted),
                Token::Semicolon(_) => (";".into(), false),
                Token::Open(_) => ("{".into(), false),
                Token::Close(_) => ("}".into(), false),
            })
            .collect()
    }

    fn plain(text: &str) -> Vec<String> {
        words(text).into_iter().map(|w| w.0).collect()
    }

    #[test]
    fn words_end_at_spaces_semicolons_and_braces() {
        assert_eq!(plain("listen 80;\nserver{a b;}"), ["listen", "80", ";", "server", "{", "a", "b", ";", "}"]);
        // A `}` inside a word is part of it, as in nginx.
        assert_eq!(plain("a b}"), ["a", "b}"]);
    }

    #[test]
    fn comments_start_only_where_a_word_could() {
        assert_eq!(plain("a#b c; # all of this\nd;"), ["a#b", "c", ";", "d", ";"]);
    }

    #[test]
    fn variables_in_braces_stay_in_the_word() {
        assert_eq!(plain("set $a ${host}x;"), ["set", "$a", "${host}x", ";"]);
        // Only a `{` right after the `$` stays in the word.
        assert_eq!(plain("if $a{"), ["if", "$a", "{"]);
        assert_eq!(plain("x ${b}{"), ["x", "${b}", "{"]);
    }

    #[test]
    fn quotes_and_escapes_as_nginx_stores_them() {
        assert_eq!(
            words(r#"a "b c" 'd;{' "";"#)[1..4],
            [("b c".into(), true), ("d;{".into(), true), ("".into(), true)]
        );
        assert_eq!(plain(r#"x "a\"b" 'it\'s' a\\b "\t\n" "\q";"#)[1..6], ["a\"b", "it's", "a\\b", "\t\n", "\\q"]);
        // An escaped space or semicolon does not end the word.
        assert_eq!(plain(r"a b\ c d\;e;"), ["a", r"b\ c", r"d\;e", ";"]);
        // A quote inside a word is an ordinary character.
        assert_eq!(plain(r#"a b"c;"#), ["a", "b\"c", ";"]);
    }

    #[test]
    fn a_quoted_word_needs_a_space_after_it() {
        let e = tokenize("a \"b\"c;").unwrap_err();
        assert_eq!(e.line, 1);
        assert!(e.message.contains("'c'"), "{}", e.message);
        assert_eq!(plain("if ($a = \"b\") {"), ["if", "($a", "=", "b", ")", "{"]);
    }

    #[test]
    fn lines_are_counted_in_quotes_and_comments() {
        let tokens = tokenize("# one\na \"x\ny\"\n  b;").unwrap();
        let lines: Vec<usize> = tokens
            .iter()
            .map(|t| match t {
                Token::Word(w) => w.line,
                Token::Semicolon(l) | Token::Open(l) | Token::Close(l) => *l,
            })
            .collect();
        assert_eq!(lines, [2, 2, 4, 4]);
    }

    #[test]
    fn an_unterminated_string_names_the_line_it_opened_on() {
        let e = tokenize("a;\nproxy_set_header Host \"$host;\n}\n").unwrap_err();
        assert_eq!(e.line, 2);
        assert!(e.message.contains("closing \""), "{}", e.message);
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

        #[test]
        fn never_panics(text in any::<String>()) {
            let _ = tokenize(&text);
        }

        #[test]
        fn never_panics_on_config_like_text(text in "[a-z$ {};#'\"\\\\\n()]{0,60}") {
            let _ = tokenize(&text);
        }

        #[test]
        fn a_plain_word_reads_back(word in "[a-zA-Z0-9_./:=-]{1,20}") {
            prop_assert_eq!(plain(&format!("{word};")), vec![word, ";".to_string()]);
        }
    }
}
