//! Detectors: identifiers found inside free text that no rule names (an
//! email address in a page URL, a phone number in an order note, a card
//! number in a gift message). Each candidate passes the identifier's own
//! validity check before it counts (Luhn for cards, mod 97 for IBANs,
//! libphonenumber's metadata for phones), and a digit run that is part of a
//! larger token (`ORD-2026-000123`, a hex digest) is never one. Detectors
//! say where a finding is, never what it was.

mod email;
mod numbers;
mod phone;
mod scan;
mod triggers;

use serde::Deserialize;
use triggers::Triggers;

pub(crate) use numbers::luhn;
pub use scan::{Scan, ScanAction, Scanned, rejection};

/// What a detector looks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Detector {
    /// `local@domain.tld`, also `%40` and `%2B` forms inside URLs.
    Email,
    /// `+CC …` international numbers, and numbers of the route's region
    /// written with separators, that libphonenumber holds valid.
    Phone,
    /// 13 to 19 digits, optionally grouped, with an issuer's prefix and a
    /// valid Luhn check digit.
    Card,
    /// An IBAN of its country's length whose check digits hold (mod 97).
    Iban,
    /// A US social security number written `NNN-NN-NNNN`, in the ranges
    /// the SSA assigns.
    Ssn,
    /// An IPv4 or IPv6 address in free text.
    Ip,
}

impl Detector {
    /// Every detector, in the order they look (an earlier one's finding
    /// wins where two overlap).
    pub const ALL: [Detector; 6] = [
        Detector::Email,
        Detector::Iban,
        Detector::Card,
        Detector::Ssn,
        Detector::Phone,
        Detector::Ip,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Detector::Email => "email",
            Detector::Phone => "phone",
            Detector::Card => "card",
            Detector::Iban => "iban",
            Detector::Ssn => "ssn",
            Detector::Ip => "ip",
        }
    }
}

/// One identifier found: the byte range it covers in the text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Finding {
    pub start: usize,
    pub end: usize,
    pub detector: Detector,
    /// Written percent-encoded (`jane%40example.com`): what replaces it is
    /// encoded too, so that a URL stays a URL.
    pub encoded: bool,
}

impl Finding {
    /// The length of `tag()`, without making it.
    fn tag_len(&self) -> usize {
        let name = self.detector.as_str().len();
        if self.encoded { name + 6 } else { name + 2 }
    }

    /// The tag `redact` puts in its place: `[email]`, or `%5Bemail%5D` where
    /// the finding was percent-encoded.
    pub fn tag(&self) -> String {
        let name = self.detector.as_str();
        if self.encoded {
            format!("%5B{name}%5D")
        } else {
            format!("[{name}]")
        }
    }
}

/// `text` with each finding replaced by its tag; the rest byte for byte.
pub fn redact(text: &str, findings: &[Finding], out: &mut String) {
    out.clear();
    let mut at = 0;
    for finding in findings {
        out.push_str(&text[at..finding.start]);
        out.push_str(&finding.tag());
        at = finding.end;
    }
    out.push_str(&text[at..]);
}

/// A set of detectors, as a route's `scan:` configures them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Detectors {
    enabled: Vec<Detector>,
    /// What a text must give one of the enabled detectors to be looked at.
    wanted: Triggers,
    /// The region national phone numbers are read in (`US`); without one
    /// only international (`+CC`) numbers are phones.
    region: Option<phonenumber::country::Id>,
    /// How many digits a national number of `region` may be written with
    /// (bit N: N digits), to spare libphonenumber the candidates that
    /// cannot be one.
    national_lengths: u32,
}

impl Detectors {
    pub fn new(enabled: &[Detector], region: Option<phonenumber::country::Id>) -> Detectors {
        let enabled: Vec<Detector> = Detector::ALL
            .into_iter()
            .filter(|d| enabled.contains(d))
            .collect();
        Detectors {
            wanted: Triggers::needed_by_any(&enabled),
            enabled,
            region,
            national_lengths: phone::national_lengths(region),
        }
    }

    /// The default set: every detector but `ip`, which matches version
    /// numbers too often to be on unasked.
    pub fn default_set(region: Option<phonenumber::country::Id>) -> Detectors {
        Detectors::new(
            &[
                Detector::Email,
                Detector::Phone,
                Detector::Card,
                Detector::Iban,
                Detector::Ssn,
            ],
            region,
        )
    }

    pub fn enabled(&self) -> &[Detector] {
        &self.enabled
    }

    pub fn region(&self) -> Option<phonenumber::country::Id> {
        self.region
    }

