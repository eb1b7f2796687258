//! A route's `scan:`: which detectors look into the values no rule names,
//! and what becomes of what they find. The rewriters hand each such text to
//! [`Scan::text`] and write out what it answers.

use std::sync::Arc;

use sha2::{Digest, Sha256};

use super::{Detector, Detectors, Finding, redact};
use crate::transform::{Normalizer, PhoneOptions, PseudonymKey};

/// How long an `hmac` pseudonym of a finding is (the MAC's characters),
/// as an `hmac` rule's default.
const PSEUDONYM_LENGTH: usize = 22;

/// Scanning as a route configures it.
#[derive(Clone, Debug)]
pub struct Scan {
    pub detectors: Detectors,
    pub action: ScanAction,
    /// Request headers scanned besides `Referer` (lowercase names).
    pub headers: Vec<String>,
}

/// What becomes of a text in which a detector found an identifier.
#[derive(Clone, Debug)]
pub enum ScanAction {
    /// Each finding becomes its tag (`[email]`); the rest stays.
    Redact,
    /// Each finding becomes the SHA-256 (hex) of its normalized form.
    Hash,
    /// Each finding becomes a keyed pseudonym of its normalized form.
    Hmac(Arc<PseudonymKey>),
    /// The whole value goes (in JSON, a value whose member name has left
    /// already becomes `null`).
    Drop,
    /// The request is refused.
    Reject,
}

impl ScanAction {
    /// The name as `scan: {action}` takes it and the metrics' `action`
    /// label shows it.
    pub fn as_str(&self) -> &'static str {
        match self {
            ScanAction::Redact => "redact",
            ScanAction::Hash => "hash",
            ScanAction::Hmac(_) => "hmac",
            ScanAction::Drop => "drop",
            ScanAction::Reject => "reject",
        }
    }
}

/// What scanning made of one text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scanned {
    /// Nothing found: the text stays as it is.
    Clean,
    /// Identifiers found and replaced: the new text is in `out`.
    Rewritten,
    /// Identifiers found: the whole value goes.
    Drop,
    /// An identifier found (the first one's detector): refuse the request.
    Reject(Detector),
}

/// The reason a request is refused for what `scan: reject` found.
pub fn rejection(detector: Detector) -> String {
    format!(
        "{} found in a value no rule selects (scan action `reject`)",
        detector.as_str()
    )
}

impl Scan {
    /// The default of a route with a preset: the default detectors, their
    /// findings redacted.
    pub fn preset_default(region: Option<phonenumber::country::Id>) -> Scan {
        Scan {
            detectors: Detectors::default_set(region),
            action: ScanAction::Redact,
            headers: Vec::new(),
        }
    }

    /// Whether a detector could find anything in `text` (see
    /// [`Detectors::may_find_in`]): a caller may skip reading it as UTF-8.
    pub fn may_find_in(&self, text: &[u8]) -> bool {
        self.detectors.may_find_in(text)
    }

    /// Scans `text`. The findings are left in `findings` (for counting);
    /// when the answer is [`Scanned::Rewritten`], `out` holds the new text.
    pub fn text(&self, text: &str, findings: &mut Vec<Finding>, out: &mut String) -> Scanned {
        self.detectors.find(text, findings);
        let Some(first) = findings.first() else {
            return Scanned::Clean;
        };
        match &self.action {
            ScanAction::Redact => redact(text, findings, out),
            ScanAction::Hash | ScanAction::Hmac(_) => self.replace(text, findings, out),
            ScanAction::Drop => return Scanned::Drop,
            ScanAction::Reject => return Scanned::Reject(first.detector),
        }
        Scanned::Rewritten
    }

