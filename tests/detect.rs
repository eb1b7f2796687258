//! The detectors measured on the labelled corpus in `tests/data/scan/`
//! (made by `generate.py` there): every planted identifier must be found,
//! exactly where it was planted, by its own detector (recall at least 99%
//! per detector), and no clean value may hold a finding.

use std::collections::BTreeMap;

use proptest::strategy::Strategy;
use scrim::detect::{Detector, Detectors, Finding};
use serde_json::Value;

fn rows(name: &str) -> Vec<Value> {
    let path = format!("{}/tests/data/scan/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|err| panic!("{path}: {err}"));
    text.lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|err| panic!("{path}: {err}")))
        .collect()
}

fn detectors() -> Detectors {
    Detectors::default_set(Some(phonenumber::country::Id::US))
}

#[test]
fn every_planted_identifier_is_found_where_it_was_planted() {
    let detectors = detectors();
    let mut counts: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    let mut missed = Vec::new();
    let mut findings: Vec<Finding> = Vec::new();
    for row in rows("planted.jsonl") {
        let (Some(kind), Some(value), Some(text)) = (
            row["detector"].as_str(),
            row["value"].as_str(),
            row["text"].as_str(),
        ) else {
            panic!("a row without detector, value and text: {row}");
        };
        let start = text.find(value).expect("the value is in its text");
        let expected = (start, start + value.len());
        detectors.find(text, &mut findings);
        let found = findings
            .iter()
            .any(|f| f.detector.as_str() == kind && (f.start, f.end) == expected);
        let entry = counts.entry(kind.to_owned()).or_default();
        entry.0 += 1;
        if found {
            entry.1 += 1;
        } else {
            missed.push(format!("{kind}: {text}"));
        }
    }
    for miss in missed.iter().take(10) {
        eprintln!("missed {miss}");
    }
    for (kind, (planted, found)) in &counts {
        let recall = *found as f64 / *planted as f64;
        eprintln!("{kind}: {found} of {planted} found, recall {recall:.4}");
        assert!(
            recall >= 0.99,
            "{kind}: recall {recall:.4}; missed, for instance:\n{}",
            missed
                .iter()
                .filter(|m| m.starts_with(kind.as_str()))
                .take(10)
                .cloned()
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
    let detected: Vec<&str> = Detector::ALL
        .iter()
        .filter(|d| **d != Detector::Ip)
        .map(|d| d.as_str())
        .collect();
    assert_eq!(
        counts.keys().map(String::as_str).collect::<Vec<_>>().len(),
        detected.len(),
        "each default detector has planted identifiers"
    );
    assert!(counts.values().map(|c| c.0).sum::<usize>() >= 2000);
}

#[test]
fn no_clean_value_holds_a_finding() {
    let detectors = detectors();
    let mut findings = Vec::new();
    let mut false_positives = Vec::new();
    let clean = rows("clean.jsonl");
    assert!(clean.len() >= 10_000);
    for row in &clean {
        let text = row["text"].as_str().expect("a text");
        detectors.find(text, &mut findings);
        for f in &findings {
            false_positives.push(format!(
                "{}: {:?} in {text:?}",
                f.detector.as_str(),
                &text[f.start..f.end]
            ));
        }
    }
    eprintln!(
        "{} clean values, {} false positives",
        clean.len(),
        false_positives.len()
    );
    assert!(
        false_positives.is_empty(),
        "{} false positives, for instance:\n{}",
        false_positives.len(),
        false_positives[..false_positives.len().min(20)].join("\n")
    );
}

/// Redaction replaces the planted span only, with its tag (percent-encoded
/// where the identifier was), and leaves nothing a detector finds.
#[test]
fn redaction_leaves_the_text_around_and_nothing_to_find() {
    let detectors = detectors();
    let mut findings = Vec::new();
    let mut out = String::new();
    for row in rows("planted.jsonl") {
        let (Some(value), Some(text)) = (row["value"].as_str(), row["text"].as_str()) else {
            panic!("a row without value and text: {row}");
        };
        detectors.find(text, &mut findings);
        let Some(finding) = findings.iter().find(|f| &text[f.start..f.end] == value) else {
            continue;
        };
        scrim::detect::redact(text, &findings, &mut out);
        assert_eq!(out, text.replacen(value, &finding.tag(), 1), "{text}");
        detectors.find(&out, &mut findings);
        assert!(findings.is_empty(), "{out}: {findings:?}");
    }
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2000))]

    /// On any text, digits, separators and addresses mixed: the findings are
    /// in order, apart, on character boundaries, and the redacted text holds
    /// nothing a detector finds (a redaction never joins what it cut into a
    /// new identifier).
    #[test]
    fn findings_are_ordered_spans_and_redaction_leaves_none(
        pieces in proptest::collection::vec(
            proptest::prop_oneof![
                "[0-9]{1,19}",
                "[ +().\\-/@%_]{1,3}",
                "[a-zA-Zé]{1,8}",
                proptest::sample::select(vec![
                    "jane.doe@example.com", "jane%40example.com", "+1 415 555 2671",
                    "4111 1111 1111 1111", "4111111111111111", "DE89370400440532013000",
                    "078-05-1120", "(212) 555-0143", "%2B14155552671",
                ]).prop_map(str::to_owned),
            ],
            0..12,
        )
    ) {
        let text: String = pieces.concat();
        let detectors = detectors();
        let mut findings = Vec::new();
        detectors.find(&text, &mut findings);
        let mut at = 0;
        for finding in &findings {
            proptest::prop_assert!(at <= finding.start && finding.start < finding.end);
            proptest::prop_assert!(finding.end <= text.len());
            proptest::prop_assert!(text.is_char_boundary(finding.start));
            proptest::prop_assert!(text.is_char_boundary(finding.end));
            at = finding.end;
        }
        let mut redacted = String::new();
        scrim::detect::redact(&text, &findings, &mut redacted);
        detectors.find(&redacted, &mut findings);
        proptest::prop_assert!(findings.is_empty(), "{text:?} -> {redacted:?}: {findings:?}");
    }
}

/// Identifiers glued to each other are each found; a chain longer than the
/// rescans go is covered from where it is still unresolved to the end.
#[test]
fn glued_identifiers_are_found_and_a_long_chain_is_covered() {
    let detectors = detectors();
    let mut findings = Vec::new();
    let two = "+1 415 555 2671+1 415 555 2671";
    detectors.find(two, &mut findings);
    let spans: Vec<&str> = findings.iter().map(|f| &two[f.start..f.end]).collect();
    assert_eq!(spans, ["+1 415 555 2671", "+1 415 555 2671"]);

    let chain = format!("note {}", "+1 415 555 2671".repeat(40));
    detectors.find(&chain, &mut findings);
    let mut redacted = String::new();
    scrim::detect::redact(&chain, &findings, &mut redacted);
    assert!(redacted.starts_with("note [phone]"), "{redacted}");
    assert!(!redacted.contains("2671"), "{redacted}");
}
