//! `scan:`: identifiers in JSON strings and member names, query values and
//! scanned headers that no rule selects are replaced span by span, whatever
//! the chunking, and a `keep` rule exempts a value.

mod common;

use common::*;
use proptest::prelude::*;
use scrim::detect::{Detector, Scan, ScanAction};
use scrim::policy::Rules;
use scrim::rewrite::{Framing, Lookups};
use scrim::transform::Action;

fn scanning(mut rules: Rules, action: ScanAction) -> Rules {
    rules.scan = Some(Scan {
        action,
        ..Scan::preset_default(Some(phonenumber::country::Id::US))
    });
    rules
}

/// The output of `input` fed in every chunk size from 1 to its length;
/// asserts they all agree.
fn rewrite_every_way(rules: &Rules, input: &str) -> Result<String, String> {
    let whole = rewrite_chunked(rules, Framing::Single, input.as_bytes(), 0)
        .map(|(out, _)| String::from_utf8(out).unwrap())
        .map_err(|e| e.to_string());
    for chunk in 1..input.len() {
        let split = rewrite_chunked(rules, Framing::Single, input.as_bytes(), chunk)
            .map(|(out, _)| String::from_utf8(out).unwrap())
            .map_err(|e| e.to_string());
        assert_eq!(
            split.is_ok(),
            whole.is_ok(),
            "chunks of {chunk}: {split:?} vs {whole:?}"
        );
        if whole.is_ok() {
            assert_eq!(split, whole, "chunks of {chunk}");
        }
    }
    whole
}

#[test]
fn identifiers_in_unlisted_strings_are_redacted_in_place() {
    let rules = scanning(rules(&[("$.em", hash())]), ScanAction::Redact);
    let input = r#"{"em":"a@b.co","url":"https://shop.example/?u=jane%40example.com&x=1","note":"call +1 415 555 2671", "n": 4155552671, "deep":{"list":["card 4111 1111 1111 1111","SKU-123"]}}"#;
    let out = rewrite_every_way(&rules, input).unwrap();
    assert_eq!(
        out,
        format!(
            r#"{{"em":"{}","url":"https://shop.example/?u=%5Bemail%5D&x=1","note":"call [phone]", "n": 4155552671, "deep":{{"list":["card [card]","SKU-123"]}}}}"#,
            sha256_hex("a@b.co")
        )
    );
}

#[test]
fn member_names_are_scanned_too() {
    let rules = scanning(rules(&[("$.x", hash())]), ScanAction::Redact);
    let input = r#"{"jane@example.com":1,"x":"v","o":{"ssn 123-45-6789":true}}"#;
    let out = rewrite_every_way(&rules, input).unwrap();
    assert_eq!(
        out,
        format!(
            r#"{{"[email]":1,"x":"{}","o":{{"ssn [ssn]":true}}}}"#,
            sha256_hex("v")
        )
    );
}

#[test]
fn a_keep_rule_exempts_a_value_and_clean_bodies_pass_byte_for_byte() {
    let rules = scanning(rules(&[("$.email", Action::Keep)]), ScanAction::Redact);
    let input = "{ \"email\" : \"jane@example.com\", \"id\": \"ORD-2026-000123\", \"ts\": \"1733212800000\",\n \"esc\": \"a\\u0041\\n\" }";
    assert_eq!(rewrite_every_way(&rules, input).unwrap(), input);
}

#[test]
fn escaped_identifiers_are_found_and_the_string_re_escaped() {
    let rules = scanning(Rules::default(), ScanAction::Redact);
    let input = r#"["jane\u0040example.com \"quoted\""]"#;
    assert_eq!(
        rewrite_every_way(&rules, input).unwrap(),
        r#"["[email] \"quoted\""]"#
    );
}

