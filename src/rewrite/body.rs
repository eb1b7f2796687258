//! Choosing the rewriter for a body by its media type, and driving it.

use bytes::{Bytes, BytesMut};

use super::error::Error;
use super::form::FormRewriter;
use super::json::{Framing, JsonRewriter};
use super::lines::QueryLinesRewriter;
use super::lookups::Lookups;
use super::report::Report;
use super::sink::Sink;
use crate::policy::{Rules, TextPlain};

/// The body formats scrim can rewrite.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyKind {
    Json,
    Ndjson,
    Form,
    /// `text/plain` of URL-encoded lines, on a route that reads it so
    /// (`text_plain: query_lines`).
    QueryLines,
}

impl BodyKind {
    /// Reads a `Content-Type` value. Parameters are allowed (`; charset=utf-8`)
    /// and structured suffixes count (`application/vnd.api+json` is JSON).
    /// `None` for anything else, including a charset other than UTF-8: JSON
    /// must be UTF-8 (RFC 8259), and guessing at another encoding could let a
    /// value slip past its rule.
    pub fn from_content_type(value: &str) -> Option<BodyKind> {
        let (kind, subtype) = utf8_media_type(value)?;
        let application = kind.eq_ignore_ascii_case("application");
        let subtype_is = |names: &[&str]| names.iter().any(|n| subtype.eq_ignore_ascii_case(n));
        let suffix = subtype
            .len()
            .checked_sub(5)
            .map(|at| &subtype.as_bytes()[at..]);
        if subtype_is(&["json"]) && (application || kind.eq_ignore_ascii_case("text")) {
            Some(BodyKind::Json)
        } else if application
            && subtype_is(&["x-ndjson", "ndjson", "jsonl", "x-jsonlines", "jsonlines"])
        {
            Some(BodyKind::Ndjson)
        } else if application && subtype_is(&["x-www-form-urlencoded"]) {
            Some(BodyKind::Form)
        } else if suffix.is_some_and(|s| s.eq_ignore_ascii_case(b"+json")) {
            Some(BodyKind::Json)
        } else {
            None
        }
    }

    /// The rewriter for a body of this `Content-Type` on a route: as
    /// [`BodyKind::from_content_type`] says, but on a route that reads
    /// URL-encoded lines (`text_plain: query_lines`), where its rules name
    /// query parameters only: then `text/plain` and form bodies are such
    /// lines (gtag.js sends either), and any other body is refused, since
    /// no rule of the route could read it.
    pub fn for_route(value: &str, rules: &Rules) -> Option<BodyKind> {
        if rules.text_plain != TextPlain::QueryLines {
            return BodyKind::from_content_type(value);
        }
        let (kind, subtype) = utf8_media_type(value)?;
        let plain = kind.eq_ignore_ascii_case("text") && subtype.eq_ignore_ascii_case("plain");
        let form = BodyKind::from_content_type(value) == Some(BodyKind::Form);
        (plain || form).then_some(BodyKind::QueryLines)
    }
}

/// A media type's type and subtype, when its charset (if it names one) is
/// UTF-8.
fn utf8_media_type(value: &str) -> Option<(&str, &str)> {
    let mut parts = value.split(';');
    let essence = parts.next()?.trim();
    for parameter in parts {
        if let Some((name, charset)) = parameter.split_once('=')
            && name.trim().eq_ignore_ascii_case("charset")
        {
            let charset = charset.trim().trim_matches('"');
            if !charset.eq_ignore_ascii_case("utf-8") && !charset.eq_ignore_ascii_case("utf8") {
                return None;
            }
        }
    }
    // Media types are case-insensitive (RFC 9110 8.3.1).
    essence.split_once('/')
}

/// Chunks smaller than this are joined before the rewriter scans them: each
/// scan pays a fixed cost (a UTF-8 check, a flush to the sink, a piece of
/// output), which one-byte chunks would pay once per byte. Larger chunks go
/// through as they are, without a copy.
const SMALL_CHUNK: usize = 8 * 1024;

/// A rewriter for one body of a known kind: the entry the proxy and
/// `scrim rewrite` use. Small chunks are joined up to [`SMALL_CHUNK`] bytes
/// before they are rewritten; [`BodyRewriter::flush`] rewrites what is
/// joined so far, for a caller whose input pauses.
#[derive(Clone)]
pub struct BodyRewriter<'r, S: Sink> {
    inner: Inner<'r, S>,
    /// The one small chunk held since the last flush, not copied.
    first: Option<Bytes>,
    /// The small chunks held, once there is more than one (then `first`
    /// is `None`).
    joined: BytesMut,
}

