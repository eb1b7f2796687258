//! The actions a rule applies to the value it selects.

use std::net::IpAddr;
use std::sync::Arc;

use serde::Deserialize;

use super::digest::Digest;
use super::encrypt::EncryptKey;
use super::rotation::{KeySource, RotatingKey};
use super::tokenize::Tokenize;
use super::url::{Stripped, UrlRule};
use super::{Guard, Invalid, Normal, Normalizer, PseudonymKey, Scalar, Shape, screen, user_agent};

/// A compiled action, options resolved and keys loaded.
#[derive(Clone, Debug)]
pub enum Action {
    /// Removes the member or array element.
    Drop,
    /// Leaves the value as it is (and, under `unlisted: drop`, keeps it).
    Keep,
    /// Keeps the value clear, written the way its normalizer writes it
    /// (`keep` with `normalize:`): a phone number as E.164, for a platform
    /// that refuses any other shape.
    KeepNormalized { normalizer: Normalizer },
    /// Replaces the value with a fixed string.
    Redact { with: String },
    /// SHA-256 of the normalized value.
    Hash {
        normalizer: Normalizer,
        encoding: Encoding,
    },
    /// A keyed pseudonym: HMAC-SHA256 of the normalized value.
    Hmac {
        key: HmacKey,
        prefix: String,
        length: usize,
        normalizer: Normalizer,
        shape: Shape,
    },
    /// A random token the vault keeps the value under. The rewriters ask
    /// the vault for it ([`crate::rewrite`]'s lookups): this action alone
    /// cannot make one.
    Tokenize(Arc<Tokenize>),
    /// Deterministic AES-SIV of the normalized value,
    /// `{prefix}{key id}.{base64url}`.
    Encrypt {
        key: Arc<EncryptKey>,
        prefix: String,
        normalizer: Normalizer,
    },
    /// A token (from the vault, tokenized in one of `namespaces`, or made
    /// by `encrypt` under one of `keys`) replaced by its value, in a
    /// response on its way back to the app.
    Reveal {
        keys: Vec<Arc<EncryptKey>>,
        namespaces: Vec<String>,
    },
    /// Replaces all but the first and last few characters.
    Mask {
        keep_first: usize,
        keep_last: usize,
        with: char,
    },
    /// Zeroes the host part of an IP address.
    TruncateIp { v4_prefix: u8, v6_prefix: u8 },
    /// Keeps the first few characters only.
    Generalize { keep_first: usize },
    /// A URL without its query (but the parameters kept), fragment and
    /// credentials; gone when it points outside the site.
    StripUrl(UrlRule),
    /// A user agent cut to browser family, major version and OS family.
    GeneralizeUserAgent,
    /// A `WIDTHxHEIGHT` screen size put into a common size's bucket.
    BucketScreen,
    /// `then`, on the strings that meet `when`; every other value stays as
    /// it is. On an array, each element on its own; an object is looked
    /// into by the route's other selectors only.
    Only { when: Guard, then: Box<Action> },
    /// Adds members at the end of the selected objects, replacing members
    /// of the same names. Not a configurable action: consent decisions
    /// (`limited_data_use`) make it.
    AddMembers(Members),
    /// Leaves the value as it is and notes whether it is `equals`
    /// (trimmed, ASCII case-insensitively): the rule of a consent probe
    /// ([`crate::rewrite::probe`]), which looks for an opt-out signal in a
    /// body. Not a configurable action.
    Read { equals: String },
}

/// The key of an `hmac` rule: fixed, or one that rotates on a schedule.
#[derive(Clone, Debug)]
pub enum HmacKey {
    Fixed(Arc<PseudonymKey>),
    Rotating(Arc<RotatingKey>),
}

/// Members to add to an object: each name with its value as JSON text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Members {
    names: Vec<String>,
    /// `"name":value,...`, ready to write.
    text: String,
}

impl Members {
    /// `members` as (name, JSON value text) pairs; the texts must be valid
    /// JSON (they are written as they are).
    pub fn new(members: &[(&str, &str)]) -> Members {
        let mut text = String::new();
        for (i, (name, value)) in members.iter().enumerate() {
            if i > 0 {
                text.push(',');
            }
            text.push_str(&serde_json::Value::from(*name).to_string());
            text.push(':');
            text.push_str(value);
        }
        Members {
            names: members.iter().map(|(name, _)| (*name).to_owned()).collect(),
            text,
        }
    }

