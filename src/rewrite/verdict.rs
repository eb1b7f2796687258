//! What becomes of one value a rule selects. The one place where an action's
//! result and the rule's `on_invalid` are decided: every rewriter (JSON,
//! form, query, header, and the tree oracle) asks here and only writes out
//! what it is told, so a new action or a new kind of invalid value is
//! handled once.

use super::lookups::{Lookups, Revealed};
use super::report::ChangeKind;
use crate::detect::{self, Finding, Scanned};
use crate::policy::{OnInvalid, REDACTED, RuleId, Rules};
use crate::transform::{Action, ActionKind, Applied, Encoding, Invalid, Scalar};

/// The verdict on one value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// The value becomes the text the verdict left in `out`: its rewrite
    /// (`Rewritten`) or the redaction of an invalid value
    /// (`InvalidRedacted`).
    Replace(ChangeKind),
    /// The value stays as it came, kept on purpose (`keep`, or `keep` with
    /// `normalize:` on a value already in its normal form): the detectors
    /// leave it alone.
    Keep,
    /// The value stays as it came because its rule left it alone (a guard
    /// that did not hold, a null, a digest `hash` leaves as it is): not
    /// exempted, so the detectors still look.
    Unchanged,
    /// The value goes, with its member or field name: dropped by its rule
    /// (`Dropped`) or as invalid (`InvalidDropped`).
    Remove(ChangeKind),
}

/// What [`judge_deferring_hash`] decides.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Judged {
    /// The verdict, its replacement (if any) in `out`.
    Verdict(Verdict),
    /// A rewrite: the value becomes the SHA-256, in this encoding, of the
    /// normal form left in `out`, which is personal and never written as
    /// it is ([`Applied::Hashed`]).
    Hashed(Encoding),
}

impl Judged {
    /// The verdict, the text to hash in `out` replaced by its digest.
    fn spelled(self, out: &mut String) -> Verdict {
        match self {
            Judged::Verdict(verdict) => verdict,
            Judged::Hashed(encoding) => {
                encoding.hash_in_place(out);
                Verdict::Replace(ChangeKind::Rewritten)
            }
        }
    }
}

/// A value refused under `on_invalid: reject`: the reason, for an error at
/// the value's place. It names the rule and why, never the value.
#[derive(Debug)]
pub(crate) struct Rejected(pub(crate) String);

/// Applies rule `rule` to `value`, or to a value that cannot be read as a
/// scalar (`Err`: an object or array, a header that is not UTF-8). A
/// replacement is written to `out` (cleared first).
///
/// What an action keeps of a value as it was written (the URL `strip_url`
/// cuts, or leaves whole) then goes through the route's detectors, a path
/// segment at a time ([`Scan::url`](crate::detect::Scan::url)): a number
/// that fills a segment (`/u/4111111111111111`) is found there. Their
/// findings are left in `found`, for the caller to count.
///
/// `tokenize` and `reveal` read the vault through `lookups`; a value the
/// vault could not answer at once is left as a question there, and the
/// pass is not sent ([`Lookups::asked`]).
pub(crate) fn judge(
    rules: &Rules,
    rule: RuleId,
    value: Result<Scalar<'_>, Invalid>,
    out: &mut String,
    found: &mut Vec<Finding>,
    lookups: &mut Lookups,
) -> Result<Verdict, Rejected> {
    judge_deferring_hash(rules, rule, value, out, found, lookups).map(|judged| judged.spelled(out))
}

