//! Selector states and frames: what a value is for (`Slot`), decided from
//! its container's states and its name or index before it starts, and the
//! stack of open containers.

use super::*;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum FrameMode {
    /// Nothing below can be selected: pass (or suppress) without looking.
    Untracked,
    /// Selectors are alive here; a member is held until decided (from
    /// when its name is read, for one in the same chunk as its comma).
    Tracked,
    /// An array whose elements a per-scalar rule rewrites one by one.
    Each(RuleId),
}

#[derive(Clone, Debug)]
pub(super) struct Frame {
    pub(super) object: bool,
    pub(super) mode: FrameMode,
    pub(super) states_start: usize,
    pub(super) states_end: usize,
    /// Children completed so far; the current child's index while in one.
    pub(super) count: u32,
    pub(super) in_child: bool,
    /// Whether a child was written out (so the next one needs its comma).
    pub(super) emitted_any: bool,
    /// Where this frame's current key starts in `path_keys`.
    pub(super) key_start: usize,
    /// Closing this frame ends a suppressed subtree.
    pub(super) ends_suppress: bool,
    /// The hash of this container's path template, and of its current
    /// child's (kept only while fields are counted, for the inventory).
    pub(super) template: u64,
    pub(super) child_template: u64,
    /// The rule whose members are added when this object closes.
    pub(super) adds: Option<RuleId>,
}

