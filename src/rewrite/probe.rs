//! Reading values out of a body without rewriting it: the values that
//! consent signals in the body name (`$.consent.ad_user_data`). The body is
//! walked by the rewriter itself, with rules that only read ([`Action::Read`]),
//! so that the probe sees what the rewriter and the platform see: the same
//! lexer, the same percent-decoder, every occurrence of a repeated member,
//! the same refusals. A route with such signals reads its bodies whole,
//! within `buffer_limit`, before deciding how to rewrite them.

use bytes::Bytes;

use super::body::{BodyKind, BodyRewriter};
use super::error::Error;
use super::sink::Sink;
use crate::policy::{RuleId, Rules};
#[cfg(doc)]
use crate::transform::Action;

/// Every scalar the rules' body selectors select, as text (strings
/// unescaped or decoded, numbers and literals as written), with its rule.
/// The rules are a probe's: each one's action is [`Action::Read`].
pub fn probe(rules: &Rules, kind: BodyKind, body: Bytes) -> Result<Vec<(RuleId, String)>, Error> {
    let mut rewriter = BodyRewriter::new(kind, rules, Discard, false);
    rewriter.write(body)?;
    let (_, report) = rewriter.finish()?;
    Ok(report.read)
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

    fn rules(selectors: &[&str]) -> Result<Rules, SelectorError> {
        Rules::build(
            selectors
                .iter()
                .map(|s| (s.to_string(), Action::Read, OnInvalid::Drop)),
            Unlisted::Keep,
            Limits::default(),
        )
    }

    #[test]
    fn finds_selected_scalars_in_json_ndjson_and_forms() -> Result<(), Box<dyn std::error::Error>> {
        let rules_json = rules(&["$.consent.ad_user_data", "$.n"])?;
        let json = br#"{"consent":{"ad_user_data":"DENIED"},"n":3,"x":{"consent":1}}"#;
        assert_eq!(
            probe(&rules_json, BodyKind::Json, Bytes::from_static(json))?,
            vec![(0, "DENIED".to_owned()), (1, "3".to_owned())]
        );
        let lines = b"{\"n\":1}\n\n{\"n\":true}\n";
        assert_eq!(
            probe(&rules_json, BodyKind::Ndjson, Bytes::from_static(lines))?,
            vec![(1, "1".to_owned()), (1, "true".to_owned())]
        );
        // A form field holding JSON is looked into.
        let form = b"a=1&consent=%7B%22ad%22%3A%22no%22%7D";
        assert_eq!(
            probe(
                &rules(&["$.consent.ad"])?,
                BodyKind::Form,
                Bytes::from_static(form)
            )?,
            vec![(0, "no".to_owned())]
        );
        assert!(probe(&rules_json, BodyKind::Json, Bytes::from_static(b"{")).is_err());
        Ok(())
    }

    /// The probe reads as the rewriter does: each occurrence of a repeated
    /// member (a platform may read either), escapes undone, numbers as
    /// written, documents inside strings opened.
    #[test]
    fn reads_what_the_rewriter_reads() -> Result<(), Box<dyn std::error::Error>> {
        let rules = rules(&["$.consent.ad", "$.n"])?;
        let body = br#"{"consent":{"ad":"GRANTED","ad":"DEN\u0049ED"},"n":1e2,"consent":"{\"ad\":\"x\"}"}"#;
        assert_eq!(
            probe(&rules, BodyKind::Json, Bytes::from_static(body))?,
            vec![
                (0, "GRANTED".to_owned()),
                (0, "DENIED".to_owned()),
                (1, "1e2".to_owned()),
                (0, "x".to_owned()),
            ]
        );
        // The rewriter's refusals are the probe's: an undecodable name.
        let form = Bytes::from_static(b"consent%ZZ=1");
        assert!(probe(&rules, BodyKind::Form, form).is_err());
        Ok(())
    }
}