    /// The identifiers in `text`, in order and not overlapping, into `out`
    /// (cleared first).
    ///
    /// An identifier glued to another (`+1 415 555 2671+1 415 555 2671`) is
    /// refused at first for touching a word, and stands apart once its
    /// neighbour is redacted: so the redacted text is scanned again until it
    /// holds nothing, and what it shows is mapped back. Chains longer than
    /// `MAX_PASSES` are hostile, not typed: the rest of the text from the
    /// first identifier still unresolved becomes one finding (fail closed).
    pub fn find(&self, text: &str, out: &mut Vec<Finding>) {
        const MAX_PASSES: usize = 8;
        self.find_once(text, out);
        let mut redacted = String::new();
        let mut more = Vec::new();
        for pass in 1.. {
            if out.is_empty() {
                return;
            }
            redact(text, out, &mut redacted);
            self.find_once(&redacted, &mut more);
            let Some(first) = more.first().copied() else {
                return;
            };
            let mapped: Vec<Finding> = more.iter().filter_map(|f| unredact(out, *f)).collect();
            if mapped.is_empty() || pass == MAX_PASSES {
                // Nothing maps back (a finding that takes in a tag), or the
                // chain goes on: cover the rest of the text.
                // Text outside the tags is the original's byte for byte, so
                // either way this is a character boundary of `text`.
                let start =
                    unredact_offset(out, first.start).map_or_else(|start| start, |(at, _)| at);
                out.retain(|f| f.end <= start);
                out.push(Finding {
                    start,
                    end: text.len(),
                    detector: first.detector,
                    encoded: first.encoded,
                });
                return;
            }
            out.extend(mapped);
            out.sort_unstable_by_key(|f| f.start);
        }
    }

    /// Whether any enabled detector could find something in `text`: false
    /// for most strings of a body, told in one pass over the bytes, before
    /// they are read as UTF-8.
    pub fn may_find_in(&self, text: &[u8]) -> bool {
        Triggers::of(text).meet(self.wanted)
    }

    fn find_once(&self, text: &str, out: &mut Vec<Finding>) {
        out.clear();
        // Most strings of a body (names of events, currencies, titles,
        // digests, ids) give no detector a place to start: one pass over
        // the bytes says so, and which detectors have one.
        let triggers = Triggers::of(text.as_bytes());
        if !triggers.meet(self.wanted) {
            return;
        }
        let mut found = Vec::new();
        for &detector in &self.enabled {
            found.clear();
            if !triggers.meet(Triggers::needed_by(detector)) {
                continue;
            }
            match detector {
                Detector::Email => email::find(text, &mut found),
                Detector::Phone => {
                    phone::find(text, self.region, self.national_lengths, &mut found)
                }
                Detector::Card => numbers::find_cards(text, &mut found),
                Detector::Iban => numbers::find_ibans(text, &mut found),
                Detector::Ssn => numbers::find_ssns(text, &mut found),
                Detector::Ip => numbers::find_ips(text, &mut found),
            }
            for &(start, end) in &found {
                let overlaps = out.iter().any(|f| start < f.end && f.start < end);
                if !overlaps {
                    out.push(Finding {
                        start,
                        end,
                        detector,
                        encoded: percent_encoded(&text.as_bytes()[start..end]),
                    });
                }
            }
        }
        out.sort_unstable_by_key(|f| f.start);
    }
}

/// A finding in the text `redact` made of `findings` (sorted), at its place
/// in the original; none if it takes in a tag.
fn unredact(findings: &[Finding], found: Finding) -> Option<Finding> {
    let (start, tags_before) = unredact_offset(findings, found.start).ok()?;
    let (last, tags_through) = unredact_offset(findings, found.end - 1).ok()?;
    (tags_before == tags_through).then_some(Finding {
        start,
        end: last + 1,
        ..found
    })
}

/// Where an offset of the text `redact` made of `findings` (sorted) is in
/// the original, with how many tags come before it; inside a tag, the start
/// of what the tag replaced as the error.
fn unredact_offset(findings: &[Finding], offset: usize) -> Result<(usize, usize), usize> {
    let mut shift = 0isize;
    for (index, finding) in findings.iter().enumerate() {
        let tag_start = finding.start.saturating_add_signed(shift);
        if offset < tag_start {
            return Ok((offset.saturating_add_signed(-shift), index));
        }
        if offset < tag_start + finding.tag_len() {
            return Err(finding.start);
        }
        shift += finding.tag_len() as isize - (finding.end - finding.start) as isize;
    }
    Ok((offset.saturating_add_signed(-shift), findings.len()))
}

/// Whether a finding was written with the escapes of a URL: its `@` as
/// `%40` or its `+` as `%2B`.
fn percent_encoded(span: &[u8]) -> bool {
    span.windows(3)
        .any(|w| w[0] == b'%' && (w[1..] == *b"40" || w[1..].eq_ignore_ascii_case(b"2B")))
}

