//! Fuzzes the JSON rewriter with arbitrary bytes and arbitrary chunking.
//!
//! For each input and each of a few rule sets it checks: no panic; the same
//! result whether fed whole or in chunks cut where a hash of the input says;
//! acceptance exactly when serde_json accepts (below the depth limit; a
//! string that starts like JSON under a selector must be JSON, so such a body
//! may be refused); valid JSON out; and output equal, as values, to the
//! serde_json tree oracle (for a body without a member name twice in one
//! object, which the oracle cannot hold). With `scan:` on (the last rule
//! sets), where the oracle knows no detectors, the output instead must hold
//! no string or member name in which a detector still finds an identifier.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;

#[path = "chunking.rs"]
mod chunking;
use chunking::chunks;
use scrim::detect::{Detector, Detectors, Scan};
use scrim::policy::{Limits, OnInvalid, Rules, Unlisted};
use scrim::rewrite::{Framing, JsonRewriter, tree};
use scrim::transform::{Action, Encoding, Guard, Members, Normalizer};

const MAX_DEPTH: u32 = 64;

fn rule_sets() -> Vec<Rules> {
    let hash = Action::Hash {
        normalizer: Normalizer::None,
        encoding: Encoding::Hex,
    };
    let email = Action::Hash {
        normalizer: Normalizer::Email,
        encoding: Encoding::Hex,
    };
    let limits = Limits {
        max_depth: MAX_DEPTH,
        ..Limits::default()
    };
    let build = |rules: Vec<(&str, Action, OnInvalid)>, unlisted| {
        Rules::build(
            rules.into_iter().map(|(s, a, o)| (s.to_owned(), a, o)),
            unlisted,
            limits,
        )
        .unwrap()
    };
    vec![
        build(vec![], Unlisted::Keep),
        build(
            vec![("$..*", hash.clone(), OnInvalid::Drop)],
            Unlisted::Keep,
        ),
        build(
            vec![
                ("$.data[*].user_data.em", email, OnInvalid::Redact),
                ("$..a", Action::Drop, OnInvalid::Drop),
                ("$[1]", Action::Redact { with: "R".into() }, OnInvalid::Drop),
                ("$.*.b", hash.clone(), OnInvalid::Drop),
            ],
            Unlisted::Keep,
        ),
        build(
            vec![
                ("$.*[0]", hash.clone(), OnInvalid::Drop),
                ("$..k", Action::Keep, OnInvalid::Drop),
            ],
            Unlisted::Drop,
        ),
        // Guards and added members (consent decisions).
        build(
            vec![
                (
                    "$..*",
                    Action::Only {
                        when: Guard::ContainsEmail,
                        then: Box::new(Action::Drop),
                    },
                    OnInvalid::Drop,
                ),
                (
                    "$.data[*]",
                    Action::AddMembers(Members::new(&[("a", "[\"LDU\"]"), ("b", "0")])),
                    OnInvalid::Drop,
                ),
                (
                    "$.data[*].u",
                    Action::Only {
                        when: Guard::Email,
                        then: Box::new(hash),
                    },
                    OnInvalid::Reject,
                ),
            ],
            Unlisted::Keep,
        ),
        scanning(build(vec![], Unlisted::Keep)),
        scanning(build(
            vec![
                ("$..k", Action::Keep, OnInvalid::Drop),
                (
                    "$..*",
                    Action::Only {
                        when: Guard::Email,
                        then: Box::new(Action::Drop),
                    },
                    OnInvalid::Drop,
                ),
            ],
            Unlisted::Keep,
        )),
    ]
}

fn scanning(mut rules: Rules) -> Rules {
    rules.scan = Some(Scan {
        detectors: Detectors::new(&Detector::ALL, Some(phonenumber::country::Id::US)),
        ..Scan::preset_default(Some(phonenumber::country::Id::US))
    });
    rules
}

/// A string or member name of `value` in which the detectors still find
/// something (`$..k` is kept on purpose, so it is not looked at).
fn unredacted(detectors: &Detectors, value: &serde_json::Value) -> Option<String> {
    use serde_json::Value;
    let mut findings = Vec::new();
    let mut found = |text: &str| {
        detectors.find(text, &mut findings);
        (!findings.is_empty()).then(|| text.to_owned())
    };
    match value {
        Value::String(text) => found(text),
        Value::Array(items) => items.iter().find_map(|item| unredacted(detectors, item)),
        Value::Object(map) => map.iter().find_map(|(name, item)| {
            found(name).or_else(|| (name != "k").then(|| unredacted(detectors, item)).flatten())
        }),
        _ => None,
    }
}

fn rewrite(rules: &Rules, chunks: &[&[u8]]) -> Result<Vec<u8>, scrim::rewrite::Error> {
    // Counting fields for the inventory changes no byte, and checks (a debug
    // assertion) that each path's template hash, kept piece by piece, is its
    // text's.
    let mut rewriter =
        JsonRewriter::new(rules, Framing::Single, Vec::<Bytes>::new()).inventory(true);
    for chunk in chunks {
        rewriter.write(Bytes::copy_from_slice(chunk))?;
    }
    Ok(rewriter.finish()?.0.concat())
}

