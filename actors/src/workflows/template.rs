//! The template language of workflow texts: literal text with `{expression}` holes.
//!
//! ```text
//! text       := (literal | "{{" | "}}" | "{" expr "}")*
//! expr       := "if" compare "then" expr "else" expr | compare
//! compare    := sum (("==" | "!=" | "<" | "<=" | ">" | ">=") sum)?
//! sum        := product (("+" | "-") product)*
//! product    := unary (("*" | "/" | "%") unary)*
//! unary      := "-" unary | atom
//! atom       := integer | "string" | path | "(" expr ")"
//! path       := name ("." (name | integer))*          e.g. user.mention, args.1, var.count
//! ```
//!
//! A small language of its own, not an embedded interpreter: no loops, no functions, every
//! evaluation step costs fuel, so a template cannot run long. Errors name the character
//! (1-based, counted in characters of the whole text) where they were found.

use std::fmt;

/// A parsed template: literal pieces and expressions, in order.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Template {
    parts: Vec<Part>,
}

#[derive(Clone, Debug, PartialEq)]
enum Part {
    Text(String),
    Expr(Expr),
}

#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Expr {
    Int(i64),
    Str(String),
    /// A dotted name, looked up in the run's context.
    Path(Vec<String>),
    Neg(Box<Expr>),
    Binary(Op, Box<Expr>, Box<Expr>),
    If(Box<Expr>, Box<Expr>, Box<Expr>),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Op {
    Add,
    Sub,
    Mul,
    Div,
    Rem,
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

/// A value of the language: an integer or a text.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(untagged)]
pub(crate) enum Value {
    Int(i64),
    Text(String),
}

impl Value {
    fn truthy(&self) -> bool {
        match self {
            Value::Int(n) => *n != 0,
            Value::Text(text) => !text.is_empty(),
        }
    }

    /// An integer, or a text that reads as one (`args.1` is text).
    fn as_int(&self) -> Option<i64> {
        match self {
            Value::Int(n) => Some(*n),
            Value::Text(text) => text.trim().parse().ok(),
        }
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Int(n) => write!(f, "{n}"),
            Value::Text(text) => f.write_str(text),
        }
    }
}

/// A template that does not parse, with the character where it went wrong.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message} at character {position}")]
pub(crate) struct ParseError {
    /// 1-based, in characters of the whole text.
    pub(crate) position: usize,
    pub(crate) message: String,
}

/// Why an evaluation stopped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum EvalError {
    /// The run's step budget is spent.
    OutOfFuel,
    /// A problem in the template's use: an unknown name, a division by zero, …
    Invalid(String),
}

/// What a template reads (the run's event, variables) and the fuel it spends.
pub(crate) trait Scope {
    fn lookup(&self, path: &[String]) -> Option<Value>;
    /// Spends one step; false when none is left.
    fn burn(&mut self) -> bool;
}

/// Longest expression nesting accepted: deeper is refused at parse time, so evaluation
/// never recurses deeper than this.
const MAX_DEPTH: usize = 32;

impl Template {
    pub(crate) fn parse(text: &str) -> Result<Self, ParseError> {
        let chars: Vec<char> = text.chars().collect();
        let mut parts = Vec::new();
        let mut literal = String::new();
        let mut i = 0;
        while i < chars.len() {
            match chars[i] {
                '{' if chars.get(i + 1) == Some(&'{') => {
                    literal.push('{');
                    i += 2;
                }
                '}' if chars.get(i + 1) == Some(&'}') => {
                    literal.push('}');
                    i += 2;
                }
                '}' => return Err(error(i, "unmatched `}` (write `}}` for a brace)")),
                '{' => {
                    let close = find_close(&chars, i)?;
                    if !literal.is_empty() {
                        parts.push(Part::Text(std::mem::take(&mut literal)));
                    }
                    let tokens = lex(&chars[i + 1..close], i + 1)?;
                    let mut parser = Parser {
                        tokens,
                        at: 0,
                        end: close,
                        depth: 0,
                    };
                    let expr = parser.expr()?;
                    if let Some(token) = parser.tokens.get(parser.at) {
                        return Err(error(
                            token.position,
                            "unexpected text after the expression",
                        ));
                    }
                    parts.push(Part::Expr(expr));
                    i = close + 1;
                }
                c => {
                    literal.push(c);
                    i += 1;
                }
            }
        }
        if !literal.is_empty() {
            parts.push(Part::Text(literal));
        }
        Ok(Self { parts })
    }

