//! Pure body rewriting: bytes in, bytes out, push-based. Nothing here knows
//! about sockets or metrics; each rewriter reports what it changed in a
//! [`Report`] and fails with an [`Error`] that names the place and the reason.

mod body;
mod error;
mod escape;
mod fields;
mod form;
mod headers;
mod json;
mod lines;
mod lookups;
mod output;
mod path;
mod probe;
mod query;
mod report;
mod sink;
#[cfg(any(test, feature = "oracle"))]
pub mod tree;
mod verdict;

pub use body::{BodyKind, BodyRewriter};
pub use error::Error;
pub use fields::{
    ByTemplate, Counts, Fields, KnownTemplates, MAX_PATHS, Outcome, add_counts, template_hash,
};
pub use form::FormRewriter;
pub use headers::{HeaderOutcome, rewrite_header};
pub use json::{Framing, JsonRewriter};
pub use lines::QueryLinesRewriter;
pub use lookups::{
    Answers, Fingerprint, Lookups, Plain, Question, Revealed, Secret, Token, VaultCache,
};
pub use probe::probe;
pub use query::{QueryOutcome, rewrite_query};
pub use report::{Change, ChangeKind, Report};
pub use sink::Sink;