    pub fn names(&self) -> &[String] {
        &self.names
    }

    pub fn has(&self, name: &[u8]) -> bool {
        self.names.iter().any(|n| n.as_bytes() == name)
    }

    pub fn text(&self) -> &str {
        &self.text
    }
}

/// The actions, as `action:` names them and metric labels and reports show
/// them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActionKind {
    Drop,
    Keep,
    Redact,
    Hash,
    Hmac,
    Mask,
    TruncateIp,
    Generalize,
    StripUrl,
    GeneralizeUserAgent,
    BucketScreen,
    Tokenize,
    Encrypt,
    Reveal,
    /// Members added to an object (by a consent decision, never named in a
    /// file).
    #[serde(skip)]
    AddMembers,
    /// A value read for a consent signal (never named in a file).
    #[serde(skip)]
    Read,
}

impl ActionKind {
    /// How many kinds there are (to index tables by kind).
    pub const COUNT: usize = 16;

    pub fn as_str(self) -> &'static str {
        match self {
            ActionKind::Drop => "drop",
            ActionKind::Keep => "keep",
            ActionKind::Redact => "redact",
            ActionKind::Hash => "hash",
            ActionKind::Hmac => "hmac",
            ActionKind::Mask => "mask",
            ActionKind::TruncateIp => "truncate_ip",
            ActionKind::Generalize => "generalize",
            ActionKind::StripUrl => "strip_url",
            ActionKind::GeneralizeUserAgent => "generalize_user_agent",
            ActionKind::BucketScreen => "bucket_screen",
            ActionKind::Tokenize => "tokenize",
            ActionKind::Encrypt => "encrypt",
            ActionKind::Reveal => "reveal",
            ActionKind::AddMembers => "add_members",
            ActionKind::Read => "read",
        }
    }
}

/// How a digest is written (`encoding:`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Encoding {
    #[default]
    Hex,
    Base64,
    Base64Url,
}

impl Encoding {
    pub fn as_str(self) -> &'static str {
        match self {
            Encoding::Hex => "hex",
            Encoding::Base64 => "base64",
            Encoding::Base64Url => "base64url",
        }
    }

    /// Replaces `text`, a normal form to hash ([`Applied::Hashed`]), with
    /// its SHA-256 in this encoding.
    pub(crate) fn hash_in_place(self, text: &mut String) {
        let digest = Digest::of(text, self);
        text.clear();
        digest.push_text(text);
    }
}

/// What an action made of a scalar.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The value becomes this string.
    Replace(String),
    /// The value is already safe as it is: null, empty, or already a digest.
    Unchanged,
    /// The value goes, with its member name (a guarded `drop`).
    Remove,
}

impl Action {
    pub fn kind(&self) -> ActionKind {
        match self {
            Action::Drop => ActionKind::Drop,
            Action::Keep | Action::KeepNormalized { .. } => ActionKind::Keep,
            Action::Redact { .. } => ActionKind::Redact,
            Action::Hash { .. } => ActionKind::Hash,
            Action::Hmac { .. } => ActionKind::Hmac,
            Action::Mask { .. } => ActionKind::Mask,
            Action::TruncateIp { .. } => ActionKind::TruncateIp,
            Action::Generalize { .. } => ActionKind::Generalize,
            Action::StripUrl(_) => ActionKind::StripUrl,
            Action::GeneralizeUserAgent => ActionKind::GeneralizeUserAgent,
            Action::BucketScreen => ActionKind::BucketScreen,
            Action::Tokenize(_) => ActionKind::Tokenize,
            Action::Encrypt { .. } => ActionKind::Encrypt,
            Action::Reveal { .. } => ActionKind::Reveal,
            Action::Only { then, .. } => then.kind(),
            Action::AddMembers(_) => ActionKind::AddMembers,
            Action::Read { .. } => ActionKind::Read,
        }
    }

