//! Statement fingerprints: one pass over the bytes that hashes the statement's shape without
//! building a string. The normalised text is built by the same pass, only when asked (the
//! first time a fingerprint is seen).
//!
//! The shape keeps keywords and identifiers and drops what varies between executions:
//!
//! - literals of every kind become `?`: numbers (negative, decimal, exponent, `0x..`, `0b..`),
//!   strings in either quote with their escapes, `X'..'`, `B'..'`, `N'..'`, `_charset'..'`,
//!   `NULL`, `TRUE` and `FALSE` (but not after `IS` or `NOT`), and a prepared statement's `?`;
//!   adjacent strings (`'a' 'b'`, one string to the server) become one `?`;
//! - a parenthesised list of nothing but literals becomes `(...)`, whatever its length, and
//!   a group repeated after a comma (`VALUES (...), (...)`, also rows with expressions) is
//!   written once;
//! - comments, whitespace and a trailing `;` go; executable comments (`/*! .. */`) are code;
//! - bare words are folded to lower case (keywords and unquoted names alike); quoted
//!   identifiers are kept as written.

use crate::route::SqlMode;
use crate::route::classify::lexer::closing_quote;

/// FNV-1a, 64 bits: a few instructions per byte and no state beyond one word, which lets a
/// group's hash be set back when a repeated group is dropped.
const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// Text written past the limit before writing stops (a collapsed list can take the text back
/// below it), so a huge statement never makes a huge string.
const TEXT_SLACK: usize = 8;

/// Parentheses nested deeper than this are read as plain punctuation (no list collapsing).
const MAX_DEPTH: usize = 16;

/// The fingerprint of a statement under `mode` (how its quotes end).
pub fn fingerprint(sql: &[u8], mode: SqlMode) -> u64 {
    Normaliser::new(sql, mode, None).run()
}

/// The fingerprint and the normalised text, cut to at most `limit` bytes (on a character
/// boundary; `...` marks a cut).
pub fn normalise(sql: &[u8], mode: SqlMode, limit: usize) -> (u64, String) {
    let mut text = Vec::with_capacity(sql.len().min(limit) + 8);
    let mut n = Normaliser::new(sql, mode, Some(&mut text));
    n.text_cap = limit.saturating_add(TEXT_SLACK);
    let id = n.run();
    (id, cut(&String::from_utf8_lossy(&text), limit))
}

fn cut(text: &str, limit: usize) -> String {
    if text.len() <= limit {
        return text.to_owned();
    }
    let mut end = limit.saturating_sub(3);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &text[..end])
}

/// A token of the canonical form.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tok<'a> {
    /// A bare word (keyword, name, variable), folded to lower case.
    Word(&'a [u8]),
    /// A quoted identifier's raw content and its quote.
    Quoted(&'a [u8], u8),
    /// Any literal or placeholder.
    Literal,
    Punct(u8),
}

/// Words after which a `-` or `+` is a sign, not an operator.
const SIGN_AFTER: [&[u8]; 21] = [
    b"select",
    b"where",
    b"and",
    b"or",
    b"not",
    b"xor",
    b"by",
    b"then",
    b"else",
    b"when",
    b"in",
    b"is",
    b"like",
    b"between",
    b"set",
    b"values",
    b"value",
    b"return",
    b"case",
    b"interval",
    b"default",
];

/// Words that a `(` follows with a space in the text (not a function call).
const SPACED_BEFORE_PAREN: [&[u8]; 12] = [
    b"in", b"values", b"value", b"and", b"or", b"not", b"exists", b"using", b"on", b"as", b"from",
    b"join",
];

fn eq_fold(word: &[u8], lower: &[u8]) -> bool {
    word.len() == lower.len()
        && word
            .iter()
            .zip(lower)
            .all(|(a, b)| a.to_ascii_lowercase() == *b)
}

fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c)
}

fn is_word_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'$' || b >= 0x80
}

/// Reads tokens off the statement.
struct Scanner<'a> {
    src: &'a [u8],
    pos: usize,
    mode: SqlMode,
    in_exec_comment: bool,
    /// The token read last, for signs and `IS NULL`.
    last: Option<Tok<'a>>,
}

