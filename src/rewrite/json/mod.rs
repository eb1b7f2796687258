//! The push JSON rewriter.
//!
//! Feed it chunks with [`JsonRewriter::write`] as they arrive; it validates
//! them (strict RFC 8259), steps the route's selectors through the document,
//! and writes output to its [`Sink`] as soon as it can. Bytes it does not
//! change leave exactly as they came (long spans as slices of the input
//! chunks). Only a value that a rule selects is buffered, so memory is bounded
//! by nesting depth plus the largest selected value plus one chunk, never by
//! body size.
//!
//! The scanner is a byte-level state machine that can stop at any byte, so a
//! token split across chunks needs no re-scan: only the bytes the rewriter
//! must look at (a key in a tracked object, a selected value) are carried. How
//! the bytes between decisions are passed, held or suppressed is in
//! `output.rs`.
//!
//! Per value, the rewriter decides a `Slot` (from the selector states of its
//! container and its member name or index) before the value starts, and acts
//! on it when the value's first byte tells whether it is a container or a
//! scalar.

use bytes::Bytes;

use super::error::{Error, Failure, Kind};
use super::escape::{find_string_special, unescape_into};
use super::fields::{Fields, template_hash, templated};
use super::lookups::Lookups;
use super::output::{Mode, Steering, Writer};
use super::path::{hash_bytes, hash_key};
use super::report::{ChangeKind, Report};
use super::sink::Sink;
use super::verdict::{self, Judged, Rejected, Verdict};
use crate::detect::Finding;
use crate::policy::{Label, RuleId, Rules, State, Unlisted};
use crate::transform::{Action, Digest, Invalid, Scalar};

/// Whether the input is one JSON document or newline-delimited documents.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Framing {
    /// `application/json`: exactly one document.
    Single,
    /// `application/x-ndjson`: one document per line; blank lines are kept.
    Lines,
}

/// Rewrites one JSON body (or NDJSON stream) pushed in chunks.
#[derive(Clone)]
pub struct JsonRewriter<'r, S: Sink> {
    rules: &'r Rules,
    writer: Writer<S>,
    framing: Framing,
    lex: Lex,
    /// Offset in the whole body of the first byte not yet scanned.
    offset: u64,
    /// The start of a character cut by the end of the last chunk.
    utf8_carry: Vec<u8>,
    frames: Vec<Frame>,
    /// The selector states of every tracked frame, stacked.
    arena: Vec<State>,
    /// States for the children of the value about to start.
    child_states: Vec<State>,
    /// The current key of every frame, for paths.
    path_keys: PathKeys,
    steer: Steering,
    /// Where the current member's hold begins, while it is put off.
    pending_hold: Option<PendingHold>,
    /// What the value about to start is for.
    slot: Slot,
    /// What the scalar being scanned is for.
    scalar: ScalarUse,
    str_is_key: bool,
    str_escaped: bool,
    /// A string under which selectors continue whose first non-blank
    /// character has not come yet: it decides whether the string is
    /// captured as a possible embedded document or streams as it is.
    embedded_undecided: bool,
    /// Where the token being captured starts in the current chunk.
    capture_from: Option<usize>,
    /// The part of a captured token that lay in earlier chunks.
    capture: Vec<u8>,
    capture_spilled: bool,
    token_offset: u64,
    key_buf: Vec<u8>,
    /// The new text of the value being rewritten (reused).
    replacement: String,
    report: Report,
    /// The vault's answers for `tokenize` and `reveal`, and the questions
    /// left for its store.
    lookups: Lookups,
    /// Set for an embedded document: its root's states, its depth within the
    /// outer document, and the outer path.
    embedded: Option<Embedded>,
    /// A scanned string or member name that a chunk's end cut: its bytes
    /// are in the capture, no longer pending in the output.
    token_suspended: bool,
    /// What the detectors found in the last scanned text (reused).
    findings: Vec<Finding>,
    /// The scanned text rewritten (reused).
    scanned: String,
    /// A scanned string unescaped (reused).
    scan_buf: Vec<u8>,
    /// The hash of the root's path template (`$`, or an embedding value's),
    /// while fields are counted.
    template_root: u64,
    failed: Failure,
}