    /// True for the actions that transform each scalar on its own, and so
    /// apply to every element when they select an array of scalars.
    pub fn is_per_scalar(&self) -> bool {
        !matches!(
            self,
            Action::Drop
                | Action::Keep
                | Action::Redact { .. }
                | Action::AddMembers(_)
                | Action::Read { .. }
        )
    }

    /// True for the actions whose replacement keeps part of the value as
    /// it was written (`strip_url` keeps a URL's path), which the route's
    /// detectors then read as they read a value no rule names.
    pub fn keeps_text_as_written(&self) -> bool {
        match self {
            Action::StripUrl(_) => true,
            Action::Only { then, .. } => then.keeps_text_as_written(),
            _ => false,
        }
    }

    /// The action under its guard, if it has one.
    pub fn unguarded(&self) -> &Action {
        let mut action = self;
        while let Action::Only { then, .. } = action {
            action = then;
        }
        action
    }

    /// The action that needs the vault's answers (`tokenize`, `reveal`),
    /// under its guard if it has one.
    pub fn vault_action(&self) -> Option<&Action> {
        let action = self.unguarded();
        matches!(action, Action::Tokenize(_) | Action::Reveal { .. }).then_some(action)
    }

    /// The condition on the values it applies to, if it has one.
    pub fn guard(&self) -> Option<Guard> {
        match self {
            Action::Only { when, .. } => Some(*when),
            _ => None,
        }
    }

    /// Applies the action to one scalar. `Drop` and `Keep` are structural and
    /// decided by the rewriter; here they leave the value unchanged.
    pub fn apply(&self, value: Scalar<'_>) -> Result<Outcome, Invalid> {
        let mut out = String::new();
        Ok(match self.apply_into(value, &mut out)? {
            Applied::Replaced => Outcome::Replace(out),
            Applied::Hashed(encoding) => {
                encoding.hash_in_place(&mut out);
                Outcome::Replace(out)
            }
            Applied::Unchanged => Outcome::Unchanged,
            Applied::Removed => Outcome::Remove,
        })
    }