impl<'a> Scanner<'a> {
    fn byte(&self, ahead: usize) -> Option<u8> {
        self.src.get(self.pos + ahead).copied()
    }

    fn next(&mut self) -> Option<Tok<'a>> {
        let tok = self.next_raw()?;
        self.last = Some(tok);
        Some(tok)
    }

    /// The last token was a value (a name, a literal, `)`): a `-` after it is an operator.
    /// Looked at only when a sign or a `.` comes, so words are not compared on every token.
    fn after_value(&self) -> bool {
        match self.last {
            Some(Tok::Word(w)) => !SIGN_AFTER.iter().any(|k| eq_fold(w, k)),
            Some(Tok::Quoted(..) | Tok::Literal | Tok::Punct(b')')) => true,
            _ => false,
        }
    }

    fn next_raw(&mut self) -> Option<Tok<'a>> {
        loop {
            let b = self.byte(0)?;
            match b {
                _ if is_space(b) => self.pos += 1,
                b'#' => self.line_comment(),
                b'-' if self.byte(1) == Some(b'-') && self.byte(2).is_none_or(|c| c <= b' ') => {
                    self.line_comment()
                }
                b'/' if self.byte(1) == Some(b'*') => self.block_comment(),
                b'*' if self.in_exec_comment && self.byte(1) == Some(b'/') => {
                    self.pos += 2;
                    self.in_exec_comment = false;
                }
                _ => return Some(self.token(b)),
            }
        }
    }

    fn token(&mut self, b: u8) -> Tok<'a> {
        match b {
            b'\'' => self.string(b'\'', !self.mode.no_backslash_escapes),
            b'"' if self.mode.ansi_quotes => self.quoted_ident(b'"'),
            b'"' => self.string(b'"', !self.mode.no_backslash_escapes),
            b'`' => self.quoted_ident(b'`'),
            b'?' => {
                self.pos += 1;
                Tok::Literal
            }
            b'@' => self.variable(),
            b'0'..=b'9' => self.number_or_word(),
            b'.' if self.byte(1).is_some_and(|c| c.is_ascii_digit()) && !self.after_value() => {
                self.number_or_word()
            }
            b'-' | b'+' if self.sign_of_number() && !self.after_value() => {
                self.pos += 1;
                while self.byte(0).is_some_and(is_space) {
                    self.pos += 1;
                }
                self.number_or_word()
            }
            _ if is_word_byte(b) => self.word_or_literal(),
            _ => {
                self.pos += 1;
                Tok::Punct(b)
            }
        }
    }

    /// A `-` or `+` at `pos` directly followed (spaces aside) by a number.
    fn sign_of_number(&self) -> bool {
        let mut i = self.pos + 1;
        while self.src.get(i).copied().is_some_and(is_space) {
            i += 1;
        }
        match self.src.get(i) {
            Some(c) if c.is_ascii_digit() => true,
            Some(b'.') => self.src.get(i + 1).is_some_and(u8::is_ascii_digit),
            _ => false,
        }
    }

    /// Skips a quoted run opening at `pos`; a doubled quote stands for itself. At the end of
    /// the input the run ends there.
    fn skip_quoted(&mut self, quote: u8, backslash_escapes: bool) -> &'a [u8] {
        let src = self.src;
        let start = self.pos + 1;
        match closing_quote(src, start, quote, backslash_escapes) {
            Some(end) => {
                self.pos = end + 1;
                src.get(start..end).unwrap_or_default()
            }
            None => {
                self.pos = src.len();
                src.get(start..).unwrap_or_default()
            }
        }
    }

    fn string(&mut self, quote: u8, escapes: bool) -> Tok<'a> {
        self.skip_quoted(quote, escapes);
        Tok::Literal
    }

    fn quoted_ident(&mut self, quote: u8) -> Tok<'a> {
        Tok::Quoted(self.skip_quoted(quote, false), quote)
    }

    fn variable(&mut self) -> Tok<'a> {
        let start = self.pos;
        self.pos += 1;
        if self.byte(0) == Some(b'@') {
            self.pos += 1;
        }
        match self.byte(0) {
            Some(q @ (b'\'' | b'"' | b'`')) => {
                let escapes = q != b'`' && !self.mode.no_backslash_escapes;
                self.skip_quoted(q, escapes);
            }
            _ => {
                while self.byte(0).is_some_and(|c| is_word_byte(c) || c == b'.') {
                    self.pos += 1;
                }
            }
        }
        Tok::Word(&self.src[start..self.pos])
    }

    fn word(&mut self) -> &'a [u8] {
        let start = self.pos;
        while self.byte(0).is_some_and(is_word_byte) {
            self.pos += 1;
        }
        &self.src[start..self.pos]
    }

    fn word_or_literal(&mut self) -> Tok<'a> {
        let word = self.word();
        // X'..', B'..', N'..' and a character set introducer: one literal with the string.
        if self.byte(0) == Some(b'\'')
            && (word.first() == Some(&b'_')
                || ["x", "b", "n"].iter().any(|k| eq_fold(word, k.as_bytes())))
        {
            let escapes =
                !eq_fold(word, b"x") && !eq_fold(word, b"b") && !self.mode.no_backslash_escapes;
            self.skip_quoted(b'\'', escapes);
            return Tok::Literal;
        }
        let constant = eq_fold(word, b"null") || eq_fold(word, b"true") || eq_fold(word, b"false");
        let after_is =
            matches!(self.last, Some(Tok::Word(w)) if eq_fold(w, b"is") || eq_fold(w, b"not"));
        if constant && !after_is {
            return Tok::Literal;
        }
        Tok::Word(word)
    }

    /// A number at `pos` (digits, `.`, exponent, `0x`/`0b` forms), or a name that begins
    /// with digits (`1st_table`).
    fn number_or_word(&mut self) -> Tok<'a> {
        let start = self.pos;
        let radix = match (self.byte(0), self.byte(1)) {
            (Some(b'0'), Some(b'x' | b'X')) => Some(16),
            (Some(b'0'), Some(b'b' | b'B')) => Some(2),
            _ => None,
        };
        if let Some(radix) = radix {
            self.pos += 2;
            let digits = self.pos;
            while self.byte(0).is_some_and(|c| (c as char).is_digit(radix)) {
                self.pos += 1;
            }
            if self.pos > digits && !self.byte(0).is_some_and(is_word_byte) {
                return Tok::Literal;
            }
            self.pos = start;
            return Tok::Word(self.word());
        }
        self.digits();
        if self.byte(0) == Some(b'.') {
            self.pos += 1;
            self.digits();
        }
        if matches!(self.byte(0), Some(b'e' | b'E')) {
            let sign = usize::from(matches!(self.byte(1), Some(b'-' | b'+')));
            if self.byte(1 + sign).is_some_and(|c| c.is_ascii_digit()) {
                self.pos += 1 + sign;
                self.digits();
            }
        }
        if self.byte(0).is_some_and(is_word_byte) && self.src.get(start) != Some(&b'.') {
            self.pos = start;
            return Tok::Word(self.word());
        }
        Tok::Literal
    }

    fn digits(&mut self) {
        while self.byte(0).is_some_and(|c| c.is_ascii_digit()) {
            self.pos += 1;
        }
    }

    fn line_comment(&mut self) {
        self.pos = match self.src[self.pos..].iter().position(|&b| b == b'\n') {
            Some(i) => self.pos + i + 1,
            None => self.src.len(),
        };
    }

    fn block_comment(&mut self) {
        let open = self.pos + 2;
        match (self.src.get(open), self.src.get(open + 1)) {
            (Some(b'!'), _) => return self.enter_exec_comment(open + 1),
            (Some(b'M'), Some(b'!')) => return self.enter_exec_comment(open + 2),
            _ => {}
        }
        let body = self.src.get(open..).unwrap_or_default();
        self.pos = match body.windows(2).position(|w| w == b"*/") {
            Some(len) => open + len + 2,
            None => self.src.len(),
        };
    }

    fn enter_exec_comment(&mut self, digits: usize) {
        self.pos = digits;
        self.digits();
        self.in_exec_comment = true;
    }
}

