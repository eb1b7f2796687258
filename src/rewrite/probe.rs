//! Looking for a consent signal in a body without rewriting it
//! (`$.consent.ad_user_data` is `DENIED`). The body is walked by the
//! rewriter itself, with a rule that only reads ([`Action::Read`]), so that
//! the probe sees what the rewriter and the platform see: the same lexer,
//! the same percent-decoder, every occurrence of a repeated member, the same
//! refusals. A route with such signals reads its bodies whole, within
//! `buffer_limit`, before deciding how to rewrite them.

use bytes::Bytes;

use super::body::{BodyKind, BodyRewriter};
use super::error::Error;
use super::sink::Sink;
use crate::policy::Rules;
#[cfg(doc)]
use crate::transform::Action;

/// Whether the body holds what the probe's rules look for: a value one of
/// them selects that is equal to its `equals` ([`Action::Read`]).
pub fn probe(rules: &Rules, kind: BodyKind, body: Bytes) -> Result<bool, Error> {
    let mut rewriter = BodyRewriter::new(kind, rules, Discard, false);
    rewriter.write(body)?;
    let (_, report) = rewriter.finish()?;
    Ok(report.read_matches > 0)
}

/// The rewritten body, which a probe does not need.
struct Discard;

impl Sink for Discard {
    fn write(&mut self, _: Bytes) {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::{Limits, OnInvalid, SelectorError, Unlisted};
    use crate::transform::Action;

    fn looks_for(selector: &str, equals: &str) -> Result<Rules, SelectorError> {
        Rules::build(
            [(
                selector.to_owned(),
                Action::Read {
                    equals: equals.to_owned(),
                },
                OnInvalid::Drop,
            )],
            Unlisted::Keep,
            Limits::default(),
        )
    }

    fn found(rules: &Rules, kind: BodyKind, body: &'static [u8]) -> Result<bool, Error> {
        probe(rules, kind, Bytes::from_static(body))
    }

    #[test]
    fn finds_a_signal_in_json_ndjson_and_forms() -> Result<(), Box<dyn std::error::Error>> {
        let denied = looks_for("$.consent.ad_user_data", "denied")?;
        let json = br#"{"consent":{"ad_user_data":" DENIED "},"x":{"consent":1}}"#;
        assert!(found(&denied, BodyKind::Json, json)?);
        assert!(!found(
            &denied,
            BodyKind::Json,
            br#"{"consent":{"ad_user_data":"GRANTED"}}"#
        )?);
        let three = looks_for("$.n", "3")?;
        assert!(found(
            &three,
            BodyKind::Ndjson,
            b"{\"n\":1}\n\n{\"n\":3}\n"
        )?);
        assert!(!found(&three, BodyKind::Ndjson, b"{\"n\":1}\n")?);
        assert!(found(
            &looks_for("$.flag", "true")?,
            BodyKind::Json,
            br#"{"flag":true}"#
        )?);
        // A form field holding JSON is looked into.
        let form = b"a=1&consent=%7B%22ad%22%3A%22no%22%7D";
        assert!(found(
            &looks_for("$.consent.ad", "no")?,
            BodyKind::Form,
            form
        )?);
        assert!(found(&denied, BodyKind::Json, b"{").is_err());
        Ok(())
    }

    /// The probe reads as the rewriter does: each occurrence of a repeated
    /// member (a platform may read either), escapes undone, numbers as
    /// written, documents inside strings opened; what it refuses, it
    /// refuses.
    #[test]
    fn reads_what_the_rewriter_reads() -> Result<(), Box<dyn std::error::Error>> {
        let denied = looks_for("$.consent.ad", "DENIED")?;
        let repeated = br#"{"consent":{"ad":"DENIED","ad":"GRANTED"}}"#;
        assert!(found(&denied, BodyKind::Json, repeated)?);
        let escaped = br#"{"consent":{"ad":"GRANTED"},"consent":{"ad":"DEN\u0049ED"}}"#;
        assert!(found(&denied, BodyKind::Json, escaped)?);
        let embedded = br#"{"consent":"{\"ad\":\"denied\"}"}"#;
        assert!(found(&denied, BodyKind::Json, embedded)?);
        assert!(found(
            &looks_for("$.n", "1e2")?,
            BodyKind::Json,
            br#"{"n":1e2}"#
        )?);
        assert!(!found(
            &looks_for("$.n", "100")?,
            BodyKind::Json,
            br#"{"n":1e2}"#
        )?);
        assert!(found(&denied, BodyKind::Form, b"consent%ZZ=1").is_err());
        Ok(())
    }
}
