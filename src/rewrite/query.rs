//! `query.NAME` rules applied to a request's query string. Query strings are
//! short and already in memory, so this works on the whole string at once.

use super::error::{Error, Kind};
use super::lookups::Lookups;
use super::path::push_key;
use super::report::Report;
use super::verdict::{self, Rejected, Verdict};
use crate::detect::{self, Finding, Scanned};
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

/// A parameter no rule changes: what stays of it goes into `kept`, its
/// value as the route's detectors make it (decoded, and encoded again whole:
/// a tag's brackets are not allowed bare in a query). Returns whether it
/// changed.
fn scan_pair(
    rules: &Rules,
    pair: &str,
    findings: &mut Vec<Finding>,
    kept: &mut Vec<String>,
    report: &mut Report,
    offset: u64,
) -> Result<bool, Error> {
    let Some(scan) = &rules.scan else {
        kept.push(pair.to_owned());
        return Ok(false);
    };
    let (raw_name, raw_value) = pair.split_once('=').unwrap_or((pair, ""));
    let path = || pair_path(raw_name);
    let place = |reason: &'static str| Error::new(Kind::Syntax, offset, path(), reason);
    let value = decode(raw_value.as_bytes())
        .ok_or_else(|| place("invalid percent-encoding in a query parameter"))?;
    let value = std::str::from_utf8(&value).map_err(|_| place("query parameter is not UTF-8"))?;
    let mut out = String::new();
    let answer = scan.text(value, findings, &mut out);
    if !findings.is_empty() {
        report.detected(findings, path);
    }
    match answer {
        Scanned::Clean => kept.push(pair.to_owned()),
        Scanned::Rewritten => kept.push(format!("{raw_name}={}", encode(out.as_bytes()))),
        Scanned::Drop => {}
        Scanned::Reject(detector) => {
            return Err(Error::new(
                Kind::Rejected,
                offset,
                path(),
                detect::rejection(detector),
            ));
        }
    }
    Ok(answer != Scanned::Clean)
}

fn pair_path(raw_name: &str) -> String {
    let mut path = String::from("query");
    push_key(&mut path, raw_name.as_bytes());
    path
}

/// Applies a route's `query.NAME` rules to a query string (without `?`).
pub fn rewrite_query(
    rules: &Rules,
    query: &str,
    report: &mut Report,
    lookups: &mut Lookups,
) -> Result<QueryOutcome, Error> {
    if query.is_empty() {
        return Ok(QueryOutcome::Unchanged);
    }
    if rules.query.is_empty() && rules.scan.is_none() {
        if report.counts_fields() {
            for pair in query.split('&').filter(|pair| !pair.is_empty()) {
                let raw_name = pair.split_once('=').map_or(pair, |(name, _)| name);
                report.kept(None, || pair_path(raw_name));
            }
        }
        return Ok(QueryOutcome::Unchanged);
    }
    let mut findings = Vec::new();
    let mut changed = false;
    let mut kept: Vec<String> = Vec::new();
    let mut offset = 0u64;
    for pair in query.split('&') {
        let (raw_name, raw_value) = pair.split_once('=').unwrap_or((pair, ""));
        let path = || pair_path(raw_name);
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
        let mark = report.accounted();
        let Some(rule) = rule else {
            changed |= scan_pair(rules, pair, &mut findings, &mut kept, report, offset)?;
            if !pair.is_empty() {
                report.kept_since(mark, None, path);
            }
            offset += pair.len() as u64 + 1;
            continue;
        };
        let value = decode(raw_value.as_bytes())
            .ok_or_else(|| place("invalid percent-encoding in a query parameter"))?;
        let value =
            std::str::from_utf8(&value).map_err(|_| place("query parameter is not UTF-8"))?;
        let mut out = String::new();
        let verdict = verdict::judge(
            rules,
            rule,
            Ok(Scalar::Str(value)),
            &mut out,
            &mut findings,
            lookups,
        );
        if !findings.is_empty() {
            report.detected(&findings, path);
        }
        match verdict {
            Ok(Verdict::Unchanged) => {
                changed |= scan_pair(rules, pair, &mut findings, &mut kept, report, offset)?;
            }
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
        report.kept_since(mark, Some(rule), path);
        offset += pair.len() as u64 + 1;
    }
    Ok(if changed {
        QueryOutcome::Rewritten(kept.join("&"))
    } else {
        QueryOutcome::Unchanged
    })
}
