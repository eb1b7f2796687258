//! The detectors measured on the labelled corpus in `tests/data/scan/`
//! (made by `generate.py` there): every planted identifier must be found,
//! exactly where it was planted, by its own detector (recall at least 99%
//! per detector), and no clean value may hold a finding.

use std::collections::BTreeMap;

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
