//! The push rewriter for `application/x-www-form-urlencoded` bodies.
//!
//! A form is addressed like a flat JSON object: `$.email`,
//! `$['user_data[em]']`. Fields nobody selects leave byte for byte; a changed
//! field is decoded (`+` is a space, `%XX` a byte), rewritten, and encoded
//! again. A field whose value is a JSON document (Meta's SDKs post `data=`
//! that way) is opened when a selector continues below it.

use bytes::Bytes;

use super::error::{Error, Failure, Kind};
use super::fields::Fields;
use super::json::{Embedded, rewrite_embedded};
use super::lookups::Lookups;
use super::output::{Mode, Steering, Writer};
use super::path::push_key;
use super::report::{ChangeKind, Report};
use super::sink::Sink;
use super::verdict::{self, Rejected, Verdict};
use crate::detect::Scanned;
use crate::percent::{SEMICOLON_REASON, decode, encode};
use crate::policy::{Label, RuleId, Rules, State, Unlisted};
use crate::transform::{Action, Scalar};

/// Rewrites one form body pushed in chunks.
#[derive(Clone)]
pub struct FormRewriter<'r, S: Sink> {
    rules: &'r Rules,
    writer: Writer<S>,
    offset: u64,
    steer: Steering,
    root_states: Vec<State>,
    root_rule: Option<RuleId>,
    child_states: Vec<State>,
    in_value: bool,
    field: Field,
    /// Where the part of the field being captured starts in this chunk.
    capture_from: Option<usize>,
    capture: Vec<u8>,
    capture_limit: usize,
    field_offset: u64,
    key: Vec<u8>,
    emitted_any: bool,
    /// Where a name after a `;` starts in this chunk, while one is read (see
    /// `query::SEMICOLON_REASON`).
    semicolon_from: Option<usize>,
    /// The part of that name in earlier chunks.
    semicolon_name: Vec<u8>,
    /// That name is longer than `max_value_bytes`: it is not kept, and
    /// counts as one the rules could treat otherwise (fail closed).
    semicolon_overflow: bool,
    /// Scratch states for deciding that name.
    semicolon_states: Vec<State>,
    /// The current field's name holds such a name: refused unless the
    /// field is dropped whole.
    name_hides_a_field: bool,
    report: Report,
    /// The vault's answers, and the questions left for its store.
    lookups: Lookups,
    /// A scanned value rewritten (reused).
    scanned: String,
    failed: Failure,
}

/// What the current field's value is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Field {
    Pass,
    /// Removed by a `drop` rule, or by `unlisted: drop` (no rule).
    Dropped(Option<RuleId>),
    Select(RuleId),
    /// Selectors continue below: maybe an embedded JSON document.
    Track,
    /// No rule selects it: through the route's detectors.
    Scan,
}

impl<'r, S: Sink> FormRewriter<'r, S> {
    pub fn new(rules: &'r Rules, sink: S) -> Self {
        let mut root_states = Vec::new();
        let root_rule = rules.body.start(&mut root_states);
        FormRewriter {
            rules,
            writer: Writer::new(sink),
            offset: 0,
            steer: Steering::default(),
            root_states,
            root_rule,
            child_states: Vec::new(),
            in_value: false,
            field: Field::Pass,
            capture_from: Some(0),
            capture: Vec::new(),
            capture_limit: rules.limits.max_value_bytes as usize,
            field_offset: 0,
            key: Vec::new(),
            emitted_any: false,
            semicolon_from: None,
            semicolon_name: Vec::new(),
            semicolon_overflow: false,
            semicolon_states: Vec::new(),
            name_hides_a_field: false,
            report: Report::new(rules.rules.len(), false),
            lookups: Lookups::default(),
            scanned: String::new(),
            failed: Failure::default(),
        }
    }

    pub fn explain(mut self, explain: bool) -> Self {
        self.report.changes = explain.then(Vec::new);
        self
    }

    /// Counts every field by path and outcome when `outer` (the request's
    /// report) does, with what it knows of templates.
    pub(crate) fn count_fields_like(&mut self, outer: &Report) {
        self.report.fields = outer.nested_fields();
    }

