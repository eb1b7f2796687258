//! Property tests of the streaming JSON rewriter over generated documents and
//! rule sets:
//! - the output is valid JSON and equals the serde_json tree oracle
//!   (`scrim::rewrite::tree`) compared as values;
//! - any chunking of the input gives byte-identical output;
//! - no original string a rule replaced or removed appears in the output;
//! - with no rule matching, the output is the input, byte for byte.

mod common;

use common::*;
use proptest::prelude::*;
use scrim::policy::{Limits, OnInvalid, Rules, Unlisted};
use scrim::rewrite::{Framing, Outcome, tree};
use scrim::transform::{Action, Encoding, Guard, Members, Normalizer};
use serde_json::Value;

const KEYS: [&str; 5] = ["a", "b", "c", "d", "e"];

fn document() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        (-100_000i64..100_000).prop_map(Value::from),
        // Binary fractions: their text survives a parse, so the oracle sees
        // the same number text as the streaming rewriter.
        (-400_000i64..400_000).prop_map(|n| Value::from(n as f64 / 8.0)),
        Just(Value::String(String::new())),
    ];
    leaf.prop_recursive(5, 48, 5, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            prop::collection::btree_map(prop::sample::select(KEYS.to_vec()), inner, 0..5).prop_map(
                |map| Value::Object(map.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
            ),
        ]
    })
    .prop_map(|mut value| {
        let mut counter = 0;
        mark_strings(&mut value, &mut counter);
        value
    })
}

/// Gives every string (and some nulls) a unique marker, `s007Q…`, so that a
/// leaked value can be found in the output. The tail exercises escapes.
fn mark_strings(value: &mut Value, counter: &mut u32) {
    match value {
        // Every fourth string is shaped like an email, for `only_if`.
        Value::String(s) if (*counter).is_multiple_of(4) => {
            *counter += 1;
            *s = format!("s{counter:03}Q@example.com");
        }
        Value::String(s) => {
            *counter += 1;
            *s = format!("s{counter:03}Q\"é\n\\/😀");
        }
        Value::Null if (*counter).is_multiple_of(3) => {
            *counter += 1;
            *value = Value::String(format!("s{counter:03}Q"));
        }
        Value::Array(items) => items.iter_mut().for_each(|v| mark_strings(v, counter)),
        Value::Object(map) => map.values_mut().for_each(|v| mark_strings(v, counter)),
        _ => {}
    }
}

fn selector() -> impl Strategy<Value = String> {
    let key = prop::sample::select(KEYS.to_vec());
    let step = prop_oneof![
        key.clone().prop_map(|k| format!(".{k}")),
        key.clone().prop_map(|k| format!("['{k}']")),
        Just("[*]".to_owned()),
        Just(".*".to_owned()),
        (0u32..3).prop_map(|i| format!("[{i}]")),
        key.prop_map(|k| format!("..{k}")),
    ];
    prop::collection::vec(step, 0..4).prop_map(|steps| format!("${}", steps.concat()))
}

fn action() -> impl Strategy<Value = Action> {
    prop_oneof![
        Just(Action::Drop),
        Just(Action::Keep),
        Just(Action::KeepNormalized {
            normalizer: Normalizer::Email
        }),
        Just(Action::Redact {
            with: "[REDACTED]".to_owned()
        }),
        Just(Action::Hash {
            normalizer: Normalizer::None,
            encoding: Encoding::Hex
        }),
        Just(Action::Hash {
            normalizer: Normalizer::Email,
            encoding: Encoding::Base64
        }),
        Just(Action::Mask {
            keep_first: 0,
            keep_last: 4,
            with: '*'
        }),
        Just(Action::Generalize { keep_first: 3 }),
        Just(Action::TruncateIp {
            v4_prefix: 24,
            v6_prefix: 48
        }),
        Just(Action::Only {
            when: Guard::Email,
            then: Box::new(Action::Drop)
        }),
        Just(Action::AddMembers(Members::new(&[
            ("added", "[\"LDU\"]"),
            ("b", "0")
        ]))),
        Just(Action::Only {
            when: Guard::ContainsEmail,
            then: Box::new(Action::Hash {
                normalizer: Normalizer::Email,
                encoding: Encoding::Hex
            })
        }),
        Just(Action::Only {
            when: Guard::Email,
            then: Box::new(Action::Redact {
                with: "[REDACTED]".to_owned()
            })
        }),
    ]
}

fn rule_set() -> impl Strategy<Value = Rules> {
    let on_invalid =
        prop::sample::select(vec![OnInvalid::Drop, OnInvalid::Redact, OnInvalid::Reject]);
    let unlisted = prop::sample::select(vec![Unlisted::Keep, Unlisted::Keep, Unlisted::Drop]);
    (
        prop::collection::vec((selector(), action(), on_invalid), 0..5),
        unlisted,
    )
        .prop_map(|(rules, unlisted)| {
            Rules::build(rules, unlisted, Limits::default()).expect("generated selectors parse")
        })
}