/// Where the hold of a tracked object's member would begin (at its comma,
/// or at the first member's quote), put off until its name is read, when
/// that is in the same chunk. A member that no rule can be about then
/// streams with the bytes around it: nothing is held, released or handed
/// to the writer for it (7% of the pass-through's instructions: callgrind,
/// `benches/ndjson.rs`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct PendingHold {
    at: usize,
    comma: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Slot {
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
pub(super) enum ScalarUse {
    Pass,
    Suppressed,
    Select(RuleId),
    /// A string under which selectors continue: maybe an embedded document.
    Embedded,
    /// A string no rule selects, for the route's detectors.
    Scan,
}

impl<'r, S: Sink> JsonRewriter<'r, S> {
    pub(super) fn root_slot(&mut self) {
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

    pub(super) fn element_slot(&mut self) {
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

    /// An array's element starts at `at` with byte `b`.
    pub(super) fn begin_element(&mut self, chunk: &Bytes, at: usize, b: u8) -> Result<(), Error> {
        self.element_slot();
        self.begin_value(chunk, at, b)
    }

    /// Inlined at each of its places: called, it and
    /// [`comma`](Self::comma) were a twelfth of the pass-through's time
    /// (perf, `benches/rewrite.rs`), where a member of an untracked object
    /// only starts its name's capture.
    #[inline(always)]
    pub(super) fn key_start(&mut self, chunk: &Bytes, at: usize) {
        if let Some(frame) = self.frames.last()
            && frame.mode != FrameMode::Untracked
            && frame.count == 0
        {
            self.hold_member(chunk, at, false);
        }
        self.str_is_key = true;
        self.str_escaped = false;
        self.embedded_undecided = false;
        self.start_capture(at + 1);
        self.lex = Lex::Str;
    }

    pub(super) fn string_end(
        &mut self,
        chunk: &Bytes,
        text: &str,
        quote: usize,
    ) -> Result<(), Error> {
        // A blank string ends undecided: nothing more to decide.
        self.embedded_undecided = false;
        if self.str_is_key {
            self.str_is_key = false;
            self.key_end(chunk, quote)
        } else {
            self.scalar_end(chunk, text, quote + 1)
        }
    }

    pub(super) fn key_end(&mut self, chunk: &Bytes, end: usize) -> Result<(), Error> {
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
        let in_chunk = self.capture.is_empty();
        let raw: &[u8] = if in_chunk {
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
        if in_chunk && !self.str_escaped {
            self.path_keys.set_in_chunk(frame.key_start, from..end);
        } else {
            self.path_keys.set(frame.key_start, label);
        }
        let shown = &label[..keys::shown_len(label.len())];
        if self.report.counts_fields() {
            frame.child_template = hash_key(frame.template, shown);
        }
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
        let emitted_any = frame.emitted_any;
        self.settle_pending_hold(chunk, emitted_any);
        if self.rules.scan.is_some() {
            // Moved out for the call and back after, to keep their
            // allocations.
            let captured = std::mem::take(&mut self.capture);
            let unescaped = std::mem::take(&mut self.key_buf);
            let raw: &[u8] = if captured.is_empty() {
                &chunk[from..end]
            } else {
                &captured
            };
            let label: &[u8] = if self.str_escaped { &unescaped } else { raw };
            let result = self.scan_key(chunk, from, end, raw, label);
            self.capture = captured;
            self.key_buf = unescaped;
            result?;
        }
        self.capture.clear();
        Ok(())
    }

    /// Inlined, as [`key_start`](Self::key_start) is: between the members
    /// and elements of an untracked container, it only moves the lexer on.
    #[inline(always)]
    pub(super) fn comma(&mut self, chunk: &Bytes, at: usize, object: bool) {
        if let Some(frame) = self.frames.last()
            && frame.mode != FrameMode::Untracked
        {
            if object {
                self.hold_member(chunk, at, true);
            } else {
                self.steer.hold(chunk, at, true, &mut self.writer);
            }
        }
        self.lex = if object { Lex::Key } else { Lex::Element };
    }

    /// A member of a tracked object starts at `at` (its comma, when
    /// `comma`): it is held until its fate is known. When the output
    /// passes (nothing suppressed or held) and no detector reads member
    /// names, that hold is put off until its name is read.
    #[inline]
    fn hold_member(&mut self, chunk: &Bytes, at: usize, comma: bool) {
        if self.steer.mode == Mode::Pass && self.rules.scan.is_none() {
            self.pending_hold = Some(PendingHold { at, comma });
        } else {
            self.steer.hold(chunk, at, comma, &mut self.writer);
        }
    }

    /// The chunk ends before the member name whose hold was put off: the
    /// hold begins, where it would have.
    pub(super) fn take_up_pending_hold(&mut self, chunk: &Bytes) {
        if let Some(PendingHold { at, comma }) = self.pending_hold.take() {
            self.steer.hold(chunk, at, comma, &mut self.writer);
        }
    }

    /// The member name whose hold was put off is read and the member's
    /// slot decided: a member that passes needs none (only its comma goes,
    /// when no member before it was kept); any other is held from where
    /// its hold would have begun.
    fn settle_pending_hold(&mut self, chunk: &Bytes, emitted_any: bool) {
        let Some(PendingHold { at, comma }) = self.pending_hold.take() else {
            return;
        };
        if self.slot != Slot::Pass {
            self.steer.hold(chunk, at, comma, &mut self.writer);
        } else if comma && !emitted_any {
            // As `Steering::release_held` skips a held comma.
            self.steer.flush(chunk, at, &mut self.writer);
            self.steer.from = at + 1;
        }
    }

    pub(super) fn push_frame(
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
        let key_start = self.path_keys.next_start();
        let states_start = self.arena.len();
        if mode == FrameMode::Tracked {
            self.arena.extend_from_slice(&self.child_states);
        }
        let template = self.value_template();
        let child_template = if object || !self.report.counts_fields() {
            template
        } else {
            hash_bytes(template, b"[*]")
        };
        self.frames.push(Frame {
            template,
            child_template,
            object,
            mode,
            states_start,
            states_end: self.arena.len(),
            count: 0,
            in_child: false,
            emitted_any: false,
            key_start,
            ends_suppress,
            adds: None,
        });
        Ok(())
    }

    pub(super) fn close(&mut self, chunk: &Bytes, at: usize) -> Result<(), Error> {
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
    pub(super) fn add_members(
        &mut self,
        chunk: &Bytes,
        at: usize,
        rule: RuleId,
        after_member: bool,
    ) {
        let Action::AddMembers(members) = &self.rules.rules[rule].action else {
            return;
        };
        self.steer.flush(chunk, at, &mut self.writer);
        if after_member {
            self.writer.copy(b",");
        }
        self.writer.copy(members.text().as_bytes());
        // The frame is closed: the path is the object's own.
        self.report
            .record(Some(rule), ChangeKind::Rewritten, here!(self));
    }

    pub(super) fn after_value(&mut self) {
        match self.frames.last_mut() {
            Some(parent) => {
                parent.count += 1;
                parent.in_child = false;
                self.lex = Lex::Comma;
            }
            None => self.lex = Lex::End,
        }
    }
}

/// The slot of a child of a tracked container, its states left in
/// `child_states`.
#[inline]
pub(super) fn child_slot(
    rules: &Rules,
    states: &[State],
    label: Label<'_>,
    child_states: &mut Vec<State>,
) -> Slot {
    child_states.clear();
    let selected = rules.body.step(states, label, child_states);
    slot_for(selected, child_states, rules.unlisted)
}

pub(super) fn slot_for(
    selected: Option<RuleId>,
    child_states: &[State],
    unlisted: Unlisted,
) -> Slot {
    match selected {
        Some(rule) => Slot::Select(rule),
        None if !child_states.is_empty() => Slot::Track,
        None if unlisted == Unlisted::Drop => Slot::Unlisted,
        None => Slot::Pass,
    }
}
