//! What happens to one value: the actions a rule can take and the
//! normalizers they use. Nothing here knows where the value came from (a JSON
//! member, a form field, a header): the rewriters hand over a [`Scalar`] and
//! encode whatever comes back in their own syntax.

mod action;
mod digest;
mod encrypt;
mod guard;
pub mod normalize;
mod pseudonym;
pub mod rotation;
mod screen;
pub mod tokenize;
mod url;
mod user_agent;

pub(crate) use action::Applied;
pub use action::{Action, ActionKind, Encoding, HmacKey, Members, Outcome};
pub(crate) use digest::Digest;
pub use encrypt::EncryptKey;
pub use guard::Guard;
pub use normalize::{Normal, Normalizer, PhoneFormat, PhoneOptions};
pub use pseudonym::{PseudonymKey, Shape};
pub use rotation::{KeySource, RotatingKey};
pub use tokenize::{TokenFormat, TokenFormatKind, Tokenize};
pub use url::{UrlRule, scheme_len};

use std::fmt;

use serde::Deserialize;

/// What happens to a value the rule's action cannot handle (`on_invalid:`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnInvalid {
    /// Remove the value (the default: nothing unhandled leaves).
    #[default]
    Drop,
    /// Replace it with `"[REDACTED]"`.
    Redact,
    /// Fail the whole body.
    Reject,
}

/// One scalar value as the rewriters see it, already unescaped or decoded.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Scalar<'a> {
    Str(&'a str),
    /// The number's text exactly as written (`1.50e3` stays `1.50e3`).
    Number(&'a str),
    Bool(bool),
    Null,
}

/// Why a rule could not handle a value. The reasons name the kind of problem
/// only: they end up in error messages and metrics, which never carry values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Invalid {
    NotAnEmail,
    NotAPhone,
    NotAnIp,
    NotACountry,
    NotAGender,
    NotADate,
    NotAUrl,
    NotAScreenSize,
    /// A rotating key's new period could not be given a key (the system's
    /// random source failed).
    KeyUnavailable,
    /// A `tokenize` or `reveal` rule met where no vault answers (a rewrite
    /// without one).
    NoVault,
    /// An object, or an array where only scalars (or an array of scalars)
    /// make sense.
    NotAScalar,
}

impl Invalid {
    pub fn as_str(self) -> &'static str {
        match self {
            Invalid::NotAnEmail => "not an email address",
            Invalid::NotAPhone => "not a phone number",
            Invalid::NotAnIp => "not an IP address",
            Invalid::NotACountry => "not a country",
            Invalid::NotAGender => "not a gender",
            Invalid::NotADate => "not a date",
            Invalid::NotAUrl => "not a URL",
            Invalid::NotAScreenSize => "not a screen size",
            Invalid::KeyUnavailable => "not pseudonymized (the system's random source failed)",
            Invalid::NoVault => "not tokenized (no vault to ask)",
            Invalid::NotAScalar => "an object or nested array where a scalar is needed",
        }
    }
}

impl fmt::Display for Invalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
