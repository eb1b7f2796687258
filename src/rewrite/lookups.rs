//! The token vault as a rewrite sees it. Rewriting is synchronous and never
//! waits; the vault's store is I/O. So a rewrite takes what the vault can
//! answer at once (its cache, and this request's answers so far), and notes
//! every question it could not answer. A pass that asked anything is not
//! sent: the caller gets the answers from the store
//! ([`crate::vault::Vault::answer`]), hands them over with
//! [`Lookups::answered`], and rewrites the same input again, which then
//! asks nothing.

use std::collections::HashMap;
use std::sync::Arc;

use zeroize::Zeroizing;

use crate::transform::Tokenize;
use crate::transform::tokenize::MAX_TOKEN_LEN;

/// A value's identity in the vault: a keyed hash of its namespace and its
/// normalized text, never the text.
pub type Fingerprint = [u8; 32];

/// A token, as the vault hands it out.
pub type Token = Arc<str>;

/// A value the vault revealed, zeroed when the last holder drops it.
pub type Secret = Arc<Zeroizing<String>>;

/// What the vault answers without waiting.
pub trait VaultCache: Send + Sync {
    /// The fingerprint of `normalized` in `namespace`.
    fn fingerprint(&self, namespace: &str, normalized: &str) -> Fingerprint;
    /// The token of a fingerprint, if the cache holds it unexpired.
    fn token(&self, fingerprint: &Fingerprint) -> Option<Token>;
    /// The value of a token, if the cache holds it unexpired; or, for a
    /// text made by `encrypt`, its value at once.
    fn value(&self, token: &str) -> Option<Secret>;
}

/// A question a rewrite left for the store.
#[derive(Clone)]
pub enum Question {
    /// The token of a value: the one it has, or a new one.
    Token {
        rule: Arc<Tokenize>,
        fingerprint: Fingerprint,
        value: Arc<Zeroizing<String>>,
    },
    /// The value of a token, if it is one.
    Value { token: Token },
}

impl std::fmt::Debug for Question {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Question::Token { rule, .. } => write!(f, "Token({:?}, ..)", rule.namespace),
            Question::Value { .. } => f.write_str("Value(..)"),
        }
    }
}

/// What the store answered for one request.
#[derive(Default)]
pub struct Answers {
    pub tokens: HashMap<Fingerprint, Token>,
    /// `None`: not a token the vault knows (unknown, erased or expired).
    pub values: HashMap<Token, Option<Secret>>,
}

/// What a token lookup found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Revealed {
    /// Its value is in `out`.
    Value,
    /// Not a token the vault knows: it stays as it is.
    Unknown,
    /// Asked of the store: this pass is not sent.
    Asked,
}

/// One request's lookups: the vault's cache, the store's answers so far,
/// and the questions still open. Without a vault every lookup fails, and
/// the rules that need one treat the value as invalid.
#[derive(Clone, Default)]
pub struct Lookups {
    vault: Option<Arc<dyn VaultCache>>,
    answers: Arc<Answers>,
    asked: Vec<Question>,
    /// Tokens asked for in this pass, so each is asked once.
    asked_tokens: Vec<Token>,
    /// Texts a `reveal` rule found no value for (not a token, or one the
    /// vault no longer knows), in this pass.
    unrevealed: u64,
}

impl Lookups {
    pub fn new(vault: Arc<dyn VaultCache>) -> Lookups {
        Lookups {
            vault: Some(vault),
            ..Lookups::default()
        }
    }

    pub fn has_vault(&self) -> bool {
        self.vault.is_some()
    }

