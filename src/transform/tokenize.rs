//! Vault tokens: what a `tokenize` rule asks the vault for, and how a fresh
//! token is written. The token itself is random: it says nothing of the
//! value, so once the vault forgets the value (an erasure, a `ttl`) the
//! token is dead for everyone, whoever holds the keys.

use std::time::Duration;

use base64::Engine as _;
use serde::Deserialize;

use super::Normalizer;

/// A `tokenize` rule, compiled.
#[derive(Debug, PartialEq, Eq)]
pub struct Tokenize {
    /// Values are convergent within a namespace: the same normalized value
    /// gets the same token there (default: the route's name).
    pub namespace: String,
    pub format: TokenFormat,
    /// The mapping is removed this long after it was made.
    pub ttl: Option<Duration>,
    pub normalizer: Normalizer,
}

/// How a token is written (`format:`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TokenFormat {
    /// `{prefix}` and 22 base64url characters (128 random bits).
    Opaque { prefix: String },
    /// A random (version 4) UUID.
    Uuid,
    /// `length` decimal digits, never Luhn-valid, never starting with `0`.
    Digits { length: usize },
}

/// The names `format:` takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenFormatKind {
    #[default]
    Opaque,
    Uuid,
    Digits,
}

impl TokenFormatKind {
    pub fn as_str(self) -> &'static str {
        match self {
            TokenFormatKind::Opaque => "opaque",
            TokenFormatKind::Uuid => "uuid",
            TokenFormatKind::Digits => "digits",
        }
    }
}

/// The default prefix of an opaque token.
pub const DEFAULT_TOKEN_PREFIX: &str = "tok_";

/// The digits a `digits` token may have. At 16 and more it cannot be a
/// phone number of any region: E.164 numbers have at most 15 digits, a
/// national trunk prefix included.
pub const DIGITS_LENGTHS: std::ops::RangeInclusive<usize> = 16..=32;

/// The longest text that can be a token of any format: longer strings are
/// never looked up.
pub const MAX_TOKEN_LEN: usize = 128;

/// Characters a token prefix may have: they pass unescaped through JSON,
/// URLs, forms and headers.
pub fn is_prefix_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | ':' | '~')
}

impl TokenFormat {
    /// A fresh random token. Fails only if the system's random source does.
    pub fn generate(&self) -> Result<String, getrandom::Error> {
        match self {
            TokenFormat::Opaque { prefix } => {
                let mut random = [0u8; 16];
                getrandom::fill(&mut random)?;
                let mut token = String::with_capacity(prefix.len() + 22);
                token.push_str(prefix);
                base64::engine::general_purpose::URL_SAFE_NO_PAD.encode_string(random, &mut token);
                Ok(token)
            }
            TokenFormat::Uuid => {
                let mut random = [0u8; 16];
                getrandom::fill(&mut random)?;
                Ok(uuid::Builder::from_random_bytes(random)
                    .into_uuid()
                    .hyphenated()
                    .to_string())
            }
            TokenFormat::Digits { length } => digits_token(*length),
        }
    }
}

impl std::fmt::Display for TokenFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TokenFormat::Opaque { prefix } => write!(f, "opaque prefix={prefix:?}"),
            TokenFormat::Uuid => f.write_str("uuid"),
            TokenFormat::Digits { length } => write!(f, "digits length={length}"),
        }
    }
}

/// Draws of a `digits` token before one that no region reads as a phone
/// number is given up on (each draw is such a number far less than once in
/// a thousand).
const DIGITS_DRAWS: usize = 64;

/// `length` random digits, the first not `0` (a field read as a number
/// keeps every digit), the last chosen so that the Luhn check fails: no
/// detector or card form takes the token for a card number. A draw that
/// some region's numbering plan reads as a valid phone number (written
/// nationally, or internationally after a `+`) is drawn again.
fn digits_token(length: usize) -> Result<String, getrandom::Error> {
    for _ in 0..DIGITS_DRAWS {
        let token = digits_draw(length)?;
        if !is_valid_phone_anywhere(&token) {
            return Ok(token);
        }
    }
    Err(getrandom::Error::UNEXPECTED)
}