    /// Also counts every field by path and outcome, for the egress
    /// inventory ([`Report::fields`]).
    pub fn inventory(mut self, inventory: bool) -> Self {
        self.report.fields = inventory.then(|| Box::new(Fields::new(self.rules)));
        self
    }

    pub fn write(&mut self, chunk: Bytes) -> Result<(), Error> {
        self.failed.check()?;
        let result = self.write_chunk(&chunk);
        self.offset += chunk.len() as u64;
        self.failed.keep(result)
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
        &mut self.writer.sink
    }

    pub fn finish(self) -> Result<(S, Report), Error> {
        self.finish_with_lookups()
            .map(|(sink, report, _)| (sink, report))
    }

    /// [`finish`](Self::finish), and the lookups, with the questions the
    /// end of the body left.
    pub fn finish_with_lookups(mut self) -> Result<(S, Report, Lookups), Error> {
        self.failed.check()?;
        let empty = Bytes::new();
        // An empty body has no field to end.
        if self.offset > 0 {
            self.field_end(&empty, 0)?;
        }
        self.steer.flush(&empty, 0, &mut self.writer);
        Ok((self.writer.into_sink(), self.report, self.lookups))
    }

    fn write_chunk(&mut self, chunk: &Bytes) -> Result<(), Error> {
        self.steer.from = 0;
        if self.offset == 0 && !chunk.is_empty() {
            // The first field is held from the start, like every later one
            // is from its `&`.
            self.steer.hold(chunk, 0, false, &mut self.writer);
        }
        let mut i = 0;
        while i < chunk.len() {
            let found = if self.in_value && self.semicolon_from.is_none() {
                memchr::memchr2(b'&', b';', &chunk[i..])
            } else {
                memchr::memchr3(b'&', b'=', b';', &chunk[i..])
            };
            let Some(found) = found else { break };
            let at = i + found;
            match chunk[at] {
                b'=' => {
                    if self.semicolon_from.is_some() {
                        self.semicolon_name_end(chunk, at)?;
                    }
                    if !self.in_value {
                        self.key_end(chunk, at)?;
                    }
                }
                b';' => {
                    // A name without `=` carries no value: forget it.
                    self.semicolon_name.clear();
                    self.semicolon_overflow = false;
                    self.semicolon_from = Some(at + 1);
                }
                _ => {
                    self.semicolon_from = None;
                    self.semicolon_overflow = false;
                    self.name_hides_a_field = false;
                    self.field_end(chunk, at)?;
                    self.steer.hold(chunk, at, true, &mut self.writer);
                    self.field_offset = self.offset + at as u64 + 1;
                    self.capture_from = Some(at + 1);
                }
            }
            i = at + 1;
        }
        self.steer.flush(chunk, chunk.len(), &mut self.writer);
        self.writer.flush();
        if let Some(from) = self.semicolon_from {
            self.keep_semicolon_name(&chunk[from..]);
            self.semicolon_from = Some(0);
        }
        if let Some(from) = self.capture_from {
            self.spill(chunk, from, chunk.len())?;
            // The next chunk (or `finish`) continues from its own start.
            self.capture_from = Some(0);
        }
        if self.steer.held.len() > self.rules.limits.max_value_bytes as usize {
            return Err(self.error(Kind::TooLarge, "form field name too long"));
        }
        Ok(())
    }

    fn spill(&mut self, chunk: &Bytes, from: usize, to: usize) -> Result<(), Error> {
        if self.capture.len() + (to - from) > self.capture_limit {
            let what = if self.in_value {
                "form field value"
            } else {
                "form field name"
            };
            return Err(self.error(
                Kind::TooLarge,
                format!("{what} larger than {} bytes", self.capture_limit),
            ));
        }
        self.capture.extend_from_slice(&chunk[from..to]);
        Ok(())
    }

    fn take_capture(&mut self, chunk: &Bytes, end: usize) -> Result<Vec<u8>, Error> {
        if let Some(from) = self.capture_from.take() {
            self.spill(chunk, from, end)?;
        }
        Ok(std::mem::take(&mut self.capture))
    }

