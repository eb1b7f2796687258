//! The rewriter's cost grows with the input, not with the square of the
//! configuration or with the number of chunks a body comes in. The rules
//! test times two runs of the same work side by side (the best of five, so
//! that a noisy neighbour does not decide) and bounds their ratio well below
//! what the quadratic code cost; the chunks test counts pieces. The ratios
//! themselves are criterion's (`cargo bench --bench rewrite -- scaling`).

mod common;

use std::time::{Duration, Instant};

use bytes::Bytes;
use common::bodies::tiny_objects;
use common::*;
use scrim::policy::Rules;
use scrim::rewrite::{BodyKind, BodyRewriter};

fn best_of_five(mut work: impl FnMut()) -> Duration {
    (0..5)
        .map(|_| {
            let started = Instant::now();
            work();
            started.elapsed()
        })
        .min()
        .expect("five runs")
}

/// `$..k7` first, then `$..k0` to `$..k{count - 1}` without it.
fn descendant_rules(count: usize) -> Rules {
    let selectors: Vec<(String, _)> = std::iter::once(7)
        .chain((0..count).filter(|n| *n != 7))
        .take(count)
        .map(|n| (format!("$..k{n}"), hash()))
        .collect();
    let list: Vec<(&str, _)> = selectors
        .iter()
        .map(|(s, a)| (s.as_str(), a.clone()))
        .collect();
    rules(&list)
}

fn rewrite_in(rules: &Rules, body: &[u8], chunk: usize) -> usize {
    let mut rewriter = BodyRewriter::new(BodyKind::Json, rules, Vec::<Bytes>::new(), false);
    let body = Bytes::copy_from_slice(body);
    let mut at = 0;
    while at < body.len() {
        let end = (at + chunk).min(body.len());
        rewriter.write(body.slice(at..end)).expect("valid JSON");
        at = end;
    }
    let (pieces, report) = rewriter.finish().expect("valid JSON");
    assert!(report.changed());
    pieces.iter().map(Bytes::len).sum()
}

#[test]
fn two_hundred_descendant_rules_cost_about_what_one_does() {
    let body = tiny_objects(4_000);
    let one = descendant_rules(1);
    let many = descendant_rules(200);
    // Both rewrite every `k7`; the 200 rules also every `k150`.
    let one_rule = best_of_five(|| {
        rewrite_in(&one, &body, 64 * 1024);
    });
    let two_hundred = best_of_five(|| {
        rewrite_in(&many, &body, 64 * 1024);
    });
    // The quadratic matcher took 80x in this debug build; the release
    // figure (1.6x) is criterion's row. The margin is for a busy machine.
    let ratio = two_hundred.as_secs_f64() / one_rule.as_secs_f64();
    assert!(
        ratio < 8.0,
        "200 rules took {two_hundred:?}, 1 rule {one_rule:?}: {ratio:.1}x"
    );
}

/// The output of small chunks leaves in pieces of useful size, not one per
/// input chunk.
#[test]
fn small_chunks_leave_joined() {
    let body = tiny_objects(2_000);
    let rules = descendant_rules(3);
    let mut rewriter = BodyRewriter::new(BodyKind::Json, &rules, Vec::<Bytes>::new(), false);
    for byte in &body {
        rewriter
            .write(Bytes::copy_from_slice(std::slice::from_ref(byte)))
            .expect("valid JSON");
    }
    let (pieces, _) = rewriter.finish().expect("valid JSON");
    let average = body.len() / pieces.len();
    assert!(
        average >= 1024,
        "{} pieces for {} bytes",
        pieces.len(),
        body.len()
    );
}
