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
    let mut lexer = Lexer::new(&chars);
    while lexer.i < chars.len() {
        let ch = chars[lexer.i];
        lexer.i += 1;
        lexer.step(ch)?;
    }
    lexer.finish()
}

/// The state of `ngx_conf_read_token`, under the same names.
struct Lexer<'a> {
    chars: &'a [char],
    tokens: Vec<Token>,
    /// The index of the next character.
    i: usize,
    line: usize,
    last_space: bool,
    need_space: bool,
    sharp_comment: bool,
    quoted: bool,
    d_quoted: bool,
    s_quoted: bool,
    variable: bool,
    /// Where the word being read starts, on which line, and whether it is quoted.
    start: usize,
    start_line: usize,
    word_quoted: bool,
}

impl<'a> Lexer<'a> {
    fn new(chars: &'a [char]) -> Lexer<'a> {
        Lexer {
            chars,
            tokens: Vec::new(),
            i: 0,
            line: 1,
            last_space: true,
            need_space: false,
            sharp_comment: false,
            quoted: false,
            d_quoted: false,
            s_quoted: false,
            variable: false,
            start: 0,
            start_line: 1,
            word_quoted: false,
        }
    }

    /// One character, just consumed (`self.i` is past it).
    fn step(&mut self, ch: char) -> Result<(), SyntaxError> {
        if ch == '\n' {
            self.line += 1;
            self.sharp_comment = false;
        }
        if self.sharp_comment {
            return Ok(());
        }
        if self.quoted {
            self.quoted = false;
            return Ok(());
        }
        if self.need_space && self.after_quoted_word(ch)? {
            return Ok(());
        }
        if self.last_space {
            self.between_words(ch);
            return Ok(());
        }
        self.in_word(ch);
        Ok(())
    }

    /// Right after a quoted word: a space, `;` or `{` (consumed: true), or `)`.
    fn after_quoted_word(&mut self, ch: char) -> Result<bool, SyntaxError> {
        self.need_space = false;
        self.last_space = true;
        match ch {
            c if is_space(c) => Ok(true),
            ';' => {
                self.tokens.push(Token::Semicolon(self.line));
                Ok(true)
            }
            '{' => {
                self.tokens.push(Token::Open(self.line));
                Ok(true)
            }
            // `if ($a = "b")`: the `)` starts the next word.
            ')' => Ok(false),
            other => Err(SyntaxError {
                line: self.line,
                message: format!("unexpected {other:?} right after a quoted string; expected a space, \";\" or \"{{\""),
            }),
        }
    }

    /// Where a word could start: punctuation, a comment, or the word's first character.
    fn between_words(&mut self, ch: char) {
        self.start = self.i - 1;
        self.start_line = self.line;
        self.word_quoted = false;
        match ch {
            c if is_space(c) => {}
            ';' => self.tokens.push(Token::Semicolon(self.line)),
            '{' => self.tokens.push(Token::Open(self.line)),
            '}' => self.tokens.push(Token::Close(self.line)),
            '#' => self.sharp_comment = true,
            '\\' => {
                self.quoted = true;
                self.last_space = false;
            }
            '"' | '\'' => {
                self.start = self.i;
                self.word_quoted = true;
                self.d_quoted = ch == '"';
                self.s_quoted = ch == '\'';
                self.last_space = false;
            }
            '$' => {
                self.variable = true;
                self.last_space = false;
            }
            _ => self.last_space = false,
        }
    }

    /// Inside a word: whether `ch` ends it (and what follows it).
    fn in_word(&mut self, ch: char) {
        if ch == '{' && self.variable {
            return;
        }
        self.variable = false;
        if ch == '\\' {
            self.quoted = true;
            return;
        }
        if ch == '$' {
            self.variable = true;
            return;
        }
        let found = if self.d_quoted || self.s_quoted {
            let closing = (self.d_quoted && ch == '"') || (self.s_quoted && ch == '\'');
            if closing {
                (self.d_quoted, self.s_quoted, self.need_space) = (false, false, true);
            }
            closing
        } else if is_space(ch) || ch == ';' || ch == '{' {
            self.last_space = true;
            true
        } else {
            false
        };
        if !found {
            return;
        }
        let text = unescape(&self.chars[self.start..self.i - 1]);
        self.tokens.push(Token::Word(Word { text, quoted: self.word_quoted, line: self.start_line }));
        match ch {
            ';' if !self.word_quoted => self.tokens.push(Token::Semicolon(self.line)),
            '{' if !self.word_quoted => self.tokens.push(Token::Open(self.line)),
            _ => {}
        }
    }

    /// The end of the text: an open string is an error; a last word without `;` is kept
    /// (the parser says what was expected).
    fn finish(mut self) -> Result<Vec<Token>, SyntaxError> {
        if self.d_quoted || self.s_quoted {
            let quote = if self.d_quoted { '"' } else { '\'' };
            return Err(SyntaxError {
                line: self.start_line,
                message: format!("unexpected end of file inside the string quoted with {quote} on this line; expected the closing {quote}"),
            });
        }
        if !self.last_space && !self.need_space {
            let text = unescape(&self.chars[self.start..]);
            self.tokens.push(Token::Word(Word { text, quoted: false, line: self.start_line }));
        }
        Ok(self.tokens)
    }
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