/// One open parenthesis (or the statement itself, at depth 0).
#[derive(Debug, Clone, Copy)]
struct Frame {
    hash: u64,
    /// Where the group's text begins (its `(`).
    text_at: usize,
    /// Only literals and commas so far.
    only_literals: bool,
    literals: u32,
    /// The hash of the group that ended just before, while nothing but a comma followed it.
    last_group: Option<u64>,
    /// The frame's hash and text length before the comma that follows `last_group`.
    before_comma: Option<(u64, usize)>,
}

impl Frame {
    fn new(text_at: usize) -> Self {
        Self {
            hash: FNV_OFFSET,
            text_at,
            only_literals: true,
            literals: 0,
            last_group: None,
            before_comma: None,
        }
    }
}

/// Folds tokens into the hash, collapsing lists and repeated groups, and writes the text
/// when asked.
struct Normaliser<'a, 't> {
    scanner: Scanner<'a>,
    frames: [Frame; MAX_DEPTH],
    depth: usize,
    /// Parentheses open beyond `MAX_DEPTH`.
    overflow: usize,
    /// The last token absorbed was a literal (adjacent strings are one).
    after_literal: bool,
    /// A `;` not yet absorbed: dropped when nothing follows.
    semicolon: bool,
    text: Option<&'t mut Vec<u8>>,
    /// Bytes of text past which nothing more is written. Every place the text is taken back
    /// to was recorded while it was shorter, so what stays below the cap is always right.
    text_cap: usize,
    /// The last token written to the text.
    last_written: Option<Tok<'a>>,
}

