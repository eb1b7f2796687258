mod common;
use common::*;
use scrim::policy::{OnInvalid, Unlisted};
use scrim::rewrite::Framing;
use scrim::transform::Action;

#[test]
fn json_stale_undecided_flag() {
    let rules = rules(&[("$..em", hash())]);
    for input in [
        r#"{"a":"","em":"secret"}"#,
        r#"{"a":"  ","em":"secret"}"#,
        r#"{"a":"\n","em":"secret"}"#,
        r#"{"a":"x","em":"secret"}"#,
    ] {
        for chunk in [0usize, 1, 3] {
            let r = rewrite_chunked(&rules, Framing::Single, input.as_bytes(), chunk);
            let out = r.map(|(o, _)| String::from_utf8(o).unwrap());
            println!("{input} chunk={chunk} -> {out:?}");
        }
    }
    let rules2 = rules_with(&[("$..em", hash())], Unlisted::Drop, OnInvalid::Drop);
    for input in [
        r#"{"em":"a","a":"","em":"secret"}"#,
        r#"{"a":"","em":"secret"}"#,
    ] {
        let out = rewrite(&rules2, input);
        println!("drop {input} -> {out:?}");
    }
    let rules3 = common::rules(&[("$.a.b", hash()), ("$.em", hash())]);
    let out = rewrite(&rules3, r#"{"a":"","em":"secret"}"#);
    println!("child {out:?}");
}

#[test]
fn form_long_semicolon_name() {
    let rules = rules_with(&[("$.keep", Action::Keep)], Unlisted::Drop, OnInvalid::Drop);
    let name = "n".repeat(140_000);
    let input = format!("keep=1;{name}=secret");
    for chunk in [0usize, 8192] {
        let r = rewrite_form_chunked(&rules, input.as_bytes(), chunk);
        println!(
            "chunk={chunk} -> {:?}",
            r.map(|(o, _)| o.len()).map_err(|e| e.to_string())
        );
    }
}