/// [`judge`], with a value to hash left in `out` ([`Judged::Hashed`]), for
/// a rewriter that writes the digest's encoding straight into its output.
pub(crate) fn judge_deferring_hash(
    rules: &Rules,
    rule: RuleId,
    value: Result<Scalar<'_>, Invalid>,
    out: &mut String,
    found: &mut Vec<Finding>,
    lookups: &mut Lookups,
) -> Result<Judged, Rejected> {
    found.clear();
    if let Some(action) = rules.rules[rule].action.vault_action() {
        return judge_vault(rules, rule, action, value, out, lookups).map(Judged::Verdict);
    }
    let verdict = match judge_action(rules, rule, value, out)? {
        // A digest keeps nothing of the value as it was written.
        Judged::Hashed(encoding) => return Ok(Judged::Hashed(encoding)),
        Judged::Verdict(verdict) => verdict,
    };
    let (Some(scan), Ok(Scalar::Str(original))) = (&rules.scan, value) else {
        return Ok(Judged::Verdict(verdict));
    };
    let action = &rules.rules[rule].action;
    // A guarded rule whose condition did not hold (a title that is not a
    // URL) left text that is not what the action keeps.
    let applied = action.guard().is_none_or(|guard| guard.holds(original));
    if !action.keeps_text_as_written() || !applied {
        return Ok(Judged::Verdict(verdict));
    }
    let kept = match verdict {
        Verdict::Replace(_) => std::mem::take(out),
        Verdict::Unchanged => original.to_owned(),
        Verdict::Keep | Verdict::Remove(_) => return Ok(Judged::Verdict(verdict)),
    };
    let verdict = match scan.url(&kept, found, out) {
        // Read already: the caller's detectors need not read it again.
        Scanned::Clean if verdict == Verdict::Unchanged => Ok(Verdict::Keep),
        Scanned::Clean => {
            *out = kept;
            Ok(verdict)
        }
        Scanned::Rewritten => Ok(Verdict::Replace(ChangeKind::Rewritten)),
        Scanned::Drop => {
            out.clear();
            Ok(Verdict::Remove(ChangeKind::Dropped))
        }
        Scanned::Reject(detector) => Err(Rejected(detect::rejection(detector))),
    };
    verdict.map(Judged::Verdict)
}

/// Inlined into [`judge_deferring_hash`]: called, its verdict came back
/// through memory on every hashed value (perf put 2% of a hashed event's
/// time at the return), and the hashed NDJSON row ran 1.5% slower (two sets
/// of 30 alternating runs, `benches/ndjson.rs`).
#[inline]
fn judge_action(
    rules: &Rules,
    rule: RuleId,
    value: Result<Scalar<'_>, Invalid>,
    out: &mut String,
) -> Result<Judged, Rejected> {
    out.clear();
    let action = &rules.rules[rule].action;
    let verdict = match action {
        Action::Drop => Verdict::Remove(ChangeKind::Dropped),
        Action::Keep => Verdict::Keep,
        _ => match value.and_then(|value| action.apply_into(value, out)) {
            Ok(Applied::Hashed(encoding)) => return Ok(Judged::Hashed(encoding)),
            Ok(Applied::Replaced) => Verdict::Replace(ChangeKind::Rewritten),
            Ok(Applied::Unchanged) if action.kind() == ActionKind::Keep => Verdict::Keep,
            Ok(Applied::Unchanged) => Verdict::Unchanged,
            Ok(Applied::Removed) => Verdict::Remove(ChangeKind::Dropped),
            Err(why) => invalid(rules, rule, why, out)?,
        },
    };
    Ok(Judged::Verdict(verdict))
}

