//! Form bodies and query strings.

mod common;

use common::*;
use scrim::policy::{OnInvalid, Unlisted};
use scrim::rewrite::{Lookups, QueryOutcome, Report, rewrite_query};
use scrim::transform::Action;

fn form(rules: &scrim::policy::Rules, input: &str) -> String {
    let (whole, _) = rewrite_form_chunked(rules, input.as_bytes(), 0).unwrap();
    for size in 1..input.len().max(2) {
        let (out, _) = rewrite_form_chunked(rules, input.as_bytes(), size).unwrap();
        assert_eq!(out, whole, "chunk size {size}");
    }
    whole
}

#[test]
fn hashes_decoded_fields_and_keeps_the_rest_byte_for_byte() {
    let rules = rules(&[("$.email", hash_email()), ("$['user_data[ph]']", hash())]);
    let input = "a=%7Ex+y&email=+John_Smith%40gmail.com&user_data%5Bph%5D=123&z";
    let out = form(&rules, input);
    assert_eq!(
        out,
        format!(
            "a=%7Ex+y&email=62a14e44f765419d10fea99367361a727c12365e2520f32218d505ed9aa0f62f&user_data%5Bph%5D={}&z",
            sha256_hex("123")
        )
    );
}

#[test]
fn drops_fields_with_their_separator_and_repeated_keys() {
    let rules = rules(&[("$.email", Action::Drop)]);
    assert_eq!(form(&rules, "email=a&b=1&email=c"), "b=1");
    assert_eq!(form(&rules, "b=1&email=a"), "b=1");
    assert_eq!(form(&rules, "email=a"), "");
}

#[test]
fn a_dropped_field_is_not_buffered() {
    let rules = rules(&[("$.notes", Action::Drop)]);
    let body = format!("a=1&notes={}&b=2", "x".repeat(200_000));
    let (out, report) = rewrite_form_chunked(&rules, body.as_bytes(), 1000).unwrap();
    assert_eq!(out, "a=1&b=2");
    assert_eq!(report.rewritten, vec![1]);
}

#[test]
fn meta_sdk_data_field_is_opened() {
    // Meta's Python SDK: data=<JSON array of JSON-encoded event strings>.
    let event = r#"{"event_name":"Purchase","user_data":{"em":"John_Smith@gmail.com","client_ip_address":"1.2.3.4"}}"#;
    let data = serde_json::json!([event]).to_string();
    let body = format!("access_token=TOKEN&data={}", scrim_encode(&data));
    let rules = rules(&[("$.data[*].user_data.em", hash_email())]);
    let out = form(&rules, &body);
    assert!(!out.contains("John_Smith"), "{out}");
    assert!(
        out.contains("62a14e44f765419d10fea99367361a727c12365e2520f32218d505ed9aa0f62f"),
        "{out}"
    );
    assert!(out.starts_with("access_token=TOKEN&data="));
    // The data field still decodes to an array of JSON strings.
    let field = out.split("&data=").nth(1).unwrap();
    let decoded: String = form_urlencoded::parse(format!("d={field}").as_bytes())
        .next()
        .unwrap()
        .1
        .into_owned();
    let array: Vec<String> = serde_json::from_str(&decoded).unwrap();
    let inner: serde_json::Value = serde_json::from_str(&array[0]).unwrap();
    assert_eq!(inner["user_data"]["client_ip_address"], "1.2.3.4");
}

