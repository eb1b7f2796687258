//! Strings and member names no rule selects, handed to the route's `scan:`
//! detectors as they end.
//!
//! A scanned string streams like any other while it lies in one chunk: its
//! bytes stay pending in `Pass` mode and, when nothing is found, leave as
//! they came. Only when a chunk ends inside it are its bytes taken out of
//! the output (`Suppress`) and carried in the capture, bounded by
//! `max_value_bytes`, so that the decision never depends on where the body
//! was cut.

use super::*;
use crate::detect::{Scan, Scanned};
use crate::rewrite::escape::escape_into;

impl<'r, S: Sink> JsonRewriter<'r, S> {
    /// The route's scan, when it is on.
    pub(super) fn scan_settings(&self) -> Option<&'r Scan> {
        self.rules.scan.as_ref()
    }

    /// A string value that no rule selects starts at `at` (its quote), with
    /// whatever was held before it gone out.
    pub(super) fn start_scan(&mut self, at: usize) {
        self.scalar = ScalarUse::Scan;
        self.start_capture(at);
    }

    /// The chunk ends inside a scanned string or member name still pending
    /// in `Pass` mode: its bytes so far leave the output for the capture.
    pub(super) fn suspend_scanned_token(&mut self, chunk: &Bytes) {
        let Some(from) = self.capture_from else {
            return;
        };
        let scanned_value = self.scalar == ScalarUse::Scan && !self.str_is_key;
        let scanned_key = self.str_is_key && self.scan_settings().is_some();
        if (scanned_value || scanned_key) && self.steer.mode == Mode::Pass {
            self.steer
                .set_mode(chunk, from, Mode::Suppress, &mut self.writer);
            self.token_suspended = true;
        }
    }

    /// A scanned string value ended just before `end` (after its quote).
    pub(super) fn scanned_string_end(&mut self, chunk: &Bytes, end: usize) -> Result<(), Error> {
        let from = self.capture_from.unwrap_or(end);
        // Not pending in the output: carried across chunks, or captured as a
        // possible embedded document before it turned out plain.
        let carried = self.steer.mode == Mode::Suppress;
        let raw = if carried || self.capture_spilled {
            self.finish_token(chunk, end)?;
            std::mem::take(&mut self.capture)
        } else {
            self.capture_from = None;
            let limit = self.rules.limits.max_value_bytes as usize;
            if end - from > limit {
                return Err(self.too_long_to_scan(end, limit));
            }
            Vec::new()
        };
        let token: &[u8] = if raw.is_empty() {
            &chunk[from..end]
        } else {
            &raw
        };
        let answer = self.scan_token(&token[1..token.len() - 1], end)?;
        match answer {
            Scanned::Clean if carried => {
                self.steer
                    .set_mode(chunk, end, Mode::Pass, &mut self.writer);
                self.writer.copy(token);
            }
            Scanned::Clean | Scanned::Reject(_) => {}
            Scanned::Rewritten | Scanned::Drop => {
                if carried {
                    self.steer
                        .set_mode(chunk, end, Mode::Pass, &mut self.writer);
                } else {
                    self.steer.flush(chunk, from, &mut self.writer);
                    self.steer.from = end;
                }
                if answer == Scanned::Drop {
                    self.writer.copy(b"null");
                } else {
                    self.writer.json_string(self.scanned.as_bytes());
                }
            }
        }
        self.token_suspended = false;
        if !raw.is_empty() {
            // Back, to keep its allocation.
            self.capture = raw;
            self.capture.clear();
        }
        Ok(())
    }

    /// A member name no rule can be about, `label` unescaped, whose content
    /// (without quotes) starts at `from` and ends at `end` in this chunk (or
    /// began in an earlier one, `carried` bytes of it captured already).
    /// When a detector finds something in it, the name is written anew.
    pub(super) fn scan_key(
        &mut self,
        chunk: &Bytes,
        from: usize,
        end: usize,
        raw: &[u8],
        label: &[u8],
    ) -> Result<(), Error> {
        let suspended = std::mem::take(&mut self.token_suspended);
        if self.steer.mode == Mode::Suppress && !suspended {
            // Inside a value that does not leave.
            return Ok(());
        }
        // Most names give the detectors nothing to look at, and need not be
        // read as UTF-8 again (the lexer has checked their bytes).
        let may_find = self
            .scan_settings()
            .is_some_and(|scan| scan.may_find_in(label));
        let answer = if may_find {
            let Ok(text) = std::str::from_utf8(label) else {
                return Err(self.error(end, Kind::Syntax, "invalid UTF-8"));
            };
            let answer = self.scan_text(text, self.offset + from as u64)?;
            if answer == Scanned::Drop {
                // A member name cannot go alone (nothing of its value has
                // come yet): it is rewritten as `redact` would.
                crate::detect::redact(text, &self.findings, &mut self.scanned);
            }
            answer
        } else {
            self.findings.clear();
            Scanned::Clean
        };
        if suspended {
            self.steer
                .set_mode(chunk, end, Mode::Pass, &mut self.writer);
        } else if answer == Scanned::Clean {
            return Ok(());
        } else {
            let carried = raw.len() - (end - from);
            self.steer.flush(chunk, from, &mut self.writer);
            if self.steer.mode == Mode::Hold {
                // The part of the name in earlier chunks went into the held
                // bytes.
                let keep = self.steer.held.len().saturating_sub(carried);
                self.steer.held.truncate(keep);
            }
            self.steer.from = end;
        }
        let mut escaped = Vec::new();
        let name: &[u8] = if answer == Scanned::Clean {
            raw
        } else {
            escape_into(self.scanned.as_bytes(), &mut escaped);
            &escaped
        };
        match self.steer.mode {
            Mode::Hold => self.steer.held.extend_from_slice(name),
            _ => self.writer.copy(name),
        }
        Ok(())
    }

    /// A string captured whole, `raw` as in the body and `text` unescaped,
    /// goes out as it is or as the detectors' answer makes it.
    pub(super) fn write_scanned(&mut self, raw: &[u8], text: &[u8]) -> Result<(), Error> {
        let offset = self.token_offset;
        let answer = match std::str::from_utf8(text) {
            Ok(text) => self.scan_text(text, offset)?,
            Err(_) => return Err(self.error_at_offset(offset, Kind::Syntax, "invalid UTF-8")),
        };
        match answer {
            Scanned::Rewritten => self.writer.json_string(self.scanned.as_bytes()),
            Scanned::Drop => self.writer.copy(b"null"),
            Scanned::Clean | Scanned::Reject(_) => self.writer.copy(raw),
        }
        Ok(())
    }

    /// A selected string its rule left as it is, `raw` with its quotes:
    /// written as it is or as the detectors' answer makes it.
    pub(super) fn write_kept_string(&mut self, raw: &[u8]) -> Result<(), Error> {
        if self.scan_settings().is_none() {
            self.writer.copy(raw);
            return Ok(());
        }
        match self.scan_token(&raw[1..raw.len() - 1], 0)? {
            Scanned::Rewritten => self.writer.json_string(self.scanned.as_bytes()),
            Scanned::Drop => self.writer.copy(b"null"),
            Scanned::Clean | Scanned::Reject(_) => self.writer.copy(raw),
        }
        Ok(())
    }

    /// Scans a string's content (escaped as in the body), ending at `end`.
    fn scan_token(&mut self, content: &[u8], end: usize) -> Result<Scanned, Error> {
        let mut unescaped = std::mem::take(&mut self.scan_buf);
        unescaped.clear();
        let text = if self.str_escaped {
            if unescape_into(content, &mut unescaped).is_none() {
                self.scan_buf = unescaped;
                return Err(self.error(end, Kind::Syntax, "invalid escape in a string"));
            }
            &unescaped[..]
        } else {
            content
        };
        // The body was read as UTF-8 already: most strings give the
        // detectors nothing to look at, and need not be read again. They
        // return at once, by the shortest way (a result built in a local
        // and copied out costs a stalled load on this path, hot for every
        // string of a body).
        if self
            .scan_settings()
            .is_some_and(|scan| !scan.may_find_in(text))
        {
            self.findings.clear();
            self.scan_buf = unescaped;
            return Ok(Scanned::Clean);
        }
        let answer = match std::str::from_utf8(text) {
            Ok(text) => self.scan_text(text, self.token_offset),
            Err(_) => Err(self.error(end, Kind::Syntax, "invalid UTF-8")),
        };
        self.scan_buf = unescaped;
        answer
    }

    /// Hands `text` to the detectors and counts what they found; a
    /// rejection becomes the error.
    fn scan_text(&mut self, text: &str, offset: u64) -> Result<Scanned, Error> {
        let Some(scan) = self.scan_settings() else {
            return Ok(Scanned::Clean);
        };
        let answer = scan.text(text, &mut self.findings, &mut self.scanned);
        if let Scanned::Reject(detector) = answer {
            let reason = crate::detect::rejection(detector);
            return Err(self.error_at_offset(offset, Kind::Rejected, reason));
        }
        if answer != Scanned::Clean {
            self.report.detected(&self.findings, here!(self));
        }
        Ok(answer)
    }

    pub(super) fn too_long_to_scan(&self, at: usize, limit: usize) -> Error {
        self.error(
            at,
            Kind::TooLarge,
            format!(
                "string longer than {limit} bytes cannot be scanned for identifiers (raise `max_value_bytes`, or name the field in a rule)"
            ),
        )
    }
}