/// Where the rewriter `$r` is, as a [`slots::place`]: a macro, so that it
/// borrows only the fields it reads while the report is borrowed mutably.
macro_rules! here {
    ($r:expr) => {
        place(&$r.frames, &$r.path_keys, &$r.embedded, $r.template_root)
    };
}

mod embedded;
mod keys;
mod lex;
mod scan;
mod slots;
mod values;

pub(crate) use embedded::{Embedded, rewrite_embedded};
use keys::{PathKeys, current_path, place};
use lex::{Lex, Num, WHITESPACE};
use slots::{Frame, FrameMode, PendingHold, ScalarUse, Slot};

impl<'r, S: Sink> JsonRewriter<'r, S> {
    pub fn new(rules: &'r Rules, framing: Framing, sink: S) -> Self {
        JsonRewriter {
            rules,
            writer: Writer::new(sink),
            framing,
            lex: Lex::Start,
            offset: 0,
            utf8_carry: Vec::new(),
            // Sized for a typical event, so that one allocation each
            // replaces a growth step every few tokens.
            frames: Vec::with_capacity(8),
            arena: Vec::with_capacity(32),
            child_states: Vec::with_capacity(16),
            path_keys: PathKeys::with_capacity(64),
            steer: Steering::default(),
            pending_hold: None,
            slot: Slot::Pass,
            scalar: ScalarUse::Pass,
            str_is_key: false,
            str_escaped: false,
            embedded_undecided: false,
            capture_from: None,
            capture: Vec::with_capacity(64),
            capture_spilled: false,
            token_offset: 0,
            key_buf: Vec::new(),
            replacement: String::with_capacity(64),
            report: Report::new(rules.rules.len(), false),
            lookups: Lookups::default(),
            embedded: None,
            token_suspended: false,
            findings: Vec::new(),
            scanned: String::new(),
            scan_buf: Vec::new(),
            template_root: template_hash("$"),
            failed: Failure::default(),
        }
    }

    /// Records every change with its path, for `--explain`.
    pub fn explain(mut self, explain: bool) -> Self {
        self.report.changes = explain.then(Vec::new);
        self
    }

    /// Also counts every value by path and outcome, for the egress
    /// inventory ([`Report::fields`]).
    pub fn inventory(mut self, inventory: bool) -> Self {
        self.report.fields = inventory.then(|| Box::new(Fields::new(self.rules)));
        self
    }

    /// Counts every value by path and outcome when `outer` (the request's
    /// report) does, with what it knows of templates.
    pub(crate) fn count_fields_like(&mut self, outer: &Report) {
        self.report.fields = outer.nested_fields();
    }

    /// Answers `tokenize` and `reveal` rules from `lookups`.
    pub fn lookups(mut self, lookups: Lookups) -> Self {
        self.lookups = lookups;
        self
    }

    /// The lookups of this pass: its open questions.
    pub fn lookups_mut(&mut self) -> &mut Lookups {
        &mut self.lookups
    }

    fn embedded(
        rules: &'r Rules,
        sink: S,
        embedded: Embedded,
        outer: &Report,
        lookups: Lookups,
    ) -> Self {
        let mut rewriter = JsonRewriter::new(rules, Framing::Single, sink);
        rewriter.report = outer.nested(rules.rules.len());
        rewriter.lookups = lookups;
        if rewriter.report.counts_fields() {
            rewriter.template_root = template_hash(&templated(&embedded.path));
        }
        rewriter.embedded = Some(embedded);
        rewriter
    }

    /// The hash of the template of the value about to start or just ended.
    fn value_template(&self) -> u64 {
        self.frames
            .last()
            .map_or(self.template_root, |frame| frame.child_template)
    }

    pub fn sink_mut(&mut self) -> &mut S {
        &mut self.writer.sink
    }

    /// Pushes the next chunk of the body.
    pub fn write(&mut self, chunk: Bytes) -> Result<(), Error> {
        self.failed.check()?;
        let data = if self.utf8_carry.is_empty() {
            chunk
        } else {
            let mut joined = std::mem::take(&mut self.utf8_carry);
            joined.extend_from_slice(&chunk);
            Bytes::from(joined)
        };
        let result = self.write_chunk(&data);
        self.failed.keep(result)
    }