fn mix(hash: u64, b: u8) -> u64 {
    (hash ^ u64::from(b)).wrapping_mul(FNV_PRIME)
}

fn mix_all(mut hash: u64, bytes: &[u8]) -> u64 {
    for &b in bytes {
        hash = mix(hash, b);
    }
    hash
}

impl<'a, 't> Normaliser<'a, 't> {
    fn new(sql: &'a [u8], mode: SqlMode, text: Option<&'t mut Vec<u8>>) -> Self {
        Self {
            scanner: Scanner {
                src: sql,
                pos: 0,
                mode,
                in_exec_comment: false,
                last: None,
            },
            frames: [Frame::new(0); MAX_DEPTH],
            depth: 0,
            overflow: 0,
            after_literal: false,
            semicolon: false,
            text,
            text_cap: usize::MAX,
            last_written: None,
        }
    }

    fn run(mut self) -> u64 {
        while let Some(tok) = self.scanner.next() {
            if tok == Tok::Punct(b';') {
                self.semicolon = true;
                continue;
            }
            if std::mem::take(&mut self.semicolon) {
                self.absorb(Tok::Punct(b';'));
            }
            match tok {
                Tok::Punct(b'(') if self.depth + 1 < MAX_DEPTH => self.open(),
                Tok::Punct(b'(') => {
                    self.overflow += 1;
                    self.absorb(tok);
                }
                Tok::Punct(b')') if self.overflow > 0 => {
                    self.overflow -= 1;
                    self.absorb(tok);
                }
                Tok::Punct(b')') if self.depth > 0 => self.close(),
                Tok::Literal if self.after_literal => {}
                _ => self.absorb(tok),
            }
        }
        // Unbalanced parentheses: what is open joins its parent as it stands.
        while self.depth > 0 {
            let inner = self.frames[self.depth].hash;
            self.depth -= 1;
            let frame = &mut self.frames[self.depth];
            frame.hash = mix_all(mix(frame.hash, b'u'), &inner.to_le_bytes());
        }
        self.frames[0].hash
    }

