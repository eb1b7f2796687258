//! Nicolas Seriot's JSONTestSuite parsing cases (MIT, licence in
//! `tests/data/JSONTestSuite/LICENSE`): every `y_` file is accepted, every
//! `n_` file rejected, every `i_` file answered without a crash or hang. Each
//! is run with no rules (pass-through) and with rules that track everything,
//! whole and in 1-byte chunks, which must give the same result.

mod common;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::*;
use scrim::policy::Rules;
use scrim::rewrite::Framing;

fn cases() -> Vec<(String, Vec<u8>)> {
    let dir =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/JSONTestSuite/test_parsing");
    let mut cases: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .expect("tests/data/JSONTestSuite/test_parsing exists")
        .map(|entry| {
            let path = entry.expect("directory entry").path();
            let name = path
                .file_name()
                .expect("file name")
                .to_string_lossy()
                .into_owned();
            let bytes = std::fs::read(&path).expect("readable case");
            (name, bytes)
        })
        .collect();
    cases.sort();
    assert!(
        cases.len() > 300,
        "JSONTestSuite cases missing: found {}",
        cases.len()
    );
    cases
}

fn rule_sets() -> Vec<Rules> {
    vec![
        rules(&[]),
        rules(&[("$..*", hash())]),
        rules(&[("$..zz", hash())]),
    ]
}

#[test]
fn accepts_y_rejects_n_and_survives_i() {
    let mut failures = Vec::new();
    for (name, bytes) in cases() {
        for (r, rules) in rule_sets().iter().enumerate() {
            let whole = rewrite_chunked(rules, Framing::Single, &bytes, 0);
            let bytewise = rewrite_chunked(rules, Framing::Single, &bytes, 1);
            if whole != bytewise {
                failures.push(format!(
                    "{name} (rules {r}): whole {whole:?} but byte by byte {bytewise:?}"
                ));
            }
            for chunk in [0, 1] {
                let started = Instant::now();
                let result = rewrite_chunked(rules, Framing::Single, &bytes, chunk);
                assert!(
                    started.elapsed() < Duration::from_secs(5),
                    "{name} took too long"
                );
                match (&name[..2], &result) {
                    ("y_", Err(err)) => {
                        failures.push(format!("{name} (rules {r}, chunk {chunk}) rejected: {err}"))
                    }
                    ("n_", Ok(_)) => {
                        failures.push(format!("{name} (rules {r}, chunk {chunk}) accepted"))
                    }
                    ("y_", Ok((out, _))) if r != 1 && *out != bytes => failures.push(format!(
                        "{name} (rules {r}) changed without a matching rule"
                    )),
                    _ => {}
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