    /// Ends the body: checks that it is complete, and returns the sink and
    /// what was changed.
    pub fn finish(self) -> Result<(S, Report), Error> {
        self.finish_with_lookups()
            .map(|(sink, report, _)| (sink, report))
    }

    /// [`finish`](Self::finish), and the lookups, with the questions the
    /// end of the body left.
    pub fn finish_with_lookups(mut self) -> Result<(S, Report, Lookups), Error> {
        self.failed.check()?;
        if !self.utf8_carry.is_empty() {
            return Err(self.error_at_offset(self.offset, Kind::Syntax, "invalid UTF-8"));
        }
        let empty = Bytes::new();
        if let Lex::Number(num) = self.lex
            && num.complete()
            && self.frames.is_empty()
        {
            self.scalar_end(&empty, "", 0)?;
        }
        let complete = match self.lex {
            Lex::End => true,
            Lex::Start => self.framing == Framing::Lines,
            _ => false,
        };
        if !complete {
            let reason = if self.offset == 0 {
                "empty body"
            } else {
                "unexpected end of input"
            };
            return Err(self.error_at_offset(self.offset, Kind::Syntax, reason));
        }
        self.steer.flush(&empty, 0, &mut self.writer);
        Ok((self.writer.into_sink(), self.report, self.lookups))
    }

    /// Scans the valid UTF-8 prefix of `data`. A character cut at the end is
    /// carried to the next chunk unscanned, so that the scanner sees the same
    /// bytes, and meets the same errors, however the body is chunked.
    fn write_chunk(&mut self, data: &Bytes) -> Result<(), Error> {
        // `simdutf8` checks 32 or 64 bytes a step, accented names included,
        // where `std` goes a character at a time from the first byte past
        // ASCII: the check was 5% of the pass-through's time (perf).
        let (text, invalid) = match simdutf8::compat::from_utf8(data) {
            Ok(text) => (text, false),
            // Read again up to where it is valid (a chunk that ends inside a
            // character, or an invalid body), so that the scanner holds the
            // chunk as text and hands values on without checking them again.
            Err(err) => (
                simdutf8::compat::from_utf8(&data[..err.valid_up_to()]).unwrap_or_default(),
                err.error_len().is_some(),
            ),
        };
        let valid = text.len();
        self.steer.from = 0;
        self.path_keys.begin_chunk(data);
        self.scan(data, text)?;
        self.path_keys.end_chunk();
        if invalid {
            return Err(self.error(valid, Kind::Syntax, "invalid UTF-8"));
        }
        self.take_up_pending_hold(data);
        if self.capture_from.is_some() && self.rules.scan.is_some() {
            self.suspend_scanned_token(data);
        }
        self.steer.flush(data, valid, &mut self.writer);
        if let Some(from) = self.capture_from {
            self.spill_capture(data, from, valid)?;
            // The next chunk (or `finish`) continues from its own start.
            self.capture_from = Some(0);
        }
        self.utf8_carry.extend_from_slice(&data[valid..]);
        self.offset += valid as u64;
        // What this chunk produced is the sink's before the next one arrives.
        self.writer.flush();
        // What is held across chunks (a separator, a member name and the
        // blanks after it, while a member's fate is open) is bounded. A
        // member no rule is about is not held when its name ends in the
        // chunk where its comma is.
        let held_limit = self.rules.limits.max_value_bytes as usize;
        if self.steer.held.len() > held_limit {
            return Err(self.error_at_offset(
                self.offset,
                Kind::TooLarge,
                format!("member name and whitespace longer than {held_limit} bytes"),
            ));
        }
        Ok(())
    }

    fn spill_capture(&mut self, chunk: &Bytes, from: usize, to: usize) -> Result<(), Error> {
        self.check_capture_size(self.capture.len() + (to - from), to)?;
        self.capture.extend_from_slice(&chunk[from..to]);
        self.capture_spilled = true;
        Ok(())
    }

