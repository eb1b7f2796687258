//! The token vault: values behind `tokenize` tokens, kept sealed in a store
//! (embedded or Redis), with a read-through cache in memory.
//!
//! In the store, a value's fingerprint (an HMAC, never the value) maps to
//! its token, and the token maps to the value sealed under `keys.vault`
//! (AES-256-GCM, bound to the fingerprint). Tokens are random: once a
//! mapping is erased or expires, nothing, no key included, links the token
//! to its value again, and the value's next token is a new one.
//!
//! The rewriters read the cache synchronously ([`VaultCache`]); what it
//! cannot answer, the proxy asks here ([`Vault::answer`]) before it sends
//! anything, so a token is in the store, durably, before any request
//! carries it.

mod cache;
mod embedded;
mod keyring;
mod redis;
mod store;

use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use zeroize::Zeroizing;

use crate::metrics::{StoreOperation, VaultMetrics};
use crate::policy::{Policy, VaultSettings, VaultStore};
use crate::rewrite::{Answers, Fingerprint, Plain, Question, Secret, Token, VaultCache};
use crate::transform::{Action, EncryptKey, Tokenize};
use cache::Cache;
pub use cache::Expiry;
use embedded::Embedded;
use keyring::Keyring;
use redis::RedisStore;
pub use store::StoreError;
use store::{Issued, NewMapping};

/// How many times a value is given a fresh proposal when the one before
/// was another value's token (only a short `digits` format makes that
/// more than a never).
const PROPOSALS: usize = 4;

/// The longest a replica caches a mapping of a shared (Redis) store.
const SHARED_CACHE_MAX_AGE: Duration = Duration::from_secs(60);

/// What a sealed value is bound to: its fingerprint and its token, so that
/// a record moved to another token in the store does not open.
fn sealed_context(fingerprint: &Fingerprint, token: &str) -> Vec<u8> {
    [fingerprint.as_slice(), token.as_bytes()].concat()
}

/// A sealed value's plaintext: its namespace, a zero byte, the value.
fn plaintext(namespace: &str, value: &str) -> Zeroizing<Vec<u8>> {
    Zeroizing::new([namespace.as_bytes(), b"\0", value.as_bytes()].concat())
}

fn random_failed(e: impl std::fmt::Display) -> StoreError {
    StoreError::new(format!("the system's random source failed: {e}"))
}

/// A fresh token. `digits` tokens are drawn against every region's
/// numbering plan, which takes a while: off the worker thread.
async fn fresh_token(rule: &Arc<Tokenize>) -> Result<Token, StoreError> {
    if matches!(rule.format, crate::transform::TokenFormat::Digits { .. }) {
        let rule = rule.clone();
        return tokio::task::spawn_blocking(move || rule.format.generate())
            .await
            .map_err(random_failed)?
            .map(Token::from)
            .map_err(random_failed);
    }
    rule.format
        .generate()
        .map(Token::from)
        .map_err(random_failed)
}

/// The vault, shared by every worker.
pub struct Vault {
    keyring: Keyring,
    cache: Arc<Cache>,
    store: Store,
    timeout: Duration,
    /// The current policy's `tokenize` rules and `encrypt` keys: what an
    /// erasure by value fingerprints, and what the admin reveal decrypts.
    rules: ArcSwap<PolicyRules>,
    metrics: Arc<VaultMetrics>,
    store_name: &'static str,
}

#[derive(Default)]
struct PolicyRules {
    tokenize: Vec<Arc<Tokenize>>,
    encrypt_keys: Vec<Arc<EncryptKey>>,
}

enum Store {
    Embedded(Embedded),
    Redis(RedisStore),
}

/// What an admin erasure is given.
pub enum Erase {
    /// Values as the app knows them: each is normalized and fingerprinted
    /// as every `tokenize` rule of the configuration would.
    Values(Vec<Zeroizing<String>>),
    Tokens(Vec<String>),
}

/// What `GET /vault/stats` reports.
#[derive(Debug, serde::Serialize)]
pub struct Stats {
    pub store: &'static str,
    pub tokens: u64,
    pub cached_tokens: usize,
    pub cached_values: usize,
    pub key_id: String,
}