/// The document as text: compact or pretty, and some member names written
/// with escapes (`"\u0065"` is `e`).
fn text_of(value: &Value, pretty: bool, escape_keys: bool) -> String {
    let text = if pretty {
        serde_json::to_string_pretty(value)
    } else {
        serde_json::to_string(value)
    }
    .unwrap();
    if escape_keys {
        text.replace("\"e\":", "\"\\u0065\":")
    } else {
        text
    }
}

fn cuts_to_chunks(input: &[u8], cuts: &[usize]) -> Vec<Vec<u8>> {
    let mut points: Vec<usize> = cuts.iter().map(|c| c % (input.len() + 1)).collect();
    points.sort_unstable();
    points.dedup();
    let mut chunks = Vec::new();
    let mut last = 0;
    for point in points.into_iter().chain([input.len()]) {
        chunks.push(input[last..point].to_vec());
        last = point;
    }
    chunks
}

fn rewrite_chunks(rules: &Rules, chunks: &[Vec<u8>]) -> Result<Vec<u8>, scrim::rewrite::Error> {
    let mut rewriter =
        scrim::rewrite::JsonRewriter::new(rules, Framing::Single, Vec::<bytes::Bytes>::new());
    for chunk in chunks {
        rewriter.write(bytes::Bytes::copy_from_slice(chunk))?;
    }
    Ok(rewriter.finish()?.0.concat())
}

/// The fields a rewrite of `chunks` counted, or its error.
fn inventory_of(
    rules: &Rules,
    chunks: &[Vec<u8>],
) -> Result<scrim::rewrite::Fields, scrim::rewrite::Error> {
    let mut rewriter =
        scrim::rewrite::JsonRewriter::new(rules, Framing::Single, Vec::<bytes::Bytes>::new())
            .inventory(true);
    for chunk in chunks {
        rewriter.write(bytes::Bytes::copy_from_slice(chunk))?;
    }
    let (_, report) = rewriter.finish()?;
    Ok(*report.fields.expect("the rewriter counts fields"))
}

fn scalars_in(value: &Value) -> u64 {
    match value {
        Value::Object(map) => map.values().map(scalars_in).sum(),
        Value::Array(items) => items.iter().map(scalars_in).sum(),
        _ => 1,
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 768, ..ProptestConfig::default() })]

    #[test]
    fn streaming_equals_the_tree_oracle_and_leaks_nothing(
        doc in document(),
        rules in rule_set(),
        pretty in any::<bool>(),
        escape_keys in any::<bool>(),
    ) {
        let text = text_of(&doc, pretty, escape_keys);
        let mut forgotten = Vec::new();
        let expected = tree::rewrite_value(&rules, doc.clone(), &mut |s| forgotten.push(s.to_owned()));
        let streamed = rewrite_chunked(&rules, Framing::Single, text.as_bytes(), 0);
        match (expected, streamed) {
            (Err(_), Err(err)) => prop_assert!(err.is_rejected(), "{err}"),
            (Ok(expected), Ok((out, _))) => {
                let parsed: Value = serde_json::from_slice(&out)
                    .map_err(|e| TestCaseError::fail(format!("invalid JSON out: {e}: {}", String::from_utf8_lossy(&out))))?;
                prop_assert_eq!(parsed, expected);
                let out = String::from_utf8(out).unwrap();
                for secret in forgotten {
                    let marker = &secret[..secret.find('Q').map_or(secret.len(), |q| q + 1)];
                    prop_assert!(!out.contains(marker), "{marker} leaked: {out}");
                }
            }
            (expected, streamed) => prop_assert!(false, "oracle {expected:?} vs streaming {streamed:?}"),
        }
    }

    #[test]
    fn any_chunking_gives_the_same_bytes(
        doc in document(),
        rules in rule_set(),
        pretty in any::<bool>(),
        cuts in prop::collection::vec(any::<usize>(), 0..12),
    ) {
        let text = text_of(&doc, pretty, true);
        let whole = rewrite_chunked(&rules, Framing::Single, text.as_bytes(), 0);
        let chunked = rewrite_chunks(&rules, &cuts_to_chunks(text.as_bytes(), &cuts));
        match (whole, chunked) {
            (Ok((a, _)), Ok(b)) => prop_assert_eq!(a, b),
            (Err(a), Err(b)) => prop_assert_eq!(a, b),
            (a, b) => prop_assert!(false, "whole {a:?} vs chunked {b:?}"),
        }
    }

    #[test]
    fn the_inventory_is_the_same_however_chunked(
        doc in document(),
        rules in rule_set(),
        cuts in prop::collection::vec(any::<usize>(), 0..12),
    ) {
        let text = text_of(&doc, false, true);
        let whole = inventory_of(&rules, &[text.as_bytes().to_vec()]);
        let chunked = inventory_of(&rules, &cuts_to_chunks(text.as_bytes(), &cuts));
        prop_assert_eq!(whole, chunked);
    }

    #[test]
    fn the_inventory_counts_every_scalar_once(doc in document(), pretty in any::<bool>()) {
        let text = text_of(&doc, pretty, true);
        let fields = inventory_of(&common::rules(&[]), &[text.into_bytes()]).unwrap();
        let counted: u64 = fields.paths().map(|(_, counts)| counts.iter().sum::<u64>()).sum();
        prop_assert_eq!(counted + fields.overflow, scalars_in(&doc));
        for (path, counts) in fields.paths() {
            prop_assert_eq!(counts.iter().sum::<u64>(), counts[Outcome::Kept as usize], "{}", path);
        }
    }

    #[test]
    fn every_split_point_gives_the_same_bytes(doc in document(), rules in rule_set()) {
        let text = text_of(&doc, false, true);
        let whole = rewrite_chunked(&rules, Framing::Single, text.as_bytes(), 0).map(|(out, _)| out);
        for cut in 0..=text.len() {
            let chunks = vec![text.as_bytes()[..cut].to_vec(), text.as_bytes()[cut..].to_vec()];
            prop_assert_eq!(&rewrite_chunks(&rules, &chunks), &whole, "cut at {}", cut);
        }
    }

    #[test]
    fn without_a_match_output_is_input(doc in document(), pretty in any::<bool>()) {
        let rules = common::rules(&[("$.zz", Action::Drop), ("$..zz[*]", Action::Drop)]);
        let text = text_of(&doc, pretty, true);
        let (out, report) = rewrite_chunked(&rules, Framing::Single, text.as_bytes(), 7).unwrap();
        prop_assert_eq!(out, text.into_bytes());
        prop_assert!(!report.changed());
    }
}