    /// Scans a URL (what `strip_url` keeps of one) a path segment and a
    /// query value at a time, each percent-decoded: a number that fills a
    /// segment (`/u/4111111111111111`, `/search/%2B33612345678`) is found
    /// there, where `/` would join it to its neighbours in the text as a
    /// whole. A rewritten piece is encoded again; the others stay as
    /// written.
    pub fn url(&self, text: &str, findings: &mut Vec<Finding>, out: &mut String) -> Scanned {
        // `scheme://authority` when the text starts with one.
        let origin_end = crate::transform::scheme_len(text).map_or(0, |at| {
            text[at..]
                .find(['/', '?', '#'])
                .map_or(text.len(), |end| at + end)
        });
        let (origin, rest) = text.split_at(origin_end);
        let (path, query) = match rest.split_once('?') {
            Some((path, query)) => (path, Some(query)),
            None => (rest, None),
        };
        out.clear();
        out.push_str(origin);
        let mut found = Vec::new();
        let mut piece = String::new();
        let mut changed = false;
        let mut scan_piece = |raw: &str, in_query: bool, out: &mut String| -> Option<Scanned> {
            let decoded = if in_query {
                crate::percent::decode(raw.as_bytes())
            } else {
                crate::percent::decode_path(raw.as_bytes())
            };
            let decoded = decoded.and_then(|bytes| String::from_utf8(bytes).ok());
            match self.text(decoded.as_deref().unwrap_or(raw), findings, &mut piece) {
                Scanned::Clean => out.push_str(raw),
                Scanned::Rewritten => {
                    let bytes = piece.as_bytes();
                    out.push_str(&if in_query {
                        crate::percent::encode(bytes)
                    } else {
                        crate::percent::encode_path(bytes)
                    });
                    changed = true;
                }
                answer @ (Scanned::Drop | Scanned::Reject(_)) => return Some(answer),
            }
            found.append(findings);
            None
        };
        for (i, segment) in path.split('/').enumerate() {
            if i > 0 {
                out.push('/');
            }
            if let Some(answer) = scan_piece(segment, false, out) {
                return answer;
            }
        }
        if let Some(query) = query {
            out.push('?');
            for (i, pair) in query.split('&').enumerate() {
                if i > 0 {
                    out.push('&');
                }
                let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
                if pair.contains('=') {
                    out.push_str(name);
                    out.push('=');
                }
                let raw = if pair.contains('=') { value } else { name };
                if let Some(answer) = scan_piece(raw, true, out) {
                    return answer;
                }
            }
        }
        *findings = found;
        if changed {
            Scanned::Rewritten
        } else {
            Scanned::Clean
        }
    }

    /// `text` with each finding replaced by the digest or pseudonym of its
    /// normalized form; a finding that does not normalize gets its tag
    /// (never the original).
    fn replace(&self, text: &str, findings: &[Finding], out: &mut String) {
        out.clear();
        let mut at = 0;
        for finding in findings {
            out.push_str(&text[at..finding.start]);
            match self.normalized(finding, &text[finding.start..finding.end]) {
                Some(value) => out.push_str(&self.token(value.as_bytes())),
                None => out.push_str(&finding.tag()),
            }
            at = finding.end;
        }
        out.push_str(&text[at..]);
    }

    fn token(&self, value: &[u8]) -> String {
        match &self.action {
            ScanAction::Hmac(key) => key.pseudonym("", PSEUDONYM_LENGTH, value),
            _ => Sha256::digest(value)
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect(),
        }
    }

