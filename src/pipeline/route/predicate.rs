//! Route predicates: a small boolean language over an enriched event, parsed once from config.
//!
//! ```text
//! expr   := and ("or" and)*
//! and    := unary ("and" unary)*
//! unary  := "not" unary | "(" expr ")" | cond
//! cond   := FIELD "=" VALUE | FIELD "!=" VALUE | FIELD "matches" VALUE | FIELD "in" "[" VALUE ("," VALUE)* "]"
//!         | "severity" ("<" | "<=" | ">" | ">=" | "=" | "!=") NUMBER
//! VALUE  := a bare word (no spaces, quotes, brackets, parentheses or commas) | "double quoted" | 'single quoted'
//! ```
//! `matches` is a regular expression search (Rust `regex` syntax, unanchored): `target matches prod`
//! is true for `aws:us-east-1:cluster-prod-02`. Fields: the canonical ones (`ts actor action artifact
//! policy target mode trace result reason`) and the derived `actor_kind actor_id artifact_name
//! artifact_version provider region cluster severity`. A field the event lacks (`reason`,
//! `provider` on a two-part target) compares as the empty string. Keywords are case-insensitive.

use regex::Regex;

use crate::model::EnrichedEvent;

/// A parsed predicate.
#[derive(Debug, Clone)]
pub enum Predicate {
    /// Both hold.
    And(Box<Predicate>, Box<Predicate>),
    /// Either holds.
    Or(Box<Predicate>, Box<Predicate>),
    /// The inner one does not hold.
    Not(Box<Predicate>),
    /// The field equals the value.
    Eq(Field, String),
    /// The field matches the regular expression.
    Matches(Field, Regex),
    /// The field is one of the values.
    In(Field, Vec<String>),
    /// Severity compared with a number.
    Severity(Cmp, u8),
}

/// A comparison of severities.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cmp {
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `>`
    Gt,
    /// `>=`
    Ge,
    /// `=`
    Eq,
    /// `!=`
    Ne,
}

/// A field a predicate can read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    /// `ts`
    Ts,
    /// `actor`
    Actor,
    /// `action`
    Action,
    /// `artifact`
    Artifact,
    /// `policy`
    Policy,
    /// `target`
    Target,
    /// `mode`
    Mode,
    /// `trace`
    Trace,
    /// `result`
    Result,
    /// `reason`
    Reason,
    /// `actor_kind`
    ActorKind,
    /// `actor_id`
    ActorId,
    /// `artifact_name`
    ArtifactName,
    /// `artifact_version`
    ArtifactVersion,
    /// `provider`
    Provider,
    /// `region`
    Region,
    /// `cluster`
    Cluster,
}

impl Field {
    fn parse(name: &str) -> Option<Field> {
        Some(match name {
            "ts" => Field::Ts,
            "actor" => Field::Actor,
            "action" => Field::Action,
            "artifact" => Field::Artifact,
            "policy" => Field::Policy,
            "target" => Field::Target,
            "mode" => Field::Mode,
            "trace" => Field::Trace,
            "result" => Field::Result,
            "reason" => Field::Reason,
            "actor_kind" => Field::ActorKind,
            "actor_id" => Field::ActorId,
            "artifact_name" => Field::ArtifactName,
            "artifact_version" => Field::ArtifactVersion,
            "provider" => Field::Provider,
            "region" => Field::Region,
            "cluster" => Field::Cluster,
            _ => return None,
        })
    }

    fn get(self, e: &EnrichedEvent) -> &str {
        let t = e.target_parts();
        match self {
            Field::Ts => &e.event.ts,
            Field::Actor => &e.event.actor,
            Field::Action => &e.event.action,
            Field::Artifact => &e.event.artifact,
            Field::Policy => &e.event.policy,
            Field::Target => &e.event.target,
            Field::Mode => &e.event.mode,
            Field::Trace => &e.event.trace,
            Field::Result => &e.event.result,
            Field::Reason => e.event.reason.as_deref().unwrap_or(""),
            Field::ActorKind => e.actor_kind(),
            Field::ActorId => e.actor_id(),
            Field::ArtifactName => e.artifact_name(),
            Field::ArtifactVersion => e.artifact_version().unwrap_or(""),
            Field::Provider => t.map_or("", |t| t.provider),
            Field::Region => t.map_or("", |t| t.region),
            Field::Cluster => t.map_or("", |t| t.cluster),
        }
    }
}

impl Predicate {
    /// Parses a predicate; the error says what was expected and where.
    pub fn parse(text: &str) -> Result<Predicate, String> {
        let tokens = tokenize(text)?;
        let mut parser = Parser { tokens, at: 0 };
        let predicate = parser.expr()?;
        match parser.peek() {
            None => Ok(predicate),
            Some(token) => Err(format!("unexpected {} after a complete expression", token.describe())),
        }
    }

