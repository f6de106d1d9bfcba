//! Tokens: words, quoted strings and identifiers, variables and punctuation, with comments
//! skipped (their hints read) and executable comments entered as code. How a quote ends
//! depends on the session's `sql_mode`.

use super::SqlMode;
use super::hints::Hints;
use super::keywords::{Kw, VarScope, is_space, is_word_byte, keyword};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Tok<'a> {
    /// A keyword, bare identifier or number.
    Word(&'a [u8]),
    /// A quoted identifier: its raw content (quotes still doubled) and the quote byte.
    Ident(&'a [u8], u8),
    /// A string literal's raw content, escapes untouched.
    Str(&'a [u8]),
    /// `@name`: a user variable.
    UserVar,
    /// `@@[scope.]name`: a system variable.
    SysVar(VarScope, &'a [u8]),
    /// `:=`
    Assign,
    Punct(u8),
    End,
    /// An unterminated string, identifier or comment: the rest of the input cannot be read.
    Unterminated,
}

pub(super) struct Lexer<'a> {
    pub(super) src: &'a [u8],
    pos: usize,
    pub(super) mode: SqlMode,
    /// Inside `/*! ... */` or `/*M! ... */`, whose content the server executes.
    in_exec_comment: bool,
    /// The input ended inside a string, identifier or comment.
    pub(super) malformed: bool,
    /// Hints from the comments read so far.
    pub(super) hints: Hints,
}

impl<'a> Lexer<'a> {
    pub(super) fn new(src: &'a [u8], mode: SqlMode) -> Self {
        Self {
            src,
            pos: 0,
            mode,
            in_exec_comment: false,
            malformed: false,
            hints: Hints::default(),
        }
    }

    fn byte(&self, ahead: usize) -> Option<u8> {
        self.src.get(self.pos + ahead).copied()
    }

    /// Returns the next token and its start offset, skipping whitespace and comments.
    fn next(&mut self) -> (Tok<'a>, usize) {
        while !self.malformed {
            let Some(b) = self.byte(0) else {
                if self.in_exec_comment {
                    break;
                }
                return (Tok::End, self.pos);
            };
            match b {
                _ if is_space(b) => self.pos += 1,
                b'#' => self.line_comment(1),
                b'-' if self.byte(1) == Some(b'-') && self.byte(2).is_none_or(|c| c <= b' ') => {
                    self.line_comment(2)
                }
                b'/' if self.byte(1) == Some(b'*') => self.block_comment(),
                b'*' if self.in_exec_comment && self.byte(1) == Some(b'/') => {
                    self.pos += 2;
                    self.in_exec_comment = false;
                }
                _ => {
                    let start = self.pos;
                    return (self.token(b), start);
                }
            }
        }
        (self.fail(), self.pos)
    }

    /// Lexes the next token into `slot` with its byte range. Writing in place rather than
    /// returning the token spares a copy that stalls on store forwarding.
    pub(super) fn advance(&mut self, slot: &mut (Tok<'a>, usize, usize)) {
        let (tok, start) = self.next();
        *slot = (tok, start, self.pos);
    }

    fn fail(&mut self) -> Tok<'a> {
        self.malformed = true;
        Tok::Unterminated
    }

    fn token(&mut self, b: u8) -> Tok<'a> {
        match b {
            b'\'' => self.string(b'\''),
            b'"' if self.mode.ansi_quotes => self.quoted_ident(b'"'),
            b'"' => self.string(b'"'),
            b'`' => self.quoted_ident(b'`'),
            b'@' => self.variable(),
            b':' if self.byte(1) == Some(b'=') => {
                self.pos += 2;
                Tok::Assign
            }
            _ if is_word_byte(b) => Tok::Word(self.word()),
            _ => {
                self.pos += 1;
                Tok::Punct(b)
            }
        }
    }

    fn word(&mut self) -> &'a [u8] {
        let src = self.src;
        let start = self.pos;
        while self.byte(0).is_some_and(is_word_byte) {
            self.pos += 1;
        }
        &src[start..self.pos]
    }

    fn string(&mut self, quote: u8) -> Tok<'a> {
        match self.quoted(quote, !self.mode.no_backslash_escapes) {
            Some(body) => Tok::Str(body),
            None => self.fail(),
        }
    }

    fn quoted_ident(&mut self, quote: u8) -> Tok<'a> {
        match self.quoted(quote, false) {
            Some(body) => Tok::Ident(body, quote),
            None => self.fail(),
        }
    }

    /// Reads a quoted run opening at `pos`; a doubled quote stands for itself. `None` when
    /// the input ends first.
    fn quoted(&mut self, quote: u8, backslash_escapes: bool) -> Option<&'a [u8]> {
        let start = self.pos + 1;
        let end = closing_quote(self.src, start, quote, backslash_escapes)?;
        self.pos = end + 1;
        self.src.get(start..end)
    }

    /// Lexes `@name`, `@'name'` or `@@[scope.]name` at `pos`.
    fn variable(&mut self) -> Tok<'a> {
        if self.byte(1) == Some(b'@') {
            self.pos += 2;
            return self.system_variable();
        }
        self.pos += 1;
        match self.byte(0) {
            Some(quote @ (b'\'' | b'"' | b'`')) => {
                let escapes = quote != b'`' && !self.mode.no_backslash_escapes;
                if self.quoted(quote, escapes).is_none() {
                    return self.fail();
                }
            }
            _ => {
                while self.byte(0).is_some_and(|c| is_word_byte(c) || c == b'.') {
                    self.pos += 1;
                }
            }
        }
        Tok::UserVar
    }

    fn system_variable(&mut self) -> Tok<'a> {
        let Some(first) = self.variable_name() else {
            return self.fail();
        };
        // `@@session.x` names a scope; `@@x.y` is a dotted name such as a key cache setting.
        let scope = if self.byte(0) == Some(b'.') {
            keyword(first).and_then(Kw::scope)
        } else {
            None
        };
        let Some(scope) = scope else {
            return Tok::SysVar(VarScope::Unqualified, first);
        };
        self.pos += 1;
        match self.variable_name() {
            Some(name) => Tok::SysVar(scope, name),
            None => self.fail(),
        }
    }

    fn variable_name(&mut self) -> Option<&'a [u8]> {
        if self.byte(0) == Some(b'`') {
            self.quoted(b'`', false)
        } else {
            Some(self.word())
        }
    }

    /// Skips a `#` or `-- ` comment whose marker is `marker` bytes long.
    fn line_comment(&mut self, marker: usize) {
        let src = self.src;
        let start = (self.pos + marker).min(src.len());
        let end = src[start..]
            .iter()
            .position(|&b| b == b'\n')
            .map_or(src.len(), |i| start + i);
        self.hints.read(&src[start..end]);
        self.pos = (end + 1).min(src.len());
    }

    /// Skips a `/* */` comment, or enters an executable one whose content is code.
    fn block_comment(&mut self) {
        let src = self.src;
        let open = self.pos + 2;
        match (src.get(open), src.get(open + 1)) {
            (Some(b'!'), _) => return self.enter_exec_comment(open + 1),
            (Some(b'M'), Some(b'!')) => return self.enter_exec_comment(open + 2),
            _ => {}
        }
        let body = src.get(open..).unwrap_or_default();
        match body.windows(2).position(|w| w == b"*/") {
            Some(len) => {
                self.hints.read(&body[..len]);
                self.pos = open + len + 2;
            }
            None => {
                self.fail();
            }
        }
    }

    /// Skips the version digits of `/*!50110` or `/*M!100100`; the code follows them.
    fn enter_exec_comment(&mut self, digits: usize) {
        self.pos = digits;
        while self.byte(0).is_some_and(|b| b.is_ascii_digit()) {
            self.pos += 1;
        }
        self.in_exec_comment = true;
    }
}

/// Where a quoted run whose text begins at `start` ends: the index of its closing `quote`. A
/// doubled quote stands for itself, and with `backslash_escapes` a backslash takes the next
/// byte with it. `None` when the input ends first. (The digests' normaliser reads quotes the
/// same way.)
pub(crate) fn closing_quote(
    src: &[u8],
    start: usize,
    quote: u8,
    backslash_escapes: bool,
) -> Option<usize> {
    let mut i = start;
    loop {
        let b = *src.get(i)?;
        if b == b'\\' && backslash_escapes {
            i += 2;
        } else if b != quote {
            i += 1;
        } else if src.get(i + 1) == Some(&quote) {
            i += 2;
        } else {
            return Some(i);
        }
    }
}