    /// Every path the template reads (for checks at compile time).
    pub(crate) fn paths(&self) -> Vec<&[String]> {
        fn walk<'a>(expr: &'a Expr, out: &mut Vec<&'a [String]>) {
            match expr {
                Expr::Path(path) => out.push(path),
                Expr::Neg(inner) => walk(inner, out),
                Expr::Binary(_, a, b) => {
                    walk(a, out);
                    walk(b, out);
                }
                Expr::If(c, a, b) => {
                    walk(c, out);
                    walk(a, out);
                    walk(b, out);
                }
                Expr::Int(_) | Expr::Str(_) => {}
            }
        }
        let mut out = Vec::new();
        for part in &self.parts {
            if let Part::Expr(expr) = part {
                walk(expr, &mut out);
            }
        }
        out
    }

    /// Renders the template (the caller caps the output's length).
    pub(crate) fn render(&self, scope: &mut dyn Scope) -> Result<String, EvalError> {
        let mut out = String::new();
        for part in &self.parts {
            if !scope.burn() {
                return Err(EvalError::OutOfFuel);
            }
            match part {
                Part::Text(text) => out.push_str(text),
                Part::Expr(expr) => out.push_str(&eval(expr, scope)?.to_string()),
            }
        }
        Ok(out)
    }

    /// Evaluates a template that is a single expression (a condition's operand) to its
    /// value; a template with text around holes renders as text.
    pub(crate) fn value(&self, scope: &mut dyn Scope) -> Result<Value, EvalError> {
        match self.parts.as_slice() {
            [Part::Expr(expr)] => {
                if !scope.burn() {
                    return Err(EvalError::OutOfFuel);
                }
                eval(expr, scope)
            }
            _ => self.render(scope).map(Value::Text),
        }
    }
}

fn eval(expr: &Expr, scope: &mut dyn Scope) -> Result<Value, EvalError> {
    if !scope.burn() {
        return Err(EvalError::OutOfFuel);
    }
    Ok(match expr {
        Expr::Int(n) => Value::Int(*n),
        Expr::Str(text) => Value::Text(text.clone()),
        Expr::Path(path) => scope
            .lookup(path)
            .ok_or_else(|| EvalError::Invalid(format!("`{}` has no value", path.join("."))))?,
        Expr::Neg(inner) => {
            let value = eval(inner, scope)?;
            let n = int(&value, "-")?;
            Value::Int(n.checked_neg().ok_or_else(overflow)?)
        }
        Expr::If(condition, then, otherwise) => {
            if eval(condition, scope)?.truthy() {
                eval(then, scope)?
            } else {
                eval(otherwise, scope)?
            }
        }
        Expr::Binary(op, a, b) => {
            let (a, b) = (eval(a, scope)?, eval(b, scope)?);
            binary(*op, a, b)?
        }
    })
}

fn binary(op: Op, a: Value, b: Value) -> Result<Value, EvalError> {
    let both_ints = a.as_int().zip(b.as_int());
    let compare = |ordering: std::cmp::Ordering| -> Value {
        let holds = match op {
            Op::Eq => ordering.is_eq(),
            Op::Ne => ordering.is_ne(),
            Op::Lt => ordering.is_lt(),
            Op::Le => ordering.is_le(),
            Op::Gt => ordering.is_gt(),
            _ => ordering.is_ge(),
        };
        Value::Int(holds as i64)
    };
    Ok(match op {
        Op::Eq | Op::Ne | Op::Lt | Op::Le | Op::Gt | Op::Ge => match both_ints {
            Some((x, y)) => compare(x.cmp(&y)),
            None => compare(a.to_string().cmp(&b.to_string())),
        },
        // `+` adds numbers and joins anything else.
        Op::Add => match both_ints {
            Some((x, y)) => Value::Int(x.checked_add(y).ok_or_else(overflow)?),
            None => Value::Text(format!("{a}{b}")),
        },
        Op::Sub | Op::Mul | Op::Div | Op::Rem => {
            let symbol = match op {
                Op::Sub => "-",
                Op::Mul => "*",
                Op::Div => "/",
                _ => "%",
            };
            let (x, y) = (int(&a, symbol)?, int(&b, symbol)?);
            let result = match op {
                Op::Sub => x.checked_sub(y),
                Op::Mul => x.checked_mul(y),
                _ if y == 0 => return Err(EvalError::Invalid("division by zero".into())),
                Op::Div => x.checked_div(y),
                _ => x.checked_rem(y),
            };
            Value::Int(result.ok_or_else(overflow)?)
        }
    })
}

