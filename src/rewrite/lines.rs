//! The push rewriter for bodies of URL-encoded lines (`text_plain:
//! query_lines`): gtag.js batches hits into one `text/plain` body, one hit's
//! parameters per line, and each line is rewritten exactly as a query string
//! is ([`rewrite_query`]), with the same `query.NAME` rules and detectors.
//! A line is held until its end, up to `max_value_bytes`.

use bytes::Bytes;

use super::error::{Error, Failure, Kind};
use super::fields::Fields;
use super::lookups::Lookups;
use super::query::{QueryOutcome, rewrite_query};
use super::report::Report;
use super::sink::Sink;
use crate::policy::Rules;

/// Rewrites one body of URL-encoded lines pushed in chunks.
#[derive(Clone)]
pub struct QueryLinesRewriter<'r, S: Sink> {
    rules: &'r Rules,
    sink: S,
    /// The start of the current line, from earlier chunks.
    partial: Vec<u8>,
    /// Where the current line starts in the body.
    line_start: u64,
    /// Bytes of the body seen so far.
    offset: u64,
    report: Report,
    /// The vault's answers, and the questions left for its store.
    lookups: Lookups,
    failed: Failure,
}

impl<'r, S: Sink> QueryLinesRewriter<'r, S> {
    pub fn new(rules: &'r Rules, sink: S) -> Self {
        QueryLinesRewriter {
            rules,
            sink,
            partial: Vec::new(),
            line_start: 0,
            offset: 0,
            report: Report::new(rules.rules.len(), false),
            lookups: Lookups::default(),
            failed: Failure::default(),
        }
    }

    pub fn explain(mut self, explain: bool) -> Self {
        self.report.changes = explain.then(Vec::new);
        self
    }

    /// Counts every parameter by path and outcome when `outer` (the
    /// request's report) does.
    pub(crate) fn count_fields_like(&mut self, outer: &Report) {
        self.report.fields = outer.nested_fields();
    }

    /// Also counts every parameter by path and outcome, for the egress
    /// inventory.
    pub fn inventory(mut self, inventory: bool) -> Self {
        self.report.fields = inventory.then(|| Box::new(Fields::new(self.rules)));
        self
    }

    /// Answers `tokenize` rules from `lookups`.
    pub fn lookups(mut self, lookups: Lookups) -> Self {
        self.lookups = lookups;
        self
    }

    /// The lookups of this pass: its open questions.
    pub fn lookups_mut(&mut self) -> &mut Lookups {
        &mut self.lookups
    }

    pub fn sink_mut(&mut self) -> &mut S {
        &mut self.sink
    }

    pub fn write(&mut self, chunk: Bytes) -> Result<(), Error> {
        self.failed.check()?;
        let result = self.write_chunk(&chunk);
        self.failed.keep(result)
    }

    fn write_chunk(&mut self, chunk: &Bytes) -> Result<(), Error> {
        let mut from = 0;
        while let Some(newline) = memchr::memchr(b'\n', &chunk[from..]) {
            let end = from + newline;
            if self.partial.is_empty() {
                self.line(Some(chunk.slice(from..=end)), &chunk[from..end], true)?;
            } else {
                self.hold(&chunk[from..end])?;
                let line = std::mem::take(&mut self.partial);
                self.line(None, &line, true)?;
            }
            self.offset += (end + 1 - from) as u64;
            self.line_start = self.offset;
            from = end + 1;
        }
        self.hold(&chunk[from..])?;
        self.offset += (chunk.len() - from) as u64;
        Ok(())
    }

    /// Keeps the start of a line that goes on in the next chunk.
    fn hold(&mut self, piece: &[u8]) -> Result<(), Error> {
        if self.partial.len() + piece.len() > self.rules.limits.max_value_bytes as usize {
            return Err(self.too_long());
        }
        self.partial.extend_from_slice(piece);
        Ok(())
    }

    fn too_long(&self) -> Error {
        Error::new(
            Kind::TooLarge,
            self.line_start,
            "line".to_owned(),
            "a line is longer than max_value_bytes",
        )
    }

