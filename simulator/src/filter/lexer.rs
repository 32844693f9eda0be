//! Splits a filter into tokens.
//!
//! Keywords stay identifiers here; the parser decides by position whether
//! `eq` is an operator, which keeps the lexer free of grammar.

use super::FilterError;
use crate::time::SimTime;

#[derive(Debug, Clone, PartialEq)]
pub(super) enum Tok<'s> {
    Ident(&'s str),
    Int(i64),
    Str(String),
    DateTime(SimTime),
    LParen,
    RParen,
    Comma,
    Eof,
}

#[derive(Debug, Clone, PartialEq)]
pub(super) struct Token<'s> {
    pub(super) tok: Tok<'s>,
    /// Byte offset of the token's first character.
    pub(super) pos: usize,
}

impl Tok<'_> {
    /// How an error message names the token.
    pub(super) fn describe(&self) -> String {
        match self {
            Tok::Ident(word) => format!("'{word}'"),
            Tok::Int(n) => format!("integer {n}"),
            Tok::Str(s) => format!("string '{}'", s.replace('\'', "''")),
            Tok::DateTime(t) => format!("datetime'{t}'"),
            Tok::LParen => "'('".to_owned(),
            Tok::RParen => "')'".to_owned(),
            Tok::Comma => "','".to_owned(),
            Tok::Eof => "the end of the filter".to_owned(),
        }
    }
}

pub(super) fn syntax(pos: usize, message: impl Into<String>) -> FilterError {
    FilterError::Syntax {
        pos,
        message: message.into(),
    }
}

/// Property names such as `aktørid` and `afgørelsesdato` need Unicode letters.
fn is_ident_start(c: char) -> bool {
    c.is_alphabetic() || c == '_'
}

fn is_ident_continue(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// The tokens of `text`, without a trailing [`Tok::Eof`].
pub(super) fn lex(text: &str) -> Result<Vec<Token<'_>>, FilterError> {
    let mut lexer = Lexer { src: text, pos: 0 };
    let mut out = Vec::new();
    while let Some(token) = lexer.next_token()? {
        out.push(token);
    }
    Ok(out)
}

struct Lexer<'s> {
    src: &'s str,
    pos: usize,
}

impl<'s> Lexer<'s> {
    fn peek(&self) -> Option<char> {
        self.src
            .get(self.pos..)
            .and_then(|rest| rest.chars().next())
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.pos += c.len_utf8();
        Some(c)
    }

    fn bump_while(&mut self, pred: impl Fn(char) -> bool) {
        while self.peek().is_some_and(&pred) {
            self.bump();
        }
    }

    fn slice(&self, start: usize) -> &'s str {
        self.src.get(start..self.pos).unwrap_or_default()
    }

    fn next_token(&mut self) -> Result<Option<Token<'s>>, FilterError> {
        self.bump_while(char::is_whitespace);
        let pos = self.pos;
        let Some(c) = self.peek() else {
            return Ok(None);
        };
        let tok = match c {
            '(' => {
                self.bump();
                Tok::LParen
            }
            ')' => {
                self.bump();
                Tok::RParen
            }
            ',' => {
                self.bump();
                Tok::Comma
            }
            '\'' => Tok::Str(self.string()?),
            '-' | '0'..='9' => Tok::Int(self.integer()?),
            c if is_ident_start(c) => self.word()?,
            '/' => {
                return Err(syntax(
                    pos,
                    "navigation paths and lambda operators are not supported",
                ));
            }
            c => return Err(syntax(pos, format!("unexpected character '{c}'"))),
        };
        Ok(Some(Token { tok, pos }))
    }

    /// A single-quoted string at the cursor; `''` stands for one quote.
    fn string(&mut self) -> Result<String, FilterError> {
        let start = self.pos;
        self.bump();
        let mut out = String::new();
        loop {
            match self.bump() {
                None => return Err(syntax(start, "unterminated string literal")),
                Some('\'') if self.peek() == Some('\'') => {
                    self.bump();
                    out.push('\'');
                }
                Some('\'') => return Ok(out),
                Some(c) => out.push(c),
            }
        }
    }

    /// An optionally negative integer, with OData's optional `L` (Int64)
    /// suffix. Decimal, double and exponent forms are refused rather than
    /// misread, since no ODA field needs them.
    fn integer(&mut self) -> Result<i64, FilterError> {
        let start = self.pos;
        if self.peek() == Some('-') {
            self.bump();
            if !self.peek().is_some_and(|c| c.is_ascii_digit()) {
                return Err(syntax(start, "unexpected '-': arithmetic is not supported"));
            }
        }
        self.bump_while(|c| c.is_ascii_digit());
        let digits = self.slice(start);
        let value = digits
            .parse::<i64>()
            .map_err(|_| syntax(start, format!("integer literal {digits} is out of range")))?;
        if matches!(self.peek(), Some('L' | 'l')) {
            self.bump();
        }
        match self.peek() {
            Some('.') => Err(syntax(start, "decimal literals are not supported")),
            Some(c) if is_ident_continue(c) => Err(syntax(
                start,
                format!("malformed number starting '{digits}'"),
            )),
            _ => Ok(value),
        }
    }

    /// An identifier, or a typed literal such as `datetime'…'` when a quote
    /// follows immediately.
    fn word(&mut self) -> Result<Tok<'s>, FilterError> {
        let start = self.pos;
        self.bump_while(is_ident_continue);
        let word = self.slice(start);
        if self.peek() != Some('\'') {
            return Ok(Tok::Ident(word));
        }
        if word != "datetime" {
            return Err(syntax(start, format!("unsupported literal type '{word}'")));
        }
        let inner = self.string()?;
        SimTime::parse(&inner)
            .map(Tok::DateTime)
            .ok_or_else(|| syntax(start, format!("invalid datetime literal '{inner}'")))
    }
}
