//! The JSON rewriter on hand-written cases: each action, drops and commas,
//! chunking, embedded documents, allow-list mode.

mod common;

use common::*;
use scrim::policy::{OnInvalid, Unlisted};
use scrim::rewrite::Framing;
use scrim::transform::Action;

#[test]
fn hashes_selected_values_and_keeps_every_other_byte() {
    let rules = rules(&[("$.data[*].user_data.em", hash_email())]);
    let input = "{ \"data\" : [ {\"user_data\": {\"em\": \" John_Smith@gmail.com\", \"x\": 1.50e3 } } ],\n \"t\":true }";
    let out = rewrite(&rules, input).unwrap();
    let expected = input.replace(
        "\" John_Smith@gmail.com\"",
        "\"62a14e44f765419d10fea99367361a727c12365e2520f32218d505ed9aa0f62f\"",
    );
    assert_eq!(out, expected);
}

/// Rewrites `input` whole (chunk size 0) and in chunks of every size, and
/// checks that each gives `expected`.
fn assert_in_every_chunking(
    rules: &scrim::policy::Rules,
    framing: Framing,
    input: &str,
    expected: &str,
) {
    for chunk in 0..input.len() {
        let (out, _) = rewrite_chunked(rules, framing, input.as_bytes(), chunk).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            expected,
            "{input:?} in chunks of {chunk}"
        );
    }
}

#[test]
fn digests_are_written_in_each_encoding() {
    let hash = |encoding| Action::Hash {
        normalizer: scrim::transform::Normalizer::None,
        encoding,
    };
    let rules = rules(&[
        ("$.hex", hash(scrim::transform::Encoding::Hex)),
        ("$.b64", hash(scrim::transform::Encoding::Base64)),
        ("$.url[*]", hash(scrim::transform::Encoding::Base64Url)),
    ]);
    let input = r#"{"hex":"abc","b64":"abc","url":["abc","abc"],"z":"abc"}"#;
    // SHA-256 of "abc", as `apply` spells it in each encoding.
    let expected = concat!(
        r#"{"hex":"ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad","#,
        r#""b64":"ungWv48Bz+pBQUDeXa4iI7ADYaOWF3qctBD/YfIAFa0=","#,
        r#""url":["ungWv48Bz-pBQUDeXa4iI7ADYaOWF3qctBD_YfIAFa0","ungWv48Bz-pBQUDeXa4iI7ADYaOWF3qctBD_YfIAFa0"],"#,
        r#""z":"abc"}"#
    );
    assert_in_every_chunking(&rules, Framing::Single, input, expected);
}

