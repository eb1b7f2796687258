//! `header.NAME` rules: what becomes of one request header value.

use super::error::{Error, Kind};
use super::lookups::Lookups;
use super::report::Report;
use super::verdict::{self, Rejected, Verdict};
use crate::detect::Scanned;
use crate::policy::{Rules, canonical_header_name};
use crate::transform::{Invalid, Scalar};

/// What a header rule made of a header.
#[derive(Debug, PartialEq, Eq)]
pub enum HeaderOutcome {
    /// No rule applies, or the value is already safe: send it as it is.
    Unchanged,
    /// Remove the header.
    Remove,
    /// Send this value instead.
    Replace(String),
}

/// Applies the route's `header.NAME` rule (if any) to one header. `name` is
/// matched as [`canonical_header_name`] reads it. A value that is not UTF-8 cannot
/// be read by a rule, so it counts as invalid and `on_invalid` decides.
pub fn rewrite_header(
    rules: &Rules,
    name: &str,
    value: &[u8],
    report: &mut Report,
    lookups: &mut Lookups,
) -> Result<HeaderOutcome, Error> {
    let mark = report.accounted();
    let outcome = rewrite_named(rules, name, value, report, lookups)?;
    if report.counts_fields() && report.accounted() == mark {
        let lower = canonical_header_name(name);
        let path = || header_path(&lower);
        match outcome {
            // Not text, so not readable by the detectors: it does not leave.
            HeaderOutcome::Remove => report.left_out(path),
            _ => report.kept(Rules::field_rule(&rules.headers, &lower), path),
        }
    }
    Ok(outcome)
}

fn header_path(lower: &str) -> String {
    format!("header.{lower}")
}

fn rewrite_named(
    rules: &Rules,
    name: &str,
    value: &[u8],
    report: &mut Report,
    lookups: &mut Lookups,
) -> Result<HeaderOutcome, Error> {
    if rules.headers.is_empty() && rules.scan.is_none() {
        return Ok(HeaderOutcome::Unchanged);
    }
    let lower = canonical_header_name(name);
    let Some(rule_id) = Rules::field_rule(&rules.headers, &lower) else {
        return scan_header(rules, &lower, value, report);
    };
    let path = || header_path(&lower);
    let text = std::str::from_utf8(value).map_err(|_| Invalid::NotAScalar);
    let mut out = String::new();
    let mut findings = Vec::new();
    let verdict = verdict::judge(
        rules,
        rule_id,
        text.map(Scalar::Str),
        &mut out,
        &mut findings,
        lookups,
    );
    if !findings.is_empty() {
        report.detected(&findings, path);
    }
    match verdict {
        Ok(Verdict::Keep) => Ok(HeaderOutcome::Unchanged),
        Ok(Verdict::Unchanged) => scan_header(rules, &lower, value, report),
        Ok(Verdict::Remove(change)) => {
            report.record(Some(rule_id), change, path);
            Ok(HeaderOutcome::Remove)
        }
        Ok(Verdict::Replace(change)) => {
            report.record(Some(rule_id), change, path);
            Ok(HeaderOutcome::Replace(out))
        }
        Err(Rejected(reason)) => Err(Error::new(Kind::Rejected, 0, path(), reason)),
    }
}

/// A header no rule names: `Referer` and the headers the route's `scan:`
/// lists go through the detectors, as written (a URL keeps its encoding:
/// a percent-encoded finding becomes a percent-encoded tag).
fn scan_header(
    rules: &Rules,
    lower: &str,
    value: &[u8],
    report: &mut Report,
) -> Result<HeaderOutcome, Error> {
    let Some(scan) = &rules.scan else {
        return Ok(HeaderOutcome::Unchanged);
    };
    if lower != "referer" && !scan.headers.iter().any(|h| h == lower) {
        return Ok(HeaderOutcome::Unchanged);
    }
    let path = || header_path(lower);
    // Not text: nothing can be told about it, so it does not leave.
    let Ok(text) = std::str::from_utf8(value) else {
        return Ok(HeaderOutcome::Remove);
    };
    let mut findings = Vec::new();
    let mut out = String::new();
    let answer = scan.text(text, &mut findings, &mut out);
    if !findings.is_empty() {
        report.detected(&findings, path);
    }
    match answer {
        Scanned::Clean => Ok(HeaderOutcome::Unchanged),
        Scanned::Rewritten => Ok(HeaderOutcome::Replace(out)),
        Scanned::Drop => Ok(HeaderOutcome::Remove),
        Scanned::Reject(detector) => Err(Error::new(
            Kind::Rejected,
            0,
            path(),
            crate::detect::rejection(detector),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::{Limits, OnInvalid, Unlisted};
    use crate::transform::{Action, Encoding, Normalizer};

    fn rules() -> Result<Rules, crate::policy::SelectorError> {
        let hash = Action::Hash {
            normalizer: Normalizer::Email,
            encoding: Encoding::Hex,
        };
        let ip = Action::TruncateIp {
            v4_prefix: 24,
            v6_prefix: 48,
        };
        Rules::build(
            [
                ("header.X-Email".to_owned(), hash, OnInvalid::Drop),
                ("header.x-token".to_owned(), Action::Drop, OnInvalid::Drop),
                ("header.x-client-ip".to_owned(), ip, OnInvalid::Reject),
            ],
            Unlisted::Keep,
            Limits::default(),
        )
    }

    #[test]
    fn header_rules_hash_drop_and_reject() -> Result<(), Box<dyn std::error::Error>> {
        let rules = rules()?;
        let mut report = Report::new(3, false);
        let hashed = rewrite_header(
            &rules,
            "x-email",
            b"John_Smith@gmail.com",
            &mut report,
            &mut Lookups::default(),
        )?;
        assert_eq!(
            hashed,
            HeaderOutcome::Replace(
                "62a14e44f765419d10fea99367361a727c12365e2520f32218d505ed9aa0f62f".into()
            )
        );
        assert_eq!(
            rewrite_header(
                &rules,
                "X-Token",
                b"abc",
                &mut report,
                &mut Lookups::default()
            )?,
            HeaderOutcome::Remove
        );
        assert_eq!(
            rewrite_header(
                &rules,
                "x-email",
                b"nobody",
                &mut report,
                &mut Lookups::default()
            )?,
            HeaderOutcome::Remove
        );
        assert_eq!(
            rewrite_header(
                &rules,
                "accept",
                b"*/*",
                &mut report,
                &mut Lookups::default()
            )?,
            HeaderOutcome::Unchanged
        );
        let Err(err) = rewrite_header(
            &rules,
            "x-client-ip",
            b"secret-host",
            &mut report,
            &mut Lookups::default(),
        ) else {
            return Err("a host name is not an IP address".into());
        };
        assert!(err.is_rejected() && err.path() == "header.x-client-ip");
        assert!(!err.to_string().contains("secret"));
        assert_eq!(report.rewritten, vec![1, 1, 0]);
        assert_eq!(report.invalid, vec![1, 0, 0]);
        Ok(())
    }
}