    fn absorb(&mut self, tok: Tok<'a>) {
        self.write(tok);
        let frame = &mut self.frames[self.depth];
        let comma = tok == Tok::Punct(b',');
        if comma && frame.last_group.is_some() {
            // The comma was just written (glued to what precedes it): a repeated group sets
            // the text back to before it.
            let text_len = self.text.as_ref().map_or(0, |t| t.len());
            frame.before_comma = Some((frame.hash, text_len.saturating_sub(1)));
        } else {
            frame.last_group = None;
            frame.before_comma = None;
        }
        match tok {
            Tok::Literal => frame.literals += 1,
            Tok::Punct(b',') => {}
            _ => frame.only_literals = false,
        }
        self.after_literal = tok == Tok::Literal;
        frame.hash = match tok {
            Tok::Word(w) => {
                let mut h = mix(frame.hash, b'w');
                for &b in w {
                    h = mix(h, b.to_ascii_lowercase());
                }
                mix(h, 0)
            }
            Tok::Quoted(body, quote) => mix(mix_all(mix(frame.hash, quote), body), quote),
            Tok::Literal => mix(frame.hash, b'?'),
            Tok::Punct(b) => mix(mix(frame.hash, b'p'), b),
        };
    }

    fn open(&mut self) {
        self.write(Tok::Punct(b'('));
        let at = self.text.as_ref().map_or(0, |t| t.len().saturating_sub(1));
        self.depth += 1;
        self.frames[self.depth] = Frame::new(at);
        self.after_literal = false;
    }

    fn close(&mut self) {
        let inner = self.frames[self.depth];
        self.depth -= 1;
        let list = inner.only_literals && inner.literals > 0;
        let group = if list {
            mix(FNV_OFFSET, b'L')
        } else {
            mix(inner.hash, b')')
        };
        self.after_literal = false;
        let frame = &mut self.frames[self.depth];
        if frame.last_group == Some(group)
            && let Some((hash, text_len)) = frame.before_comma
        {
            // The same group again after a comma: written once.
            frame.hash = hash;
            frame.before_comma = None;
            if let Some(text) = self.text.as_deref_mut() {
                text.truncate(text_len);
            }
            self.last_written = Some(Tok::Punct(b')'));
            return;
        }
        frame.hash = mix_all(mix(frame.hash, b'g'), &group.to_le_bytes());
        frame.only_literals = false;
        frame.last_group = Some(group);
        frame.before_comma = None;
        if let Some(text) = self.text.as_deref_mut() {
            if list {
                text.truncate(inner.text_at);
                text.extend_from_slice(b"(...)");
            } else if text.len() < self.text_cap {
                text.push(b')');
            }
        }
        self.last_written = Some(Tok::Punct(b')'));
    }

    /// Appends `tok` to the text, spaced for reading.
    fn write(&mut self, tok: Tok<'a>) {
        let Some(text) = self.text.as_deref_mut() else {
            return;
        };
        let last = self.last_written.replace(tok);
        if text.len() >= self.text_cap {
            return;
        }
        let glued = match (last, tok) {
            (None, _) => true,
            (_, Tok::Punct(b')' | b',' | b'.' | b';')) => true,
            (Some(Tok::Punct(b'(' | b'.')), _) => true,
            (Some(Tok::Word(w)), Tok::Punct(b'(')) => {
                !SPACED_BEFORE_PAREN.iter().any(|k| eq_fold(w, k))
            }
            (Some(Tok::Quoted(..)), Tok::Punct(b'(')) => true,
            (Some(Tok::Punct(a)), Tok::Punct(b)) => is_operator(a) && is_operator(b),
            _ => false,
        };
        if !glued {
            text.push(b' ');
        }
        match tok {
            Tok::Word(w) => text.extend(w.iter().map(u8::to_ascii_lowercase)),
            Tok::Quoted(body, quote) => {
                text.push(quote);
                text.extend_from_slice(body);
                text.push(quote);
            }
            Tok::Literal => text.push(b'?'),
            Tok::Punct(b) => text.push(b),
        }
    }
}

fn is_operator(b: u8) -> bool {
    b"<>=!|&:^~*/%+-".contains(&b)
}

#[cfg(test)]
mod tests;
