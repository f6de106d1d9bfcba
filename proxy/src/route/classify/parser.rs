//! Tokens with one of lookahead, and the verdict on one statement that the rules build.

use super::keywords::{Kw, keyword};
use super::lexer::{Lexer, Tok};
use super::{Effects, KillStatement, LaglessCommand, SqlMode, Target};

pub(super) struct Parser<'a> {
    pub(super) lex: Lexer<'a>,
    /// The next token and its byte range, always lexed one ahead so that looking at it is
    /// free: the classifier peeks several times per token.
    pub(super) next: (Tok<'a>, usize, usize),
    /// Byte range of the token `bump` returned last.
    pub(super) span: (usize, usize),
}

impl<'a> Parser<'a> {
    pub(super) fn new(src: &'a [u8], mode: SqlMode) -> Self {
        let mut lex = Lexer::new(src, mode);
        let mut next = (Tok::End, 0, 0);
        lex.advance(&mut next);
        Self {
            lex,
            next,
            span: (0, 0),
        }
    }

    pub(super) fn peek(&self) -> Tok<'a> {
        self.next.0
    }

    pub(super) fn bump(&mut self) -> Tok<'a> {
        let (tok, start, end) = self.next;
        self.span = (start, end);
        self.lex.advance(&mut self.next);
        tok
    }

    pub(super) fn peek_kw(&self) -> Option<Kw> {
        match self.peek() {
            Tok::Word(word) => keyword(word),
            _ => None,
        }
    }

    pub(super) fn eat(&mut self, tok: Tok<'_>) -> bool {
        let found = self.peek() == tok;
        if found {
            self.bump();
        }
        found
    }

    pub(super) fn eat_kw(&mut self, kw: Kw) -> bool {
        let found = self.peek_kw() == Some(kw);
        if found {
            self.bump();
        }
        found
    }

    pub(super) fn eat_assign(&mut self) -> bool {
        self.eat(Tok::Punct(b'=')) || self.eat(Tok::Assign)
    }

    /// True when the next token opens an argument list, i.e. the word before was a call.
    pub(super) fn at_call(&self) -> bool {
        self.peek() == Tok::Punct(b'(')
    }

    /// True at the `;` or end of input that closes the statement.
    pub(super) fn at_end(&self) -> bool {
        matches!(self.peek(), Tok::End | Tok::Unterminated | Tok::Punct(b';'))
    }

    pub(super) fn skip_to_end(&mut self) {
        while !self.at_end() {
            self.bump();
        }
    }

    /// Consumes the rest of the statement; true if it holds one of the keyword `pairs`.
    pub(super) fn skip_finding(&mut self, pairs: &[(Kw, Kw)]) -> bool {
        let (mut found, mut prev) = (false, None);
        while !self.at_end() {
            let kw = match self.bump() {
                Tok::Word(word) => keyword(word),
                _ => None,
            };
            if let (Some(a), Some(b)) = (prev, kw) {
                found |= pairs.contains(&(a, b));
            }
            prev = kw;
        }
        found
    }
}

/// The verdict on one statement.
#[derive(Debug, Default)]
pub(super) struct Stmt {
    pub(super) target: Target,
    pub(super) effects: Effects,
    pub(super) lagless: Option<LaglessCommand>,
    pub(super) kill: Option<KillStatement>,
    pub(super) wait_timeout: Option<u64>,
}

impl Stmt {
    pub(super) fn need(&mut self, target: Target) {
        self.target = self.target.max(target);
    }

    /// Folds in a statement that ran after this one.
    pub(super) fn then(&mut self, later: Stmt) {
        self.need(later.target);
        self.effects.then(later.effects);
        self.lagless = later.lagless.or(self.lagless.take());
        self.kill = later.kill.or(self.kill);
        self.wait_timeout = later.wait_timeout.or(self.wait_timeout);
    }
}