    /// [`Action::apply`], writing the replacement into `out` (cleared first),
    /// so that a rewriter reuses one buffer for every value it rewrites;
    /// except that a value to hash is left there in its normal form, still
    /// personal ([`Applied::Hashed`]), for the rewriter to write the digest
    /// straight into its output. Crate-private, so that no caller outside
    /// the rewriters' one place of decision (`rewrite::verdict`) can take
    /// that text for a replacement.
    pub(crate) fn apply_into(
        &self,
        value: Scalar<'_>,
        out: &mut String,
    ) -> Result<Applied, Invalid> {
        out.clear();
        let text: &str = match value {
            Scalar::Null => return Ok(Applied::Unchanged),
            Scalar::Str(s) => s,
            Scalar::Number(n) => n,
            Scalar::Bool(true) => "true",
            Scalar::Bool(false) => "false",
        };
        match self {
            Action::Drop | Action::Keep | Action::AddMembers(_) | Action::Read { .. } => {
                return Ok(Applied::Unchanged);
            }
            // Answered by the vault, through the rewriter's lookups
            // (`rewrite::verdict`); without them nothing can be made, and
            // nothing leaves as it came.
            Action::Tokenize(_) | Action::Reveal { .. } => return Err(Invalid::NoVault),
            Action::Only { when, then } => {
                return match value {
                    Scalar::Str(s) if when.holds(s) => match **then {
                        Action::Drop => Ok(Applied::Removed),
                        ref then => then.apply_into(value, out),
                    },
                    _ => Ok(Applied::Unchanged),
                };
            }
            Action::Redact { with } => out.push_str(with),
            Action::KeepNormalized { normalizer } => {
                if text.is_empty() {
                    return Ok(Applied::Unchanged);
                }
                let normalized = normalizer.apply(text)?;
                if *normalized == *text {
                    return Ok(Applied::Unchanged);
                }
                out.push_str(&normalized);
            }
            Action::Hash {
                normalizer,
                encoding,
            } => {
                // Trimmed only when long enough to be a digest: `trim` reads
                // characters, a cost on every value.
                let digest =
                    matches!(value, Scalar::Str(s) if s.len() >= 64 && is_sha256_hex(s.trim()));
                if text.is_empty() || digest {
                    return Ok(Applied::Unchanged);
                }
                // The normal form is left in `out` (no allocation per value)
                // for the rewriter to hash: a JSON rewriter writes the
                // digest's digits straight into its output.
                match normalizer.normalize_into(text, out) {
                    Ok(Normal::Within(normal)) => out.push_str(normal),
                    Ok(Normal::Written) => {}
                    Err(why) => {
                        out.clear();
                        return Err(why);
                    }
                }
                if out.is_empty() {
                    // Nothing left to hash: the value becomes empty.
                    return Ok(Applied::Replaced);
                }
                return Ok(Applied::Hashed(*encoding));
            }
            Action::Hmac {
                key,
                prefix,
                length,
                normalizer,
                shape,
            } => {
                if text.is_empty() {
                    return Ok(Applied::Unchanged);
                }
                let normalized = normalizer.apply(text)?;
                let value = normalized.as_bytes();
                match key {
                    HmacKey::Fixed(key) => key.pseudonym_into(*shape, prefix, *length, value, out),
                    HmacKey::Rotating(rotating) => {
                        let period = rotating.current().map_err(|_| Invalid::KeyUnavailable)?;
                        period
                            .key()
                            .pseudonym_into(*shape, prefix, *length, value, out);
                    }
                }
            }
            Action::Encrypt {
                key,
                prefix,
                normalizer,
            } => {
                if text.is_empty() {
                    return Ok(Applied::Unchanged);
                }
                key.encrypt_into(prefix, &normalizer.apply(text)?, out);
            }
            Action::Mask {
                keep_first,
                keep_last,
                with,
            } => mask_into(text, *keep_first, *keep_last, *with, out),
            Action::TruncateIp {
                v4_prefix,
                v6_prefix,
            } => out.push_str(&truncate_ip(text, *v4_prefix, *v6_prefix)?),
            Action::Generalize { keep_first } => out.extend(text.chars().take(*keep_first)),
            Action::StripUrl(rule) => match rule.apply(text)? {
                Stripped::Unchanged => return Ok(Applied::Unchanged),
                Stripped::External => return Ok(Applied::Removed),
                Stripped::Replaced(url) => out.push_str(&url),
            },
            Action::GeneralizeUserAgent => {
                let general = user_agent::generalize(text);
                if general == text {
                    return Ok(Applied::Unchanged);
                }
                out.push_str(&general);
            }
            Action::BucketScreen => {
                let bucket = screen::bucket(text)?;
                if bucket == text {
                    return Ok(Applied::Unchanged);
                }
                out.push_str(&bucket);
            }
        }
        Ok(Applied::Replaced)
    }
}

/// What [`Action::apply_into`] made of a value, and what it left in `out`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Applied {
    /// The value becomes the text written to `out`.
    Replaced,
    /// The value becomes the SHA-256, in this encoding, of the normal form
    /// left in `out`: never to be written as it is. Hashed by the rewriter
    /// where it writes the digest, so that the digest is not carried out
    /// through the verdict's enums (a 33-byte value moved at odd offsets,
    /// whose loads the CPU could not forward from the stores before them:
    /// a tenth of the NDJSON bench's hashed row under perf).
    Hashed(Encoding),
    /// The value is already safe as it is: null, empty, or already a digest.
    Unchanged,
    /// The value goes, with its member name (a guarded `drop`).
    Removed,
}