    /// Refuses a captured token of `len` bytes, which reached `at`, over
    /// its limit.
    fn check_capture_size(&self, len: usize, at: usize) -> Result<(), Error> {
        let limit = self.capture_limit();
        if len <= limit {
            return Ok(());
        }
        if self.scalar == ScalarUse::Scan && !self.str_is_key {
            return Err(self.too_long_to_scan(at, limit));
        }
        let what = if self.scalar == ScalarUse::Embedded {
            "embedded document"
        } else {
            "value"
        };
        Err(self.error(
            at,
            Kind::TooLarge,
            format!("{what} larger than {limit} bytes"),
        ))
    }

    fn capture_limit(&self) -> usize {
        if self.scalar == ScalarUse::Embedded && !self.str_is_key {
            self.rules.limits.max_embedded_bytes as usize
        } else {
            self.rules.limits.max_value_bytes as usize
        }
    }

    fn start_capture(&mut self, at: usize) {
        self.capture.clear();
        self.capture_spilled = false;
        self.capture_from = Some(at);
    }

    /// Ends the captured token at `end` in the current chunk: where it
    /// starts in the chunk, when it lies whole within it (read there, with
    /// no copy), or `None` when it began in an earlier chunk and is
    /// completed in `self.capture`.
    fn end_token(&mut self, chunk: &Bytes, end: usize) -> Result<Option<usize>, Error> {
        if self.capture_spilled {
            self.finish_token(chunk, end)?;
            return Ok(None);
        }
        let from = self.capture_from.take().unwrap_or(end);
        self.capture.clear();
        self.check_capture_size(end - from, end)?;
        Ok(Some(from))
    }

    /// Completes the captured token, which ends at `end` in the current
    /// chunk, into `self.capture`. A copy (of a bounded size) is cheaper than
    /// a reference-counted slice of the chunk.
    fn finish_token(&mut self, chunk: &Bytes, end: usize) -> Result<(), Error> {
        let from = self.capture_from.take().unwrap_or(end);
        if !self.capture_spilled {
            self.capture.clear();
        }
        self.spill_capture(chunk, from, end)?;
        self.capture_spilled = false;
        Ok(())
    }