fn int(value: &Value, op: &str) -> Result<i64, EvalError> {
    value
        .as_int()
        .ok_or_else(|| EvalError::Invalid(format!("`{op}` needs numbers, got \"{value}\"")))
}

fn overflow() -> EvalError {
    EvalError::Invalid("number too large".into())
}

fn error(index: usize, message: &str) -> ParseError {
    ParseError {
        position: index + 1,
        message: message.to_owned(),
    }
}

/// The `}` closing the hole opened at `open`, skipping braces inside strings.
fn find_close(chars: &[char], open: usize) -> Result<usize, ParseError> {
    let mut in_string = false;
    let mut i = open + 1;
    while i < chars.len() {
        match chars[i] {
            '\\' if in_string => i += 1,
            '"' => in_string = !in_string,
            '}' if !in_string => return Ok(i),
            '{' if !in_string => return Err(error(i, "`{` inside an expression")),
            _ => {}
        }
        i += 1;
    }
    Err(error(open, "`{` is never closed (write `{{` for a brace)"))
}

#[derive(Clone, Debug, PartialEq)]
enum Tok {
    Int(i64),
    Str(String),
    Name(String),
    Dot,
    Op(Op),
    Minus,
    Plus,
    LParen,
    RParen,
}

struct Token {
    tok: Tok,
    /// Index in the whole text.
    position: usize,
}

fn lex(chars: &[char], offset: usize) -> Result<Vec<Token>, ParseError> {
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let start = i;
        let c = chars[i];
        let tok = match c {
            ' ' | '\t' | '\n' | '\r' => {
                i += 1;
                continue;
            }
            '0'..='9' => {
                while i < chars.len() && chars[i].is_ascii_digit() {
                    i += 1;
                }
                let digits: String = chars[start..i].iter().collect();
                let n = digits
                    .parse()
                    .map_err(|_| error(offset + start, "number too large"))?;
                tokens.push(Token {
                    tok: Tok::Int(n),
                    position: offset + start,
                });
                continue;
            }
            '"' => {
                let mut text = String::new();
                i += 1;
                loop {
                    match chars.get(i) {
                        None => return Err(error(offset + start, "string is never closed")),
                        Some('"') => break,
                        Some('\\') => {
                            match chars.get(i + 1) {
                                Some(&escaped @ ('"' | '\\')) => text.push(escaped),
                                Some('n') => text.push('\n'),
                                _ => {
                                    return Err(error(
                                        offset + i,
                                        "unknown escape (use \\\" \\\\ or \\n)",
                                    ));
                                }
                            }
                            i += 2;
                        }
                        Some(&other) => {
                            text.push(other);
                            i += 1;
                        }
                    }
                }
                i += 1;
                tokens.push(Token {
                    tok: Tok::Str(text),
                    position: offset + start,
                });
                continue;
            }
            c if c.is_alphabetic() || c == '_' => {
                while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                    i += 1;
                }
                tokens.push(Token {
                    tok: Tok::Name(chars[start..i].iter().collect()),
                    position: offset + start,
                });
                continue;
            }
            '.' => Tok::Dot,
            '+' => Tok::Plus,
            '-' => Tok::Minus,
            '*' => Tok::Op(Op::Mul),
            '/' => Tok::Op(Op::Div),
            '%' => Tok::Op(Op::Rem),
            '(' => Tok::LParen,
            ')' => Tok::RParen,
            '=' | '!' | '<' | '>' => {
                let next_eq = chars.get(i + 1) == Some(&'=');
                let op = match (c, next_eq) {
                    ('=', true) => Op::Eq,
                    ('!', true) => Op::Ne,
                    ('<', true) => Op::Le,
                    ('>', true) => Op::Ge,
                    ('<', false) => Op::Lt,
                    ('>', false) => Op::Gt,
                    _ => return Err(error(offset + i, "expected `==` or `!=`")),
                };
                if next_eq {
                    i += 1;
                }
                Tok::Op(op)
            }
            other => {
                return Err(error(
                    offset + i,
                    &format!("unexpected character `{other}`"),
                ));
            }
        };
        i += 1;
        tokens.push(Token {
            tok,
            position: offset + start,
        });
    }
    Ok(tokens)
}