/// The regions where a number may have 12 digits or more: the only ones
/// where a token of 16 digits or more, less a national prefix, could be a
/// number.
fn long_number_regions() -> &'static [phonenumber::country::Id] {
    static REGIONS: std::sync::OnceLock<Vec<phonenumber::country::Id>> = std::sync::OnceLock::new();
    REGIONS.get_or_init(|| {
        phonenumber::metadata::DATABASE
            .iter()
            .filter(|region| {
                let general = region.descriptors().general();
                general.possible_length().iter().any(|length| *length >= 12)
                    || general.possible_length().is_empty()
            })
            .filter_map(|region| region.id().parse().ok())
            .collect()
    })
}

/// Whether some region reads `digits` as a valid phone number.
pub fn is_valid_phone_anywhere(digits: &str) -> bool {
    let valid = |parsed: Result<phonenumber::PhoneNumber, _>| {
        parsed.is_ok_and(|number| phonenumber::is_valid(&number))
    };
    valid(phonenumber::parse(None, format!("+{digits}")))
        || long_number_regions()
            .iter()
            .any(|region| valid(phonenumber::parse(Some(*region), digits)))
}

fn digits_draw(length: usize) -> Result<String, getrandom::Error> {
    let mut random = vec![0u8; length];
    getrandom::fill(&mut random)?;
    // 250 is the largest multiple of 10 below 256: bytes past it would
    // skew the digits, and are drawn again.
    for byte in &mut random {
        while *byte >= 250 {
            let mut again = [0u8; 1];
            getrandom::fill(&mut again)?;
            *byte = again[0];
        }
    }
    let mut digits: Vec<u8> = random.iter().map(|b| b % 10).collect();
    if digits[0] == 0 {
        digits[0] = 1 + random[0] % 9;
    }
    let last = length - 1;
    let valid = luhn_check_digit(&digits[..last]);
    // Any digit but the valid one, evenly.
    digits[last] = (valid + 1 + random[last] % 9) % 10;
    Ok(digits.iter().map(|d| char::from(b'0' + d)).collect())
}

/// The digit that would make `payload` followed by it pass the Luhn check.
fn luhn_check_digit(payload: &[u8]) -> u8 {
    let sum: u32 = payload
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &d)| {
            let d = u32::from(d);
            if i % 2 == 0 {
                let doubled = d * 2;
                if doubled > 9 { doubled - 9 } else { doubled }
            } else {
                d
            }
        })
        .sum();
    ((10 - sum % 10) % 10) as u8
}

#[cfg(test)]
mod tests {
    use super::*;

    fn luhn_valid(text: &str) -> bool {
        let digits: Vec<u8> = text.bytes().map(|b| b - b'0').collect();
        let (last, payload) = digits.split_last().unwrap();
        luhn_check_digit(payload) == *last
    }

    #[test]
    fn luhn_check_digits_match_known_cards() {
        assert!(luhn_valid("4111111111111111"));
        assert!(luhn_valid("79927398713"));
        assert!(!luhn_valid("79927398710"));
    }

    #[test]
    fn digits_tokens_are_never_cards_nor_phones() {
        let regions: Vec<phonenumber::country::Id> = phonenumber::metadata::DATABASE
            .iter()
            .filter_map(|region| region.id().parse().ok())
            .collect();
        assert!(regions.len() > 200);
        for length in [16, 17, 19, 32] {
            for _ in 0..4 {
                let token = TokenFormat::Digits { length }.generate().unwrap();
                assert_eq!(token.len(), length);
                assert!(token.bytes().all(|b| b.is_ascii_digit()), "{token}");
                assert_ne!(token.as_bytes()[0], b'0');
                assert!(!luhn_valid(&token), "{token} passes Luhn");
                let international = format!("+{token}");
                assert!(
                    phonenumber::parse(None, &international)
                        .map(|n| !phonenumber::is_valid(&n))
                        .unwrap_or(true),
                    "{token}"
                );
                for region in &regions {
                    assert!(
                        phonenumber::parse(Some(*region), &token)
                            .map(|n| !phonenumber::is_valid(&n))
                            .unwrap_or(true),
                        "{token} in {region:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn opaque_and_uuid_tokens_are_random_and_shaped() {
        let opaque = TokenFormat::Opaque {
            prefix: "tok_".to_owned(),
        };
        let a = opaque.generate().unwrap();
        let b = opaque.generate().unwrap();
        assert_ne!(a, b);
        assert!(a.starts_with("tok_") && a.len() == 26, "{a}");
        let uuid = TokenFormat::Uuid.generate().unwrap();
        assert_eq!(uuid.len(), 36);
        assert_eq!(&uuid[14..15], "4", "{uuid}");
        assert!(uuid::Uuid::parse_str(&uuid).is_ok());
    }
}