/// Brings both sides to a comparable form:
/// - serde_json rewrites some number texts (`0e1` becomes `0e+1`) even with
///   `arbitrary_precision`, so the oracle hashes a different text than the
///   one written: digests are compared as "a digest" (exact digests are
///   checked by the property tests, whose numbers are canonical);
/// - an embedded document keeps its formatting in the streaming output but is
///   re-serialized by the oracle: it is compared as the value it holds.
fn blind_digests(value: serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    match value {
        Value::String(s) if s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit()) => {
            Value::String("<digest>".into())
        }
        Value::String(s) if s.trim_start().starts_with(['{', '[']) => {
            match serde_json::from_str::<Value>(&s) {
                Ok(inner) => serde_json::json!({ "<embedded>": blind_digests(inner) }),
                Err(_) => Value::String(s),
            }
        }
        Value::Array(items) => Value::Array(items.into_iter().map(blind_digests).collect()),
        Value::Object(map) => Value::Object(
            map.into_iter()
                .map(|(k, v)| (k, blind_digests(v)))
                .collect(),
        ),
        other => other,
    }
}

/// Whether an object of the JSON text `body` has a member name twice. The
/// streaming rewriter judges each occurrence on its own (a guard may drop
/// one and keep another); serde_json's `Value`, and so the tree oracle,
/// keeps only the last. For such a body the oracle does not stand, and the
/// other checks (chunking, valid output, the scan) still do.
fn repeats_a_name(body: &[u8]) -> bool {
    use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
    use std::collections::HashSet;

    struct Repeats(bool);
    impl<'de> Visitor<'de> for &mut Repeats {
        type Value = ();
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("JSON")
        }
        fn visit_bool<E>(self, _: bool) -> Result<(), E> {
            Ok(())
        }
        fn visit_i64<E>(self, _: i64) -> Result<(), E> {
            Ok(())
        }
        fn visit_u64<E>(self, _: u64) -> Result<(), E> {
            Ok(())
        }
        fn visit_f64<E>(self, _: f64) -> Result<(), E> {
            Ok(())
        }
        fn visit_str<E>(self, _: &str) -> Result<(), E> {
            Ok(())
        }
        fn visit_unit<E>(self) -> Result<(), E> {
            Ok(())
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut items: A) -> Result<(), A::Error> {
            while items.next_element_seed(&mut *self)?.is_some() {}
            Ok(())
        }
        fn visit_map<A: MapAccess<'de>>(self, mut members: A) -> Result<(), A::Error> {
            let mut names = HashSet::new();
            while let Some(name) = members.next_key::<String>()? {
                self.0 |= !names.insert(name);
                members.next_value_seed(&mut *self)?;
            }
            Ok(())
        }
    }
    impl<'de> DeserializeSeed<'de> for &mut Repeats {
        type Value = ();
        fn deserialize<D: Deserializer<'de>>(self, json: D) -> Result<(), D::Error> {
            json.deserialize_any(self)
        }
    }
    let mut repeats = Repeats(false);
    let mut json = serde_json::Deserializer::from_slice(body);
    (&mut repeats).deserialize(&mut json).is_ok() && repeats.0
}

fuzz_target!(|data: &[u8]| {
    let chunked = chunks(data);
    let body = data.strip_prefix("\u{feff}".as_bytes()).unwrap_or(data);
    let parsed = serde_json::from_slice::<serde_json::Value>(body);
    let repeats = parsed.is_ok() && repeats_a_name(body);
    for rules in rule_sets() {
        let whole = rewrite(&rules, &[data]);
        assert_eq!(
            whole,
            rewrite(&rules, &chunked),
            "chunking changed the result"
        );
        match (&whole, &parsed) {
            (Ok(out), Ok(value)) => {
                // The byte order mark is kept; serde_json does not read one.
                let out = out.strip_prefix("\u{feff}".as_bytes()).unwrap_or(out);
                let out: serde_json::Value = serde_json::from_slice(out).expect("output is JSON");
                if let Some(scan) = &rules.scan {
                    if let Some(text) = unredacted(&scan.detectors, &out) {
                        panic!("an identifier survived the scan in {text:?}");
                    }
                    continue;
                }
                if repeats {
                    continue;
                }
                let expected =
                    tree::rewrite_value(&rules, value.clone(), &mut |_| {}).expect("oracle agrees");
                assert_eq!(
                    blind_digests(out),
                    blind_digests(expected),
                    "differs from the tree oracle"
                );
            }
            (Ok(_), Err(err)) => panic!("accepted what serde_json rejects: {err}"),
            (Err(err), Ok(_)) => assert!(
                err.is_too_deep() || err.is_rejected() || err.is_too_large() || err.is_embedded(),
                "rejected valid JSON: {err}"
            ),
            (Err(_), Err(_)) => {}
        }
    }
});
