//! Documents embedded in a string (or a form field) under which selectors
//! continue: rewritten with the same rules and put back.

use super::*;

/// Where an embedded document sits in the outer one.
#[derive(Clone)]
pub(crate) struct Embedded {
    /// The selector states at the embedding value.
    pub(crate) states: Vec<State>,
    /// Nesting depth of the embedding value.
    pub(crate) depth: u32,
    /// Path of the embedding value.
    pub(crate) path: String,
}

/// Rewrites a document found inside a string (or a form field) under which
/// selectors continue, and returns it as the inner rewriter's pieces (the
/// caller escapes or encodes them straight into its output, without joining
/// them first). `None` when the text is not a JSON object or array, so
/// nothing below it can be selected. An error inside is reported at `offset`,
/// the embedding value's place in the outer body. What the inner report
/// itemizes follows `outer`, the embedding rewriter's report; the questions
/// it leaves for the vault join `lookups`.
pub(crate) fn rewrite_embedded(
    rules: &Rules,
    embedded: Embedded,
    outer: &Report,
    lookups: &mut Lookups,
    text: Bytes,
    offset: u64,
) -> Result<Option<(Vec<Bytes>, Report)>, Error> {
    let looks_like_json = text
        .iter()
        .find(|b| !WHITESPACE[usize::from(**b)])
        .is_some_and(|b| *b == b'{' || *b == b'[');
    if !looks_like_json {
        return Ok(None);
    }
    let mut inner = JsonRewriter::embedded(rules, Vec::new(), embedded, outer, lookups.nested());
    inner.write(text).map_err(|err| err.nested_in(offset))?;
    let (pieces, report, asked) = inner
        .finish_with_lookups()
        .map_err(|err| err.nested_in(offset))?;
    lookups.absorb(asked);
    Ok(Some((pieces, report)))
}
