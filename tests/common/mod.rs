//! Helpers shared by the integration tests.
#![allow(dead_code)]

pub mod bodies;

use bytes::Bytes;
use scrim::policy::{Limits, OnInvalid, Rules, Unlisted};
use scrim::rewrite::{Error, Framing, JsonRewriter, Report};
use scrim::transform::{Action, Encoding, Normalizer};

pub fn hash() -> Action {
    Action::Hash {
        normalizer: Normalizer::None,
        encoding: Encoding::Hex,
    }
}

pub fn hash_email() -> Action {
    Action::Hash {
        normalizer: Normalizer::Email,
        encoding: Encoding::Hex,
    }
}

pub fn rules(list: &[(&str, Action)]) -> Rules {
    rules_with(list, Unlisted::Keep, OnInvalid::Drop)
}

pub fn rules_with(list: &[(&str, Action)], unlisted: Unlisted, on_invalid: OnInvalid) -> Rules {
    Rules::build(
        list.iter()
            .map(|(s, a)| (s.to_string(), a.clone(), on_invalid)),
        unlisted,
        Limits::default(),
    )
    .expect("valid selectors")
}

/// Rewrites `input` fed in chunks of `chunk` bytes (0: all at once).
pub fn rewrite_chunked(
    rules: &Rules,
    framing: Framing,
    input: &[u8],
    chunk: usize,
) -> Result<(Vec<u8>, Report), Error> {
    let mut rewriter = JsonRewriter::new(rules, framing, Vec::<Bytes>::new());
    if chunk == 0 {
        rewriter.write(Bytes::copy_from_slice(input))?;
    } else {
        for piece in input.chunks(chunk) {
            rewriter.write(Bytes::copy_from_slice(piece))?;
        }
    }
    let (pieces, report) = rewriter.finish()?;
    Ok((pieces.concat(), report))
}

pub fn rewrite(rules: &Rules, input: &str) -> Result<String, Error> {
    rewrite_chunked(rules, Framing::Single, input.as_bytes(), 0)
        .map(|(out, _)| String::from_utf8(out).expect("UTF-8 output"))
}

pub fn sha256_hex(text: &str) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Rewrites a form body fed in chunks of `chunk` bytes (0: all at once).
pub fn rewrite_form_chunked(
    rules: &Rules,
    input: &[u8],
    chunk: usize,
) -> Result<(String, Report), Error> {
    let mut rewriter = scrim::rewrite::FormRewriter::new(rules, Vec::<Bytes>::new());
    if chunk == 0 {
        rewriter.write(Bytes::copy_from_slice(input))?;
    } else {
        for piece in input.chunks(chunk) {
            rewriter.write(Bytes::copy_from_slice(piece))?;
        }
    }
    let (pieces, report) = rewriter.finish()?;
    Ok((
        String::from_utf8(pieces.concat()).expect("UTF-8 output"),
        report,
    ))
}