/// A `tokenize` or `reveal` rule (`action`, under the rule's guard if it
/// has one) on one value.
fn judge_vault(
    rules: &Rules,
    rule: RuleId,
    action: &Action,
    value: Result<Scalar<'_>, Invalid>,
    out: &mut String,
    lookups: &mut Lookups,
) -> Result<Verdict, Rejected> {
    out.clear();
    let value = match value {
        Ok(value) => value,
        Err(why) => return invalid(rules, rule, why, out),
    };
    if let Some(guard) = rules.rules[rule].action.guard()
        && !matches!(value, Scalar::Str(s) if guard.holds(s))
    {
        return Ok(Verdict::Unchanged);
    }
    match action {
        Action::Tokenize(tokenize) => {
            let text = match value {
                Scalar::Null => return Ok(Verdict::Unchanged),
                Scalar::Str(text) | Scalar::Number(text) => text,
                Scalar::Bool(true) => "true",
                Scalar::Bool(false) => "false",
            };
            if text.is_empty() {
                return Ok(Verdict::Unchanged);
            }
            let normalized = match tokenize.normalizer.apply(text) {
                Ok(normalized) => normalized,
                Err(why) => return invalid(rules, rule, why, out),
            };
            if !lookups.token(tokenize, &normalized, out) {
                return invalid(rules, rule, Invalid::NoVault, out);
            }
            Ok(Verdict::Replace(ChangeKind::Rewritten))
        }
        Action::Reveal { keys, namespaces } => {
            // Only a string can be a token.
            let Scalar::Str(text) = value else {
                return Ok(Verdict::Unchanged);
            };
            if let Some(value) = keys.iter().find_map(|key| key.decrypt(text)) {
                out.push_str(&value);
                return Ok(Verdict::Replace(ChangeKind::Rewritten));
            }
            match lookups.reveal(text, namespaces, out) {
                Some(Revealed::Value) => Ok(Verdict::Replace(ChangeKind::Rewritten)),
                Some(Revealed::Asked) => Ok(Verdict::Unchanged),
                Some(Revealed::Unknown) | None => {
                    lookups.count_unrevealed();
                    Ok(Verdict::Unchanged)
                }
            }
        }
        _ => Ok(judge_action(rules, rule, Ok(value), out)?.spelled(out)),
    }
}

/// What `on_invalid` makes of a value rule `rule` cannot handle.
pub(crate) fn invalid(
    rules: &Rules,
    rule: RuleId,
    why: Invalid,
    out: &mut String,
) -> Result<Verdict, Rejected> {
    out.clear();
    match rules.rules[rule].on_invalid {
        OnInvalid::Drop => Ok(Verdict::Remove(ChangeKind::InvalidDropped)),
        OnInvalid::Redact => {
            out.push_str(REDACTED);
            Ok(Verdict::Replace(ChangeKind::InvalidRedacted))
        }
        OnInvalid::Reject => Err(Rejected(format!(
            "rule {} (`{}`): value is {why}",
            rule + 1,
            rules.rules[rule].selector
        ))),
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use crate::detect::Scan;
    use crate::policy::{Limits, OnInvalid, Rules, Unlisted};
    use crate::rewrite::{BodyKind, BodyRewriter};
    use crate::transform::{Action, UrlRule};

    /// What `strip_url` keeps of a URL is scanned, a path segment at a
    /// time, in every body type as in a query.
    #[test]
    fn a_kept_url_is_scanned_in_json_and_form_bodies() -> Result<(), Box<dyn std::error::Error>> {
        let strip = Action::StripUrl(UrlRule {
            keep_params: Vec::new(),
            external_dropped_unless: None,
        });
        let mut rules = Rules::build(
            [
                ("$.url".to_owned(), strip.clone(), OnInvalid::Drop),
                ("$.plain".to_owned(), strip, OnInvalid::Drop),
            ],
            Unlisted::Keep,
            Limits::default(),
        )?;
        rules.scan = Some(Scan::preset_default(None));
        let cases: [(BodyKind, &[u8], &str); 2] = [
            (
                BodyKind::Json,
                br#"{"url":"https://shop.example/u/4111111111111111?x=1","plain":"https://shop.example/u/4111111111111111"}"#,
                r#"{"url":"https://shop.example/u/%5Bcard%5D","plain":"https://shop.example/u/%5Bcard%5D"}"#,
            ),
            (
                BodyKind::Form,
                b"url=https%3A%2F%2Fshop.example%2Fu%2F4111111111111111%3Fx%3D1&plain=https%3A%2F%2Fshop.example%2Fu%2F4111111111111111",
                "url=https%3A%2F%2Fshop.example%2Fu%2F%255Bcard%255D&plain=https%3A%2F%2Fshop.example%2Fu%2F%255Bcard%255D",
            ),
        ];
        for (kind, body, expected) in cases {
            let mut rewriter = BodyRewriter::new(kind, &rules, Vec::new(), false);
            rewriter.write(Bytes::from_static(body))?;
            let (out, report) = rewriter.finish()?;
            assert_eq!(String::from_utf8(out.concat())?, expected, "{kind:?}");
            assert_eq!(report.total_detected(), 2, "{kind:?}");
        }
        Ok(())
    }
}
