//! `query.NAME` rules applied to a request's query string. Query strings are
//! short and already in memory, so this works on the whole string at once.

use super::error::{Error, Kind};
use super::path::push_key;
use super::report::{ChangeKind, Report};
use crate::percent::{decode, encode};
use crate::policy::{OnInvalid, REDACTED, Rules};
use crate::transform::{Action, Outcome, Scalar};

/// What a query string became.
#[derive(Debug, PartialEq, Eq)]
pub enum QueryOutcome {
    /// No parameter changed: forward the query as it was.
    Unchanged,
    /// The new query string (without `?`; empty when every pair went).
    Rewritten(String),
}

/// Why a field with `;NAME=` inside is refused, where NAME is one that rules
/// select: servers that split fields at `;` as well as `&` (the W3C's old
/// recommendation; Python's `cgi` before 3.9.2, some Java containers)
/// would read a field there that the rules never saw.
pub(crate) const SEMICOLON_REASON: &str = "`;` starts a field name that a rule selects: some servers split fields at `;`, \
     so this field would reach them unrewritten; percent-encode the `;` (%3B)";

/// Whether a `;` in the pair starts a `NAME=` that a `query.` rule (other
/// than `keep`) selects.
fn hides_a_selected_name(rules: &Rules, pair: &str) -> bool {
    pair.split(';').skip(1).any(|segment| {
        let Some((name, _)) = segment.split_once('=') else {
            return false;
        };
        decode(name.as_bytes())
            .and_then(|name| String::from_utf8(name).ok())
            .and_then(|name| Rules::field_rule(&rules.query, &name))
            .is_some_and(|rule| !matches!(rules.rules[rule].action, Action::Keep))
    })
}

/// Applies a route's `query.NAME` rules to a query string (without `?`).
pub fn rewrite_query(
    rules: &Rules,
    query: &str,
    report: &mut Report,
) -> Result<QueryOutcome, Error> {
    if rules.query.is_empty() || query.is_empty() {
        return Ok(QueryOutcome::Unchanged);
    }
    let mut changed = false;
    let mut kept: Vec<String> = Vec::new();
    let mut offset = 0u64;
    for pair in query.split('&') {
        let (raw_name, raw_value) = pair.split_once('=').unwrap_or((pair, ""));
        let path = || {
            let mut path = String::from("query");
            push_key(&mut path, raw_name.as_bytes());
            path
        };
        let place = |reason: &'static str| Error::new(Kind::Syntax, offset, path(), reason);
        if hides_a_selected_name(rules, pair) {
            return Err(place(SEMICOLON_REASON));
        }
        let name = decode(raw_name.as_bytes())
            .ok_or_else(|| place("invalid percent-encoding in a query parameter name"))?;
        let name = String::from_utf8_lossy(&name);
        match Rules::field_rule(&rules.query, &name) {
            None => kept.push(pair.to_owned()),
            Some(rule) => {
                let value = decode(raw_value.as_bytes())
                    .ok_or_else(|| place("invalid percent-encoding in a query parameter"))?;
                let value = std::str::from_utf8(&value)
                    .map_err(|_| place("query parameter is not UTF-8"))?;
                let outcome = match &rules.rules[rule].action {
                    Action::Drop => Ok(None),
                    Action::Keep => Ok(Some(Outcome::Unchanged)),
                    action => action.apply(Scalar::Str(value)).map(Some),
                };
                match outcome {
                    Ok(Some(Outcome::Unchanged)) => kept.push(pair.to_owned()),
                    Ok(Some(Outcome::Remove)) | Ok(None) => {
                        report.record(Some(rule), ChangeKind::Dropped, path);
                        changed = true;
                    }
                    Ok(Some(Outcome::Replace(new))) => {
                        kept.push(format!("{raw_name}={}", encode(new.as_bytes())));
                        report.record(Some(rule), ChangeKind::Rewritten, path);
                        changed = true;
                    }
                    Err(why) => {
                        changed = true;
                        match rules.rules[rule].on_invalid {
                            OnInvalid::Drop => {
                                report.record(Some(rule), ChangeKind::InvalidDropped, path)
                            }
                            OnInvalid::Redact => {
                                kept.push(format!("{raw_name}={}", encode(REDACTED.as_bytes())));
                                report.record(Some(rule), ChangeKind::InvalidRedacted, path);
                            }
                            OnInvalid::Reject => {
                                let reason = format!(
                                    "rule {} (`{}`): value is {why}",
                                    rule + 1,
                                    rules.rules[rule].selector
                                );
                                return Err(Error::new(Kind::Rejected, offset, path(), reason));
                            }
                        }
                    }
                }
            }
        }
        offset += pair.len() as u64 + 1;
    }
    Ok(if changed {
        QueryOutcome::Rewritten(kept.join("&"))
    } else {
        QueryOutcome::Unchanged
    })
}