/// A document whose objects may repeat a member name (RFC 8259 allows it;
/// parsers disagree on which occurrence counts, so every one is rewritten).
#[derive(Clone, Debug)]
enum Node {
    Str,
    /// A string with nothing to find in it: empty, spaces, escaped blanks.
    Blank(usize),
    Num(i64),
    Arr(Vec<Node>),
    Obj(Vec<(usize, Node)>),
}

fn repeating_document() -> impl Strategy<Value = Node> {
    let leaf = prop_oneof![
        Just(Node::Str),
        (0..BLANKS.len()).prop_map(Node::Blank),
        (-99i64..99).prop_map(Node::Num)
    ];
    leaf.prop_recursive(4, 40, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Node::Arr),
            // Two keys only: repeats are frequent.
            prop::collection::vec((0..2usize, inner), 0..6).prop_map(Node::Obj),
        ]
    })
}

const BLANKS: [&str; 4] = ["", "  ", "\\n\\t", " \\r"];

#[derive(Clone, Debug, PartialEq)]
enum Step {
    Key(usize),
    Index,
}

/// Writes the document, each string a unique marker, and lists the markers
/// with the path to them.
fn render(
    node: &Node,
    path: &mut Vec<Step>,
    out: &mut String,
    markers: &mut Vec<(String, Vec<Step>)>,
) {
    match node {
        Node::Str => {
            let marker = format!("m{:04}Q", markers.len());
            out.push_str(&format!("\"{marker}\""));
            markers.push((marker, path.clone()));
        }
        Node::Blank(i) => out.push_str(&format!("\"{}\"", BLANKS[*i])),
        Node::Num(n) => out.push_str(&n.to_string()),
        Node::Arr(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                path.push(Step::Index);
                render(item, path, out, markers);
                path.pop();
            }
            out.push(']');
        }
        Node::Obj(members) => {
            out.push('{');
            for (i, (key, value)) in members.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&format!("\"{}\":", KEYS[*key]));
                path.push(Step::Key(*key));
                render(value, path, out, markers);
                path.pop();
            }
            out.push('}');
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// Every occurrence of a repeated member is rewritten: no string at or
    /// below a selected place survives, every other string does.
    #[test]
    fn every_occurrence_of_a_repeated_member_is_rewritten(
        doc in repeating_document(),
        descendant in 0..2usize,
        child in 0..2usize,
        grandchild in 0..2usize,
        chunk in 0..9usize,
    ) {
        let rules = rules_with(
            &[
                (&format!("$..{}", KEYS[descendant]), hash()),
                (&format!("$.{}", KEYS[child]), Action::Drop),
                (&format!("$.*.{}", KEYS[grandchild]), Action::Redact { with: "[REDACTED]".into() }),
            ],
            Unlisted::Keep,
            OnInvalid::Drop,
        );
        // By the definition of each selector, on the path from the root.
        let selects = |path: &[Step]| {
            path.last() == Some(&Step::Key(descendant))
                || path == [Step::Key(child)]
                || (path.len() == 2 && path[1] == Step::Key(grandchild))
        };
        let mut text = String::new();
        let mut markers = Vec::new();
        render(&doc, &mut Vec::new(), &mut text, &mut markers);
        let (out, _) = rewrite_chunked(&rules, Framing::Single, text.as_bytes(), chunk).unwrap();
        let out = String::from_utf8(out).unwrap();
        serde_json::from_str::<Value>(&out).map_err(|e| TestCaseError::fail(format!("{e}: {out}")))?;
        for (marker, path) in markers {
            let selected = (1..=path.len()).any(|depth| selects(&path[..depth]));
            prop_assert_eq!(
                out.contains(&marker), !selected,
                "{} at {:?} in {} became {}", marker, path, text, out
            );
        }
    }
}