#[test]
fn hashing_leaves_digests_and_empty_normal_forms_and_reads_escapes() {
    use scrim::transform::{Encoding, Normalizer};
    let hash = |normalizer| Action::Hash {
        normalizer,
        encoding: Encoding::Hex,
    };
    let rules = rules(&[
        ("$.city", hash(Normalizer::City)),
        ("$.id", hash(Normalizer::None)),
        ("$.done", hash(Normalizer::None)),
    ]);
    let digest = sha256_hex("abc");
    let input = format!(r#"{{"city":"123","id":"a\u0062c","done":"{digest}"}}"#);
    // A city of no letters has an empty normal form and becomes empty; an
    // escaped value is hashed as the text it spells; a digest stays.
    let expected = format!(r#"{{"city":"","id":"{digest}","done":"{digest}"}}"#);
    assert_in_every_chunking(&rules, Framing::Single, &input, &expected);
}

#[test]
fn the_member_after_a_number_literal_or_container_is_still_selected() {
    let rules = rules(&[("$.b", hash()), ("$[2]", hash())]);
    let x = sha256_hex("x");
    for (input, expected) in [
        (
            r#"{"a":1,"b":"x"}"#.to_owned(),
            format!(r#"{{"a":1,"b":"{x}"}}"#),
        ),
        (
            r#"{"a":-1.5e3,"b":"x"}"#.to_owned(),
            format!(r#"{{"a":-1.5e3,"b":"{x}"}}"#),
        ),
        (
            r#"{"a":true,"b":"x"}"#.to_owned(),
            format!(r#"{{"a":true,"b":"{x}"}}"#),
        ),
        (
            r#"{"a":{},"b":"x"}"#.to_owned(),
            format!(r#"{{"a":{{}},"b":"{x}"}}"#),
        ),
        (
            r#"{"a":[1,{}],"b":"x"}"#.to_owned(),
            format!(r#"{{"a":[1,{{}}],"b":"{x}"}}"#),
        ),
        (r#"[true,[],"x"]"#.to_owned(), format!(r#"[true,[],"{x}"]"#)),
        (
            r#"[null,{"b":2},"x"]"#.to_owned(),
            format!(r#"[null,{{"b":2}},"{x}"]"#),
        ),
        (r#"[0,0,"x"]"#.to_owned(), format!(r#"[0,0,"{x}"]"#)),
    ] {
        assert_in_every_chunking(&rules, Framing::Single, &input, &expected);
    }
    // Lines whose documents end in a number, a literal or a container.
    let input = "1\ntrue\n[]\n{\"a\":{}}\n{\"b\":\"x\"}\n";
    let expected = format!("1\ntrue\n[]\n{{\"a\":{{}}}}\n{{\"b\":\"{x}\"}}\n");
    assert_in_every_chunking(&rules, Framing::Lines, input, &expected);
    // What follows a document's end is still refused where it is.
    for input in ["1 2", "{} x", "[]]", "true,"] {
        let err = rewrite(&rules, input).unwrap_err();
        assert_eq!(err.offset(), input.len() as u64 - 1, "{input}: {err}");
    }
}

#[test]
fn keys_are_matched_after_unescaping() {
    let rules = rules(&[("$.em", hash())]);
    let out = rewrite(&rules, r#"{"\u0065m":"a"}"#).unwrap();
    assert_eq!(out, format!(r#"{{"\u0065m":"{}"}}"#, sha256_hex("a")));
}

#[test]
fn drop_keeps_the_document_valid() {
    let rules = rules(&[("$.a", Action::Drop), ("$.c[1]", Action::Drop)]);
    for (input, expected) in [
        (r#"{"a":1,"b":2}"#, r#"{"b":2}"#),
        (r#"{"b":2,"a":1}"#, r#"{"b":2}"#),
        (r#"{"a":1}"#, r#"{}"#),
        (r#"{ "a" : {"deep":[1,2]} , "b" : 2 }"#, r#"{   "b" : 2 }"#),
        (r#"{"b":1,"a":[1],"d":2}"#, r#"{"b":1,"d":2}"#),
        (r#"{"c":[1,2,3]}"#, r#"{"c":[1,3]}"#),
        (r#"{"c":[1,2]}"#, r#"{"c":[1]}"#),
        // The comma of the first member kept goes, however far it is from
        // the member dropped before it; later ones stay.
        (r#"{"a":1 , "b":2, "a":3 ,"d":4}"#, r#"{  "b":2 ,"d":4}"#),
        (
            r#"{"a":1,"a":2,"b":{"a":1},"c":[1,2]}"#,
            r#"{"b":{"a":1},"c":[1]}"#,
        ),
    ] {
        assert_in_every_chunking(&rules, Framing::Single, input, expected);
        serde_json::from_str::<serde_json::Value>(expected).unwrap();
    }
}

#[test]
fn arrays_of_scalars_are_hashed_element_by_element() {
    let rules = rules(&[("$.em", hash())]);
    let out = rewrite(&rules, r#"{"em":["a",null,"",7]}"#).unwrap();
    assert_eq!(
        out,
        format!(
            r#"{{"em":["{}",null,"","{}"]}}"#,
            sha256_hex("a"),
            sha256_hex("7")
        )
    );
}

#[test]
fn objects_where_a_scalar_is_needed_follow_on_invalid() {
    let input = r#"{"em":{"x":"secret"},"k":1}"#;
    let drop = rules(&[("$.em", hash())]);
    assert_eq!(rewrite(&drop, input).unwrap(), r#"{"k":1}"#);
    let redact = rules_with(&[("$.em", hash())], Unlisted::Keep, OnInvalid::Redact);
    assert_eq!(
        rewrite(&redact, input).unwrap(),
        r#"{"em":"[REDACTED]","k":1}"#
    );
    let reject = rules_with(&[("$.em", hash())], Unlisted::Keep, OnInvalid::Reject);
    let err = rewrite(&reject, input).unwrap_err();
    assert!(err.is_rejected());
    assert_eq!(err.path(), "$.em");
    assert!(!err.to_string().contains("secret"));
}

/// An error's path names the member it is in, whether that member's name
/// lies in the chunk where the error is met or in an earlier one, and
/// whether containers opened below it since.
#[test]
fn error_paths_are_the_same_however_chunked() {
    let long = "n".repeat(100);
    let reject = rules_with(&[("$..em", hash())], Unlisted::Keep, OnInvalid::Reject);
    let cases = [
        (
            r#"{"user":{"id":1,"em":{"x":1}},"k":2}"#.to_owned(),
            "$.user.em",
        ),
        (r#"{"a":{"bb":1,"name":-x}}"#.to_owned(), "$.a.name"),
        (r#"{"a\u0062":[{"c":1},{"d":tru}]}"#.to_owned(), "$.ab[1].d"),
        (
            format!(r#"{{"{long}":{{"x":1,"em":{{"y":2}}}}}}"#),
            "$[?].em",
        ),
    ];
    for (input, path) in cases {
        for size in 0..input.len() {
            let err =
                rewrite_chunked(&reject, Framing::Single, input.as_bytes(), size).unwrap_err();
            assert_eq!(err.path(), path, "{input} in chunks of {size}: {err}");
        }
    }
}

#[test]
fn every_chunking_gives_the_same_output() {
    let rules = rules(&[
        ("$.data[*].user_data.em", hash_email()),
        ("$..ph", Action::Drop),
        ("$.s", hash()),
    ]);
    let input = "\u{feff}{\"data\":[{\"user_data\":{\"em\":\"A@b.c\",\"ph\":\"1\",\"n\":-0.5e+2}},\"x\\u00e9\\ud83d\\ude00\"],\"s\":\"\\\"q\\\"é\"}";
    let (whole, _) = rewrite_chunked(&rules, Framing::Single, input.as_bytes(), 0).unwrap();
    for size in 1..input.len() {
        let (out, _) = rewrite_chunked(&rules, Framing::Single, input.as_bytes(), size).unwrap();
        assert_eq!(
            String::from_utf8_lossy(&out),
            String::from_utf8_lossy(&whole),
            "chunk size {size}"
        );
    }
    assert!(whole.starts_with("\u{feff}".as_bytes()));
}

#[test]
fn embedded_json_strings_are_opened() {
    let rules = rules(&[("$.data[*].user_data.em", hash_email())]);
    let inner = r#"{"user_data":{"em":"a@b.c"}}"#;
    let input = serde_json::json!({"data": [inner]}).to_string();
    let out = rewrite(&rules, &input).unwrap();
    let value: serde_json::Value = serde_json::from_str(&out).unwrap();
    let element: serde_json::Value =
        serde_json::from_str(value["data"][0].as_str().unwrap()).unwrap();
    assert_eq!(element["user_data"]["em"], sha256_hex("a@b.c"));
    // The embedded array itself can be a string too.
    let input = serde_json::json!({"data": serde_json::json!([inner]).to_string()}).to_string();
    let out = rewrite(&rules, &input).unwrap();
    assert!(!out.contains("a@b.c"), "{out}");
}

/// A string under a descendant selector is looked into only when its first
/// non-blank character opens a document: plain text of any length streams
/// (before, a text over `max_embedded_bytes` was refused as an "embedded
/// document"), and what follows it is still rewritten.
#[test]
fn plain_text_under_descendant_selectors_streams_at_any_length() {
    let rules = rules(&[("$..em", hash())]);
    let text = "lorem ipsum ".repeat(100_000);
    for lead in ["", "   ", "\\n\\t ", "\\\"quoted\\\" "] {
        let input = format!(r#"{{"note":"{lead}{text}","em":"a","n":["x{lead}",{{"em":"b"}}]}}"#);
        for chunk in [0, 1000, 7] {
            let (out, _) =
                rewrite_chunked(&rules, Framing::Single, input.as_bytes(), chunk).unwrap();
            let expected = input
                .replace(r#""em":"a""#, &format!(r#""em":"{}""#, sha256_hex("a")))
                .replace(r#""em":"b""#, &format!(r#""em":"{}""#, sha256_hex("b")));
            assert!(out == expected.as_bytes(), "lead {lead:?}, chunk {chunk}");
        }
    }
    // Blank strings end undecided; what follows them is read as before.
    for blank in ["", "  ", "\\n\\t", " \\r "] {
        let input =
            format!(r#"{{"a":"{blank}","em":"secret","b":{{"c":"{blank}"}},"d":{{"em":"x"}}}}"#);
        for chunk in [0, 1, 2, 3, 5] {
            let (out, _) =
                rewrite_chunked(&rules, Framing::Single, input.as_bytes(), chunk).unwrap();
            let expected = input
                .replace(
                    r#""em":"secret""#,
                    &format!(r#""em":"{}""#, sha256_hex("secret")),
                )
                .replace(r#""em":"x""#, &format!(r#""em":"{}""#, sha256_hex("x")));
            assert!(
                out == expected.as_bytes(),
                "blank {blank:?}, chunk {chunk}: {}",
                String::from_utf8_lossy(&out)
            );
        }
    }
    // A document in a string is still opened, after blanks too.
    let input = r#"{"payload":" \n {\"em\":\"a\"}"}"#;
    let out = rewrite(&rules, input).unwrap();
    assert!(out.contains(&sha256_hex("a")), "{out}");
    // And with `unlisted: drop`, plain text under a tracked name goes.
    let rules = rules_with(&[("$..em", hash())], Unlisted::Drop, OnInvalid::Drop);
    let out = rewrite(&rules, &format!(r#"{{"note":"{text}","em":"a"}}"#)).unwrap();
    assert_eq!(out, format!(r#"{{"em":"{}"}}"#, sha256_hex("a")));
}

#[test]
fn unlisted_drop_keeps_only_what_rules_name() {
    let rules = rules_with(
        &[("$.user.em", hash()), ("$.keep", Action::Keep)],
        Unlisted::Drop,
        OnInvalid::Drop,
    );
    let out = rewrite(
        &rules,
        r#"{"user":{"em":"a","name":"Bob"},"other":{"x":1},"keep":{"y":2},"n":3}"#,
    )
    .unwrap();
    assert_eq!(
        out,
        format!(
            r#"{{"user":{{"em":"{}"}},"keep":{{"y":2}}}}"#,
            sha256_hex("a")
        )
    );
}

#[test]
fn ndjson_lines_are_documents_and_blank_lines_stay() {
    let rules = rules(&[("$.em", hash())]);
    let input = "{\"em\":\"a\"}\n\n{\"em\":\"b\"}\r\n";
    let (out, report) = rewrite_chunked(&rules, Framing::Lines, input.as_bytes(), 3).unwrap();
    let expected = format!(
        "{{\"em\":\"{}\"}}\n\n{{\"em\":\"{}\"}}\r\n",
        sha256_hex("a"),
        sha256_hex("b")
    );
    assert_eq!(String::from_utf8(out).unwrap(), expected);
    assert_eq!(report.rewritten, vec![2]);
    assert!(rewrite_chunked(&rules, Framing::Lines, b"{\"em\":\n\"a\"}", 0).is_err());
}

#[test]
fn errors_name_offset_and_path_never_the_value() {
    let rules = rules(&[("$.a", hash())]);
    let err = rewrite(&rules, r#"{"a":{"b":[1,"secret-value" x]}}"#).unwrap_err();
    assert!(err.is_syntax());
    assert_eq!(err.offset(), 28);
    assert_eq!(err.path(), "$.a.b");
    let rules = rules_with(&[("$.z", hash())], Unlisted::Keep, OnInvalid::Drop);
    let err = rewrite(&rules, r#"{"a":{"b":[1,"secret-value" x]}}"#).unwrap_err();
    assert_eq!(err.path(), "$.a.b");
    assert!(!err.to_string().contains("secret"));
}

#[test]
fn added_members_go_before_the_closing_brace_and_replace_their_namesakes() {
    let add = Action::AddMembers(scrim::transform::Members::new(&[
        ("flag", "[\"LDU\"]"),
        ("n", "0"),
    ]));
    let rules = rules(&[("$.data[*]", add), ("$.data[*].em", hash())]);
    let input =
        "{\"data\":[{}, {\"em\":\"a\" } ,{\"n\":{\"x\":[1]},\"k\":1},{\"flag\":1}],\"n\":5}";
    let expected = format!(
        "{{\"data\":[{{\"flag\":[\"LDU\"],\"n\":0}}, {{\"em\":\"{}\" ,\"flag\":[\"LDU\"],\"n\":0}} ,{{\"k\":1,\"flag\":[\"LDU\"],\"n\":0}},{{\"flag\":[\"LDU\"],\"n\":0}}],\"n\":5}}",
        sha256_hex("a")
    );
    for chunk in [0, 1, 3] {
        let (out, _) = rewrite_chunked(&rules, Framing::Single, input.as_bytes(), chunk).unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), expected, "chunk {chunk}");
    }
    // Only objects get members: an array or a scalar there stays as it is.
    let rules = self::rules(&[(
        "$.data[*]",
        Action::AddMembers(scrim::transform::Members::new(&[("f", "1")])),
    )]);
    assert_eq!(
        rewrite(&rules, r#"{"data":[[1],"s",null]}"#).unwrap(),
        r#"{"data":[[1],"s",null]}"#
    );
}

/// An error inside an embedded document names the path from the outer root
/// once (it read `$.payload.payload.em` before).
#[test]
fn errors_inside_embedded_documents_have_their_path_once() {
    let rules = rules_with(
        &[("$.payload.em", hash_email())],
        Unlisted::Keep,
        OnInvalid::Reject,
    );
    let input = r#"{"payload":"{\"em\":\"not an email\"}"}"#;
    let err = rewrite(&rules, input).unwrap_err();
    assert_eq!(err.path(), "$.payload.em", "{err}");
    let err = rewrite(&rules, r#"{"payload":"{\"em\":tru}"}"#).unwrap_err();
    assert_eq!(err.path(), "$.payload.em", "{err}");
}
