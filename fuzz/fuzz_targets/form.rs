//! Fuzzes the form rewriter with arbitrary bytes and arbitrary chunking.
//!
//! For each input and each of a few rule sets it checks: no panic; the same
//! result (output or error) whether fed whole or in chunks cut where a hash
//! of the input says; and, when the body is accepted, that the output keeps
//! every field no rule selects byte for byte and in order, holds no field a
//! `drop` rule selects, hashes every field a `hash` rule selects, hides no
//! selected name behind a `;`, and comes out unchanged when rewritten again.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;

#[path = "chunking.rs"]
mod chunking;
use chunking::chunks;
use scrim::policy::{Limits, OnInvalid, Rules, Unlisted};
use scrim::percent;
use scrim::rewrite::FormRewriter;
use scrim::transform::{Action, Encoding, Normalizer};

const HASHED: [&str; 2] = ["em", "user_data[ph]"];
const DROPPED: [&str; 1] = ["ip"];

fn rule_sets() -> Vec<Rules> {
    let hash = Action::Hash {
        normalizer: Normalizer::None,
        encoding: Encoding::Hex,
    };
    let build = |unlisted, on_invalid| {
        let mut rules: Vec<(String, Action, OnInvalid)> = HASHED
            .iter()
            .map(|name| (format!("$['{name}']"), hash.clone(), on_invalid))
            .collect();
        rules.extend(
            DROPPED
                .iter()
                .map(|name| (format!("$['{name}']"), Action::Drop, on_invalid)),
        );
        // Meta's `data=` field, a JSON document.
        rules.push(("$.data[*].em".into(), hash.clone(), on_invalid));
        rules.push(("$.keep".into(), Action::Keep, on_invalid));
        Rules::build(rules, unlisted, Limits::default()).unwrap()
    };
    vec![
        build(Unlisted::Keep, OnInvalid::Drop),
        build(Unlisted::Keep, OnInvalid::Redact),
        build(Unlisted::Drop, OnInvalid::Drop),
    ]
}

fn rewrite(rules: &Rules, chunks: &[&[u8]]) -> Result<Vec<u8>, scrim::rewrite::Error> {
    let mut rewriter = FormRewriter::new(rules, Vec::<Bytes>::new());
    for chunk in chunks {
        rewriter.write(Bytes::copy_from_slice(chunk))?;
    }
    Ok(rewriter.finish()?.0.concat())
}

fn is_digest(value: &[u8]) -> bool {
    value.len() == 64 && value.iter().all(u8::is_ascii_hexdigit)
}

/// The raw fields of a form, with their decoded names.
fn fields(body: &[u8]) -> Vec<(&[u8], Option<Vec<u8>>)> {
    body.split(|b| *b == b'&')
        .filter(|field| !field.is_empty())
        .map(|field| {
            let name = field.split(|b| *b == b'=').next().unwrap_or_default();
            (field, percent::decode(name))
        })
        .collect()
}

fn selected(name: &[u8]) -> bool {
    HASHED.iter().chain(&DROPPED).any(|n| n.as_bytes() == name) || name == b"data"
}

fuzz_target!(|data: &[u8]| {
    let chunked = chunks(data);
    for (set, rules) in rule_sets().iter().enumerate() {
        let whole = rewrite(rules, &[data]);
        assert_eq!(whole, rewrite(rules, &chunked), "chunking changed the result");
        let Ok(out) = whole else { continue };
        let kept_as_is = |name: &Option<Vec<u8>>| {
            name.as_deref().is_some_and(|name| {
                !selected(name) && (set != 2 || name == b"keep")
            })
        };
        let before: Vec<&[u8]> = fields(data)
            .into_iter()
            .filter(|(_, name)| kept_as_is(name))
            .map(|(field, _)| field)
            .collect();
        let after_fields = fields(&out);
        let after: Vec<&[u8]> = after_fields
            .iter()
            .filter(|(_, name)| kept_as_is(name))
            .map(|(field, _)| *field)
            .collect();
        assert_eq!(before, after, "fields no rule selects changed");
        for (field, name) in &after_fields {
            let name = name.as_deref().expect("output names decode");
            let value = field.splitn(2, |b| *b == b'=').nth(1).unwrap_or_default();
            assert!(!DROPPED.iter().any(|n| n.as_bytes() == name), "a dropped field left");
            if HASHED.iter().any(|n| n.as_bytes() == name) {
                // An empty value has nothing to hash and stays empty.
                assert!(
                    value.is_empty() || is_digest(value) || value == b"%5BREDACTED%5D",
                    "a hashed field left unhashed"
                );
            }
            for segment in field.split(|b| *b == b';').skip(1) {
                if let Some(at) = segment.iter().position(|b| *b == b'=') {
                    let hidden = percent::decode(&segment[..at]).unwrap_or_default();
                    assert!(
                        !(selected(&hidden) && !selected(name)),
                        "a selected name hides behind a `;`"
                    );
                }
            }
        }
        assert_eq!(
            rewrite(rules, &[&out]).as_deref(),
            Ok(&out[..]),
            "rewriting the output again changed it"
        );
    }
});
