//! Fuzzes the query rewriter with arbitrary query strings.
//!
//! For each input and each of a few rule sets it checks: no panic; and,
//! when the query is accepted, that every parameter no rule selects stays
//! byte for byte and in order, no dropped parameter is left, every hashed
//! one is a digest, no selected name hides behind a `;`, and the result is
//! unchanged when rewritten again.
#![no_main]

use libfuzzer_sys::fuzz_target;
use scrim::policy::{Limits, OnInvalid, Rules, Unlisted};
use scrim::percent;
use scrim::rewrite::{Lookups, QueryOutcome, Report, rewrite_query};
use scrim::transform::{Action, Encoding, Normalizer};

const HASHED: [&str; 2] = ["em", "user id"];
const DROPPED: [&str; 1] = ["ip"];

fn rule_sets() -> Vec<Rules> {
    let hash = Action::Hash {
        normalizer: Normalizer::Email,
        encoding: Encoding::Hex,
    };
    [OnInvalid::Drop, OnInvalid::Redact]
        .into_iter()
        .map(|on_invalid| {
            let mut rules: Vec<(String, Action, OnInvalid)> = HASHED
                .iter()
                .map(|name| (format!("query.{name}"), hash.clone(), on_invalid))
                .collect();
            rules.extend(
                DROPPED
                    .iter()
                    .map(|name| (format!("query.{name}"), Action::Drop, on_invalid)),
            );
            rules.push(("query.keep".into(), Action::Keep, on_invalid));
            Rules::build(rules, Unlisted::Keep, Limits::default()).unwrap()
        })
        .collect()
}

fn rewrite(rules: &Rules, query: &str) -> Result<String, scrim::rewrite::Error> {
    let mut report = Report::new(rules.rules.len(), false);
    Ok(match rewrite_query(rules, query, &mut report, &mut Lookups::default())? {
        QueryOutcome::Unchanged => query.to_owned(),
        QueryOutcome::Rewritten(query) => query,
    })
}

fn selected(name: &[u8]) -> bool {
    HASHED.iter().chain(&DROPPED).any(|n| n.as_bytes() == name)
}

fn pairs(query: &str) -> Vec<(&str, Option<Vec<u8>>)> {
    query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let name = pair.split('=').next().unwrap_or_default();
            (pair, percent::decode(name.as_bytes()))
        })
        .collect()
}

fuzz_target!(|data: &[u8]| {
    let Ok(query) = std::str::from_utf8(data) else {
        return;
    };
    for rules in rule_sets() {
        let Ok(out) = rewrite(&rules, query) else {
            continue;
        };
        let unselected = |pairs: Vec<(&str, Option<Vec<u8>>)>| -> Vec<String> {
            pairs
                .into_iter()
                .filter(|(_, name)| name.as_deref().is_some_and(|n| !selected(n)))
                .map(|(pair, _)| pair.to_owned())
                .collect()
        };
        assert_eq!(unselected(pairs(query)), unselected(pairs(&out)), "unselected parameters changed");
        for (pair, name) in pairs(&out) {
            let name = name.expect("output names decode");
            let value = pair.splitn(2, '=').nth(1).unwrap_or_default();
            assert!(!DROPPED.iter().any(|n| n.as_bytes() == name), "a dropped parameter left");
            if HASHED.iter().any(|n| n.as_bytes() == name) {
                // An empty value has nothing to hash and stays empty.
                assert!(
                    value.is_empty()
                        || (value.len() == 64 && value.bytes().all(|b| b.is_ascii_hexdigit()))
                        || value == "%5BREDACTED%5D",
                    "a hashed parameter left unhashed: {value}"
                );
            }
            for segment in pair.split(';').skip(1) {
                if let Some((hidden, _)) = segment.split_once('=') {
                    let hidden = percent::decode(hidden.as_bytes()).unwrap_or_default();
                    assert!(!selected(&hidden), "a selected name hides behind a `;`");
                }
            }
        }
        assert_eq!(rewrite(&rules, &out).as_deref(), Ok(out.as_str()), "not idempotent");
    }
});
