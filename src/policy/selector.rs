//! Selector syntax: a JSONPath subset for bodies, plus `query.NAME` and
//! `header.NAME`.

use std::fmt;

/// Where a selector points.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Selector {
    /// Into the body: `$` followed by steps.
    Body(Vec<Step>),
    /// A query-string parameter, by exact name.
    Query(String),
    /// A request header, by name (case-insensitive, `_` read as `-`: stored
    /// as [`canonical_header_name`] makes it).
    Header(String),
}

/// One step of a body selector.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// `.name` or `['name']`: the member with this (unescaped) key.
    Child(Vec<u8>),
    /// `[N]`: the array element at this index.
    Index(u32),
    /// `[*]` or `.*`: every member or element.
    Wildcard,
    /// `..name`: the member with this key, at any depth below.
    Descendant(Vec<u8>),
    /// `..*`: every value at any depth below.
    DescendantWildcard,
}

/// A selector that does not parse: what was expected, and where (a character
/// column within the selector text, 1-based).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SelectorError {
    pub column: usize,
    pub message: String,
}

impl std::error::Error for SelectorError {}

impl fmt::Display for SelectorError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} (at character {} of the selector)",
            self.message, self.column
        )
    }
}

impl Selector {
    pub fn parse(text: &str) -> Result<Selector, SelectorError> {
        if let Some(name) = text.strip_prefix("query.") {
            return if name.is_empty() {
                Err(error(7, "`query.` needs a parameter name"))
            } else {
                Ok(Selector::Query(name.to_owned()))
            };
        }
        if let Some(name) = text.strip_prefix("header.") {
            return if name.is_empty() || !name.bytes().all(is_header_name_byte) {
                Err(error(
                    8,
                    "`header.` needs a header name (letters, digits, `-`)",
                ))
            } else {
                Ok(Selector::Header(canonical_header_name(name).into_owned()))
            };
        }
        Parser { text, pos: 0 }.body().map(Selector::Body)
    }
}

/// A header name as the servers behind scrim may read it: lowercase, and
/// `_` as `-`, because CGI-style servers (PHP, WSGI, Rack, nginx's
/// `underscores_in_headers`) read `X_Email` as `X-Email`. Every decision on a
/// request header name goes through this, so that no spelling slips past a
/// rule. Names from hyper are lowercase already: no allocation then.
pub fn canonical_header_name(name: &str) -> std::borrow::Cow<'_, str> {
    if name.bytes().any(|b| b.is_ascii_uppercase() || b == b'_') {
        name.to_ascii_lowercase().replace('_', "-").into()
    } else {
        name.into()
    }
}

fn is_header_name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn error(column: usize, message: impl Into<String>) -> SelectorError {
    SelectorError {
        column,
        message: message.into(),
    }
}

struct Parser<'a> {
    text: &'a str,
    pos: usize,
}

