//! `query.NAME` rules applied to a request's query string. Query strings are
//! short and already in memory, so this works on the whole string at once.

use super::error::{Error, Kind};
use super::path::push_key;
use super::report::Report;
use super::verdict::{self, Rejected, Verdict};
use crate::detect::{self, Detector, Finding};
use crate::percent::{SEMICOLON_REASON, decode, encode};
use crate::policy::Rules;
use crate::transform::{Action, Scalar};

/// What a query string became.
#[derive(Debug, PartialEq, Eq)]
pub enum QueryOutcome {
    /// No parameter changed: forward the query as it was.
    Unchanged,
    /// The new query string (without `?`; empty when every pair went).
    Rewritten(String),
}

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

/// What the route's `scan:` made of a parameter no rule selects.
enum Scanned {
    Clean,
    Rewritten(String),
    Drop,
    Reject(Detector),
}

/// Scans a parameter's value, decoded; a rewritten value is encoded again
/// whole (a tag's brackets are not allowed bare in a query).
fn scan_value(
    rules: &Rules,
    raw_value: &str,
    findings: &mut Vec<Finding>,
    place: &dyn Fn(&'static str) -> Error,
) -> Result<Scanned, Error> {
    findings.clear();
    let Some(scan) = &rules.scan else {
        return Ok(Scanned::Clean);
    };
    let value = decode(raw_value.as_bytes())
        .ok_or_else(|| place("invalid percent-encoding in a query parameter"))?;
    let value = std::str::from_utf8(&value).map_err(|_| place("query parameter is not UTF-8"))?;
    let mut out = String::new();
    Ok(match scan.text(value, findings, &mut out) {
        detect::Scanned::Clean => Scanned::Clean,
        detect::Scanned::Rewritten => Scanned::Rewritten(out),
        detect::Scanned::Drop => Scanned::Drop,
        detect::Scanned::Reject(detector) => Scanned::Reject(detector),
    })
}

/// Applies a route's `query.NAME` rules to a query string (without `?`).
pub fn rewrite_query(
    rules: &Rules,
    query: &str,
    report: &mut Report,
) -> Result<QueryOutcome, Error> {
    if (rules.query.is_empty() && rules.scan.is_none()) || query.is_empty() {
        return Ok(QueryOutcome::Unchanged);
    }
    let mut findings = Vec::new();
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
        let name = decode(raw_name.as_bytes())
            .ok_or_else(|| place("invalid percent-encoding in a query parameter name"))?;
        let name = String::from_utf8_lossy(&name);
        let rule = Rules::field_rule(&rules.query, &name);
        // A pair dropped whole hides nothing.
        let dropped = rule.is_some_and(|rule| matches!(rules.rules[rule].action, Action::Drop));
        if !dropped && hides_a_selected_name(rules, pair) {
            return Err(place(SEMICOLON_REASON));
        }
        let Some(rule) = rule else {
            match scan_value(rules, raw_value, &mut findings, &place)? {
                Scanned::Clean => kept.push(pair.to_owned()),
                Scanned::Rewritten(text) => {
                    kept.push(format!("{raw_name}={}", encode(text.as_bytes())));
                    changed = true;
                }
                Scanned::Drop => changed = true,
                Scanned::Reject(detector) => {
                    return Err(Error::new(
                        Kind::Rejected,
                        offset,
                        path(),
                        detect::rejection(detector),
                    ));
                }
            }
            if !findings.is_empty() {
                report.detected(&findings, path);
            }
            offset += pair.len() as u64 + 1;
            continue;
        };
        let value = decode(raw_value.as_bytes())
            .ok_or_else(|| place("invalid percent-encoding in a query parameter"))?;
        let value =
            std::str::from_utf8(&value).map_err(|_| place("query parameter is not UTF-8"))?;
        let mut out = String::new();
        match verdict::judge(rules, rule, Ok(Scalar::Str(value)), &mut out) {
            Ok(Verdict::Keep) => kept.push(pair.to_owned()),
            Ok(Verdict::Replace(change)) => {
                kept.push(format!("{raw_name}={}", encode(out.as_bytes())));
                report.record(Some(rule), change, path);
                changed = true;
            }
            Ok(Verdict::Remove(change)) => {
                report.record(Some(rule), change, path);
                changed = true;
            }
            Err(Rejected(reason)) => {
                return Err(Error::new(Kind::Rejected, offset, path(), reason));
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