impl Vault {
    /// Opens the store and takes its fingerprint key (made and stored on
    /// first use). Fails when the store cannot be opened, or holds a key
    /// that neither `keys.vault` nor a previous key opens.
    pub async fn open(
        settings: &VaultSettings,
        metrics: Arc<VaultMetrics>,
    ) -> Result<Vault, StoreError> {
        let previous: Vec<_> = settings.previous_keys.iter().map(|k| &**k).collect();
        let mut keyring = Keyring::new(&settings.key, &previous);
        // Replicas erase from a shared store; one that missed an erasure
        // (its subscription broke unnoticed) forgets within a minute.
        let max_age = match &settings.store {
            VaultStore::Embedded { .. } => None,
            VaultStore::Redis { .. } => Some(SHARED_CACHE_MAX_AGE),
        };
        let cache = Arc::new(Cache::new(settings.cache_entries, max_age));
        let (store, store_name) = match &settings.store {
            VaultStore::Embedded { path } => (Store::Embedded(Embedded::open(path)?), "embedded"),
            VaultStore::Redis { url } => (
                Store::Redis(RedisStore::open(url, cache.clone(), settings.timeout).await?),
                "redis",
            ),
        };
        let candidate = keyring
            .new_fingerprint_key()
            .map_err(|e| StoreError::new(format!("the system's random source failed: {e}")))?;
        let sealed = store.fingerprint_key(candidate, false).await?;
        let unreadable = || {
            StoreError::new(
                "the vault was made under another `keys.vault`: list that key under `vault.previous_keys`",
            )
        };
        if let Some(resealed) = keyring
            .adopt_fingerprint_key(&sealed)
            .map_err(|_| unreadable())?
        {
            store.fingerprint_key(resealed, true).await?;
        }
        if let Store::Redis(redis) = &store {
            redis.claim_fingerprint_id(keyring.fingerprint_id()).await?;
        }
        Ok(Vault {
            keyring,
            cache,
            store,
            timeout: settings.timeout,
            rules: ArcSwap::default(),
            metrics,
            store_name,
        })
    }

    pub fn metrics(&self) -> &VaultMetrics {
        &self.metrics
    }

    /// Takes the `tokenize` rules and `encrypt` keys of `policy` (at start
    /// and on each reload).
    pub fn use_policy(&self, policy: &Policy) {
        let mut rules = PolicyRules::default();
        let all = policy
            .routes
            .iter()
            .flat_map(|route| route.rules.rules.iter().chain(&route.response_rules.rules));
        for rule in all {
            match rule.action.unguarded() {
                Action::Tokenize(tokenize)
                    if !rules.tokenize.iter().any(|t| {
                        t.namespace == tokenize.namespace && t.normalizer == tokenize.normalizer
                    }) =>
                {
                    rules.tokenize.push(tokenize.clone());
                }
                Action::Encrypt { key, .. }
                    if !rules.encrypt_keys.iter().any(|k| k.id() == key.id()) =>
                {
                    rules.encrypt_keys.push(key.clone());
                }
                _ => {}
            }
        }
        self.rules.store(Arc::new(rules));
    }

    /// Runs one store operation within the vault's timeout, timed and
    /// counted.
    async fn timed<T>(
        &self,
        operation: StoreOperation,
        call: impl std::future::Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        let started = Instant::now();
        let result = match tokio::time::timeout(self.timeout, call).await {
            Ok(result) => result,
            Err(_) => Err(StoreError::timeout()),
        };
        self.metrics
            .store(operation, started.elapsed().as_secs_f64(), result.is_ok());
        result
    }

    /// Answers a rewrite's questions from the store: the token of each
    /// value (an existing one, or a new one stored durably first), the
    /// value of each token (or none).
    pub async fn answer(&self, questions: Vec<Question>) -> Result<Answers, StoreError> {
        let mut answers = Answers::default();
        let mut values = Vec::new();
        let mut tokens = Vec::new();
        for question in questions {
            match question {
                Question::Token {
                    rule,
                    fingerprint,
                    value,
                } => values.push((rule, fingerprint, value)),
                Question::Value { token } => tokens.push(token),
            }
        }
        self.metrics
            .cache_misses
            .inc_by((values.len() + tokens.len()) as u64);
        if !values.is_empty() {
            self.issue(values, &mut answers).await?;
        }
        if !tokens.is_empty() {
            for (token, value) in tokens.iter().zip(self.lookup(&tokens).await?) {
                answers.values.insert(token.clone(), value);
            }
        }
        Ok(answers)
    }

