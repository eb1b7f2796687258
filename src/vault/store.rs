//! What the vault asks of a store, whichever it is: the operations, their
//! answers and their one error type.

use crate::rewrite::{Fingerprint, Token};

use super::cache::Expiry;

/// A mapping to make unless the fingerprint has one already.
pub struct NewMapping {
    pub fingerprint: Fingerprint,
    /// The token proposed, random.
    pub token: Token,
    /// The value, sealed under the vault's current key.
    pub sealed: Vec<u8>,
    pub expiry: Expiry,
}

/// What became of a [`NewMapping`].
#[derive(Debug, PartialEq, Eq)]
pub enum Issued {
    /// The fingerprint had a token already (made here earlier, or by
    /// another replica a moment ago): that one stands.
    Existing(Token, Expiry),
    /// The proposed token is the value's now, durably.
    New,
    /// The proposed token belongs to another value: propose another.
    TokenTaken,
}

/// A token's mapping as stored.
pub struct Stored {
    pub fingerprint: Fingerprint,
    pub sealed: Vec<u8>,
    pub expiry: Expiry,
}

/// A store that did not answer: unreachable, too slow, or failing. The
/// message names the store and the cause, never a value or a token.
#[derive(Debug)]
pub struct StoreError {
    message: String,
}

impl StoreError {
    pub fn new(message: impl Into<String>) -> StoreError {
        StoreError {
            message: message.into(),
        }
    }

    pub fn timeout() -> StoreError {
        StoreError::new("the vault's store did not answer in time")
    }
}

impl std::fmt::Display for StoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for StoreError {}