/// One line for `scrim check`: the action and its options. Keys appear by
/// their identifier only.
impl std::fmt::Display for Action {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Action::Only { when, then } = self {
            return write!(f, "{then} only_if={when}");
        }
        f.write_str(self.kind().as_str())?;
        match self {
            Action::Drop | Action::Keep | Action::Only { .. } => Ok(()),
            Action::Read { equals } => write!(f, " equals {equals:?}"),
            Action::AddMembers(members) => write!(f, " {{{}}}", members.text()),
            Action::Redact { with } => write!(f, " with {with:?}"),
            Action::KeepNormalized { normalizer } => write!(f, " normalize={normalizer}"),
            Action::Hash {
                normalizer,
                encoding,
            } => write!(f, " normalize={normalizer} encoding={}", encoding.as_str()),
            Action::Hmac {
                key,
                prefix,
                length,
                normalizer,
                shape,
            } => {
                write!(f, " normalize={normalizer} ")?;
                match key {
                    HmacKey::Fixed(key) => write!(f, "key-id={}", key.id())?,
                    HmacKey::Rotating(rotating) => {
                        write!(f, "rotate={}s ", rotating.period().as_secs())?;
                        match rotating.source() {
                            KeySource::Random => f.write_str("key=random")?,
                            KeySource::Derived(key) => write!(f, "key-id={}", key.id())?,
                        }
                    }
                }
                match shape {
                    Shape::Token => write!(f, " prefix={prefix:?} length={length}"),
                    shape => write!(f, " shape={}", shape.as_str()),
                }
            }
            Action::Mask {
                keep_first,
                keep_last,
                with,
            } => {
                write!(
                    f,
                    " keep_first={keep_first} keep_last={keep_last} char={with:?}"
                )
            }
            Action::TruncateIp {
                v4_prefix,
                v6_prefix,
            } => write!(f, " v4_prefix={v4_prefix} v6_prefix={v6_prefix}"),
            Action::Generalize { keep_first } => write!(f, " keep_first={keep_first}"),
            Action::StripUrl(rule) => {
                write!(f, " keep_params={:?}", rule.keep_params)?;
                match &rule.external_dropped_unless {
                    Some(site) => write!(f, " external=drop site={site:?}"),
                    None => f.write_str(" external=keep"),
                }
            }
            Action::GeneralizeUserAgent | Action::BucketScreen => Ok(()),
            Action::Tokenize(rule) => {
                write!(f, " normalize={} format={}", rule.normalizer, rule.format)?;
                write!(f, " namespace={:?}", rule.namespace)?;
                match rule.ttl {
                    Some(ttl) => write!(f, " ttl={}s", ttl.as_secs()),
                    None => Ok(()),
                }
            }
            Action::Encrypt {
                key,
                prefix,
                normalizer,
            } => write!(
                f,
                " normalize={normalizer} key-id={} prefix={prefix:?}",
                key.id()
            ),
            Action::Reveal { keys, namespaces } => {
                let ids: Vec<&str> = keys.iter().map(|k| k.id()).collect();
                write!(f, " namespaces={namespaces:?} encrypt-key-ids={ids:?}")
            }
        }
    }
}

/// A value that is already a SHA-256 digest in hex is passed as it is, so that
/// apps which hash before sending are never double-hashed.
pub fn is_sha256_hex(text: &str) -> bool {
    text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit())
}

fn mask_into(text: &str, keep_first: usize, keep_last: usize, with: char, out: &mut String) {
    let count = text.chars().count();
    if keep_first + keep_last >= count {
        // Keeping that much would keep everything: mask it all instead.
        out.extend(std::iter::repeat_n(with, count));
        return;
    }
    out.extend(text.chars().enumerate().map(|(i, c)| {
        if i < keep_first || i >= count - keep_last {
            c
        } else {
            with
        }
    }));
}

fn truncate_ip(text: &str, v4_prefix: u8, v6_prefix: u8) -> Result<String, Invalid> {
    let ip: IpAddr = text.trim().parse().map_err(|_| Invalid::NotAnIp)?;
    let truncated = match ip {
        IpAddr::V4(v4) => IpAddr::V4((u32::from(v4) & prefix_mask_32(v4_prefix)).into()),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => {
                let kept = u32::from(v4) & prefix_mask_32(v4_prefix);
                IpAddr::V6(std::net::Ipv4Addr::from(kept).to_ipv6_mapped())
            }
            None => IpAddr::V6((u128::from(v6) & prefix_mask_128(v6_prefix)).into()),
        },
    };
    Ok(truncated.to_string())
}

fn prefix_mask_32(prefix: u8) -> u32 {
    match prefix {
        0 => 0,
        p if p >= 32 => u32::MAX,
        p => u32::MAX << (32 - p),
    }
}