    /// Whether the event satisfies the predicate.
    pub fn eval(&self, e: &EnrichedEvent) -> bool {
        match self {
            Predicate::And(a, b) => a.eval(e) && b.eval(e),
            Predicate::Or(a, b) => a.eval(e) || b.eval(e),
            Predicate::Not(a) => !a.eval(e),
            Predicate::Eq(field, value) => field.get(e) == value,
            Predicate::Matches(field, regex) => regex.is_match(field.get(e)),
            Predicate::In(field, values) => values.iter().any(|v| v == field.get(e)),
            Predicate::Severity(cmp, n) => {
                let s = e.severity;
                match cmp {
                    Cmp::Lt => s < *n,
                    Cmp::Le => s <= *n,
                    Cmp::Gt => s > *n,
                    Cmp::Ge => s >= *n,
                    Cmp::Eq => s == *n,
                    Cmp::Ne => s != *n,
                }
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Word(String),
    Quoted(String),
    Op(&'static str),
    Open,
    Close,
    OpenList,
    CloseList,
    Comma,
}

impl Token {
    fn describe(&self) -> String {
        match self {
            Token::Word(w) => format!("`{w}`"),
            Token::Quoted(q) => format!("{q:?}"),
            Token::Op(op) => format!("`{op}`"),
            Token::Open => "`(`".into(),
            Token::Close => "`)`".into(),
            Token::OpenList => "`[`".into(),
            Token::CloseList => "`]`".into(),
            Token::Comma => "`,`".into(),
        }
    }
}

fn tokenize(text: &str) -> Result<Vec<Token>, String> {
    let mut tokens = Vec::new();
    let mut chars = text.char_indices().peekable();
    while let Some(&(at, c)) = chars.peek() {
        match c {
            c if c.is_whitespace() => {
                chars.next();
            }
            '(' | ')' | '[' | ']' | ',' => {
                chars.next();
                tokens.push(match c {
                    '(' => Token::Open,
                    ')' => Token::Close,
                    '[' => Token::OpenList,
                    ']' => Token::CloseList,
                    _ => Token::Comma,
                });
            }
            '"' | '\'' => {
                chars.next();
                let mut value = String::new();
                loop {
                    match chars.next() {
                        None => return Err(format!("unterminated quote starting at byte {at}")),
                        Some((_, '\\')) => match chars.next() {
                            Some((_, escaped)) => value.push(escaped),
                            None => return Err(format!("unterminated quote starting at byte {at}")),
                        },
                        Some((_, q)) if q == c => break,
                        Some((_, other)) => value.push(other),
                    }
                }
                tokens.push(Token::Quoted(value));
            }
            '!' | '<' | '>' | '=' => {
                chars.next();
                let next_is_eq = matches!(chars.peek(), Some((_, '=')));
                let op = match (c, next_is_eq) {
                    ('!', true) => "!=",
                    ('<', true) => "<=",
                    ('>', true) => ">=",
                    ('=', true) => "=",
                    ('<', false) => "<",
                    ('>', false) => ">",
                    ('=', false) => "=",
                    _ => return Err(format!("unexpected `!` at byte {at}; did you mean `!=`?")),
                };
                if next_is_eq {
                    chars.next();
                }
                tokens.push(Token::Op(op));
            }
            _ => {
                let mut word = String::new();
                while let Some(&(_, c)) = chars.peek() {
                    if c.is_whitespace() || "()[],\"'!<>=".contains(c) {
                        break;
                    }
                    word.push(c);
                    chars.next();
                }
                tokens.push(Token::Word(word));
            }
        }
    }
    Ok(tokens)
}

struct Parser {
    tokens: Vec<Token>,
    at: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.at)
    }

    fn next(&mut self) -> Option<Token> {
        let token = self.tokens.get(self.at).cloned();
        self.at += 1;
        token
    }

    fn keyword(&self, word: &str) -> bool {
        matches!(self.peek(), Some(Token::Word(w)) if w.eq_ignore_ascii_case(word))
    }

    fn expr(&mut self) -> Result<Predicate, String> {
        let mut left = self.and()?;
        while self.keyword("or") {
            self.at += 1;
            left = Predicate::Or(Box::new(left), Box::new(self.and()?));
        }
        Ok(left)
    }

    fn and(&mut self) -> Result<Predicate, String> {
        let mut left = self.unary()?;
        while self.keyword("and") {
            self.at += 1;
            left = Predicate::And(Box::new(left), Box::new(self.unary()?));
        }
        Ok(left)
    }

    fn unary(&mut self) -> Result<Predicate, String> {
        if self.keyword("not") {
            self.at += 1;
            return Ok(Predicate::Not(Box::new(self.unary()?)));
        }
        if self.peek() == Some(&Token::Open) {
            self.at += 1;
            let inner = self.expr()?;
            return match self.next() {
                Some(Token::Close) => Ok(inner),
                other => Err(format!("expected `)`, found {}", describe(other.as_ref()))),
            };
        }
        self.cond()
    }

    fn cond(&mut self) -> Result<Predicate, String> {
        let name = match self.next() {
            Some(Token::Word(w)) => w,
            other => return Err(format!("expected a field name, found {}", describe(other.as_ref()))),
        };
        if name == "severity" {
            let cmp = match self.next() {
                Some(Token::Op("<")) => Cmp::Lt,
                Some(Token::Op("<=")) => Cmp::Le,
                Some(Token::Op(">")) => Cmp::Gt,
                Some(Token::Op(">=")) => Cmp::Ge,
                Some(Token::Op("=")) => Cmp::Eq,
                Some(Token::Op("!=")) => Cmp::Ne,
                other => return Err(format!("expected a comparison after `severity`, found {}", describe(other.as_ref()))),
            };
            let value = self.value()?;
            let n: u8 = value.parse().map_err(|_| format!("severity is compared with a number 0-10, not {value:?}"))?;
            return Ok(Predicate::Severity(cmp, n));
        }
        let field = Field::parse(&name).ok_or_else(|| format!("unknown field `{name}`"))?;
        match self.next() {
            Some(Token::Op("=")) => Ok(Predicate::Eq(field, self.value()?)),
            Some(Token::Op("!=")) => Ok(Predicate::Not(Box::new(Predicate::Eq(field, self.value()?)))),
            Some(Token::Word(w)) if w.eq_ignore_ascii_case("matches") => {
                let pattern = self.value()?;
                let regex = Regex::new(&pattern).map_err(|error| format!("bad pattern {pattern:?}: {error}"))?;
                Ok(Predicate::Matches(field, regex))
            }
            Some(Token::Word(w)) if w.eq_ignore_ascii_case("in") => {
                if self.next() != Some(Token::OpenList) {
                    return Err(format!("expected `[` after `{name} in`"));
                }
                let mut values = vec![self.value()?];
                loop {
                    match self.next() {
                        Some(Token::Comma) => values.push(self.value()?),
                        Some(Token::CloseList) => break,
                        other => return Err(format!("expected `,` or `]`, found {}", describe(other.as_ref()))),
                    }
                }
                Ok(Predicate::In(field, values))
            }
            other => Err(format!("expected `=`, `!=`, `matches` or `in` after `{name}`, found {}", describe(other.as_ref()))),
        }
    }

    fn value(&mut self) -> Result<String, String> {
        match self.next() {
            Some(Token::Word(w)) | Some(Token::Quoted(w)) => Ok(w),
            other => Err(format!("expected a value, found {}", describe(other.as_ref()))),
        }
    }
}

fn describe(token: Option<&Token>) -> String {
    token.map_or_else(|| "the end".to_owned(), Token::describe)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::SourceRecord;
    use crate::pipeline::{decode::json, enrich, validate};

    const DEPLOY: &str = r#"{"ts":"2026-03-14T09:26:53.120Z","actor":"user:j.patel@acme.com","action":"deploy","artifact":"billing-service@v4.2.1","policy":"prod-billing-deploy-v3","target":"aws:us-east-1:cluster-prod-02","mode":"fixed","trace":"tr-1","result":"denied","reason":"it's \"late\""}"#;

    fn event() -> EnrichedEvent {
        let event = validate::validate(json::decode(DEPLOY.as_bytes()).unwrap(), &Default::default()).unwrap();
        enrich::enrich(event, &SourceRecord::default(), 0, &Default::default())
    }

    fn holds(text: &str) -> bool {
        Predicate::parse(text).unwrap_or_else(|e| panic!("{text}: {e}")).eval(&event())
    }

    #[test]
    fn evaluates_the_documented_example_and_friends() {
        assert!(holds("action = deploy and target matches prod"));
        assert!(!holds("action = execute and target matches prod"));
        assert!(holds("action = execute or cluster = cluster-prod-02"));
        assert!(holds("not (mode = adaptive) AND result != allowed"));
        assert!(holds("actor_kind in [service, user]"));
        assert!(holds("region matches '^us-'"));
        assert!(holds("severity >= 6 and severity < 7"));
        assert!(holds(r#"reason = "it's \"late\"""#));
        assert!(holds("artifact_version = v4.2.1 and artifact_name = billing-service"));
        assert!(!holds("target matches '^prod'"), "matches is a regex, anchors work");
    }

    #[test]
    fn errors_say_what_was_expected() {
        let cases = [
            ("actionn = deploy", "unknown field `actionn`"),
            ("action deploy", "expected `=`, `!=`, `matches` or `in` after `action`, found `deploy`"),
            ("action = deploy and", "expected a field name, found the end"),
            ("(action = deploy", "expected `)`, found the end"),
            ("target matches '('", "bad pattern"),
            ("severity >= high", "severity is compared with a number"),
            ("action = 'x", "unterminated quote"),
            ("action = x y", "unexpected `y` after a complete expression"),
        ];
        for (text, expected) in cases {
            let error = Predicate::parse(text).unwrap_err();
            assert!(error.contains(expected), "{text}: {error}");
        }
    }
}
