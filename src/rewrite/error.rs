//! The rewriters' error: opaque, with predicates, in the manner of hyper's.
//! It says where (byte offset and path) and why, never what the value was.

use std::borrow::Cow;
use std::fmt;

/// A body the rewriter will not forward.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Error {
    inner: Box<Inner>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Inner {
    kind: Kind,
    offset: u64,
    path: String,
    reason: Cow<'static, str>,
    /// The problem is inside a document embedded in a string or form field.
    embedded: bool,
}

/// The first error a push rewriter met. A rewriter that failed never
/// resumes: every later write, and the end, return the same error.
#[derive(Clone, Debug, Default)]
pub(crate) struct Failure(Option<Error>);

impl Failure {
    pub(crate) fn check(&self) -> Result<(), Error> {
        self.0.as_ref().map_or(Ok(()), |err| Err(err.clone()))
    }

    /// Passes `result` on, remembering it if it is an error.
    pub(crate) fn keep(&mut self, result: Result<(), Error>) -> Result<(), Error> {
        if let Err(err) = &result {
            self.0 = Some(err.clone());
        }
        result
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    /// Not valid JSON (or form encoding, or UTF-8).
    Syntax,
    /// Nested deeper than the route allows.
    TooDeep,
    /// A value, key or embedded document larger than the route allows.
    TooLarge,
    /// A rule with `on_invalid: reject` met a value it cannot handle.
    Rejected,
}

impl Error {
    pub(crate) fn new(
        kind: Kind,
        offset: u64,
        path: String,
        reason: impl Into<Cow<'static, str>>,
    ) -> Error {
        Error {
            inner: Box::new(Inner {
                kind,
                offset,
                path,
                reason: reason.into(),
                embedded: false,
            }),
        }
    }

    /// The body is not well-formed.
    pub fn is_syntax(&self) -> bool {
        self.inner.kind == Kind::Syntax
    }

    /// The body nests deeper than `max_depth`.
    pub fn is_too_deep(&self) -> bool {
        self.inner.kind == Kind::TooDeep
    }

    /// A value is larger than the limit that applies to it.
    pub fn is_too_large(&self) -> bool {
        self.inner.kind == Kind::TooLarge
    }

    /// A rule rejected a value it cannot handle (`on_invalid: reject`).
    pub fn is_rejected(&self) -> bool {
        self.inner.kind == Kind::Rejected
    }

    /// The problem is inside a JSON document embedded in a string or a form
    /// field (reported at the embedding value's offset).
    pub fn is_embedded(&self) -> bool {
        self.inner.embedded
    }

    /// Byte offset in the body where the problem is.
    pub fn offset(&self) -> u64 {
        self.inner.offset
    }

    /// The path of the value concerned (`$.data[0].user_data.em`). Keys that
    /// do not look like identifiers are shown as `[?]`: a key can be data.
    pub fn path(&self) -> &str {
        &self.inner.path
    }

    pub fn reason(&self) -> &str {
        &self.inner.reason
    }

    /// The same error, `by` bytes further on: an error in a part of a body
    /// (a line) placed in the whole.
    pub(crate) fn shifted(mut self, by: u64) -> Error {
        self.inner.offset += by;
        self
    }

    /// The same error, seen from an enclosing document: an error inside an
    /// embedded document is reported at the embedding value's offset. Its
    /// path already starts at the outer root (the embedded rewriter starts
    /// from the embedding value's path).
    pub(crate) fn nested_in(self, offset: u64) -> Error {
        let inner = *self.inner;
        let path = inner.path;
        let reason = format!(
            "in the embedded document at byte {}: {}",
            inner.offset, inner.reason
        );
        let mut error = Error::new(inner.kind, offset, path, reason);
        error.inner.embedded = true;
        error
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} at byte {}, path {}",
            self.inner.reason, self.inner.offset, self.inner.path
        )
    }
}

impl std::error::Error for Error {}
