//! What becomes of a value once its first byte tells a container from a
//! scalar: kept, dropped, replaced, rewritten, or opened as an embedded
//! document.

use super::*;

impl<'r, S: Sink> JsonRewriter<'r, S> {
    /// A value starts at `at` with byte `b`: decide what becomes of it.
    /// Inlined at each of its places, with the case of most values of a
    /// body (nothing held, nothing to decide): called, it was a tenth of
    /// the pass-through's time (perf, `benches/rewrite.rs`); any other
    /// value is decided in [`begin_decided_value`](Self::begin_decided_value).
    #[inline(always)]
    pub(super) fn begin_value(&mut self, chunk: &Bytes, at: usize, b: u8) -> Result<(), Error> {
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
            // Nothing held, nothing to decide (an untracked subtree, the
            // first element of a tracked array, or a member of a tracked
            // object that no rule is about, whose hold was never begun).
            if let Some(frame) = self.frames.last_mut() {
                frame.emitted_any = true;
            }
            if container {
                return self.push_frame(at, b == b'{', FrameMode::Untracked, false);
            }
            if b == b'"' && self.steer.mode == Mode::Pass && self.rules.scan.is_some() {
                self.start_scan(at);
            }
            return Ok(());
        }
        self.begin_decided_value(chunk, at, b, slot, container)
    }

    /// A value that starts at `at` with byte `b` (a container when
    /// `container`) in `slot`, or after a held member name: kept, dropped,
    /// replaced or captured for its rule.
    fn begin_decided_value(
        &mut self,
        chunk: &Bytes,
        at: usize,
        b: u8,
        slot: Slot,
        container: bool,
    ) -> Result<(), Error> {
        let mut frame_mode = FrameMode::Untracked;
        let mut ends_suppress = false;
        let mut capture = false;
        let mut adds = None;
        match slot {
            Slot::Pass => {
                self.keep_value();
                if b == b'"' && self.rules.scan.is_some() {
                    capture = true;
                    self.scalar = ScalarUse::Scan;
                }
            }
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
                self.keep_value();
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
            Slot::Track => self.keep_value(),
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
                    Action::Keep => self.keep_value(),
                    // Its object stays, looked into by the other selectors
                    // (and its members of the added names removed), and
                    // gets the members when it closes.
                    Action::AddMembers(_) if b == b'{' && matches!(slot, Slot::Select(_)) => {
                        self.keep_value();
                        frame_mode = FrameMode::Tracked;
                        adds = Some(rule);
                    }
                    // A guard reads strings: an array is checked element by
                    // element.
                    Action::Only { .. } if b == b'[' => {
                        self.keep_value();
                        frame_mode = FrameMode::Each(rule);
                    }
                    // None acts on this container itself; the route's
                    // other selectors may reach below it.
                    Action::AddMembers(_) | Action::Only { .. } | Action::Read { .. }
                        if container =>
                    {
                        self.keep_value();
                        if matches!(slot, Slot::Select(_)) && !self.child_states.is_empty() {
                            frame_mode = FrameMode::Tracked;
                        }
                    }
                    Action::Redact { with } if container => {
                        self.replace_value(chunk, at, with);
                        self.report
                            .record(Some(rule), ChangeKind::Rewritten, here!(self));
                        ends_suppress = true;
                    }
                    _ if b == b'[' && matches!(slot, Slot::Select(_)) && action.is_per_scalar() => {
                        self.keep_value();
                        frame_mode = FrameMode::Each(rule);
                    }
                    _ if container => {
                        let verdict = verdict::invalid(
                            self.rules,
                            rule,
                            Invalid::NotAScalar,
                            &mut self.replacement,
                        );
                        let verdict = verdict.map(Judged::Verdict);
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
    pub(super) fn keep_value(&mut self) {
        if self.steer.mode != Mode::Hold {
            return self.commit_held();
        }
        let drop_comma = self.frames.last().is_some_and(|f| !f.emitted_any);
        self.steer.release_held(drop_comma, &mut self.writer);
        if let Some(frame) = self.frames.last_mut() {
            frame.emitted_any = true;
        }
    }

    pub(super) fn commit_held(&mut self) {
        let drop_comma = self.frames.last().is_some_and(|f| !f.emitted_any);
        self.steer.write_held(drop_comma, &mut self.writer);
        if let Some(frame) = self.frames.last_mut() {
            frame.emitted_any = true;
        }
    }

    /// The value (and its member name and separator) goes. A dropped
    /// document root becomes `null`, so that the output stays JSON.
    pub(super) fn drop_value(
        &mut self,
        chunk: &Bytes,
        at: usize,
        rule: Option<RuleId>,
        what: ChangeKind,
    ) {
        self.steer
            .set_mode(chunk, at, Mode::Suppress, &mut self.writer);
        self.steer.discard_held();
        if self.frames.is_empty() {
            self.writer.copy(b"null");
        }
        self.report.record(rule, what, here!(self));
    }

    /// The value is replaced by a string; the original is suppressed.
    pub(super) fn replace_value(&mut self, chunk: &Bytes, at: usize, with: &str) {
        self.begin_replacement(chunk, at);
        self.writer.json_string(with.as_bytes());
    }

    /// The value, from `at`, leaves the output; what was held for it (its
    /// separator and member name) goes out, for its replacement to follow.
    fn begin_replacement(&mut self, chunk: &Bytes, at: usize) {
        self.steer
            .set_mode(chunk, at, Mode::Suppress, &mut self.writer);
        self.commit_held();
    }

    /// Writes out what `verdict` says of a value: a scalar that ended at
    /// `at`, whose text is `original`, or a container that starts at `at`
    /// (`None`). Returns whether output is suppressed from `at` on (for a
    /// container, until it closes).
    pub(super) fn carry_out(
        &mut self,
        chunk: &Bytes,
        at: usize,
        rule: RuleId,
        verdict: Result<Judged, Rejected>,
        original: Option<&[u8]>,
    ) -> Result<bool, Error> {
        let verdict = match verdict {
            Ok(Judged::Verdict(verdict)) => verdict,
            Ok(Judged::Hashed(encoding)) => {
                self.begin_replacement(chunk, at);
                self.writer
                    .json_digest(&Digest::of(&self.replacement, encoding));
                // The normal form is personal: not left for anything to
                // take for a replacement.
                self.replacement.clear();
                self.report
                    .record(Some(rule), ChangeKind::Rewritten, here!(self));
                return Ok(self.end_replaced(chunk, at, original));
            }
            Err(Rejected(reason)) => {
                return Err(self.error_at_offset(self.token_offset, Kind::Rejected, reason));
            }
        };
        match verdict {
            Verdict::Replace(change) => {
                let text = std::mem::take(&mut self.replacement);
                self.replace_value(chunk, at, &text);
                self.replacement = text;
                self.report.record(Some(rule), change, here!(self));
            }
            Verdict::Remove(change) => self.drop_value(chunk, at, Some(rule), change),
            Verdict::Keep => {
                self.keep_value();
                if let Some(original) = original {
                    self.writer.copy(original);
                }
                return Ok(false);
            }
            Verdict::Unchanged => {
                self.keep_value();
                match original {
                    Some(original) if original.first() == Some(&b'"') => {
                        self.write_kept_string(original)?
                    }
                    Some(original) => self.writer.copy(original),
                    None => {}
                }
                return Ok(false);
            }
        }
        Ok(self.end_replaced(chunk, at, original))
    }

    /// A value whose output was suppressed from `at` (replaced or removed):
    /// a scalar has ended, and what follows it passes. Returns whether
    /// output stays suppressed (a container, until it closes).
    fn end_replaced(&mut self, chunk: &Bytes, at: usize, original: Option<&[u8]>) -> bool {
        if original.is_some() {
            self.steer.set_mode(chunk, at, Mode::Pass, &mut self.writer);
        }
        original.is_none()
    }

    /// A scalar ended just before `end`; `text` is the chunk's valid start.
    /// Inlined, with the case of most scalars of a body, for the reason
    /// [`begin_value`](Self::begin_value) is.
    #[inline(always)]
    pub(super) fn scalar_end(
        &mut self,
        chunk: &Bytes,
        text: &str,
        end: usize,
    ) -> Result<(), Error> {
        if self.scalar == ScalarUse::Pass && !self.report.counts_fields() {
            // Nothing to decide or count.
            self.after_value();
            return Ok(());
        }
        self.counted_scalar_end(chunk, text, end)
    }

    /// A scalar ended that is counted, or has a use. The one only counted
    /// as it leaves (every value of a proxied body but the few a rule
    /// selects: the proxy feeds the egress inventory) is counted here, not
    /// through [`decided_scalar_end`](Self::decided_scalar_end): with the
    /// single probe of `count_in`, a proxied request took 133,512
    /// instructions instead of 136,848 (callgrind, `benches/instructions.sh`).
    /// Out of line, so that the inlined pass-through above stays as small
    /// as it was: with this case inlined there, the NDJSON pass-through ran
    /// 1.034 of the time it took before; out of line, 0.992 (40 alternating
    /// runs each, `benches/ndjson_side_by_side.sh`).
    #[inline(never)]
    fn counted_scalar_end(&mut self, chunk: &Bytes, text: &str, end: usize) -> Result<(), Error> {
        debug_assert!(self.scalar != ScalarUse::Pass || self.report.counts_fields());
        if self.scalar != ScalarUse::Pass {
            return self.decided_scalar_end(chunk, text, end);
        }
        // Inside a dropped or redacted container a scalar does not leave,
        // and was counted with its container.
        if self.steer.mode != Mode::Suppress {
            self.report.kept(None, here!(self));
        }
        self.after_value();
        Ok(())
    }

    /// A scalar with a use ended just before `end` (one that passes is
    /// [`counted_scalar_end`](Self::counted_scalar_end)'s).
    fn decided_scalar_end(&mut self, chunk: &Bytes, text: &str, end: usize) -> Result<(), Error> {
        debug_assert!(self.scalar != ScalarUse::Pass);
        let mark = self.report.accounted();
        let leaves = self.scalar != ScalarUse::Suppressed;
        let rule = match self.scalar {
            ScalarUse::Select(rule) => Some(rule),
            _ => None,
        };
        match self.scalar {
            ScalarUse::Pass => {}
            ScalarUse::Suppressed => self
                .steer
                .set_mode(chunk, end, Mode::Pass, &mut self.writer),
            ScalarUse::Scan => self.scanned_string_end(chunk, end)?,
            ScalarUse::Select(_) | ScalarUse::Embedded => {
                let within = self.end_token(chunk, end)?;
                self.steer
                    .set_mode(chunk, end, Mode::Pass, &mut self.writer);
                // Moved out for the call and back after, to keep its allocation.
                let captured = std::mem::take(&mut self.capture);
                let (raw, raw_text) = match within {
                    Some(from) => (&chunk[from..end], text.get(from..end)),
                    None => (&captured[..], None),
                };
                let result = match self.scalar {
                    ScalarUse::Select(rule) => self.rewrite_scalar(chunk, end, rule, raw, raw_text),
                    _ => self.embedded_string(raw),
                };
                self.capture = captured;
                result?;
            }
        }
        if leaves && self.report.counts_fields() {
            self.report.kept_since(mark, rule, here!(self));
        }
        self.scalar = ScalarUse::Pass;
        self.after_value();
        Ok(())
    }

    /// A selected scalar, `raw` as in the body, ended at `end`. `raw_text`
    /// is the same bytes read as UTF-8 already, when they lay in one chunk:
    /// not checked a second time (that was a twentieth of a hashed event).
    pub(super) fn rewrite_scalar(
        &mut self,
        chunk: &Bytes,
        end: usize,
        rule: RuleId,
        raw: &[u8],
        raw_text: Option<&str>,
    ) -> Result<(), Error> {
        let mut unescaped = Vec::new();
        let scalar = match raw.first() {
            Some(b'"') => {
                let content = &raw[1..raw.len() - 1];
                // The quotes are one byte each: the content's bounds are
                // characters' bounds.
                let checked = raw_text.and_then(|text| text.get(1..text.len() - 1));
                let content = if self.str_escaped {
                    if unescape_into(content, &mut unescaped).is_none() {
                        return Err(self.error(end, Kind::Syntax, "invalid escape in a string"));
                    }
                    as_text(&unescaped, None)
                } else {
                    as_text(content, checked)
                };
                Scalar::Str(content.map_err(|_| self.error(end, Kind::Syntax, "invalid UTF-8"))?)
            }
            Some(b't') => Scalar::Bool(true),
            Some(b'f') => Scalar::Bool(false),
            Some(b'n') => Scalar::Null,
            _ => Scalar::Number(
                as_text(raw, raw_text)
                    .map_err(|_| self.error(end, Kind::Syntax, "invalid number"))?,
            ),
        };
        self.report.read(self.rules, rule, scalar);
        let mut found = Vec::new();
        let verdict = verdict::judge_deferring_hash(
            self.rules,
            rule,
            Ok(scalar),
            &mut self.replacement,
            &mut found,
            &mut self.lookups,
        );
        if !found.is_empty() {
            self.report.detected(&found, here!(self));
        }
        self.carry_out(chunk, end, rule, verdict, Some(raw))?;
        Ok(())
    }

    /// A string under which selectors continue turned out not to start like
    /// a JSON document at `at` (its first non-blank character): what was
    /// captured of it goes out, and the rest streams (or, with `unlisted:
    /// drop`, all of it goes).
    pub(super) fn plain_string(&mut self, chunk: &Bytes, at: usize) {
        self.embedded_undecided = false;
        if self.rules.unlisted == Unlisted::Keep && self.rules.scan.is_some() {
            // Carried whole to the end, for the detectors.
            self.commit_held();
            self.scalar = ScalarUse::Scan;
            return;
        }
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
    pub(super) fn embedded_string(&mut self, raw: &[u8]) -> Result<(), Error> {
        let content = &raw[1..raw.len() - 1];
        // The unescaped text is handed over, not copied again.
        let text = if self.str_escaped {
            let mut unescaped = Vec::with_capacity(content.len());
            if unescape_into(content, &mut unescaped).is_none() {
                return Err(self.error_at_offset(
                    self.token_offset,
                    Kind::Syntax,
                    "invalid escape in a string",
                ));
            }
            Bytes::from(unescaped)
        } else {
            Bytes::copy_from_slice(content)
        };
        let path = current_path(&self.frames, &self.path_keys, &self.embedded);
        let embedded = Embedded {
            states: self.child_states.clone(),
            depth: self.embedded.as_ref().map_or(0, |e| e.depth) + self.frames.len() as u32,
            path,
        };
        match rewrite_embedded(
            self.rules,
            embedded,
            &self.report,
            &mut self.lookups,
            text.clone(),
            self.token_offset,
        )? {
            Some((document, report)) => {
                self.commit_held();
                if report.changed() {
                    self.writer.json_string_pieces(&document);
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
                self.report.record(None, ChangeKind::Unlisted, here!(self));
            }
            None => {
                self.commit_held();
                self.write_scanned(raw, &text)?;
            }
        }
        Ok(())
    }
}

/// `bytes` as text: `checked` when they were read as UTF-8 already.
fn as_text<'a>(bytes: &'a [u8], checked: Option<&'a str>) -> Result<&'a str, std::str::Utf8Error> {
    match checked {
        Some(text) => Ok(text),
        None => std::str::from_utf8(bytes),
    }
}