    async fn issue(
        &self,
        mut pending: Vec<(Arc<Tokenize>, Fingerprint, Arc<Zeroizing<String>>)>,
        answers: &mut Answers,
    ) -> Result<(), StoreError> {
        let generation = self.cache.generation();
        for _ in 0..PROPOSALS {
            let mut proposals = Vec::with_capacity(pending.len());
            for (rule, fingerprint, value) in &pending {
                let token = fresh_token(rule).await?;
                let sealed = self
                    .keyring
                    .seal(
                        &sealed_context(fingerprint, &token),
                        &plaintext(&rule.namespace, value),
                    )
                    .map_err(random_failed)?;
                proposals.push(NewMapping {
                    fingerprint: *fingerprint,
                    token,
                    sealed,
                    expiry: Expiry::after(rule.ttl),
                });
            }
            // What the answers are matched with; the proposals go to the
            // store whole.
            let proposed: Vec<(Fingerprint, Token, Expiry)> = proposals
                .iter()
                .map(|p| (p.fingerprint, p.token.clone(), p.expiry))
                .collect();
            let issued = self
                .timed(StoreOperation::Issue, self.store.issue(proposals))
                .await?;
            let mut again = Vec::new();
            for (((fingerprint, proposed_token, proposed_expiry), issued), question) in
                proposed.into_iter().zip(issued).zip(pending)
            {
                let (token, expiry, value) = match issued {
                    Issued::New => {
                        self.metrics.tokens_issued.inc();
                        let value: Secret = Arc::new(Plain {
                            namespace: question.0.namespace.as_str().into(),
                            value: Zeroizing::new(question.2.to_string()),
                        });
                        (proposed_token, proposed_expiry, Some(value))
                    }
                    Issued::Existing(token, expiry) => (token, expiry, None),
                    Issued::TokenTaken => {
                        again.push(question);
                        continue;
                    }
                };
                self.cache
                    .insert(generation, fingerprint, token.clone(), value, expiry);
                answers.tokens.insert(fingerprint, token);
            }
            if again.is_empty() {
                return Ok(());
            }
            pending = again;
        }
        Err(StoreError::new(
            "no free token after several proposals: the `digits` format is too short for this vault",
        ))
    }

    /// The value behind each token, from the cache or the store; `None`
    /// for a text that is no token the vault knows (unknown, erased,
    /// expired).
    async fn lookup(&self, tokens: &[Token]) -> Result<Vec<Option<Secret>>, StoreError> {
        let generation = self.cache.generation();
        let stored = self
            .timed(StoreOperation::Lookup, self.store.lookup(tokens))
            .await?;
        Ok(tokens
            .iter()
            .zip(stored)
            .map(|(token, stored)| {
                let stored = stored?;
                let context = sealed_context(&stored.fingerprint, token);
                let Ok((plain, _)) = self.keyring.open(&context, &stored.sealed) else {
                    tracing::warn!("vault: a stored value does not open under the configured keys");
                    return None;
                };
                let zero = plain.iter().position(|b| *b == 0)?;
                let namespace = std::str::from_utf8(&plain[..zero]).ok()?;
                let value = std::str::from_utf8(&plain[zero + 1..]).ok()?;
                let value: Secret = Arc::new(Plain {
                    namespace: namespace.into(),
                    value: Zeroizing::new(value.to_owned()),
                });
                self.cache.insert(
                    generation,
                    stored.fingerprint,
                    token.clone(),
                    Some(value.clone()),
                    stored.expiry,
                );
                Some(value)
            })
            .collect())
    }

    /// The admin reveal: each text's value, if it is a token of this
    /// vault or a text an `encrypt` rule made.
    pub async fn reveal(&self, texts: &[String]) -> Result<Vec<Option<Secret>>, StoreError> {
        let rules = self.rules.load();
        let mut found: Vec<Option<Secret>> = Vec::with_capacity(texts.len());
        let mut ask = Vec::new();
        for (index, text) in texts.iter().enumerate() {
            let known = rules
                .encrypt_keys
                .iter()
                .find_map(|key| key.decrypt(text))
                .map(|value| {
                    Arc::new(Plain {
                        namespace: "".into(),
                        value,
                    })
                })
                .or_else(|| self.cache.value(text));
            if known.is_none() {
                ask.push(index);
            }
            found.push(known);
        }
        if !ask.is_empty() {
            let tokens: Vec<Token> = ask
                .iter()
                .map(|i| Token::from(texts[*i].as_str()))
                .collect();
            for (index, value) in ask.into_iter().zip(self.lookup(&tokens).await?) {
                found[index] = value;
            }
        }
        for value in &found {
            match value {
                Some(_) => self.metrics.revealed.inc(),
                None => self.metrics.unrevealed.inc(),
            }
        }
        Ok(found)
    }