    /// The field's name ended at the `=` at `at`: decide the field.
    fn key_end(&mut self, chunk: &Bytes, at: usize) -> Result<(), Error> {
        let raw = self.take_capture(chunk, at)?;
        self.in_value = true;
        self.key = decode(&raw).ok_or_else(|| {
            self.error(
                Kind::Syntax,
                "invalid percent-encoding in a form field name",
            )
        })?;
        self.field = self.decide();
        if std::mem::take(&mut self.name_hides_a_field) {
            self.refuse_a_hidden_field()?;
        }
        match self.field {
            Field::Pass => self.keep(chunk, at + 1),
            // The held `&name=` is discarded when the field ends.
            Field::Dropped(_) => {
                self.steer
                    .set_mode(chunk, at + 1, Mode::Suppress, &mut self.writer)
            }
            Field::Select(_) | Field::Track | Field::Scan => {
                self.steer
                    .set_mode(chunk, at + 1, Mode::Suppress, &mut self.writer);
                self.capture_limit = match self.field {
                    Field::Track => self.rules.limits.max_embedded_bytes as usize,
                    _ => self.rules.limits.max_value_bytes as usize,
                };
                self.capture_from = Some(at + 1);
            }
        }
        Ok(())
    }

    fn decide(&mut self) -> Field {
        decide(
            self.rules,
            &self.root_states,
            self.root_rule,
            &self.key,
            &mut self.child_states,
        )
    }

    /// A name after a `;` ended at the `=` at `at`: refused if the rules
    /// would treat a field of that name otherwise than they pass it here.
    fn semicolon_name_end(&mut self, chunk: &Bytes, at: usize) -> Result<(), Error> {
        let from = self.semicolon_from.take().unwrap_or(at);
        self.keep_semicolon_name(&chunk[from..at]);
        let name = decode(&self.semicolon_name);
        self.semicolon_name.clear();
        let overflow = std::mem::take(&mut self.semicolon_overflow);
        let hides = match name {
            _ if overflow => true,
            // Not percent-encoding: no name a rule could select.
            None => false,
            Some(name) => {
                decide(
                    self.rules,
                    &self.root_states,
                    self.root_rule,
                    &name,
                    &mut self.semicolon_states,
                ) != Field::Pass
            }
        };
        if !hides {
            return Ok(());
        }
        if !self.in_value {
            // Decided with the field, once its name is known.
            self.name_hides_a_field = true;
            return Ok(());
        }
        self.refuse_a_hidden_field()
    }

    /// Keeps `part` of a name after a `;`, up to `max_value_bytes`.
    fn keep_semicolon_name(&mut self, part: &[u8]) {
        if self.semicolon_overflow {
            return;
        }
        if self.semicolon_name.len() + part.len() > self.rules.limits.max_value_bytes as usize {
            self.semicolon_overflow = true;
            self.semicolon_name.clear();
        } else {
            self.semicolon_name.extend_from_slice(part);
        }
    }

    /// A field that hides another behind a `;` leaves nothing when it is
    /// dropped; otherwise it is refused.
    fn refuse_a_hidden_field(&self) -> Result<(), Error> {
        if matches!(self.field, Field::Dropped(_)) {
            Ok(())
        } else {
            Err(self.error(Kind::Syntax, SEMICOLON_REASON))
        }
    }

    fn keep(&mut self, chunk: &Bytes, at: usize) {
        self.steer.set_mode(chunk, at, Mode::Pass, &mut self.writer);
        self.steer.write_held(!self.emitted_any, &mut self.writer);
        self.emitted_any = true;
    }

    /// The field ends at `at` (an `&`, or the end of the body).
    fn field_end(&mut self, chunk: &Bytes, at: usize) -> Result<(), Error> {
        let mark = self.report.accounted();
        self.decide_field_end(chunk, at)?;
        if self.report.counts_fields() && !self.key.is_empty() {
            let rule = match self.field {
                Field::Select(rule) => Some(rule),
                _ => None,
            };
            let key = &self.key;
            self.report.kept_since(mark, rule, || field_path(key));
        }
        Ok(())
    }

