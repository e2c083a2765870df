//! The directive tree every other file of the importer reads: what nginx's own reader
//! (`ngx_conf_read_token`) produces, with the file and line of each piece.

/// Index of a file in the list of files read (the main file is 0).
pub(crate) type FileId = usize;

/// One word of a directive, unescaped as nginx unescapes it (`\"`, `\'`, `\\`, `\t`, `\r`,
/// `\n`; any other `\x` kept as written).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Word {
    pub(crate) text: String,
    /// Written in quotes: `''` is an empty word, `'$x'` still a variable to nginx.
    pub(crate) quoted: bool,
    pub(crate) line: usize,
}

/// `name arg...;` or `name arg... { ... }`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Directive {
    pub(crate) file: FileId,
    /// The line of its first word.
    pub(crate) line: usize,
    /// Never empty: `words[0]` is the name.
    pub(crate) words: Vec<Word>,
    pub(crate) block: Option<Vec<Directive>>,
    /// Ended by a `}` instead of `;`. nginx refuses such a file ("unexpected `}`"); the
    /// importer reads it as if the `;` were there and reports it, since it is the kind of
    /// typo the copied recipes carry (stray tokens after a map's last entry).
    pub(crate) unterminated: bool,
}

impl Directive {
    pub(crate) fn name(&self) -> &str {
        self.words.first().map_or("", |w| w.text.as_str())
    }

    /// The words after the name.
    pub(crate) fn args(&self) -> &[Word] {
        self.words.get(1..).unwrap_or_default()
    }

    /// The text of argument `i` (0 is the first after the name).
    pub(crate) fn arg(&self, i: usize) -> Option<&str> {
        self.args().get(i).map(|w| w.text.as_str())
    }

    /// The block's directives; none for a simple directive.
    pub(crate) fn children(&self) -> &[Directive] {
        self.block.as_deref().unwrap_or_default()
    }

    /// The arguments as written (quoted ones in quotes), for messages.
    pub(crate) fn args_text(&self) -> String {
        let words: Vec<String> = self.args().iter().map(shown).collect();
        words.join(" ")
    }
}

/// A word as the user wrote it, near enough: quoted again if it was quoted or needs it.
pub(crate) fn shown(word: &Word) -> String {
    if word.quoted || word.text.is_empty() || word.text.contains(char::is_whitespace) {
        format!("{:?}", word.text)
    } else {
        word.text.clone()
    }
}

/// A file that does not read as nginx configuration: where, and what was expected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SyntaxError {
    pub(crate) line: usize,
    pub(crate) message: String,
}