impl Parser<'_> {
    fn rest(&self) -> &str {
        &self.text[self.pos..]
    }

    fn column(&self) -> usize {
        self.text[..self.pos].chars().count() + 1
    }

    fn fail<T>(&self, message: impl Into<String>) -> Result<T, SelectorError> {
        Err(error(self.column(), message))
    }

    fn eat(&mut self, prefix: &str) -> bool {
        if self.rest().starts_with(prefix) {
            self.pos += prefix.len();
            true
        } else {
            false
        }
    }

    fn body(mut self) -> Result<Vec<Step>, SelectorError> {
        if !self.eat("$") {
            return self.fail("a selector starts with `$`, `query.` or `header.`");
        }
        let mut steps = Vec::new();
        while !self.rest().is_empty() {
            if self.eat("..") {
                steps.push(match self.member_name_or_star()? {
                    None => Step::DescendantWildcard,
                    Some(name) => Step::Descendant(name),
                });
            } else if self.eat(".") {
                steps.push(match self.member_name_or_star()? {
                    None => Step::Wildcard,
                    Some(name) => Step::Child(name),
                });
            } else if self.rest().starts_with('[') {
                steps.push(self.bracket()?);
            } else {
                return self.fail("expected `.`, `..` or `[`");
            }
        }
        Ok(steps)
    }

    /// After `.` or `..`: `*`, a bare name, or a bracketed name.
    fn member_name_or_star(&mut self) -> Result<Option<Vec<u8>>, SelectorError> {
        if self.eat("*") {
            return Ok(None);
        }
        if self.rest().starts_with('[') {
            return match self.bracket()? {
                Step::Child(name) => Ok(Some(name)),
                Step::Wildcard => Ok(None),
                Step::Index(_) | Step::Descendant(_) | Step::DescendantWildcard => {
                    self.fail("expected a quoted name after `..`")
                }
            };
        }
        let len = self
            .rest()
            .find(['.', '[', ']', '\'', '"', ' ', '*'])
            .unwrap_or(self.rest().len());
        if len == 0 {
            return self
                .fail("expected a member name; use ['...'] for names with dots or brackets");
        }
        let name = self.rest().as_bytes()[..len].to_vec();
        self.pos += len;
        Ok(Some(name))
    }

    fn bracket(&mut self) -> Result<Step, SelectorError> {
        self.eat("[");
        let step = if self.eat("*") {
            Step::Wildcard
        } else if let Some(quote) = self
            .rest()
            .chars()
            .next()
            .filter(|c| *c == '\'' || *c == '"')
        {
            self.pos += 1;
            Step::Child(self.quoted(quote)?)
        } else {
            let len = self
                .rest()
                .find(|c: char| !c.is_ascii_digit())
                .unwrap_or(self.rest().len());
            if len == 0 {
                return self
                    .fail("expected `*`, a quoted name or a non-negative index inside `[]`");
            }
            match self.rest()[..len].parse::<u32>() {
                Ok(index) => {
                    self.pos += len;
                    Step::Index(index)
                }
                Err(_) => return self.fail("index too large"),
            }
        };
        if !self.eat("]") {
            return self.fail("expected `]`");
        }
        Ok(step)
    }

    /// A quoted name; `\` escapes the quote and itself.
    fn quoted(&mut self, quote: char) -> Result<Vec<u8>, SelectorError> {
        let mut name = String::new();
        let mut chars = self.rest().char_indices();
        while let Some((i, c)) = chars.next() {
            if c == quote {
                self.pos += i + 1;
                return Ok(name.into_bytes());
            }
            if c == '\\' {
                match chars.next() {
                    Some((_, escaped)) => name.push(escaped),
                    None => break,
                }
            } else {
                name.push(c);
            }
        }
        self.fail(format!("unterminated quoted name: missing {quote}"))
    }
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Step::Child(name) => write!(f, "['{}']", String::from_utf8_lossy(name)),
            Step::Index(i) => write!(f, "[{i}]"),
            Step::Wildcard => f.write_str("[*]"),
            Step::Descendant(name) => write!(f, "..['{}']", String::from_utf8_lossy(name)),
            Step::DescendantWildcard => f.write_str("..*"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(text: &str) -> Vec<Step> {
        match Selector::parse(text) {
            Ok(Selector::Body(steps)) => steps,
            other => panic!("{text}: {other:?}"),
        }
    }

    fn child(name: &str) -> Step {
        Step::Child(name.as_bytes().to_vec())
    }

    #[test]
    fn parses_the_documented_forms() {
        assert_eq!(body("$"), vec![]);
        assert_eq!(
            body("$.data[*].user_data.em"),
            vec![
                child("data"),
                Step::Wildcard,
                child("user_data"),
                child("em")
            ]
        );
        assert_eq!(body("$['user_data[em]']"), vec![child("user_data[em]")]);
        assert_eq!(body("$[\"a.b\"][3]"), vec![child("a.b"), Step::Index(3)]);
        assert_eq!(
            body("$.*..email"),
            vec![Step::Wildcard, Step::Descendant(b"email".to_vec())]
        );
        assert_eq!(body("$..*"), vec![Step::DescendantWildcard]);
        assert_eq!(body("$['it\\'s']"), vec![child("it's")]);
        assert_eq!(
            Selector::parse("query.email"),
            Ok(Selector::Query("email".into()))
        );
        assert_eq!(
            Selector::parse("header.X-Email"),
            Ok(Selector::Header("x-email".into()))
        );
    }

    #[test]
    fn rejects_with_a_column() {
        let err = Selector::parse("$.data[").unwrap_err();
        assert_eq!(err.column, 8);
        let err = Selector::parse("data.email").unwrap_err();
        assert_eq!(err.column, 1);
        assert!(Selector::parse("$.a[-1]").is_err());
        assert!(Selector::parse("$.a['x").is_err());
        assert!(Selector::parse("$.").is_err());
        assert!(Selector::parse("query.").is_err());
        assert!(Selector::parse("header.a b").is_err());
    }
}