    /// Deletes mappings for good, here and in the cache. Returns how many
    /// mappings went.
    pub async fn erase(&self, what: Erase) -> Result<u64, StoreError> {
        let erased = match what {
            Erase::Tokens(texts) => {
                let tokens: Vec<Token> = texts.iter().map(|t| Token::from(t.as_str())).collect();
                for token in &tokens {
                    self.cache.erase_token(token);
                }
                let fingerprints = self
                    .timed(StoreOperation::Erase, self.store.erase_tokens(tokens))
                    .await?;
                let mut erased = 0;
                for fingerprint in fingerprints.iter().flatten() {
                    self.cache.erase_fingerprint(fingerprint);
                    erased += 1;
                }
                erased
            }
            Erase::Values(values) => {
                let rules = self.rules.load();
                let mut fingerprints = Vec::new();
                for value in &values {
                    for rule in &rules.tokenize {
                        // A value a rule's normalizer refuses was never
                        // tokenized by it.
                        if let Ok(normalized) = rule.normalizer.apply(value) {
                            fingerprints
                                .push(self.keyring.fingerprint(&rule.namespace, &normalized));
                        }
                    }
                }
                fingerprints.sort_unstable();
                fingerprints.dedup();
                for fingerprint in &fingerprints {
                    self.cache.erase_fingerprint(fingerprint);
                }
                let tokens = self
                    .timed(
                        StoreOperation::Erase,
                        self.store.erase_fingerprints(fingerprints),
                    )
                    .await?;
                let mut erased = 0;
                for token in tokens.iter().flatten() {
                    self.cache.erase_token(token);
                    erased += 1;
                }
                erased
            }
        };
        self.metrics.erased.inc_by(erased);
        Ok(erased)
    }

    pub async fn stats(&self) -> Result<Stats, StoreError> {
        let tokens = self
            .timed(StoreOperation::Stats, self.store.count())
            .await?;
        let (cached_tokens, cached_values) = self.cache.len();
        Ok(Stats {
            store: self.store_name,
            tokens,
            cached_tokens,
            cached_values,
            key_id: self.keyring.current_key_id(),
        })
    }
}

impl VaultCache for Vault {
    fn fingerprint(&self, namespace: &str, normalized: &str) -> Fingerprint {
        self.keyring.fingerprint(namespace, normalized)
    }

    fn token(&self, fingerprint: &Fingerprint) -> Option<Token> {
        let token = self.cache.token(fingerprint);
        if token.is_some() {
            self.metrics.cache_hits.inc();
        }
        token
    }

    fn value(&self, token: &str) -> Option<Secret> {
        let value = self.cache.value(token);
        if value.is_some() {
            self.metrics.cache_hits.inc();
        }
        value
    }
}

impl Store {
    async fn fingerprint_key(
        &self,
        candidate: Vec<u8>,
        replace: bool,
    ) -> Result<Vec<u8>, StoreError> {
        match self {
            Store::Embedded(store) => store.fingerprint_key(candidate, replace).await,
            Store::Redis(store) => store.fingerprint_key(candidate, replace).await,
        }
    }

    async fn issue(&self, proposals: Vec<NewMapping>) -> Result<Vec<Issued>, StoreError> {
        match self {
            Store::Embedded(store) => store.issue(proposals).await,
            Store::Redis(store) => store.issue(proposals).await,
        }
    }

    async fn lookup(&self, tokens: &[Token]) -> Result<Vec<Option<store::Stored>>, StoreError> {
        match self {
            Store::Embedded(store) => store.lookup(tokens.to_vec()).await,
            Store::Redis(store) => store.lookup(tokens.to_vec()).await,
        }
    }

    async fn erase_tokens(
        &self,
        tokens: Vec<Token>,
    ) -> Result<Vec<Option<Fingerprint>>, StoreError> {
        match self {
            Store::Embedded(store) => store.erase_tokens(tokens).await,
            Store::Redis(store) => store.erase_tokens(tokens).await,
        }
    }

    async fn erase_fingerprints(
        &self,
        fingerprints: Vec<Fingerprint>,
    ) -> Result<Vec<Option<Token>>, StoreError> {
        match self {
            Store::Embedded(store) => store.erase_fingerprints(fingerprints).await,
            Store::Redis(store) => store.erase_fingerprints(fingerprints).await,
        }
    }

    async fn count(&self) -> Result<u64, StoreError> {
        match self {
            Store::Embedded(store) => store.count().await,
            Store::Redis(store) => store.count().await,
        }
    }
}
