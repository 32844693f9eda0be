//! Recursive descent over the tokens.
//!
//! ```text
//! filter  := or EOF
//! or      := and ("or" and)*
//! and     := cmp ("and" cmp)*
//! cmp     := unary (CMPOP unary)?        -- a second CMPOP is an error
//! unary   := "not" unary | primary
//! primary := literal | field | func "(" [or ("," or)*] ")" | "(" or ")"
//! ```
//!
//! `not` binds tighter than a comparison, as in OData: `not a eq b` is
//! `(not a) eq b`.

use super::FilterError;
use super::ast::{CmpOp, Expr, Func, Literal};
use super::lexer::{Tok, Token, lex, syntax};

/// Far beyond anything a client writes, and low enough that recursion over
/// the tree can never exhaust a worker thread's stack.
const MAX_DEPTH: usize = 100;

/// Words that can never name a field.
const RESERVED: &[&str] = &["and", "or", "not", "eq", "ne", "gt", "ge", "lt", "le"];

pub(super) fn parse(text: &str) -> Result<Expr, FilterError> {
    let tokens = lex(text)?;
    if tokens.is_empty() {
        return Err(syntax(0, "empty filter"));
    }
    let mut parser = Parser {
        tokens,
        next: 0,
        eof: Token {
            tok: Tok::Eof,
            pos: text.len(),
        },
        depth: 0,
    };
    let expr = parser.or()?;
    let rest = parser.peek();
    match rest.tok {
        Tok::Eof => Ok(expr),
        Tok::RParen => Err(syntax(rest.pos, "unmatched ')'")),
        ref tok => Err(syntax(
            rest.pos,
            format!(
                "expected 'and', 'or' or the end of the filter, found {}",
                tok.describe()
            ),
        )),
    }
}

struct Parser<'s> {
    tokens: Vec<Token<'s>>,
    next: usize,
    eof: Token<'s>,
    depth: usize,
}

impl<'s> Parser<'s> {
    fn peek(&self) -> &Token<'s> {
        self.tokens.get(self.next).unwrap_or(&self.eof)
    }

    fn take(&mut self) -> Token<'s> {
        let token = self.peek().clone();
        if self.next < self.tokens.len() {
            self.next += 1;
        }
        token
    }

    fn at_keyword(&self, keyword: &str) -> bool {
        matches!(self.peek().tok, Tok::Ident(word) if word == keyword)
    }

    fn at_cmp(&self) -> Option<CmpOp> {
        match self.peek().tok {
            Tok::Ident(word) => CmpOp::from_keyword(word),
            _ => None,
        }
    }

    fn enter(&mut self, pos: usize) -> Result<(), FilterError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(syntax(pos, "filter is nested too deeply"));
        }
        Ok(())
    }

    fn leave(&mut self) {
        self.depth -= 1;
    }

    fn or(&mut self) -> Result<Expr, FilterError> {
        let first = self.and()?;
        if !self.at_keyword("or") {
            return Ok(first);
        }
        let pos = self.peek().pos;
        let mut items = vec![first];
        while self.at_keyword("or") {
            self.take();
            items.push(self.and()?);
        }
        Ok(Expr::Or { items, pos })
    }

    fn and(&mut self) -> Result<Expr, FilterError> {
        let first = self.cmp()?;
        if !self.at_keyword("and") {
            return Ok(first);
        }
        let pos = self.peek().pos;
        let mut items = vec![first];
        while self.at_keyword("and") {
            self.take();
            items.push(self.cmp()?);
        }
        Ok(Expr::And { items, pos })
    }

    fn cmp(&mut self) -> Result<Expr, FilterError> {
        let left = self.unary()?;
        let Some(op) = self.at_cmp() else {
            return Ok(left);
        };
        let pos = self.take().pos;
        let right = self.unary()?;
        if let Some(again) = self.at_cmp() {
            return Err(syntax(
                self.peek().pos,
                format!(
                    "'{again}' cannot follow a comparison; join comparisons with 'and' \
                     or parenthesise"
                ),
            ));
        }
        Ok(Expr::Compare {
            op,
            left: Box::new(left),
            right: Box::new(right),
            pos,
        })
    }

    fn unary(&mut self) -> Result<Expr, FilterError> {
        if !self.at_keyword("not") {
            return self.primary();
        }
        let pos = self.take().pos;
        self.enter(pos)?;
        let inner = self.unary()?;
        self.leave();
        Ok(Expr::Not {
            inner: Box::new(inner),
            pos,
        })
    }

    fn primary(&mut self) -> Result<Expr, FilterError> {
        let Token { tok, pos } = self.take();
        let literal = |value| Ok(Expr::Literal { value, pos });
        match tok {
            Tok::Int(n) => literal(Literal::Int(n)),
            Tok::Str(s) => literal(Literal::Str(s)),
            Tok::DateTime(t) => literal(Literal::DateTime(t)),
            Tok::Ident("true") => literal(Literal::Bool(true)),
            Tok::Ident("false") => literal(Literal::Bool(false)),
            Tok::Ident("null") => literal(Literal::Null),
            Tok::Ident(word) if RESERVED.contains(&word) => {
                Err(syntax(pos, format!("expected an operand, found '{word}'")))
            }
            Tok::Ident(name) if self.peek().tok == Tok::LParen => self.call(name, pos),
            Tok::Ident(name) => Ok(Expr::Field {
                name: name.to_owned(),
                pos,
            }),
            Tok::LParen => {
                self.enter(pos)?;
                let inner = self.or()?;
                self.leave();
                let close = self.take();
                if close.tok != Tok::RParen {
                    return Err(syntax(
                        close.pos,
                        format!(
                            "expected ')' to close the '(' at {pos}, found {}",
                            close.tok.describe()
                        ),
                    ));
                }
                Ok(inner)
            }
            tok @ (Tok::RParen | Tok::Comma | Tok::Eof) => Err(syntax(
                pos,
                format!("expected an operand, found {}", tok.describe()),
            )),
        }
    }

    /// A call whose name is at `pos`; the cursor is on its `(`.
    fn call(&mut self, name: &str, pos: usize) -> Result<Expr, FilterError> {
        let Some(func) = Func::from_name(name) else {
            return Err(FilterError::UnknownFunction {
                pos,
                name: name.to_owned(),
            });
        };
        self.take();
        self.enter(pos)?;
        let mut args = Vec::new();
        if self.peek().tok == Tok::RParen {
            self.take();
        } else {
            loop {
                args.push(self.or()?);
                let next = self.take();
                match next.tok {
                    Tok::Comma => {}
                    Tok::RParen => break,
                    tok => {
                        return Err(syntax(
                            next.pos,
                            format!(
                                "expected ',' or ')' in the arguments of {name}, found {}",
                                tok.describe()
                            ),
                        ));
                    }
                }
            }
        }
        self.leave();
        let (min, max, expected) = func.arity();
        if !(min..=max).contains(&args.len()) {
            return Err(FilterError::Arity {
                pos,
                name: name.to_owned(),
                expected,
                found: args.len(),
            });
        }
        Ok(Expr::Call { func, args, pos })
    }
}