/// Whether the byte is part of a word: a letter or digit of any script.
fn is_word(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b >= 0x80
}

/// What joins two words into one token: `ORD-2026`, `v1.2`, `a_1`, `p/12`.
fn is_joiner(b: u8) -> bool {
    matches!(b, b'-' | b'_' | b'.' | b'/')
}

/// Whether `start..end` of `text` stands apart from what surrounds it: not
/// inside a word, and not joined to one by `-`, `_`, `.` or `/` (the
/// `2026-000123` of `ORD-2026-000123`, the digits of `v1.2.3`).
fn stands_apart(text: &[u8], start: usize, end: usize) -> bool {
    starts_apart(text, start) && ends_apart(text, end)
}

/// The half of [`stands_apart`] that looks before `start`: every finding
/// starts where this holds, so a detector may pass over a place where it
/// does not.
fn starts_apart(text: &[u8], start: usize) -> bool {
    match start.checked_sub(1).map(|i| text[i]) {
        None => true,
        Some(b) if is_word(b) => false,
        Some(b) if is_joiner(b) => start < 2 || !is_word(text[start - 2]),
        Some(_) => true,
    }
}

fn ends_apart(text: &[u8], end: usize) -> bool {
    match text.get(end) {
        None => true,
        Some(&b) if is_word(b) => false,
        // A sentence may end right after: "call 650-555-1212."
        Some(&b) if is_joiner(b) => text.get(end + 1).is_none_or(|&next| !is_word(next)),
        Some(_) => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tag_len_is_the_tags_length() {
        for detector in Detector::ALL {
            for encoded in [false, true] {
                let finding = Finding {
                    start: 0,
                    end: 1,
                    detector,
                    encoded,
                };
                assert_eq!(finding.tag_len(), finding.tag().len(), "{finding:?}");
            }
        }
    }

    fn kinds(detectors: &Detectors, text: &str) -> Vec<(Detector, String)> {
        let mut out = Vec::new();
        detectors.find(text, &mut out);
        out.iter()
            .map(|f| (f.detector, text[f.start..f.end].to_owned()))
            .collect()
    }

    #[test]
    fn finds_each_kind_in_free_text() {
        let all = Detectors::new(&Detector::ALL, Some(phonenumber::country::Id::US));
        let text = "Hi, I'm jane.doe+ads@example.com, call (650) 253-0000 or +44 20 7946 0958; \
                    card 4111 1111 1111 1111, IBAN DE89 3704 0044 0532 0130 00, SSN 078-05-1120, from 203.0.113.77.";
        assert_eq!(
            kinds(&all, text),
            vec![
                (Detector::Email, "jane.doe+ads@example.com".to_owned()),
                (Detector::Phone, "(650) 253-0000".to_owned()),
                (Detector::Phone, "+44 20 7946 0958".to_owned()),
                (Detector::Card, "4111 1111 1111 1111".to_owned()),
                (Detector::Iban, "DE89 3704 0044 0532 0130 00".to_owned()),
                (Detector::Ssn, "078-05-1120".to_owned()),
                (Detector::Ip, "203.0.113.77".to_owned()),
            ]
        );
    }

    #[test]
    fn redaction_replaces_the_spans_only_and_keeps_urls_urls() {
        let detectors = Detectors::default_set(None);
        let mut findings = Vec::new();
        let mut out = String::new();
        let url = "https://shop.example/?email=jane%40example.com&tel=%2B442079460958&step=3";
        detectors.find(url, &mut findings);
        redact(url, &findings, &mut out);
        assert_eq!(
            out,
            "https://shop.example/?email=%5Bemail%5D&tel=%5Bphone%5D&step=3"
        );
        let note = "Mail jane@example.com, card 4111-1111-1111-1111.";
        detectors.find(note, &mut findings);
        redact(note, &findings, &mut out);
        assert_eq!(out, "Mail [email], card [card].");
    }

    #[test]
    fn ids_and_digests_are_not_identifiers() {
        let all = Detectors::new(&Detector::ALL, Some(phonenumber::country::Id::US));
        for clean in [
            "ORD-2026-000123",
            "1764400000123",
            "fb.1.1558571054389.1098115397",
            "9780306406157",
            "sku-4111111111111111",
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            "logo@2x.png",
            "https://shop.example/p/2026-12-02/item?gclid=Cj0KCQiA&utm_source=x",
            "2026-12-02T10:00:00Z",
            "12.50",
        ] {
            assert_eq!(kinds(&all, clean), vec![], "{clean}");
        }
    }
}