    fn decide_field_end(&mut self, chunk: &Bytes, at: usize) -> Result<(), Error> {
        if !self.in_value {
            // A field without `=`: decide it on its name alone.
            let raw = self.take_capture(chunk, at)?;
            self.key = decode(&raw).ok_or_else(|| {
                self.error(
                    Kind::Syntax,
                    "invalid percent-encoding in a form field name",
                )
            })?;
            self.field = match self.decide() {
                Field::Track | Field::Scan => Field::Pass,
                field => field,
            };
            if self.field == Field::Pass || self.key.is_empty() {
                self.keep(chunk, at);
                return Ok(());
            }
        }
        self.in_value = false;
        match self.field {
            Field::Pass => {}
            Field::Dropped(None) => self.drop_field(chunk, at, None, ChangeKind::Unlisted),
            Field::Dropped(Some(rule)) => {
                self.drop_field(chunk, at, Some(rule), ChangeKind::Dropped)
            }
            Field::Select(rule) => {
                let raw = self.take_capture(chunk, at)?;
                self.steer.set_mode(chunk, at, Mode::Pass, &mut self.writer);
                self.rewrite_value(chunk, at, rule, &raw)?;
            }
            Field::Track => {
                let raw = self.take_capture(chunk, at)?;
                self.steer.set_mode(chunk, at, Mode::Pass, &mut self.writer);
                self.embedded(chunk, at, &raw)?;
            }
            Field::Scan => {
                let raw = self.take_capture(chunk, at)?;
                self.steer.set_mode(chunk, at, Mode::Pass, &mut self.writer);
                self.scan_value(chunk, at, &raw)?;
            }
        }
        self.capture_limit = self.rules.limits.max_value_bytes as usize;
        Ok(())
    }

    fn drop_field(&mut self, chunk: &Bytes, at: usize, rule: Option<RuleId>, what: ChangeKind) {
        self.steer.set_mode(chunk, at, Mode::Pass, &mut self.writer);
        self.steer.discard_held();
        let key = &self.key;
        self.report.record(rule, what, || field_path(key));
    }

    fn rewrite_value(
        &mut self,
        chunk: &Bytes,
        at: usize,
        rule: RuleId,
        raw: &[u8],
    ) -> Result<(), Error> {
        let value = self.decoded_value(raw)?;
        let text = value.as_str();
        let mut out = String::new();
        self.report.read(self.rules, rule, Scalar::Str(text));
        let mut found = Vec::new();
        let verdict = verdict::judge(
            self.rules,
            rule,
            Ok(Scalar::Str(text)),
            &mut out,
            &mut found,
            &mut self.lookups,
        );
        if !found.is_empty() {
            let key = &self.key;
            self.report.detected(&found, || field_path(key));
        }
        match verdict {
            Ok(Verdict::Replace(change)) => {
                self.emit_field(&out);
                let key = &self.key;
                self.report.record(Some(rule), change, || field_path(key));
            }
            Ok(Verdict::Remove(change)) => self.drop_field(chunk, at, Some(rule), change),
            Ok(Verdict::Keep) => self.write_scanned(chunk, at, raw, Scanned::Clean)?,
            Ok(Verdict::Unchanged) => {
                let answer = self.scan_text(text);
                self.write_scanned(chunk, at, raw, answer)?;
            }
            Err(Rejected(reason)) => {
                return Err(Error::new(
                    Kind::Rejected,
                    self.field_offset,
                    field_path(&self.key),
                    reason,
                ));
            }
        }
        Ok(())
    }

    fn embedded(&mut self, chunk: &Bytes, at: usize, raw: &[u8]) -> Result<(), Error> {
        let value = decode(raw).ok_or_else(|| {
            self.error(
                Kind::Syntax,
                "invalid percent-encoding in a form field value",
            )
        })?;
        let embedded = Embedded {
            states: self.child_states.clone(),
            depth: 1,
            path: field_path(&self.key),
        };
        match rewrite_embedded(
            self.rules,
            embedded,
            &self.report,
            &mut self.lookups,
            Bytes::from(value),
            self.field_offset,
        )? {
            Some((document, report)) if report.changed() => {
                self.steer.write_held(!self.emitted_any, &mut self.writer);
                self.emitted_any = true;
                // Encoding is byte by byte: the pieces encode as their join.
                for piece in &document {
                    self.writer.copy(encode(piece).as_bytes());
                }
                self.report.absorb(report);
            }
            Some((_, report)) => {
                self.steer.write_held(!self.emitted_any, &mut self.writer);
                self.emitted_any = true;
                self.writer.copy(raw);
                self.report.absorb(report);
            }
            None if self.rules.unlisted == Unlisted::Drop => {
                self.drop_field(chunk, at, None, ChangeKind::Unlisted)
            }
            None => self.scan_value(chunk, at, raw)?,
        }
        Ok(())
    }