struct Parser {
    tokens: Vec<Token>,
    at: usize,
    /// Index of the closing `}`, where "missing" errors point.
    end: usize,
    depth: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Tok> {
        self.tokens.get(self.at).map(|token| &token.tok)
    }

    fn position(&self) -> usize {
        self.tokens
            .get(self.at)
            .map_or(self.end, |token| token.position)
    }

    fn keyword(&self, word: &str) -> bool {
        matches!(self.peek(), Some(Tok::Name(name)) if name == word)
    }

    fn expect_keyword(&mut self, word: &str) -> Result<(), ParseError> {
        if self.keyword(word) {
            self.at += 1;
            Ok(())
        } else {
            Err(error(self.position(), &format!("expected `{word}`")))
        }
    }

    fn expr(&mut self) -> Result<Expr, ParseError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(error(self.position(), "expression nested too deeply"));
        }
        let expr = if self.keyword("if") {
            self.at += 1;
            let condition = self.compare()?;
            self.expect_keyword("then")?;
            let then = self.expr()?;
            self.expect_keyword("else")?;
            let otherwise = self.expr()?;
            Expr::If(Box::new(condition), Box::new(then), Box::new(otherwise))
        } else {
            self.compare()?
        };
        self.depth -= 1;
        Ok(expr)
    }

    fn compare(&mut self) -> Result<Expr, ParseError> {
        let left = self.sum()?;
        if let Some(Tok::Op(op @ (Op::Eq | Op::Ne | Op::Lt | Op::Le | Op::Gt | Op::Ge))) =
            self.peek().cloned()
        {
            self.at += 1;
            let right = self.sum()?;
            return Ok(Expr::Binary(op, Box::new(left), Box::new(right)));
        }
        Ok(left)
    }

    fn sum(&mut self) -> Result<Expr, ParseError> {
        let mut left = self.product()?;
        loop {
            let op = match self.peek() {
                Some(Tok::Plus) => Op::Add,
                Some(Tok::Minus) => Op::Sub,
                _ => return Ok(left),
            };
            self.at += 1;
            let right = self.product()?;
            left = Expr::Binary(op, Box::new(left), Box::new(right));
        }
    }

    fn product(&mut self) -> Result<Expr, ParseError> {
        let mut left = self.unary()?;
        while let Some(Tok::Op(op @ (Op::Mul | Op::Div | Op::Rem))) = self.peek().cloned() {
            self.at += 1;
            let right = self.unary()?;
            left = Expr::Binary(op, Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn unary(&mut self) -> Result<Expr, ParseError> {
        if self.peek() == Some(&Tok::Minus) {
            self.at += 1;
            self.depth += 1;
            if self.depth > MAX_DEPTH {
                return Err(error(self.position(), "expression nested too deeply"));
            }
            let inner = self.unary()?;
            self.depth -= 1;
            return Ok(Expr::Neg(Box::new(inner)));
        }
        self.atom()
    }

    fn atom(&mut self) -> Result<Expr, ParseError> {
        let position = self.position();
        let Some(tok) = self.peek().cloned() else {
            return Err(error(position, "expected a value"));
        };
        self.at += 1;
        match tok {
            Tok::Int(n) => Ok(Expr::Int(n)),
            Tok::Str(text) => Ok(Expr::Str(text)),
            Tok::LParen => {
                let inner = self.expr()?;
                if self.peek() != Some(&Tok::RParen) {
                    return Err(error(self.position(), "expected `)`"));
                }
                self.at += 1;
                Ok(inner)
            }
            Tok::Name(name) if ["if", "then", "else"].contains(&name.as_str()) => {
                Err(error(position, &format!("unexpected `{name}`")))
            }
            Tok::Name(name) => {
                let mut path = vec![name];
                while self.peek() == Some(&Tok::Dot) {
                    self.at += 1;
                    match self.peek().cloned() {
                        Some(Tok::Name(part)) => path.push(part),
                        Some(Tok::Int(n)) => path.push(n.to_string()),
                        _ => return Err(error(self.position(), "expected a name after `.`")),
                    }
                    self.at += 1;
                }
                Ok(Expr::Path(path))
            }
            _ => Err(error(position, "expected a value")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    struct Vars {
        values: HashMap<String, Value>,
        fuel: u32,
    }

    impl Scope for Vars {
        fn lookup(&self, path: &[String]) -> Option<Value> {
            self.values.get(&path.join(".")).cloned()
        }
        fn burn(&mut self) -> bool {
            if self.fuel == 0 {
                return false;
            }
            self.fuel -= 1;
            true
        }
    }

    fn scope() -> Vars {
        let values = [
            ("user.mention", Value::Text("<@42>".into())),
            ("channel.name", Value::Text("general".into())),
            ("args.1", Value::Text("7".into())),
            ("var.count", Value::Int(3)),
        ];
        Vars {
            values: values.into_iter().map(|(k, v)| (k.to_owned(), v)).collect(),
            fuel: 1_000,
        }
    }

    fn render(text: &str) -> Result<String, EvalError> {
        Template::parse(text).unwrap().render(&mut scope())
    }

    #[test]
    fn fills_names_from_the_event_and_variables() {
        assert_eq!(
            render("Hi {user.mention}, welcome to #{channel.name}!").unwrap(),
            "Hi <@42>, welcome to #general!"
        );
        assert_eq!(render("{var.count + args.1 * 2}").unwrap(), "17");
        assert_eq!(render("{(var.count + 1) * 2 - -1}").unwrap(), "9");
        assert_eq!(render("{10 / 3} {10 % 3}").unwrap(), "3 1");
        assert_eq!(render("{{literal}}").unwrap(), "{literal}");
        assert_eq!(render("{\"a\" + \"b\" + 1}").unwrap(), "ab1");
    }

    #[test]
    fn conditionals_choose_a_branch() {
        assert_eq!(
            render("{if var.count >= 3 then \"many\" else \"few\"}").unwrap(),
            "many"
        );
        assert_eq!(
            render("{if args.1 == \"8\" then 1 else if args.1 == 7 then 2 else 3}").unwrap(),
            "2"
        );
    }

    #[test]
    fn parse_errors_name_the_character() {
        let err = Template::parse("Hi {user.}").unwrap_err();
        assert_eq!(err.position, 10, "{err}");
        assert!(err.to_string().contains("expected a name after `.`"));
        assert_eq!(Template::parse("ab {1 +").unwrap_err().position, 4);
        assert_eq!(Template::parse("{1 + 2 3}").unwrap_err().position, 8);
        assert_eq!(Template::parse("{if 1 then 2}").unwrap_err().position, 13);
        assert_eq!(Template::parse("x }").unwrap_err().position, 3);
        assert_eq!(Template::parse("{\"open}").unwrap_err().position, 1);
        assert_eq!(Template::parse("{1 # 2}").unwrap_err().position, 4);
        assert_eq!(Template::parse("{a = b}").unwrap_err().position, 4);
        let deep = format!("{{{}1{}}}", "(".repeat(40), ")".repeat(40));
        assert!(
            Template::parse(&deep)
                .unwrap_err()
                .message
                .contains("too deeply")
        );
    }

    #[test]
    fn evaluation_errors_are_reasons_not_panics() {
        assert_eq!(
            render("{1 / 0}"),
            Err(EvalError::Invalid("division by zero".into()))
        );
        assert!(matches!(
            render("{nothing.here}"),
            Err(EvalError::Invalid(_))
        ));
        assert!(matches!(
            render("{9223372036854775807 + 1}"),
            Err(EvalError::Invalid(_))
        ));
        assert!(matches!(render("{\"x\" * 2}"), Err(EvalError::Invalid(_))));
    }

    #[test]
    fn every_step_costs_fuel() {
        let template = Template::parse("{1 + 2 + 3 + 4}").unwrap();
        let mut limited = Vars {
            values: HashMap::new(),
            fuel: 4,
        };
        assert_eq!(template.render(&mut limited), Err(EvalError::OutOfFuel));
        let mut enough = Vars {
            values: HashMap::new(),
            fuel: 100,
        };
        assert_eq!(template.render(&mut enough).unwrap(), "10");
        assert!(enough.fuel < 100);
    }
}
