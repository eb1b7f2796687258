//! What becomes of one value a rule selects. The one place where an action's
//! result and the rule's `on_invalid` are decided: every rewriter (JSON,
//! form, query, header, and the tree oracle) asks here and only writes out
//! what it is told, so a new action or a new kind of invalid value is
//! handled once.

use super::report::ChangeKind;
use crate::policy::{OnInvalid, REDACTED, RuleId, Rules};
use crate::transform::{Action, ActionKind, Applied, Invalid, Scalar};

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

/// A value refused under `on_invalid: reject`: the reason, for an error at
/// the value's place. It names the rule and why, never the value.
#[derive(Debug)]
pub(crate) struct Rejected(pub(crate) String);

/// Applies rule `rule` to `value`, or to a value that cannot be read as a
/// scalar (`Err`: an object or array, a header that is not UTF-8). A
/// replacement is written to `out` (cleared first).
pub(crate) fn judge(
    rules: &Rules,
    rule: RuleId,
    value: Result<Scalar<'_>, Invalid>,
    out: &mut String,
) -> Result<Verdict, Rejected> {
    out.clear();
    let action = &rules.rules[rule].action;
    match action {
        Action::Drop => return Ok(Verdict::Remove(ChangeKind::Dropped)),
        Action::Keep => return Ok(Verdict::Keep),
        _ => {}
    }
    let applied = value.and_then(|value| action.apply_into(value, out));
    match applied {
        Ok(Applied::Replaced) => Ok(Verdict::Replace(ChangeKind::Rewritten)),
        Ok(Applied::Unchanged) if action.kind() == ActionKind::Keep => Ok(Verdict::Keep),
        Ok(Applied::Unchanged) => Ok(Verdict::Unchanged),
        Ok(Applied::Removed) => Ok(Verdict::Remove(ChangeKind::Dropped)),
        Err(why) => invalid(rules, rule, why, out),
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