    /// The form a finding is hashed in: what a rule with the detector's
    /// normalizer would hash, so that a digest found here joins one made by
    /// a rule.
    fn normalized(&self, finding: &Finding, span: &str) -> Option<String> {
        let decoded;
        let span = if finding.encoded {
            decoded = String::from_utf8(crate::percent::decode(span.as_bytes())?).ok()?;
            decoded.as_str()
        } else {
            span
        };
        match finding.detector {
            Detector::Email => Normalizer::Email.apply(span).ok().map(|v| v.into_owned()),
            Detector::Phone => Normalizer::Phone(PhoneOptions {
                default_region: self.detectors.region(),
                plus: true,
            })
            .apply(span)
            .ok()
            .map(|v| v.into_owned()),
            Detector::Card | Detector::Iban | Detector::Ssn | Detector::Ip => Some(
                span.chars()
                    .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | ':'))
                    .map(|c| c.to_ascii_uppercase())
                    .collect(),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scan(action: ScanAction) -> Scan {
        Scan {
            action,
            ..Scan::preset_default(Some(phonenumber::country::Id::US))
        }
    }

    #[test]
    fn a_url_is_read_a_segment_and_a_value_at_a_time() {
        let scan = scan(ScanAction::Redact);
        let mut findings = Vec::new();
        let mut out = String::new();
        let cases = [
            (
                "https://shop.example/u/4111111111111111",
                "https://shop.example/u/%5Bcard%5D",
            ),
            (
                "https://shop.example/search/%2B1%20650%20555%201212/x",
                "https://shop.example/search/%5Bphone%5D/x",
            ),
            (
                "/list?page=2&q=jane%40example.com",
                "/list?page=2&q=%5Bemail%5D",
            ),
            (
                "/u/123-45-6789?next=https://x.example/a",
                "/u/%5Bssn%5D?next=https://x.example/a",
            ),
        ];
        for (url, expected) in cases {
            assert_eq!(
                scan.url(url, &mut findings, &mut out),
                Scanned::Rewritten,
                "{url}"
            );
            assert_eq!(out, expected);
            assert_eq!(findings.len(), 1, "{url}");
        }
        let clean = "https://shop.example/blog/2026/12/04/winter-boots?page=2";
        assert_eq!(scan.url(clean, &mut findings, &mut out), Scanned::Clean);
        assert!(findings.is_empty());
    }

    #[test]
    fn redact_replaces_each_finding_with_its_tag() {
        let mut findings = Vec::new();
        let mut out = String::new();
        let answer = scan(ScanAction::Redact).text(
            "call +1 415 555 2671 or mail jane@example.com",
            &mut findings,
            &mut out,
        );
        assert_eq!(answer, Scanned::Rewritten);
        assert_eq!(out, "call [phone] or mail [email]");
        assert_eq!(findings.len(), 2);
    }

    #[test]
    fn clean_text_is_left_alone() {
        let mut findings = Vec::new();
        let mut out = String::from("untouched");
        let answer =
            scan(ScanAction::Redact).text("order ORD-2026-000123", &mut findings, &mut out);
        assert_eq!(answer, Scanned::Clean);
        assert!(findings.is_empty());
        assert_eq!(out, "untouched");
    }

    #[test]
    fn hash_digests_the_normalized_form_so_spellings_join() {
        let mut findings = Vec::new();
        let (mut a, mut b) = (String::new(), String::new());
        let hash = scan(ScanAction::Hash);
        hash.text("from Jane@Example.com", &mut findings, &mut a);
        hash.text("?u=jane%40example.com", &mut findings, &mut b);
        let digest = "8c87b489ce35cf2e2f39f80e282cb2e804932a56a213983eeeb428407d43b52d";
        assert_eq!(a, format!("from {digest}"));
        assert_eq!(b, format!("?u={digest}"));
    }

    #[test]
    fn hmac_gives_keyed_pseudonyms() {
        let key = Arc::new(PseudonymKey::new(b"0123456789abcdef".to_vec()));
        let mut findings = Vec::new();
        let mut out = String::new();
        scan(ScanAction::Hmac(key.clone())).text("ssn 123-45-6789", &mut findings, &mut out);
        assert_eq!(
            out,
            format!("ssn {}", key.pseudonym("", PSEUDONYM_LENGTH, b"123456789"))
        );
    }

    #[test]
    fn drop_and_reject_say_so() {
        let mut findings = Vec::new();
        let mut out = String::new();
        let text = "card 4111 1111 1111 1111";
        assert_eq!(
            scan(ScanAction::Drop).text(text, &mut findings, &mut out),
            Scanned::Drop
        );
        assert_eq!(
            scan(ScanAction::Reject).text(text, &mut findings, &mut out),
            Scanned::Reject(Detector::Card)
        );
    }
}