/// One for a body's whole life, and JSON for nearly every body: the JSON
/// rewriter stays inline rather than behind a pointer read on every chunk.
#[allow(clippy::large_enum_variant)]
#[derive(Clone)]
enum Inner<'r, S: Sink> {
    Json(JsonRewriter<'r, S>),
    Form(FormRewriter<'r, S>),
    Lines(QueryLinesRewriter<'r, S>),
}

impl<'r, S: Sink> Inner<'r, S> {
    fn write(&mut self, chunk: Bytes) -> Result<(), Error> {
        match self {
            Inner::Json(r) => r.write(chunk),
            Inner::Form(r) => r.write(chunk),
            Inner::Lines(r) => r.write(chunk),
        }
    }
}

impl<'r, S: Sink> BodyRewriter<'r, S> {
    pub fn new(kind: BodyKind, rules: &'r Rules, sink: S, explain: bool) -> Self {
        let inner = match kind {
            BodyKind::Json => {
                Inner::Json(JsonRewriter::new(rules, Framing::Single, sink).explain(explain))
            }
            BodyKind::Ndjson => {
                Inner::Json(JsonRewriter::new(rules, Framing::Lines, sink).explain(explain))
            }
            BodyKind::Form => Inner::Form(FormRewriter::new(rules, sink).explain(explain)),
            BodyKind::QueryLines => {
                Inner::Lines(QueryLinesRewriter::new(rules, sink).explain(explain))
            }
        };
        BodyRewriter {
            inner,
            first: None,
            joined: BytesMut::new(),
        }
    }

    /// Counts every value by path and outcome when `outer` (the request's
    /// report) does, with what it knows of templates. In place: a rewriter
    /// is 1 KiB, and each step of a builder moved it out and back.
    pub(crate) fn count_fields_like(&mut self, outer: &super::Report) {
        match &mut self.inner {
            Inner::Json(r) => r.count_fields_like(outer),
            Inner::Form(r) => r.count_fields_like(outer),
            Inner::Lines(r) => r.count_fields_like(outer),
        }
    }

    /// Also counts every value by path and outcome, for the egress
    /// inventory ([`Report::fields`](super::Report::fields)).
    pub fn inventory(self, inventory: bool) -> Self {
        let inner = match self.inner {
            Inner::Json(r) => Inner::Json(r.inventory(inventory)),
            Inner::Form(r) => Inner::Form(r.inventory(inventory)),
            Inner::Lines(r) => Inner::Lines(r.inventory(inventory)),
        };
        BodyRewriter { inner, ..self }
    }

    /// Answers `tokenize` and `reveal` rules from `lookups` (the vault's
    /// cache and this request's answers).
    pub fn lookups(self, lookups: Lookups) -> Self {
        let inner = match self.inner {
            Inner::Json(r) => Inner::Json(r.lookups(lookups)),
            Inner::Form(r) => Inner::Form(r.lookups(lookups)),
            Inner::Lines(r) => Inner::Lines(r.lookups(lookups)),
        };
        BodyRewriter { inner, ..self }
    }

    /// The lookups of this pass: whether it asked the vault anything
    /// ([`Lookups::asked`]), and what.
    pub fn lookups_mut(&mut self) -> &mut Lookups {
        match &mut self.inner {
            Inner::Json(r) => r.lookups_mut(),
            Inner::Form(r) => r.lookups_mut(),
            Inner::Lines(r) => r.lookups_mut(),
        }
    }

    /// Pushes the next chunk of the body. Output appears in the sink as the
    /// rewriter gets to it: at once for a large chunk, after
    /// [`SMALL_CHUNK`] bytes or a [`flush`](Self::flush) for small ones.
    pub fn write(&mut self, chunk: Bytes) -> Result<(), Error> {
        if chunk.len() >= SMALL_CHUNK {
            self.flush()?;
            return self.inner.write(chunk);
        }
        // A lone small chunk (a whole event, nearly always) is kept as it
        // is; only a second one is worth the copy that joins them. Grown as
        // chunks come (not reserved whole): a body held while its last
        // small chunk waits costs what it holds.
        if self.joined.is_empty() {
            let Some(first) = self.first.take() else {
                self.first = Some(chunk);
                return Ok(());
            };
            self.joined.extend_from_slice(&first);
        }
        self.joined.extend_from_slice(&chunk);
        if self.joined.len() >= SMALL_CHUNK {
            self.flush()?;
        }
        Ok(())
    }

    /// Rewrites whatever small chunks are held so far.
    pub fn flush(&mut self) -> Result<(), Error> {
        if !self.joined.is_empty() {
            return self.inner.write(self.joined.split().freeze());
        }
        match self.first.take() {
            Some(first) => self.inner.write(first),
            None => Ok(()),
        }
    }

    pub fn finish(self) -> Result<(S, Report), Error> {
        self.finish_with_lookups()
            .map(|(sink, report, _)| (sink, report))
    }

    /// [`finish`](Self::finish), and the lookups, with every question the
    /// body left for the vault.
    pub fn finish_with_lookups(mut self) -> Result<(S, Report, Lookups), Error> {
        self.flush()?;
        match self.inner {
            Inner::Json(r) => r.finish_with_lookups(),
            Inner::Form(r) => r.finish_with_lookups(),
            Inner::Lines(r) => r.finish_with_lookups(),
        }
    }

    pub fn sink_mut(&mut self) -> &mut S {
        match &mut self.inner {
            Inner::Json(r) => r.sink_mut(),
            Inner::Form(r) => r.sink_mut(),
            Inner::Lines(r) => r.sink_mut(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn media_types() {
        let cases = [
            ("application/json", Some(BodyKind::Json)),
            ("Application/JSON; charset=UTF-8", Some(BodyKind::Json)),
            ("application/vnd.api+json", Some(BodyKind::Json)),
            ("application/x-ndjson", Some(BodyKind::Ndjson)),
            (
                "application/x-www-form-urlencoded;charset=utf-8",
                Some(BodyKind::Form),
            ),
            ("application/json; charset=iso-8859-1", None),
            ("text/plain", None),
            ("Application/Vnd.Api+JSON", Some(BodyKind::Json)),
            ("application/X-NDJSON", Some(BodyKind::Ndjson)),
            ("text/ndjson", None),
            ("application/+json", Some(BodyKind::Json)),
            ("multipart/form-data; boundary=x", None),
            ("json", None),
        ];
        for (value, expected) in cases {
            assert_eq!(BodyKind::from_content_type(value), expected, "{value}");
        }
    }
}