    /// Rewrites one line (without its `\n`). `whole` is the line as it came
    /// with its `\n`, when it came in one chunk: an unchanged line is
    /// passed as that slice.
    fn line(&mut self, whole: Option<Bytes>, line: &[u8], newline: bool) -> Result<(), Error> {
        if line.len() > self.rules.limits.max_value_bytes as usize {
            return Err(self.too_long());
        }
        let (text, carriage_return) = match line.strip_suffix(b"\r") {
            Some(text) => (text, true),
            None => (line, false),
        };
        let text = std::str::from_utf8(text).map_err(|_| {
            Error::new(
                Kind::Syntax,
                self.line_start,
                "line".to_owned(),
                "a line is not UTF-8",
            )
        })?;
        let outcome = rewrite_query(self.rules, text, &mut self.report, &mut self.lookups)
            .map_err(|err| err.shifted(self.line_start))?;
        match outcome {
            QueryOutcome::Unchanged => match whole {
                Some(whole) => self.sink.write(whole),
                None => {
                    let mut copy = line.to_vec();
                    if newline {
                        copy.push(b'\n');
                    }
                    self.sink.write(Bytes::from(copy));
                }
            },
            QueryOutcome::Rewritten(mut rewritten) => {
                if carriage_return {
                    rewritten.push('\r');
                } else if rewritten.ends_with('\r') {
                    // A `\r` that was data inside the line, now at its end
                    // (what followed it dropped), would read as a CRLF's:
                    // it goes encoded, the same byte to a decoder.
                    rewritten.pop();
                    rewritten.push_str("%0D");
                }
                if newline {
                    rewritten.push('\n');
                }
                self.sink.write(Bytes::from(rewritten));
            }
        }
        Ok(())
    }

    pub fn finish(self) -> Result<(S, Report), Error> {
        self.finish_with_lookups()
            .map(|(sink, report, _)| (sink, report))
    }

    /// [`finish`](Self::finish), and the lookups, with the questions the
    /// end of the body left.
    pub fn finish_with_lookups(mut self) -> Result<(S, Report, Lookups), Error> {
        self.failed.check()?;
        if !self.partial.is_empty() {
            let line = std::mem::take(&mut self.partial);
            self.line(None, &line, false)?;
        }
        Ok((self.sink, self.report, self.lookups))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::{Limits, OnInvalid, Unlisted};
    use crate::transform::Action;

    fn rules(max_value_bytes: u32) -> Rules {
        let limits = Limits {
            max_value_bytes,
            ..Limits::default()
        };
        Rules::build(
            [
                ("query.uid".to_owned(), Action::Drop, OnInvalid::Drop),
                (
                    "query.ep.name".to_owned(),
                    Action::Redact { with: "x".into() },
                    OnInvalid::Drop,
                ),
            ],
            Unlisted::Keep,
            limits,
        )
        .unwrap_or_default()
    }

    fn rewrite(rules: &Rules, body: &[u8], chunk: usize) -> Result<String, Error> {
        let mut rewriter = QueryLinesRewriter::new(rules, Vec::new());
        for piece in body.chunks(chunk) {
            rewriter.write(Bytes::copy_from_slice(piece))?;
        }
        let (out, _) = rewriter.finish()?;
        Ok(String::from_utf8_lossy(&out.concat()).into_owned())
    }

    #[test]
    fn each_line_is_a_query_at_any_chunking() -> Result<(), Error> {
        let rules = rules(1024);
        let body = b"en=page_view&uid=42\r\nen=scroll&epn.percent=90\nen=login&ep.name=Jane&uid=7";
        let expected = "en=page_view\r\nen=scroll&epn.percent=90\nen=login&ep.name=x";
        for chunk in [1, 2, 7, body.len()] {
            assert_eq!(rewrite(&rules, body, chunk)?, expected, "chunks of {chunk}");
        }
        assert_eq!(rewrite(&rules, b"", 1)?, "");
        assert_eq!(
            rewrite(&rules, b"en=a\r&uid=1\nen=b", 1)?,
            "en=a%0D\nen=b",
            "a \\r that was data does not become a line's end"
        );
        assert_eq!(rewrite(&rules, b"\n\n", 1)?, "\n\n");
        Ok(())
    }

    #[test]
    fn long_lines_and_bad_text_are_refused_with_the_line_offset() {
        let rules = rules(16);
        let Err(err) = rewrite(&rules, b"en=a\nen=aaaaaaaaaaaaaaaaaaaaaaaaaaa\n", 3) else {
            panic!("a line over max_value_bytes");
        };
        assert!(err.is_too_large() && err.offset() == 5, "{err}");
        let Err(err) = rewrite(&rules, b"en=a\n%ZZ=1", 64) else {
            panic!("bad percent-encoding");
        };
        assert!(err.is_syntax() && err.offset() == 5, "{err}");
    }
}