#[test]
fn hash_drop_and_reject() {
    let input = r#"{"a":"mail Jane@Example.com","b":"fine"}"#;
    let hashed = rewrite_every_way(&scanning(Rules::default(), ScanAction::Hash), input).unwrap();
    assert_eq!(
        hashed,
        format!(
            r#"{{"a":"mail {}","b":"fine"}}"#,
            sha256_hex("jane@example.com")
        )
    );
    let dropped = rewrite_every_way(&scanning(Rules::default(), ScanAction::Drop), input).unwrap();
    assert_eq!(dropped, r#"{"a":null,"b":"fine"}"#);
    let rejected =
        rewrite_every_way(&scanning(Rules::default(), ScanAction::Reject), input).unwrap_err();
    assert!(rejected.contains("email found"), "{rejected}");
    assert!(!rejected.contains("Jane"), "{rejected}");
}

#[test]
fn a_string_longer_than_max_value_bytes_fails_closed() {
    let mut rules = scanning(Rules::default(), ScanAction::Redact);
    rules.limits.max_value_bytes = 256;
    let input = format!(r#"["{}"]"#, "x".repeat(300));
    let err = rewrite_every_way(&rules, &input).unwrap_err();
    assert!(err.contains("cannot be scanned"), "{err}");
    let short = format!(r#"["{}"]"#, "x".repeat(200));
    assert_eq!(rewrite_every_way(&rules, &short).unwrap(), short);
}

#[test]
fn findings_are_counted_and_explained_without_values() {
    let rules = scanning(Rules::default(), ScanAction::Redact);
    let input = br#"{"q":"jane@example.com or +1 415 555 2671","r":["x@y.org"]}"#;
    let mut rewriter =
        scrim::rewrite::JsonRewriter::new(&rules, Framing::Single, Vec::<bytes::Bytes>::new())
            .explain(true);
    rewriter.write(bytes::Bytes::from_static(input)).unwrap();
    let (_, report) = rewriter.finish().unwrap();
    assert_eq!(report.detections[Detector::Email as usize], 2);
    assert_eq!(report.detections[Detector::Phone as usize], 1);
    let explained = report.explain("r", &rules);
    assert!(explained.contains(r#""path":"$.q""#), "{explained}");
    assert!(explained.contains(r#""path":"$.r[0]""#), "{explained}");
    assert!(!explained.contains("jane"), "{explained}");
}

#[test]
fn query_values_are_scanned_decoded_and_encoded_again() {
    use scrim::rewrite::{QueryOutcome, Report, rewrite_query};
    let rules = scanning(
        rules(&[("query.keep_me", Action::Keep)]),
        ScanAction::Redact,
    );
    let mut report = Report::new(rules.rules.len(), false);
    let out = rewrite_query(
        &rules,
        "dl=https%3A%2F%2Fshop.example%2F%3Fe%3Djane%2540example.com&keep_me=a%40b.co&v=2",
        &mut report,
        &mut Lookups::default(),
    )
    .unwrap();
    assert_eq!(
        out,
        QueryOutcome::Rewritten(
            "dl=https%3A%2F%2Fshop.example%2F%3Fe%3D%255Bemail%255D&keep_me=a%40b.co&v=2".into()
        )
    );
    assert_eq!(report.detections[Detector::Email as usize], 1);
    let clean = rewrite_query(
        &rules,
        "utm_source=x&gclid=Cj0KCQ",
        &mut report,
        &mut Lookups::default(),
    )
    .unwrap();
    assert_eq!(clean, QueryOutcome::Unchanged);
}

#[test]
fn the_referer_and_listed_headers_are_scanned() {
    use scrim::rewrite::{HeaderOutcome, Report, rewrite_header};
    let mut rules = scanning(Rules::default(), ScanAction::Redact);
    if let Some(scan) = &mut rules.scan {
        scan.headers.push("x-page-url".into());
    }
    let mut report = Report::new(0, false);
    let referer = b"https://shop.example/account?email=jane%40example.com";
    assert_eq!(
        rewrite_header(
            &rules,
            "Referer",
            referer,
            &mut report,
            &mut Lookups::default()
        )
        .unwrap(),
        HeaderOutcome::Replace("https://shop.example/account?email=%5Bemail%5D".into())
    );
    assert_eq!(
        rewrite_header(
            &rules,
            "x-page-url",
            b"/p?tel=+14155552671",
            &mut report,
            &mut Lookups::default()
        )
        .unwrap(),
        HeaderOutcome::Replace("/p?tel=[phone]".into())
    );
    assert_eq!(
        rewrite_header(
            &rules,
            "x-other",
            b"jane@example.com",
            &mut report,
            &mut Lookups::default()
        )
        .unwrap(),
        HeaderOutcome::Unchanged
    );
    assert_eq!(report.total_detected(), 2);
}

#[test]
fn form_fields_no_rule_selects_are_scanned() {
    let rules = scanning(
        rules(&[("$.em", hash()), ("$.keep", Action::Keep)]),
        ScanAction::Redact,
    );
    let input = "em=a%40b.co&note=call+%2B1+415+555+2671&keep=x%40y.org&sku=SKU-1";
    let expected = format!(
        "em={}&note=call+%5Bphone%5D&keep=x%40y.org&sku=SKU-1",
        sha256_hex("a@b.co")
    );
    for chunk in 0..input.len() {
        let (out, report) = rewrite_form_chunked(&rules, input.as_bytes(), chunk).unwrap();
        assert_eq!(out, expected, "chunks of {chunk}");
        assert_eq!(report.total_detected(), 1);
    }
}

fn identifier() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec![
        "jane.doe@example.com",
        "jane%40example.com",
        "+1 415 555 2671",
        "4111 1111 1111 1111",
        "DE89 3704 0044 0532 0130 00",
        "123-45-6789",
    ])
}

fn filler() -> impl Strategy<Value = String> {
    "[a-z0-9 _/?=&.-]{0,12}"
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// Strings and names with identifiers planted at random: output the
    /// same for every chunking, valid JSON, and no identifier left.
    #[test]
    fn scanning_is_chunk_invariant_and_leaves_nothing(
        parts in prop::collection::vec((filler(), identifier(), filler(), any::<bool>()), 1..5),
        chunk in 1usize..40,
    ) {
        let rules = scanning(rules(&[("$.h", hash())]), ScanAction::Redact);
        let mut doc = String::from("{\"h\":\"x\"");
        for (i, (before, id, after, as_name)) in parts.iter().enumerate() {
            let text = format!("{before} {id} {after}");
            if *as_name {
                doc.push_str(&format!(",\"{text}\":{i}"));
            } else {
                doc.push_str(&format!(",\"k{i}\":[\"{text}\",{{\"n\":\"{text}\"}}]"));
            }
        }
        doc.push('}');
        let (whole, _) = rewrite_chunked(&rules, Framing::Single, doc.as_bytes(), 0).unwrap();
        let (split, _) = rewrite_chunked(&rules, Framing::Single, doc.as_bytes(), chunk).unwrap();
        prop_assert_eq!(&whole, &split);
        let text = String::from_utf8(whole).unwrap();
        serde_json::from_str::<serde_json::Value>(&text).unwrap();
        for (_, id, _, _) in &parts {
            prop_assert!(!text.contains(id), "{} left in {}", id, text);
        }
    }
}