    /// Scans `text`, the valid UTF-8 start of `chunk`.
    fn scan(&mut self, chunk: &Bytes, text: &str) -> Result<(), Error> {
        let bytes = text.as_bytes();
        let mut i = 0;
        while i < bytes.len() {
            let b = bytes[i];
            match self.lex {
                Lex::Str => {
                    if self.embedded_undecided {
                        while i < bytes.len() && bytes[i] == b' ' {
                            i += 1;
                        }
                        match bytes.get(i) {
                            None => return Ok(()),
                            Some(b'{' | b'[') => self.embedded_undecided = false,
                            // The end of a blank string, or an escape, which
                            // `Lex::Escape` decides.
                            Some(b'"' | b'\\') => {}
                            Some(_) => self.plain_string(chunk, i),
                        }
                    }
                    let j = i + find_string_special(&bytes[i..]);
                    if j >= bytes.len() {
                        return Ok(());
                    }
                    match bytes[j] {
                        b'"' => {
                            self.string_end(chunk, text, j)?;
                            i = self.after_token(chunk, bytes, j + 1)?;
                            continue;
                        }
                        b'\\' => {
                            self.str_escaped = true;
                            self.lex = Lex::Escape;
                        }
                        _ => {
                            return Err(self.error(
                                j,
                                Kind::Syntax,
                                "control character in a string",
                            ));
                        }
                    }
                    i = j + 1;
                    continue;
                }
                Lex::Escape => {
                    if self.embedded_undecided {
                        match b {
                            // Blank: still undecided.
                            b'n' | b'r' | b't' => {}
                            // Maybe a blank, maybe a brace: captured whole.
                            b'u' => self.embedded_undecided = false,
                            _ => self.plain_string(chunk, i),
                        }
                    }
                    self.lex = match b {
                        b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => Lex::Str,
                        b'u' => Lex::Hex {
                            left: 4,
                            code: 0,
                            low: false,
                        },
                        _ => return Err(self.error(i, Kind::Syntax, "invalid escape in a string")),
                    };
                }
                Lex::Hex { left, code, low } => {
                    let digit = match b {
                        b'0'..=b'9' => b - b'0',
                        b'a'..=b'f' => b - b'a' + 10,
                        b'A'..=b'F' => b - b'A' + 10,
                        _ => return Err(self.error(i, Kind::Syntax, "invalid \\u escape")),
                    };
                    let code = (code << 4) | u16::from(digit);
                    self.lex = if left > 1 {
                        Lex::Hex {
                            left: left - 1,
                            code,
                            low,
                        }
                    } else if low {
                        if !(0xDC00..0xE000).contains(&code) {
                            return Err(self.error(i, Kind::Syntax, "lone surrogate in a string"));
                        }
                        Lex::Str
                    } else if (0xD800..0xDC00).contains(&code) {
                        Lex::LowSurrogateBackslash
                    } else if (0xDC00..0xE000).contains(&code) {
                        return Err(self.error(i, Kind::Syntax, "lone surrogate in a string"));
                    } else {
                        Lex::Str
                    };
                }
                Lex::LowSurrogateBackslash | Lex::LowSurrogateU => {
                    let expected = if self.lex == Lex::LowSurrogateBackslash {
                        b'\\'
                    } else {
                        b'u'
                    };
                    if b != expected {
                        return Err(self.error(i, Kind::Syntax, "lone surrogate in a string"));
                    }
                    self.lex = if b == b'\\' {
                        Lex::LowSurrogateU
                    } else {
                        Lex::Hex {
                            left: 4,
                            code: 0,
                            low: true,
                        }
                    };
                }
                Lex::Number(mut num) => {
                    // The whole run of the number's bytes in this chunk, not
                    // one pass of the loop each.
                    let mut j = i;
                    while let Some(next) = bytes.get(j).and_then(|&b| num.next(b)) {
                        num = next;
                        j += 1;
                    }
                    self.lex = Lex::Number(num);
                    if j == bytes.len() {
                        return Ok(());
                    }
                    if !num.complete() {
                        return Err(self.error(j, Kind::Syntax, "invalid number"));
                    }
                    // The delimiter belongs to the next state: not taken.
                    self.scalar_end(chunk, text, j)?;
                    i = self.after_token(chunk, bytes, j)?;
                    continue;
                }
                Lex::Literal { word, at } => {
                    let mut at = usize::from(at);
                    let mut j = i;
                    while at < word.len() && j < bytes.len() {
                        if bytes[j] != word[at] {
                            return Err(self.error(
                                j,
                                Kind::Syntax,
                                "invalid literal (expected true, false or null)",
                            ));
                        }
                        at += 1;
                        j += 1;
                    }
                    if at == word.len() {
                        self.scalar_end(chunk, text, j)?;
                        i = self.after_token(chunk, bytes, j)?;
                    } else {
                        // Cut by the chunk's end (`at` < 5).
                        self.lex = Lex::Literal { word, at: at as u8 };
                        i = j;
                    }
                    continue;
                }
                _ if WHITESPACE[usize::from(b)] => {
                    if b == b'\n' && self.framing == Framing::Lines {
                        match self.lex {
                            Lex::End => self.lex = Lex::Start,
                            Lex::Start => {}
                            _ => {
                                return Err(self.error(
                                    i,
                                    Kind::Syntax,
                                    "line ends inside a document",
                                ));
                            }
                        }
                    }
                }
                Lex::Start => {
                    if b == 0xEF && self.offset + i as u64 == 0 {
                        self.lex = Lex::Bom(1);
                    } else {
                        self.root_slot();
                        self.begin_value(chunk, i, b)?;
                    }
                }
                Lex::Bom(at) => {
                    const BOM: [u8; 3] = [0xEF, 0xBB, 0xBF];
                    if b != BOM[usize::from(at)] {
                        return Err(self.error(i, Kind::Syntax, "invalid byte order mark"));
                    }
                    self.lex = if at == 2 {
                        Lex::Start
                    } else {
                        Lex::Bom(at + 1)
                    };
                }
                Lex::FirstElementOrEnd if b == b']' => {
                    i = self.close_then_after(chunk, bytes, i)?;
                    continue;
                }
                Lex::FirstElementOrEnd | Lex::Element => self.begin_element(chunk, i, b)?,
                Lex::FirstKeyOrEnd if b == b'}' => {
                    i = self.close_then_after(chunk, bytes, i)?;
                    continue;
                }
                Lex::FirstKeyOrEnd | Lex::Key => {
                    if b != b'"' {
                        return Err(self.error(
                            i,
                            Kind::Syntax,
                            "expected a member name in double quotes",
                        ));
                    }
                    self.key_start(chunk, i);
                }
                Lex::Colon => {
                    if b != b':' {
                        return Err(self.error(
                            i,
                            Kind::Syntax,
                            "expected ':' after a member name",
                        ));
                    }
                    self.lex = Lex::MemberValue;
                }
                Lex::MemberValue => self.begin_value(chunk, i, b)?,
                Lex::Comma => {
                    let object = self.frames.last().is_some_and(|f| f.object);
                    match (b, object) {
                        (b',', _) => self.comma(chunk, i, object),
                        (b'}', true) | (b']', false) => {
                            i = self.close_then_after(chunk, bytes, i)?;
                            continue;
                        }
                        (_, true) => {
                            return Err(self.error(i, Kind::Syntax, "expected ',' or '}'"));
                        }
                        (_, false) => {
                            return Err(self.error(i, Kind::Syntax, "expected ',' or ']'"));
                        }
                    }
                }
                Lex::End => {
                    return Err(self.error(i, Kind::Syntax, "unexpected data after the document"));
                }
            }
            i += 1;
        }
        Ok(())
    }

