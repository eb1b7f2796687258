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

use super::error::{Error, Kind};
use super::escape::{find_string_special, unescape_into};
use super::output::{Mode, Steering, Writer};
use super::path::push_key;
use super::report::{ChangeKind, Report};
use super::sink::Sink;
use super::verdict::{self, Rejected, Verdict};
use crate::policy::{Label, RuleId, Rules, State, Unlisted};
use crate::transform::{Action, Invalid, Scalar};

/// Whether the input is one JSON document or newline-delimited documents.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Framing {
    /// `application/json`: exactly one document.
    Single,
    /// `application/x-ndjson`: one document per line; blank lines are kept.
    Lines,
}

/// Rewrites one JSON body (or NDJSON stream) pushed in chunks.
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
    /// The current key of every frame, stacked, for error paths.
    path_keys: Vec<u8>,
    steer: Steering,
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
    /// Set for an embedded document: its root's states, its depth within the
    /// outer document, and the outer path.
    embedded: Option<Embedded>,
    failed: Option<Error>,
}

/// Where an embedded document sits in the outer one.
pub(crate) struct Embedded {
    /// The selector states at the embedding value.
    pub(crate) states: Vec<State>,
    /// Nesting depth of the embedding value.
    pub(crate) depth: u32,
    /// Path of the embedding value.
    pub(crate) path: String,
}