    /// Writes the token of `normalized` under `rule` to `out`, or notes the
    /// question (and leaves `out` empty). `false` without a vault.
    pub fn token(&mut self, rule: &Arc<Tokenize>, normalized: &str, out: &mut String) -> bool {
        out.clear();
        let Some(vault) = &self.vault else {
            return false;
        };
        let fingerprint = vault.fingerprint(&rule.namespace, normalized);
        let known = self
            .answers
            .tokens
            .get(&fingerprint)
            .cloned()
            .or_else(|| vault.token(&fingerprint));
        match known {
            Some(token) => out.push_str(&token),
            None => {
                let asked = self.asked.iter().any(|question| {
                    matches!(question, Question::Token { fingerprint: f, .. } if *f == fingerprint)
                });
                if !asked {
                    self.asked.push(Question::Token {
                        rule: rule.clone(),
                        fingerprint,
                        value: Arc::new(Zeroizing::new(normalized.to_owned())),
                    });
                }
            }
        }
        true
    }

    /// Writes the value behind `token` to `out` when the vault has it.
    /// `None` without a vault.
    pub fn reveal(&mut self, token: &str, out: &mut String) -> Option<Revealed> {
        out.clear();
        let vault = self.vault.as_ref()?;
        if token.is_empty() || token.len() > MAX_TOKEN_LEN {
            return Some(Revealed::Unknown);
        }
        let known = match self.answers.values.get(token) {
            Some(answer) => answer.clone(),
            None => match vault.value(token) {
                Some(value) => Some(value),
                None => {
                    if !self.asked_tokens.iter().any(|t| &**t == token) {
                        let token: Token = token.into();
                        self.asked_tokens.push(token.clone());
                        self.asked.push(Question::Value { token });
                    }
                    return Some(Revealed::Asked);
                }
            },
        };
        Some(match known {
            Some(value) => {
                out.push_str(&value);
                Revealed::Value
            }
            None => Revealed::Unknown,
        })
    }

    /// Lookups for a nested rewrite (an embedded document): the same vault
    /// and answers, no questions yet.
    pub(crate) fn nested(&self) -> Lookups {
        Lookups {
            vault: self.vault.clone(),
            answers: self.answers.clone(),
            asked: Vec::new(),
            asked_tokens: Vec::new(),
            unrevealed: 0,
        }
    }

    /// Takes over a nested rewrite's questions.
    pub(crate) fn absorb(&mut self, nested: Lookups) {
        self.unrevealed += nested.unrevealed;
        for question in nested.asked {
            let duplicate = match &question {
                Question::Token { fingerprint, .. } => self.asked.iter().any(
                    |q| matches!(q, Question::Token { fingerprint: f, .. } if f == fingerprint),
                ),
                Question::Value { token } => self.asked_tokens.contains(token),
            };
            if !duplicate {
                if let Question::Value { token } = &question {
                    self.asked_tokens.push(token.clone());
                }
                self.asked.push(question);
            }
        }
    }

    pub(crate) fn count_unrevealed(&mut self) {
        self.unrevealed += 1;
    }

    /// Texts a `reveal` rule left as they were, having no value for them.
    pub fn unrevealed(&self) -> u64 {
        self.unrevealed
    }

    /// Whether this pass asked anything (and must not be sent).
    pub fn asked(&self) -> bool {
        !self.asked.is_empty()
    }

    /// The open questions, for the store.
    pub fn take_questions(&mut self) -> Vec<Question> {
        self.asked_tokens.clear();
        std::mem::take(&mut self.asked)
    }

    /// Lookups for the next pass, with the store's answers added to those
    /// of earlier passes.
    pub fn answered(&self, more: Answers) -> Lookups {
        let mut answers = Answers {
            tokens: self.answers.tokens.clone(),
            values: self.answers.values.clone(),
        };
        answers.tokens.extend(more.tokens);
        answers.values.extend(more.values);
        Lookups {
            vault: self.vault.clone(),
            answers: Arc::new(answers),
            asked: Vec::new(),
            asked_tokens: Vec::new(),
            unrevealed: 0,
        }
    }
}

impl std::fmt::Debug for Lookups {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lookups")
            .field("vault", &self.vault.is_some())
            .field("asked", &self.asked.len())
            .finish()
    }
}
