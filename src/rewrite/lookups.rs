//! The token vault as a rewrite sees it. Rewriting is synchronous and never
//! waits; the vault's store is I/O. So a rewrite takes what the vault can
//! answer at once (its cache, and this request's answers so far), and notes
//! every question it could not answer. A pass that asked anything is not
//! sent: the caller gets the answers from the store
//! ([`crate::vault::Vault::answer`]), hands them over with
//! [`Lookups::answered`], and rewrites the same input again, which then
//! asks nothing.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use zeroize::Zeroizing;

use crate::transform::Tokenize;
use crate::transform::tokenize::MAX_TOKEN_LEN;

/// A value's identity in the vault: a keyed hash of its namespace and its
/// normalized text, never the text.
pub type Fingerprint = [u8; 32];

/// A token, as the vault hands it out.
pub type Token = Arc<str>;

/// A value the vault revealed, with the namespace it was tokenized in;
/// zeroed when the last holder drops it.
pub struct Plain {
    pub namespace: Arc<str>,
    pub value: Zeroizing<String>,
}

pub type Secret = Arc<Plain>;

/// What the vault answers without waiting.
pub trait VaultCache: Send + Sync {
    /// The fingerprint of `normalized` in `namespace`.
    fn fingerprint(&self, namespace: &str, normalized: &str) -> Fingerprint;
    /// The token of a fingerprint, if the cache holds it unexpired.
    fn token(&self, fingerprint: &Fingerprint) -> Option<Token>;
    /// The value of a token, if the cache holds it unexpired.
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

/// What the store (or the cache, during an earlier pass) answered for one
/// request.
#[derive(Clone, Default)]
pub struct Answers {
    pub tokens: HashMap<Fingerprint, Token>,
    /// `None`: not a token the vault knows (unknown, erased or expired).
    pub values: HashMap<Token, Option<Secret>>,
}

impl Answers {
    fn extend(&mut self, more: Answers) {
        self.tokens.extend(more.tokens);
        self.values.extend(more.values);
    }
}

/// What a token lookup found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Revealed {
    /// Its value is in `out`.
    Value,
    /// Not a token the vault knows, or one of a namespace the rule does
    /// not reveal: it stays as it is.
    Unknown,
    /// Asked of the store: this pass is not sent.
    Asked,
}

/// One request's lookups: the vault's cache, the answers so far, and the
/// questions still open. Without a vault every lookup fails, and the rules
/// that need one treat the value as invalid.
///
/// What the cache answered during a pass is kept with the store's answers:
/// a pass done again never goes back to the cache, whose entries may have
/// gone in between (evicted, expired), so it asks nothing twice and gives a
/// value the token it gave before.
#[derive(Clone, Default)]
pub struct Lookups {
    vault: Option<Arc<dyn VaultCache>>,
    answers: Arc<Answers>,
    /// What the cache answered in this pass.
    hits: Answers,
    asked: Vec<Question>,
    /// What this pass asked, so that each is asked once.
    asked_fingerprints: HashSet<Fingerprint>,
    asked_tokens: HashSet<Token>,
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
            .or_else(|| self.hits.tokens.get(&fingerprint))
            .cloned();
        let known = known.or_else(|| {
            let hit = vault.token(&fingerprint)?;
            self.hits.tokens.insert(fingerprint, hit.clone());
            Some(hit)
        });
        match known {
            Some(token) => out.push_str(&token),
            None => {
                if self.asked_fingerprints.insert(fingerprint) {
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

    /// Writes the value behind `token` to `out` when the vault has it and
    /// it was tokenized in one of `namespaces`. `None` without a vault.
    pub fn reveal(
        &mut self,
        token: &str,
        namespaces: &[String],
        out: &mut String,
    ) -> Option<Revealed> {
        out.clear();
        let vault = self.vault.as_ref()?;
        if token.is_empty() || token.len() > MAX_TOKEN_LEN {
            return Some(Revealed::Unknown);
        }
        let known = self
            .answers
            .values
            .get(token)
            .or_else(|| self.hits.values.get(token))
            .cloned();
        let known = match known {
            Some(known) => known,
            None => match vault.value(token) {
                Some(value) => {
                    self.hits.values.insert(token.into(), Some(value.clone()));
                    Some(value)
                }
                None => {
                    let token: Token = token.into();
                    if self.asked_tokens.insert(token.clone()) {
                        self.asked.push(Question::Value { token });
                    }
                    return Some(Revealed::Asked);
                }
            },
        };
        Some(match known {
            Some(plain) if namespaces.iter().any(|n| **n == *plain.namespace) => {
                out.push_str(&plain.value);
                Revealed::Value
            }
            _ => Revealed::Unknown,
        })
    }

    /// Lookups for a nested rewrite (an embedded document): the same vault
    /// and answers, no questions yet.
    pub(crate) fn nested(&self) -> Lookups {
        Lookups {
            vault: self.vault.clone(),
            answers: self.answers.clone(),
            ..Lookups::default()
        }
    }

    /// Takes over a nested rewrite's questions, hits and counts.
    pub(crate) fn absorb(&mut self, nested: Lookups) {
        self.unrevealed += nested.unrevealed;
        self.hits.extend(nested.hits);
        for question in nested.asked {
            let new = match &question {
                Question::Token { fingerprint, .. } => self.asked_fingerprints.insert(*fingerprint),
                Question::Value { token } => self.asked_tokens.insert(token.clone()),
            };
            if new {
                self.asked.push(question);
            }
        }
    }

    pub(crate) fn count_unrevealed(&mut self) {
        self.unrevealed += 1;
    }

    /// Texts a `reveal` rule left as they were, having no value for them,
    /// in this pass; taken, so that the next output counts its own.
    pub fn take_unrevealed(&mut self) -> u64 {
        std::mem::take(&mut self.unrevealed)
    }

    /// Whether this pass asked anything (and must not be sent).
    pub fn asked(&self) -> bool {
        !self.asked.is_empty()
    }

    /// The open questions, for the store.
    pub fn take_questions(&mut self) -> Vec<Question> {
        self.asked_fingerprints.clear();
        self.asked_tokens.clear();
        std::mem::take(&mut self.asked)
    }

    /// Lookups for the next pass: this pass's hits and the store's answers
    /// added to those of earlier passes.
    pub fn answered(mut self, more: Answers) -> Lookups {
        let answers = Arc::make_mut(&mut self.answers);
        answers.extend(std::mem::take(&mut self.hits));
        answers.extend(more);
        Lookups {
            vault: self.vault,
            answers: self.answers,
            ..Lookups::default()
        }
    }

    /// Forgets the answers of output already taken (a streamed body keeps
    /// only what one step asked).
    pub fn forget_answers(&mut self) {
        self.answers = Arc::default();
        self.hits = Answers::default();
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