fn prefix_mask_128(prefix: u8) -> u128 {
    match prefix {
        0 => 0,
        p if p >= 128 => u128::MAX,
        p => u128::MAX << (128 - p),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hash(normalizer: Normalizer) -> Action {
        Action::Hash {
            normalizer,
            encoding: Encoding::Hex,
        }
    }

    fn replaced(action: &Action, value: Scalar<'_>) -> String {
        match action.apply(value) {
            Ok(Outcome::Replace(s)) => s,
            other => panic!("expected a replacement, got {other:?}"),
        }
    }

    #[test]
    fn hash_matches_metas_published_email_example() {
        assert_eq!(
            replaced(
                &hash(Normalizer::Email),
                Scalar::Str("John_Smith@gmail.com")
            ),
            "62a14e44f765419d10fea99367361a727c12365e2520f32218d505ed9aa0f62f"
        );
    }

    #[test]
    fn hash_leaves_digests_nulls_and_empty_strings() {
        let action = hash(Normalizer::Email);
        let digest = "62a14e44f765419d10fea99367361a727c12365e2520f32218d505ed9aa0f62f";
        assert_eq!(action.apply(Scalar::Str(digest)), Ok(Outcome::Unchanged));
        assert_eq!(action.apply(Scalar::Null), Ok(Outcome::Unchanged));
        assert_eq!(action.apply(Scalar::Str("")), Ok(Outcome::Unchanged));
    }

    #[test]
    fn hash_of_a_number_is_the_hash_of_its_text() {
        let action = hash(Normalizer::None);
        assert_eq!(
            replaced(&action, Scalar::Number("1.50")),
            replaced(&action, Scalar::Str("1.50"))
        );
    }

    #[test]
    fn hash_encodings() {
        // SHA-256 of "abc" (FIPS 180-2's first example) in each encoding.
        for (encoding, expected) in [
            (
                Encoding::Hex,
                "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
            ),
            (
                Encoding::Base64,
                "ungWv48Bz+pBQUDeXa4iI7ADYaOWF3qctBD/YfIAFa0=",
            ),
            (
                Encoding::Base64Url,
                "ungWv48Bz-pBQUDeXa4iI7ADYaOWF3qctBD_YfIAFa0",
            ),
        ] {
            let action = Action::Hash {
                normalizer: Normalizer::None,
                encoding,
            };
            assert_eq!(replaced(&action, Scalar::Str("abc")), expected);
            // Left to a rewriter to hash: the normal form, in `out`.
            let mut out = String::from("scratch");
            let applied = action.apply_into(Scalar::Str("abc"), &mut out);
            assert_eq!(applied, Ok(Applied::Hashed(encoding)));
            assert_eq!(out, "abc");
            let mut text = [0u8; Digest::MAX_LEN];
            let len = Digest::of(&out, encoding).encode(&mut text);
            assert_eq!(&text[..len], expected.as_bytes());
        }
    }

    #[test]
    fn invalid_values_are_reported_not_passed() {
        assert_eq!(
            hash(Normalizer::Email).apply(Scalar::Str("nobody")),
            Err(Invalid::NotAnEmail)
        );
        let ip = Action::TruncateIp {
            v4_prefix: 24,
            v6_prefix: 48,
        };
        assert_eq!(ip.apply(Scalar::Str("localhost")), Err(Invalid::NotAnIp));
    }

    #[test]
    fn truncate_ip_defaults() {
        let ip = Action::TruncateIp {
            v4_prefix: 24,
            v6_prefix: 48,
        };
        assert_eq!(replaced(&ip, Scalar::Str("203.0.113.77")), "203.0.113.0");
        assert_eq!(
            replaced(&ip, Scalar::Str("2001:db8:abcd:12:1:2:3:4")),
            "2001:db8:abcd::"
        );
        assert_eq!(
            replaced(&ip, Scalar::Str("::ffff:203.0.113.77")),
            "::ffff:203.0.113.0"
        );
    }

    #[test]
    fn mask_and_generalize() {
        let m = Action::Mask {
            keep_first: 0,
            keep_last: 4,
            with: '*',
        };
        assert_eq!(
            replaced(&m, Scalar::Str("4111111111111111")),
            "************1111"
        );
        assert_eq!(replaced(&m, Scalar::Str("abc")), "***");
        let g = Action::Generalize { keep_first: 3 };
        assert_eq!(replaced(&g, Scalar::Str("94107")), "941");
    }
}