    /// A value no rule selects, `raw` as in the body: kept as it is, or as
    /// the route's detectors make it (encoded again whole).
    fn scan_value(&mut self, chunk: &Bytes, at: usize, raw: &[u8]) -> Result<(), Error> {
        let answer = if self.rules.scan.is_some() {
            let value = self.decoded_value(raw)?;
            self.scan_text(&value)
        } else {
            Scanned::Clean
        };
        self.write_scanned(chunk, at, raw, answer)
    }

    /// Hands a decoded value to the route's detectors, and counts what they
    /// found; a rewritten value is left in `self.scanned`.
    fn scan_text(&mut self, text: &str) -> Scanned {
        let Some(scan) = &self.rules.scan else {
            return Scanned::Clean;
        };
        let mut findings = Vec::new();
        let answer = scan.text(text, &mut findings, &mut self.scanned);
        if !findings.is_empty() {
            let key = &self.key;
            self.report.detected(&findings, || field_path(key));
        }
        answer
    }

    /// Writes out a field the way the detectors' `answer` says.
    fn write_scanned(
        &mut self,
        chunk: &Bytes,
        at: usize,
        raw: &[u8],
        answer: Scanned,
    ) -> Result<(), Error> {
        match answer {
            Scanned::Clean => {
                self.steer.write_held(!self.emitted_any, &mut self.writer);
                self.emitted_any = true;
                self.writer.copy(raw);
            }
            Scanned::Rewritten => {
                let text = std::mem::take(&mut self.scanned);
                self.emit_field(&text);
                self.scanned = text;
            }
            Scanned::Drop => {
                self.steer.set_mode(chunk, at, Mode::Pass, &mut self.writer);
                self.steer.discard_held();
            }
            Scanned::Reject(detector) => {
                return Err(self.error(Kind::Rejected, crate::detect::rejection(detector)));
            }
        }
        Ok(())
    }

    /// A field's value, percent-decoded, as text.
    fn decoded_value(&self, raw: &[u8]) -> Result<String, Error> {
        let value = decode(raw).ok_or_else(|| {
            self.error(
                Kind::Syntax,
                "invalid percent-encoding in a form field value",
            )
        })?;
        String::from_utf8(value)
            .map_err(|_| self.error(Kind::Syntax, "form field value is not UTF-8"))
    }

    /// Writes the held `&name=` and the new value, encoded.
    fn emit_field(&mut self, value: &str) {
        self.steer.write_held(!self.emitted_any, &mut self.writer);
        self.emitted_any = true;
        self.writer.copy(encode(value.as_bytes()).as_bytes());
    }

    fn error(&self, kind: Kind, reason: impl Into<std::borrow::Cow<'static, str>>) -> Error {
        Error::new(kind, self.field_offset, field_path(&self.key), reason)
    }
}

/// What becomes of a field named `name` (its states left in `states`).
fn decide(
    rules: &Rules,
    root_states: &[State],
    root_rule: Option<RuleId>,
    name: &[u8],
    states: &mut Vec<State>,
) -> Field {
    states.clear();
    let selected = rules
        .body
        .step(root_states, Label::Key(name), states)
        .or(root_rule);
    match selected {
        Some(rule) => match rules.rules[rule].action {
            Action::Drop => Field::Dropped(Some(rule)),
            Action::Keep => Field::Pass,
            _ => Field::Select(rule),
        },
        None if !states.is_empty() => Field::Track,
        None if rules.unlisted == Unlisted::Drop => Field::Dropped(None),
        None if rules.scan.is_some() => Field::Scan,
        None => Field::Pass,
    }
}

fn field_path(key: &[u8]) -> String {
    let mut path = String::from("$");
    push_key(&mut path, key);
    path
}
