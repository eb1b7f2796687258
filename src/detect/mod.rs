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

use serde::Deserialize;

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
        Detectors {
            enabled: Detector::ALL
                .into_iter()
                .filter(|d| enabled.contains(d))
                .collect(),
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
        let triggers = Triggers::of(text);
        self.enabled.iter().any(|&d| triggers.may_find(d))
    }

    fn find_once(&self, text: &str, out: &mut Vec<Finding>) {
        out.clear();
        // Most strings of a body (names of events, currencies, titles,
        // digests, ids) give no detector a place to start: one pass over
        // the bytes says so, and which detectors have one.
        let triggers = Triggers::of(text.as_bytes());
        if !self.enabled.iter().any(|&d| triggers.may_find(d)) {
            return;
        }
        let mut found = Vec::new();
        for &detector in &self.enabled {
            found.clear();
            if !triggers.may_find(detector) {
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

/// Which detectors have a place in a text to start from: for each, a
/// condition every one of its findings meets, so that a text that gives
/// none is left at once. Most strings of a body (names of events,
/// currencies, titles, digests, ids) give none.
#[derive(Clone, Copy, Default)]
struct Triggers {
    /// An `@`, or `%40`.
    email: bool,
    /// Where a finding may start (a digit, `+`, `(` or `%2B` that
    /// [`starts_apart`]), a run of digits and separators with at least
    /// [`MIN_NUMBER_DIGITS`] digits: cards, SSNs and phones have that many.
    numbers: bool,
    /// Two capitals and two digits, the first capital apart.
    iban: bool,
    /// A byte an IP address holds: `ip` is opt-in, and its own pass is the
    /// test.
    ip: bool,
}

/// The fewest digits a card (13), an SSN (9) or a phone number holds: the
/// shortest numbers libphonenumber knows, with their country code, have 6
/// (`+43 1234`); one less, for a margin.
const MIN_NUMBER_DIGITS: usize = 5;

fn may_start_number(b: u8) -> bool {
    b.is_ascii_digit() || matches!(b, b'+' | b'(' | b'%')
}

impl Triggers {
    fn of(text: &[u8]) -> Triggers {
        let Some(&first) = text.first() else {
            return Triggers::default();
        };
        // One word (a digest, an id, a name; branch-free, so vector code):
        // only the whole of it stands apart, so only an unformatted card
        // or IBAN can be found in it.
        if text.iter().fold(true, |all, &b| all & is_word(b)) {
            let digits = |range: std::ops::Range<usize>| {
                text.get(range)
                    .is_some_and(|d| d.iter().all(u8::is_ascii_digit))
            };
            return Triggers {
                numbers: first.is_ascii_digit() && digits(0..MIN_NUMBER_DIGITS),
                iban: text.len() > 4
                    && first.is_ascii_uppercase()
                    && text[1].is_ascii_uppercase()
                    && digits(2..4),
                ..Triggers::default()
            };
        }
        // Branch-free, so that it compiles to vector code: one pass over
        // the text tells whether any place after the first may start a
        // number (a digit, `+`, `(` or `%` that starts apart), whether two
        // capitals stand together, whether an `@`, a `%`, a digit or a
        // colon is there.
        let second = text.get(1).copied().unwrap_or(b' ');
        let mut later_start = text.len() > 1 && may_start_number(second) && starts_apart(text, 1);
        let mut capitals = first.is_ascii_uppercase() & second.is_ascii_uppercase();
        let mut ip = false;
        let mut at_sign = false;
        let mut percent = false;
        for &b in &text[..text.len().min(2)] {
            ip |= b.is_ascii_digit() | (b == b':');
            at_sign |= b == b'@';
            percent |= b == b'%';
        }
        let (from_second, from_third) = (&text[1..], text.get(2..).unwrap_or_default());
        for ((&before_that, &before), &b) in text.iter().zip(from_second).zip(from_third) {
            let apart = !is_word(before) & !(is_joiner(before) & is_word(before_that));
            later_start |= may_start_number(b) & apart;
            capitals |= before.is_ascii_uppercase() & b.is_ascii_uppercase();
            ip |= b.is_ascii_digit() | (b == b':');
            at_sign |= b == b'@';
            percent |= b == b'%';
        }
        let email = at_sign || (percent && escape_in(text, b"40"));
        let mut numbers =
            may_start_number(first) && number_digits_from(text, 0) >= MIN_NUMBER_DIGITS;
        if !numbers && later_start {
            numbers = (1..text.len()).any(|at| {
                may_start_number(text[at])
                    && starts_apart(text, at)
                    && number_digits_from(text, at) >= MIN_NUMBER_DIGITS
            });
        }
        let iban = capitals
            && text.windows(4).enumerate().any(|(at, w)| {
                w[0].is_ascii_uppercase()
                    && w[1].is_ascii_uppercase()
                    && w[2].is_ascii_digit()
                    && w[3].is_ascii_digit()
                    && (at == 0 || !is_word(text[at - 1]))
            });
        Triggers {
            email,
            numbers,
            iban,
            ip,
        }
    }

    fn may_find(self, detector: Detector) -> bool {
        match detector {
            Detector::Email => self.email,
            Detector::Card | Detector::Ssn | Detector::Phone => self.numbers,
            Detector::Iban => self.iban,
            Detector::Ip => self.ip,
        }
    }
}

/// Whether `text` holds `%` followed by `hex` (either case).
fn escape_in(text: &[u8], hex: &[u8; 2]) -> bool {
    memchr::memchr_iter(b'%', text).any(|at| {
        text.get(at + 1..at + 3)
            .is_some_and(|escape| escape.eq_ignore_ascii_case(hex))
    })
}

/// How many digits the run of digits and separators (` -.()`) starting at
/// `at` holds; a `+` or `%2B` (a phone's) opens it. A place that opens no
/// run holds none.
fn number_digits_from(text: &[u8], at: usize) -> usize {
    let from = match text[at] {
        b'+' => at + 1,
        b'%' if text
            .get(at + 1..at + 3)
            .is_some_and(|e| e.eq_ignore_ascii_case(b"2B")) =>
        {
            at + 3
        }
        b'%' => return 0,
        _ => at,
    };
    let mut digits = 0;
    for &b in &text[from.min(text.len())..] {
        if b.is_ascii_digit() {
            digits += 1;
            if digits >= MIN_NUMBER_DIGITS {
                break;
            }
        } else if !matches!(b, b' ' | b'-' | b'.' | b'(' | b')') {
            break;
        }
    }
    digits
}

#[cfg(test)]
mod tests {
    use super::*;

    use proptest::strategy::Strategy;

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(3000))]

        /// The triggers are a filter only: wherever a detector, run on its
        /// own, finds something, its trigger holds.
        #[test]
        fn a_trigger_holds_wherever_its_detector_finds(
            pieces in proptest::collection::vec(
                proptest::prop_oneof![
                    "[0-9]{1,16}",
                    "[ +().\\-/@%:_]{1,3}",
                    "[a-zA-Z]{1,6}",
                    proptest::sample::select(vec![
                        "jane.doe@example.com", "jane%40example.com", "+1 415 555 2671",
                        "4111 1111 1111 1111", "4111-1111-1111-1111", "DE89 3704 0044 0532 0130 00",
                        "078-05-1120", "(212) 555-0143", "%2B14155552671", "+43 1 1234",
                        "+290 2222", "2001:db8::1", "192.0.2.1", "GB82WEST12345698765432",
                    ]).prop_map(str::to_owned),
                ],
                0..10,
            )
        ) {
            let text: String = pieces.concat();
            let triggers = Triggers::of(text.as_bytes());
            let region = Some(phonenumber::country::Id::US);
            let lengths = phone::national_lengths(region);
            for detector in Detector::ALL {
                let mut found = Vec::new();
                match detector {
                    Detector::Email => email::find(&text, &mut found),
                    Detector::Phone => phone::find(&text, region, lengths, &mut found),
                    Detector::Card => numbers::find_cards(&text, &mut found),
                    Detector::Iban => numbers::find_ibans(&text, &mut found),
                    Detector::Ssn => numbers::find_ssns(&text, &mut found),
                    Detector::Ip => numbers::find_ips(&text, &mut found),
                }
                proptest::prop_assert!(
                    found.is_empty() || triggers.may_find(detector),
                    "{} finds {:?} in {text:?}, but its trigger does not hold",
                    detector.as_str(),
                    found
                );
            }
        }
    }

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
