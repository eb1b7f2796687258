//! Fuzzes the rewriter of URL-encoded lines (gtag.js batches, `text_plain:
//! query_lines`) with the `ga4_web` preset's rules, arbitrary bytes and
//! arbitrary chunking.
//!
//! For each input it checks: no panic; the same result (output or error)
//! whether fed whole or in chunks cut where a hash of the input says; and,
//! when the body is accepted, that it has as many lines as it came with,
//! each the line rewritten as a query string is, and that no parameter the
//! preset drops is left in any line.
#![no_main]

use std::sync::OnceLock;

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;

#[path = "chunking.rs"]
mod chunking;
use chunking::chunks;
use scrim::policy::Rules;
use scrim::percent;
use scrim::rewrite::{Lookups, QueryLinesRewriter, QueryOutcome, Report, rewrite_query};

const DROPPED: [&str; 4] = ["uid", "_uip", "sct", "uafvl"];

fn rules() -> &'static Rules {
    static RULES: OnceLock<Rules> = OnceLock::new();
    RULES.get_or_init(|| {
        let yaml = "routes:\n  - name: ga4\n    match: {path_prefix: /}\n    upstream: https://ga.example\n    preset: ga4_web\n    site: [shop.example]\n";
        let config = scrim::config::Config::parse(yaml, "fuzz.yaml").unwrap();
        let env = |_: &str| None;
        let policy = scrim::policy::compile(&config, "fuzz.yaml", &env).unwrap();
        policy.routes[0].rules.clone()
    })
}

fn rewrite(rules: &Rules, chunks: &[&[u8]]) -> Result<Vec<u8>, scrim::rewrite::Error> {
    let mut rewriter = QueryLinesRewriter::new(rules, Vec::<Bytes>::new());
    for chunk in chunks {
        rewriter.write(Bytes::copy_from_slice(chunk))?;
    }
    Ok(rewriter.finish()?.0.concat())
}

fuzz_target!(|data: &[u8]| {
    let rules = rules();
    let whole = rewrite(rules, &[data]);
    assert_eq!(whole, rewrite(rules, &chunks(data)), "chunking changed the result");
    let Ok(out) = whole else {
        return;
    };
    let lines_in: Vec<&[u8]> = data.split(|b| *b == b'\n').collect();
    let lines_out: Vec<&[u8]> = out.split(|b| *b == b'\n').collect();
    assert_eq!(lines_in.len(), lines_out.len(), "lines added or lost");
    for (line_in, line_out) in lines_in.iter().zip(&lines_out) {
        let text_in = std::str::from_utf8(line_in.strip_suffix(b"\r").unwrap_or(line_in))
            .expect("an accepted line is UTF-8");
        let text_out = std::str::from_utf8(line_out.strip_suffix(b"\r").unwrap_or(line_out))
            .expect("a rewritten line is UTF-8");
        let mut report = Report::new(rules.rules.len(), false);
        let expected = match rewrite_query(rules, text_in, &mut report, &mut Lookups::default()).expect("the line was accepted") {
            QueryOutcome::Unchanged => text_in.to_owned(),
            QueryOutcome::Rewritten(text) => text,
        };
        // A rotating key changes between the two rewrites only at a
        // period's boundary, and `cid`'s token then differs: compare the
        // names, and the values of everything else.
        // Values compared decoded: a `\r` at a line's end goes encoded.
        let pairs = |text: &str| -> Vec<(Vec<u8>, Vec<u8>)> {
            text.split('&')
                .filter(|pair| !pair.is_empty())
                .map(|pair| {
                    let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
                    let decoded = percent::decode(value.as_bytes());
                    let value = decoded.map_or_else(|| value.as_bytes().to_vec(), |v| v);
                    (percent::decode(name.as_bytes()).unwrap_or_default(), value)
                })
                .collect()
        };
        let (got, want) = (pairs(text_out), pairs(&expected));
        assert_eq!(got.len(), want.len(), "a line rewritten otherwise than as a query");
        for ((name, value), (want_name, want_value)) in got.iter().zip(&want) {
            assert_eq!(name, want_name);
            if !matches!(name.as_slice(), b"cid" | b"sid" | b"_fid") {
                assert_eq!(value, want_value, "a line rewritten otherwise than as a query");
            }
            assert!(!DROPPED.iter().any(|d| d.as_bytes() == name.as_slice()), "a dropped parameter left");
        }
    }
});