fn scrim_encode(text: &str) -> String {
    form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

#[test]
fn unlisted_drop_and_invalid_values() {
    let rules = rules_with(
        &[(
            "$.ip",
            Action::TruncateIp {
                v4_prefix: 24,
                v6_prefix: 48,
            },
        )],
        Unlisted::Drop,
        OnInvalid::Drop,
    );
    assert_eq!(form(&rules, "name=Bob&ip=1.2.3.4&x=y"), "ip=1.2.3.0");
    assert_eq!(form(&rules, "ip=nope&name=Bob"), "");
    let reject = rules_with(
        &[(
            "$.ip",
            Action::TruncateIp {
                v4_prefix: 24,
                v6_prefix: 48,
            },
        )],
        Unlisted::Keep,
        OnInvalid::Reject,
    );
    let err = rewrite_form_chunked(&reject, b"a=1&ip=secret-host", 0).unwrap_err();
    assert!(err.is_rejected());
    assert_eq!(err.offset(), 4);
    assert!(!err.to_string().contains("secret"));
}

#[test]
fn bad_percent_encoding_in_a_selected_field_is_an_error() {
    let rules = rules(&[("$.email", hash())]);
    let err = rewrite_form_chunked(&rules, b"x=1&email=%zz", 0).unwrap_err();
    assert!(err.is_syntax());
    assert_eq!(err.path(), "$.email");
}

#[test]
fn query_parameters() {
    let rules = rules(&[("query.email", hash_email()), ("query.token", Action::Drop)]);
    let mut report = Report::new(2, false);
    let out = rewrite_query(
        &rules,
        "a=1&email=A%40b.c&token=x&b",
        &mut report,
        &mut Lookups::default(),
    )
    .unwrap();
    assert_eq!(
        out,
        QueryOutcome::Rewritten(format!("a=1&email={}&b", sha256_hex("a@b.c")))
    );
    assert_eq!(report.rewritten, vec![1, 1]);
    assert_eq!(
        rewrite_query(&rules, "a=1", &mut report, &mut Lookups::default()).unwrap(),
        QueryOutcome::Unchanged
    );
}

/// Servers that split fields at `;` too would read `email` in `x=1;email=…`
/// and in `a;email=…`: where rules select that name, the body is refused
/// (in every chunking), unless the field around it is dropped whole. A `;`
/// before a name no rule treats otherwise passes byte for byte.
#[test]
fn a_semicolon_before_a_selected_name_is_refused() {
    let rules = rules(&[("$.email", hash_email()), ("$.secret", Action::Drop)]);
    for input in [
        "x=1;email=jane%40example.com",
        "a;email=jane%40example.com&b=2",
        "b=2&x=a;c;email=j",
        "x=1;%65mail=j",
        "x=1;secret=s",
    ] {
        for size in 0..input.len() {
            let err = rewrite_form_chunked(&rules, input.as_bytes(), size).unwrap_err();
            assert!(err.is_syntax(), "{input}: {err}");
            assert!(err.to_string().contains("`;`"), "{input}: {err}");
            assert!(!err.to_string().contains("jane"), "{err}");
        }
    }
    assert_eq!(
        form(&rules, "ua=Mozilla%2F5.0+(X11;+Linux)&n=1;m=2;emailx=3"),
        "ua=Mozilla%2F5.0+(X11;+Linux)&n=1;m=2;emailx=3"
    );
    let dropping = common::rules(&[("$.email", hash()), ("$.x", Action::Drop)]);
    assert_eq!(form(&dropping, "x=1;email=j&y=2"), "y=2");
    // With `unlisted: drop`, a kept field may not carry an unlisted one.
    let listed = rules_with(&[("$.keep", Action::Keep)], Unlisted::Drop, OnInvalid::Drop);
    assert!(rewrite_form_chunked(&listed, b"keep=1;other=2", 0).is_err());
    assert_eq!(form(&listed, "other=1;keep=2&keep=3"), "keep=3");
    // A name too long to keep counts as hidden, in whatever chunks it comes.
    let long = format!("keep=1;{}=secret", "n".repeat(140_000));
    for size in [0, 8192, 65536] {
        assert!(
            rewrite_form_chunked(&listed, long.as_bytes(), size).is_err(),
            "chunks of {size}"
        );
    }
    let long_text = format!("keep=1;{}&keep=2", "n".repeat(140_000));
    assert!(rewrite_form_chunked(&listed, long_text.as_bytes(), 8192).is_ok());
}

#[test]
fn a_semicolon_before_a_selected_query_parameter_is_refused() {
    let rules = rules(&[("query.email", hash_email()), ("query.k", Action::Keep)]);
    let mut report = Report::default();
    for query in [
        "x=1;email=jane%40example.com",
        "a;email=j&b=2",
        "x=1;%65mail=j",
    ] {
        let err = rewrite_query(&rules, query, &mut report, &mut Lookups::default()).unwrap_err();
        assert!(err.to_string().contains("`;`"), "{query}: {err}");
    }
    assert_eq!(
        rewrite_query(
            &rules,
            "ua=X11;+Linux&x=1;k=2",
            &mut report,
            &mut Lookups::default()
        )
        .unwrap(),
        QueryOutcome::Unchanged
    );
}

/// `%+a` is not percent-encoding (a signed-number parser reads it as 0x0a).
#[test]
fn percent_signs_need_two_hex_digits() {
    let rules = rules(&[("$.email", hash()), ("query.email", hash())]);
    assert!(rewrite_form_chunked(&rules, b"email=%+a", 0).is_err());
    assert!(
        rewrite_query(
            &rules,
            "email=%+a",
            &mut Report::default(),
            &mut Lookups::default()
        )
        .is_err()
    );
}

#[test]
fn the_inventory_counts_every_field_and_parameter_by_name() {
    use scrim::rewrite::{FormRewriter, Outcome};
    let rules = rules(&[
        ("$.email", hash_email()),
        ("$.drop_me", Action::Drop),
        ("query.uid", Action::Drop),
    ]);
    let input = "a=1&email=jo%40example.com&drop_me=x&a=2&z&user_data%5Bph%5D=3";
    let counts = |chunk: usize| {
        let mut rewriter = FormRewriter::new(&rules, Vec::<bytes::Bytes>::new()).inventory(true);
        for piece in input.as_bytes().chunks(chunk) {
            rewriter
                .write(bytes::Bytes::copy_from_slice(piece))
                .unwrap();
        }
        let (_, report) = rewriter.finish().unwrap();
        let fields = report.fields.unwrap();
        let mut paths: Vec<(String, Vec<u64>)> = fields
            .paths()
            .map(|(p, c)| (p.to_owned(), c.to_vec()))
            .collect();
        paths.sort();
        paths
    };
    let whole = counts(input.len());
    for chunk in 1..input.len() {
        assert_eq!(counts(chunk), whole, "chunk size {chunk}");
    }
    let of = |path: &str, outcome: Outcome| {
        whole
            .iter()
            .find(|(p, _)| p == path)
            .map(|(_, c)| c[outcome as usize])
    };
    assert_eq!(of("$.a", Outcome::Kept), Some(2));
    assert_eq!(of("$.email", Outcome::Hashed), Some(1));
    assert_eq!(of("$.drop_me", Outcome::Dropped), Some(1));
    assert_eq!(of("$.z", Outcome::Kept), Some(1));
    assert_eq!(of("$['user_data[ph]']", Outcome::Kept), Some(1));
    assert_eq!(whole.len(), 5, "{whole:?}");

    let mut report = Report::new(rules.rules.len(), false).with_fields(&rules);
    let outcome = rewrite_query(
        &rules,
        "uid=42&utm_source=mail&utm_source=x&",
        &mut report,
        &mut Lookups::default(),
    )
    .unwrap();
    assert_eq!(
        outcome,
        QueryOutcome::Rewritten("utm_source=mail&utm_source=x&".into())
    );
    let fields = report.fields.unwrap();
    let query: Vec<(&str, Vec<u64>)> = {
        let mut q: Vec<_> = fields.paths().map(|(p, c)| (p, c.to_vec())).collect();
        q.sort();
        q
    };
    assert_eq!(query.len(), 2, "{query:?}");
    assert_eq!(query[0].0, "query.uid");
    assert_eq!(query[0].1[Outcome::Dropped as usize], 1);
    assert_eq!(query[1].0, "query.utm_source");
    assert_eq!(query[1].1[Outcome::Kept as usize], 2);
}