/// Rewrites a document found inside a string (or a form field) under which
/// selectors continue. `None` when the text is not a JSON object or array, so
/// nothing below it can be selected. An error inside is reported at `offset`,
/// the embedding value's place in the outer body.
pub(crate) fn rewrite_embedded(
    rules: &Rules,
    embedded: Embedded,
    explain: bool,
    text: &[u8],
    offset: u64,
) -> Result<Option<(Vec<u8>, Report)>, Error> {
    let looks_like_json = text
        .iter()
        .find(|b| !WHITESPACE[usize::from(**b)])
        .is_some_and(|b| *b == b'{' || *b == b'[');
    if !looks_like_json {
        return Ok(None);
    }
    let mut inner = JsonRewriter::embedded(rules, Vec::new(), embedded, explain);
    inner
        .write(Bytes::copy_from_slice(text))
        .map_err(|err| err.nested_in(offset))?;
    let (pieces, report) = inner.finish().map_err(|err| err.nested_in(offset))?;
    Ok(Some((pieces.concat(), report)))
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Lex {
    /// Before a document: whitespace, then its value.
    Start,
    /// Inside a leading UTF-8 byte order mark (bytes matched so far).
    Bom(u8),
    /// After `[`.
    FirstElementOrEnd,
    /// After `,` in an array.
    Element,
    /// After `{`.
    FirstKeyOrEnd,
    /// After `,` in an object.
    Key,
    /// After a member name.
    Colon,
    /// After `:`.
    MemberValue,
    /// After a value inside a container.
    Comma,
    /// After the document's value.
    End,
    Str,
    Escape,
    Hex {
        left: u8,
        code: u16,
        low: bool,
    },
    LowSurrogateBackslash,
    LowSurrogateU,
    Number(Num),
    Literal {
        word: &'static [u8],
        at: u8,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Num {
    Minus,
    Zero,
    Int,
    Dot,
    Frac,
    Exp,
    ExpSign,
    ExpDigits,
}

impl Num {
    fn next(self, b: u8) -> Option<Num> {
        match (self, b) {
            (Num::Minus, b'0') => Some(Num::Zero),
            (Num::Minus, b'1'..=b'9') => Some(Num::Int),
            (Num::Int, b'0'..=b'9') => Some(Num::Int),
            (Num::Zero | Num::Int, b'.') => Some(Num::Dot),
            (Num::Dot | Num::Frac, b'0'..=b'9') => Some(Num::Frac),
            (Num::Zero | Num::Int | Num::Frac, b'e' | b'E') => Some(Num::Exp),
            (Num::Exp, b'+' | b'-') => Some(Num::ExpSign),
            (Num::Exp | Num::ExpSign | Num::ExpDigits, b'0'..=b'9') => Some(Num::ExpDigits),
            _ => None,
        }
    }

    fn complete(self) -> bool {
        matches!(self, Num::Zero | Num::Int | Num::Frac | Num::ExpDigits)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum FrameMode {
    /// Nothing below can be selected: pass (or suppress) without looking.
    Untracked,
    /// Selectors are alive here; members are held until decided.
    Tracked,
    /// An array whose elements a per-scalar rule rewrites one by one.
    Each(RuleId),
}

#[derive(Debug)]
struct Frame {
    object: bool,
    mode: FrameMode,
    states_start: usize,
    states_end: usize,
    /// Children completed so far; the current child's index while in one.
    count: u32,
    in_child: bool,
    /// Whether a child was written out (so the next one needs its comma).
    emitted_any: bool,
    /// Where this frame's current key starts in `path_keys`.
    key_start: usize,
    /// Closing this frame ends a suppressed subtree.
    ends_suppress: bool,
    /// The rule whose members are added when this object closes.
    adds: Option<RuleId>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Slot {
    /// Nothing can be selected at or below: pass through.
    Pass,
    /// Selectors continue below (states in `child_states`).
    Track,
    /// A rule selects this value.
    Select(RuleId),
    /// An element of an array a per-scalar rule rewrites.
    Each(RuleId),
    /// `unlisted: drop` and nothing can be selected here: remove.
    Unlisted,
    /// A member this rule adds anew: the original goes.
    Displaced(RuleId),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ScalarUse {
    Pass,
    Suppressed,
    Select(RuleId),
    /// A string under which selectors continue: maybe an embedded document.
    Embedded,
}

const WHITESPACE: [bool; 256] = {
    let mut table = [false; 256];
    table[b' ' as usize] = true;
    table[b'\t' as usize] = true;
    table[b'\n' as usize] = true;
    table[b'\r' as usize] = true;
    table
};

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
            path_keys: Vec::with_capacity(64),
            steer: Steering::default(),
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
            embedded: None,
            failed: None,
        }
    }

    /// Records every change with its path, for `--explain`.
    pub fn explain(mut self, explain: bool) -> Self {
        self.report.changes = explain.then(Vec::new);
        self
    }

    fn embedded(rules: &'r Rules, sink: S, embedded: Embedded, explain: bool) -> Self {
        let mut rewriter = JsonRewriter::new(rules, Framing::Single, sink).explain(explain);
        rewriter.embedded = Some(embedded);
        rewriter
    }

    pub fn sink_mut(&mut self) -> &mut S {
        &mut self.writer.sink
    }

    /// Pushes the next chunk of the body.
    pub fn write(&mut self, chunk: Bytes) -> Result<(), Error> {
        if let Some(err) = &self.failed {
            return Err(err.clone());
        }
        let data = if self.utf8_carry.is_empty() {
            chunk
        } else {
            let mut joined = std::mem::take(&mut self.utf8_carry);
            joined.extend_from_slice(&chunk);
            Bytes::from(joined)
        };
        let result = self.write_chunk(&data);
        if let Err(err) = &result {
            self.failed = Some(err.clone());
        }
        result
    }

    /// Ends the body: checks that it is complete, and returns the sink and
    /// what was changed.
    pub fn finish(mut self) -> Result<(S, Report), Error> {
        if let Some(err) = self.failed.take() {
            return Err(err);
        }
        if !self.utf8_carry.is_empty() {
            return Err(self.error_at_offset(self.offset, Kind::Syntax, "invalid UTF-8"));
        }
        let empty = Bytes::new();
        if let Lex::Number(num) = self.lex
            && num.complete()
            && self.frames.is_empty()
        {
            self.scalar_end(&empty, 0)?;
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
        Ok((self.writer.into_sink(), self.report))
    }

    /// Scans the valid UTF-8 prefix of `data`. A character cut at the end is
    /// carried to the next chunk unscanned, so that the scanner sees the same
    /// bytes, and meets the same errors, however the body is chunked.
    fn write_chunk(&mut self, data: &Bytes) -> Result<(), Error> {
        let (valid, invalid) = match std::str::from_utf8(data) {
            Ok(_) => (data.len(), false),
            Err(err) => (err.valid_up_to(), err.error_len().is_some()),
        };
        self.steer.from = 0;
        self.scan(data, valid)?;
        if invalid {
            return Err(self.error(valid, Kind::Syntax, "invalid UTF-8"));
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
        let limit = self.capture_limit();
        if self.capture.len() + (to - from) > limit {
            let what = if self.scalar == ScalarUse::Embedded {
                "embedded document"
            } else {
                "value"
            };
            return Err(self.error(
                to,
                Kind::TooLarge,
                format!("{what} larger than {limit} bytes"),
            ));
        }
        self.capture.extend_from_slice(&chunk[from..to]);
        self.capture_spilled = true;
        Ok(())
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

    fn scan(&mut self, chunk: &Bytes, limit: usize) -> Result<(), Error> {
        let bytes = &chunk[..limit];
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
                        b'"' => self.string_end(chunk, j)?,
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
                Lex::Number(num) => match num.next(b) {
                    Some(next) => self.lex = Lex::Number(next),
                    None if num.complete() => {
                        // The delimiter belongs to the next state: no advance.
                        self.scalar_end(chunk, i)?;
                        continue;
                    }
                    None => return Err(self.error(i, Kind::Syntax, "invalid number")),
                },
                Lex::Literal { word, at } => {
                    if b != word[usize::from(at)] {
                        return Err(self.error(
                            i,
                            Kind::Syntax,
                            "invalid literal (expected true, false or null)",
                        ));
                    }
                    if usize::from(at) + 1 == word.len() {
                        self.scalar_end(chunk, i + 1)?;
                    } else {
                        self.lex = Lex::Literal { word, at: at + 1 };
                    }
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
                Lex::FirstElementOrEnd if b == b']' => self.close(chunk, i)?,
                Lex::FirstElementOrEnd | Lex::Element => {
                    self.element_slot();
                    self.begin_value(chunk, i, b)?;
                }
                Lex::FirstKeyOrEnd if b == b'}' => self.close(chunk, i)?,
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
                        (b'}', true) | (b']', false) => self.close(chunk, i)?,
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

    fn root_slot(&mut self) {
        self.child_states.clear();
        let selected = match &self.embedded {
            Some(embedded) => {
                self.child_states.extend_from_slice(&embedded.states);
                None
            }
            None => self.rules.body.start(&mut self.child_states),
        };
        self.slot = match selected {
            Some(rule) => Slot::Select(rule),
            None if !self.child_states.is_empty() || self.rules.unlisted == Unlisted::Drop => {
                Slot::Track
            }
            None => Slot::Pass,
        };
    }

    fn element_slot(&mut self) {
        let Some(frame) = self.frames.last_mut() else {
            return;
        };
        frame.in_child = true;
        self.slot = match frame.mode {
            FrameMode::Untracked => Slot::Pass,
            FrameMode::Each(rule) => Slot::Each(rule),
            FrameMode::Tracked => child_slot(
                self.rules,
                &self.arena[frame.states_start..frame.states_end],
                Label::Index(frame.count),
                &mut self.child_states,
            ),
        };
    }

    fn key_start(&mut self, chunk: &Bytes, at: usize) {
        if let Some(frame) = self.frames.last()
            && frame.mode != FrameMode::Untracked
            && frame.count == 0
        {
            self.steer.hold(chunk, at, false, &mut self.writer);
        }
        self.str_is_key = true;
        self.str_escaped = false;
        self.embedded_undecided = false;
        self.start_capture(at + 1);
        self.lex = Lex::Str;
    }

    fn string_end(&mut self, chunk: &Bytes, quote: usize) -> Result<(), Error> {
        // A blank string ends undecided: nothing more to decide.
        self.embedded_undecided = false;
        if self.str_is_key {
            self.str_is_key = false;
            self.key_end(chunk, quote)
        } else {
            self.scalar_end(chunk, quote + 1)
        }
    }

    fn key_end(&mut self, chunk: &Bytes, end: usize) -> Result<(), Error> {
        let from = self.capture_from.take().unwrap_or(end);
        if self.capture_spilled {
            self.spill_capture(chunk, from, end)?;
            self.capture_spilled = false;
        } else if end - from > self.rules.limits.max_value_bytes as usize {
            let reason = format!(
                "member name longer than {} bytes",
                self.rules.limits.max_value_bytes
            );
            return Err(self.error(end, Kind::TooLarge, reason));
        }
        // Borrowed from the chunk when the name lies within it: no copy.
        let raw: &[u8] = if self.capture.is_empty() {
            &chunk[from..end]
        } else {
            &self.capture
        };
        let label: &[u8] = if self.str_escaped {
            self.key_buf.clear();
            if unescape_into(raw, &mut self.key_buf).is_none() {
                return Err(self.error(end, Kind::Syntax, "invalid escape in a member name"));
            }
            &self.key_buf
        } else {
            raw
        };
        self.lex = Lex::Colon;
        let Some(frame) = self.frames.last_mut() else {
            return Ok(());
        };
        frame.in_child = true;
        self.path_keys.truncate(frame.key_start);
        self.path_keys
            .extend_from_slice(&label[..label.len().min(super::path::MAX_KEY_SHOWN + 1)]);
        self.slot = match frame.mode {
            FrameMode::Untracked | FrameMode::Each(_) => Slot::Pass,
            FrameMode::Tracked => child_slot(
                self.rules,
                &self.arena[frame.states_start..frame.states_end],
                Label::Key(label),
                &mut self.child_states,
            ),
        };
        if let Some(rule) = frame.adds
            && let Action::AddMembers(members) = &self.rules.rules[rule].action
            && members.has(label)
        {
            self.slot = Slot::Displaced(rule);
        }
        self.capture.clear();
        Ok(())
    }

    fn comma(&mut self, chunk: &Bytes, at: usize, object: bool) {
        if let Some(frame) = self.frames.last()
            && frame.mode != FrameMode::Untracked
        {
            self.steer.hold(chunk, at, true, &mut self.writer);
        }
        self.lex = if object { Lex::Key } else { Lex::Element };
    }

    /// A value starts at `at` with byte `b`: decide what becomes of it.
    fn begin_value(&mut self, chunk: &Bytes, at: usize, b: u8) -> Result<(), Error> {
        let (lex, container) = match b {
            b'{' => (Lex::FirstKeyOrEnd, true),
            b'[' => (Lex::FirstElementOrEnd, true),
            b'"' => (Lex::Str, false),
            b'-' => (Lex::Number(Num::Minus), false),
            b'0' => (Lex::Number(Num::Zero), false),
            b'1'..=b'9' => (Lex::Number(Num::Int), false),
            b't' => (
                Lex::Literal {
                    word: b"true",
                    at: 1,
                },
                false,
            ),
            b'f' => (
                Lex::Literal {
                    word: b"false",
                    at: 1,
                },
                false,
            ),
            b'n' => (
                Lex::Literal {
                    word: b"null",
                    at: 1,
                },
                false,
            ),
            _ => return Err(self.error(at, Kind::Syntax, "expected a value")),
        };
        self.lex = lex;
        self.str_escaped = false;
        self.embedded_undecided = false;
        self.token_offset = self.offset + at as u64;
        let slot = std::mem::replace(&mut self.slot, Slot::Pass);
        self.scalar = ScalarUse::Pass;
        if slot == Slot::Pass && self.steer.mode != Mode::Hold {
            // Nothing held, nothing to decide (an untracked subtree, or the
            // first element of a tracked array).
            if let Some(frame) = self.frames.last_mut() {
                frame.emitted_any = true;
            }
            return if container {
                self.push_frame(at, b == b'{', FrameMode::Untracked, false)
            } else {
                Ok(())
            };
        }
        let mut frame_mode = FrameMode::Untracked;
        let mut ends_suppress = false;
        let mut capture = false;
        let mut adds = None;
        match slot {
            Slot::Pass => self.keep_value(chunk, at),
            Slot::Unlisted => {
                self.drop_value(chunk, at, None, ChangeKind::Unlisted);
                ends_suppress = container;
                self.scalar = ScalarUse::Suppressed;
            }
            Slot::Displaced(rule) => {
                self.drop_value(chunk, at, Some(rule), ChangeKind::Dropped);
                ends_suppress = container;
                self.scalar = ScalarUse::Suppressed;
            }
            Slot::Track if container => {
                self.keep_value(chunk, at);
                frame_mode = FrameMode::Tracked;
            }
            Slot::Track if b == b'"' => {
                self.steer
                    .set_mode(chunk, at, Mode::Suppress, &mut self.writer);
                self.scalar = ScalarUse::Embedded;
                self.embedded_undecided = true;
                capture = true;
            }
            Slot::Track if self.rules.unlisted == Unlisted::Drop => {
                self.drop_value(chunk, at, None, ChangeKind::Unlisted);
                self.scalar = ScalarUse::Suppressed;
            }
            Slot::Track => self.keep_value(chunk, at),
            Slot::Select(rule) | Slot::Each(rule) => {
                // Borrowed for 'r, not from `self`, so `self` stays free.
                let rules: &'r Rules = self.rules;
                let action = &rules.rules[rule].action;
                match action {
                    Action::Drop => {
                        self.drop_value(chunk, at, Some(rule), ChangeKind::Dropped);
                        ends_suppress = container;
                        self.scalar = ScalarUse::Suppressed;
                    }
                    Action::Keep => self.keep_value(chunk, at),
                    // Its object stays, looked into by the other selectors
                    // (and its members of the added names removed), and
                    // gets the members when it closes.
                    Action::AddMembers(_) if b == b'{' && matches!(slot, Slot::Select(_)) => {
                        self.keep_value(chunk, at);
                        frame_mode = FrameMode::Tracked;
                        adds = Some(rule);
                    }
                    // A guard reads strings: an array is checked element by
                    // element.
                    Action::Only { .. } if b == b'[' => {
                        self.keep_value(chunk, at);
                        frame_mode = FrameMode::Each(rule);
                    }
                    // Neither acts on this container itself; the route's
                    // other selectors may reach below it.
                    Action::AddMembers(_) | Action::Only { .. } if container => {
                        self.keep_value(chunk, at);
                        if matches!(slot, Slot::Select(_)) && !self.child_states.is_empty() {
                            frame_mode = FrameMode::Tracked;
                        }
                    }
                    Action::Redact { with } if container => {
                        self.replace_value(chunk, at, with);
                        self.report.record(Some(rule), ChangeKind::Rewritten, || {
                            current_path(&self.frames, &self.path_keys, &self.embedded)
                        });
                        ends_suppress = true;
                    }
                    _ if b == b'[' && matches!(slot, Slot::Select(_)) && action.is_per_scalar() => {
                        self.keep_value(chunk, at);
                        frame_mode = FrameMode::Each(rule);
                    }
                    _ if container => {
                        let verdict = verdict::invalid(
                            self.rules,
                            rule,
                            Invalid::NotAScalar,
                            &mut self.replacement,
                        );
                        ends_suppress = self.carry_out(chunk, at, rule, verdict, None)?;
                    }
                    _ => {
                        self.steer
                            .set_mode(chunk, at, Mode::Suppress, &mut self.writer);
                        self.scalar = ScalarUse::Select(rule);
                        capture = true;
                    }
                }
            }
        }
        if container {
            self.push_frame(at, b == b'{', frame_mode, ends_suppress)?;
            if let Some(frame) = self.frames.last_mut() {
                frame.adds = adds;
            }
        } else if capture {
            self.start_capture(at);
        }
        Ok(())
    }

    /// The value stays: whatever was held for it goes out.
    fn keep_value(&mut self, chunk: &Bytes, at: usize) {
        if self.steer.mode == Mode::Hold {
            self.steer.set_mode(chunk, at, Mode::Pass, &mut self.writer);
        }
        self.commit_held();
    }

    fn commit_held(&mut self) {
        let drop_comma = self.frames.last().is_some_and(|f| !f.emitted_any);
        self.steer.write_held(drop_comma, &mut self.writer);
        if let Some(frame) = self.frames.last_mut() {
            frame.emitted_any = true;
        }
    }

    /// The value (and its member name and separator) goes. A dropped
    /// document root becomes `null`, so that the output stays JSON.
    fn drop_value(&mut self, chunk: &Bytes, at: usize, rule: Option<RuleId>, what: ChangeKind) {
        self.steer
            .set_mode(chunk, at, Mode::Suppress, &mut self.writer);
        self.steer.discard_held();
        if self.frames.is_empty() {
            self.writer.copy(b"null");
        }
        self.report.record(rule, what, || {
            current_path(&self.frames, &self.path_keys, &self.embedded)
        });
    }

    /// The value is replaced by a string; the original is suppressed.
    fn replace_value(&mut self, chunk: &Bytes, at: usize, with: &str) {
        self.steer
            .set_mode(chunk, at, Mode::Suppress, &mut self.writer);
        self.commit_held();
        self.writer.json_string(with.as_bytes());
    }

    /// Writes out what `verdict` says of a value: a scalar that ended at
    /// `at`, whose text is `original`, or a container that starts at `at`
    /// (`None`). Returns whether output is suppressed from `at` on (for a
    /// container, until it closes).
    fn carry_out(
        &mut self,
        chunk: &Bytes,
        at: usize,
        rule: RuleId,
        verdict: Result<Verdict, Rejected>,
        original: Option<&[u8]>,
    ) -> Result<bool, Error> {
        let suppressed = match verdict {
            Ok(Verdict::Replace(change)) => {
                let text = std::mem::take(&mut self.replacement);
                self.replace_value(chunk, at, &text);
                self.replacement = text;
                self.report.record(Some(rule), change, || {
                    current_path(&self.frames, &self.path_keys, &self.embedded)
                });
                true
            }
            Ok(Verdict::Remove(change)) => {
                self.drop_value(chunk, at, Some(rule), change);
                true
            }
            Ok(Verdict::Keep) => {
                self.keep_value(chunk, at);
                if let Some(original) = original {
                    self.writer.copy(original);
                }
                false
            }
            Err(Rejected(reason)) => {
                return Err(self.error_at_offset(self.token_offset, Kind::Rejected, reason));
            }
        };
        // A scalar has ended: what follows it passes.
        if original.is_some() && suppressed {
            self.steer.set_mode(chunk, at, Mode::Pass, &mut self.writer);
        }
        Ok(suppressed && original.is_none())
    }

    fn push_frame(
        &mut self,
        at: usize,
        object: bool,
        mode: FrameMode,
        ends_suppress: bool,
    ) -> Result<(), Error> {
        let depth = self.embedded.as_ref().map_or(0, |e| e.depth) + self.frames.len() as u32 + 1;
        if depth > self.rules.limits.max_depth {
            let reason = format!("nesting deeper than {}", self.rules.limits.max_depth);
            return Err(self.error(at, Kind::TooDeep, reason));
        }
        let states_start = self.arena.len();
        if mode == FrameMode::Tracked {
            self.arena.extend_from_slice(&self.child_states);
        }
        self.frames.push(Frame {
            object,
            mode,
            states_start,
            states_end: self.arena.len(),
            count: 0,
            in_child: false,
            emitted_any: false,
            key_start: self.path_keys.len(),
            ends_suppress,
            adds: None,
        });
        Ok(())
    }

    fn close(&mut self, chunk: &Bytes, at: usize) -> Result<(), Error> {
        if let Some(frame) = self.frames.pop() {
            self.arena.truncate(frame.states_start);
            self.path_keys.truncate(frame.key_start);
            if frame.ends_suppress {
                self.steer
                    .set_mode(chunk, at + 1, Mode::Pass, &mut self.writer);
            }
            if let Some(rule) = frame.adds {
                self.add_members(chunk, at, rule, frame.emitted_any);
            }
        }
        self.after_value();
        Ok(())
    }

    /// Writes a rule's members before the closing brace at `at` (after any
    /// whitespace), with a comma when the object kept a member.
    fn add_members(&mut self, chunk: &Bytes, at: usize, rule: RuleId, after_member: bool) {
        let Action::AddMembers(members) = &self.rules.rules[rule].action else {
            return;
        };
        self.steer.flush(chunk, at, &mut self.writer);
        if after_member {
            self.writer.copy(b",");
        }
        self.writer.copy(members.text().as_bytes());
        // The frame is closed: the path is the object's own.
        self.report.record(Some(rule), ChangeKind::Rewritten, || {
            current_path(&self.frames, &self.path_keys, &self.embedded)
        });
    }

    fn after_value(&mut self) {
        match self.frames.last_mut() {
            Some(parent) => {
                parent.count += 1;
                parent.in_child = false;
                self.lex = Lex::Comma;
            }
            None => self.lex = Lex::End,
        }
    }

    /// A scalar ended just before `end`.
    fn scalar_end(&mut self, chunk: &Bytes, end: usize) -> Result<(), Error> {
        match self.scalar {
            ScalarUse::Pass => {}
            ScalarUse::Suppressed => self
                .steer
                .set_mode(chunk, end, Mode::Pass, &mut self.writer),
            ScalarUse::Select(_) | ScalarUse::Embedded => {
                self.finish_token(chunk, end)?;
                self.steer
                    .set_mode(chunk, end, Mode::Pass, &mut self.writer);
                // Moved out for the call and back after, to keep its allocation.
                let raw = std::mem::take(&mut self.capture);
                let result = match self.scalar {
                    ScalarUse::Select(rule) => self.rewrite_scalar(chunk, end, rule, &raw),
                    _ => self.embedded_string(&raw),
                };
                self.capture = raw;
                result?;
            }
        }
        self.scalar = ScalarUse::Pass;
        self.after_value();
        Ok(())
    }

    fn rewrite_scalar(
        &mut self,
        chunk: &Bytes,
        end: usize,
        rule: RuleId,
        raw: &[u8],
    ) -> Result<(), Error> {
        let mut text = Vec::new();
        let scalar = match raw.first() {
            Some(b'"') => {
                let content = &raw[1..raw.len() - 1];
                let content = if self.str_escaped {
                    if unescape_into(content, &mut text).is_none() {
                        return Err(self.error(end, Kind::Syntax, "invalid escape in a string"));
                    }
                    &text[..]
                } else {
                    content
                };
                Scalar::Str(
                    std::str::from_utf8(content)
                        .map_err(|_| self.error(end, Kind::Syntax, "invalid UTF-8"))?,
                )
            }
            Some(b't') => Scalar::Bool(true),
            Some(b'f') => Scalar::Bool(false),
            Some(b'n') => Scalar::Null,
            _ => Scalar::Number(
                std::str::from_utf8(raw)
                    .map_err(|_| self.error(end, Kind::Syntax, "invalid number"))?,
            ),
        };
        let verdict = verdict::judge(self.rules, rule, Ok(scalar), &mut self.replacement);
        self.carry_out(chunk, end, rule, verdict, Some(raw))?;
        Ok(())
    }

    /// A string under which selectors continue turned out not to start like
    /// a JSON document at `at` (its first non-blank character): what was
    /// captured of it goes out, and the rest streams (or, with `unlisted:
    /// drop`, all of it goes).
    fn plain_string(&mut self, chunk: &Bytes, at: usize) {
        self.embedded_undecided = false;
        let from = self.capture_from.take().unwrap_or(at);
        if self.rules.unlisted == Unlisted::Drop {
            self.drop_value(chunk, at, None, ChangeKind::Unlisted);
        } else {
            self.commit_held();
            if self.capture_spilled {
                self.writer.copy(&self.capture);
            }
            self.writer.slice(chunk, from, at);
            self.steer.set_mode(chunk, at, Mode::Pass, &mut self.writer);
        }
        self.capture.clear();
        self.capture_spilled = false;
        self.scalar = if self.rules.unlisted == Unlisted::Drop {
            ScalarUse::Suppressed
        } else {
            ScalarUse::Pass
        };
    }

    /// A string under which selectors continue. If it holds a JSON document,
    /// that document is rewritten with the same rules and put back.
    fn embedded_string(&mut self, raw: &[u8]) -> Result<(), Error> {
        let content = &raw[1..raw.len() - 1];
        let mut unescaped = Vec::new();
        let text: &[u8] = if self.str_escaped {
            if unescape_into(content, &mut unescaped).is_none() {
                return Err(self.error_at_offset(
                    self.token_offset,
                    Kind::Syntax,
                    "invalid escape in a string",
                ));
            }
            &unescaped
        } else {
            content
        };
        let path = current_path(&self.frames, &self.path_keys, &self.embedded);
        let embedded = Embedded {
            states: self.child_states.clone(),
            depth: self.embedded.as_ref().map_or(0, |e| e.depth) + self.frames.len() as u32,
            path,
        };
        let explain = self.report.changes.is_some();
        match rewrite_embedded(self.rules, embedded, explain, text, self.token_offset)? {
            Some((document, report)) => {
                self.commit_held();
                if report.changed() {
                    self.writer.json_string(&document);
                } else {
                    self.writer.copy(raw);
                }
                self.report.absorb(report);
            }
            None if self.rules.unlisted == Unlisted::Drop => {
                self.steer.discard_held();
                if self.frames.is_empty() {
                    self.writer.copy(b"null");
                }
                self.report.record(None, ChangeKind::Unlisted, || {
                    current_path(&self.frames, &self.path_keys, &self.embedded)
                });
            }
            None => {
                self.commit_held();
                self.writer.copy(raw);
            }
        }
        Ok(())
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

/// The path of the current position (`$.data[3].user_data.em`). A free
/// function over the fields it needs, so that callers may hold other borrows
/// of the rewriter (the report, in `Report::record`'s closure).
fn current_path(frames: &[Frame], keys: &[u8], embedded: &Option<Embedded>) -> String {
    let mut path = String::from(embedded.as_ref().map_or("$", |e| e.path.as_str()));
    for (i, frame) in frames.iter().enumerate() {
        if !frame.in_child {
            continue;
        }
        if frame.object {
            let end = frames.get(i + 1).map_or(keys.len(), |next| next.key_start);
            push_key(&mut path, &keys[frame.key_start..end]);
        } else {
            path.push_str(&format!("[{}]", frame.count));
        }
    }
    path
}

/// The slot of a child of a tracked container, its states left in
/// `child_states`.
fn child_slot(
    rules: &Rules,
    states: &[State],
    label: Label<'_>,
    child_states: &mut Vec<State>,
) -> Slot {
    child_states.clear();
    let selected = rules.body.step(states, label, child_states);
    slot_for(selected, child_states, rules.unlisted)
}

fn slot_for(selected: Option<RuleId>, child_states: &[State], unlisted: Unlisted) -> Slot {
    match selected {
        Some(rule) => Slot::Select(rule),
        None if !child_states.is_empty() => Slot::Track,
        None if unlisted == Unlisted::Drop => Slot::Unlisted,
        None => Slot::Pass,
    }
}