    /// Takes what usually follows a token in compact JSON, from `i`: the
    /// `:` after a member name and the value's first byte, or the `,` after
    /// a value (a string, number, literal or closed container) and the next
    /// member's quote (the next element's first byte, in an array). The
    /// scanner's loop would take each in a pass of its own, through a jump
    /// on the lexer's state, the costliest instruction of a pass (perf).
    /// Returns where it stopped. Inlined at each of its places: called,
    /// it cost the pass-through 7% more instructions (callgrind).
    #[inline(always)]
    fn after_token(&mut self, chunk: &Bytes, bytes: &[u8], mut i: usize) -> Result<usize, Error> {
        let next = |i: usize| {
            bytes
                .get(i)
                .copied()
                .filter(|&b| !WHITESPACE[usize::from(b)])
        };
        match (self.lex, next(i)) {
            (Lex::Colon, Some(b':')) => {
                self.lex = Lex::MemberValue;
                i += 1;
                if let Some(b) = next(i) {
                    self.begin_value(chunk, i, b)?;
                    i += 1;
                }
            }
            (Lex::Comma, Some(b',')) => {
                let object = self.frames.last().is_some_and(|f| f.object);
                self.comma(chunk, i, object);
                i += 1;
                match next(i) {
                    Some(b'"') if object => {
                        self.key_start(chunk, i);
                        i += 1;
                    }
                    Some(b) if !object => {
                        self.begin_element(chunk, i, b)?;
                        i += 1;
                    }
                    _ => {}
                }
            }
            _ => {}
        }
        Ok(i)
    }

    /// Closes the container whose `}` or `]` is at `at`, and takes what
    /// follows it as [`after_token`](Self::after_token) does.
    #[inline(always)]
    fn close_then_after(&mut self, chunk: &Bytes, bytes: &[u8], at: usize) -> Result<usize, Error> {
        self.close(chunk, at)?;
        self.after_token(chunk, bytes, at + 1)
    }

    fn error(
        &self,
        at: usize,
        kind: Kind,
        reason: impl Into<std::borrow::Cow<'static, str>>,
    ) -> Error {
        self.error_at_offset(self.offset + at as u64, kind, reason)
    }

    fn error_at_offset(
        &self,
        offset: u64,
        kind: Kind,
        reason: impl Into<std::borrow::Cow<'static, str>>,
    ) -> Error {
        Error::new(
            kind,
            offset,
            current_path(&self.frames, &self.path_keys, &self.embedded),
            reason,
        )
    }
}
