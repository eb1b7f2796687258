//! Output steering shared by the rewriters. One mode at a time decides what
//! becomes of the input bytes since the last decision point:
//! - `Pass`: they go out as they are, as slices of the input chunk.
//! - `Hold`: they are kept aside (a separator and a member name) until the
//!   rewriter knows whether the member stays.
//! - `Suppress`: they are discarded (a dropped or replaced value).

use bytes::Bytes;

use super::sink::Sink;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Mode {
    Pass,
    Hold,
    Suppress,
}

/// The output state of one rewriter.
#[derive(Debug)]
pub(crate) struct Output {
    pub(crate) mode: Mode,
    /// First byte of the current chunk not yet handed to the mode.
    pub(crate) from: usize,
    pub(crate) held: Vec<Bytes>,
    pub(crate) held_len: usize,
    pub(crate) held_comma: bool,
}

impl Output {
    /// Hands `[from, at)` of the chunk to the current mode.
    pub(crate) fn flush<S: Sink>(&mut self, chunk: &Bytes, at: usize, sink: &mut S) {
        if at > self.from {
            match self.mode {
                Mode::Pass => sink.write(chunk.slice(self.from..at)),
                Mode::Hold => {
                    self.held_len += at - self.from;
                    self.held.push(chunk.slice(self.from..at));
                }
                Mode::Suppress => {}
            }
        }
        self.from = at;
    }

    pub(crate) fn set_mode<S: Sink>(&mut self, chunk: &Bytes, at: usize, mode: Mode, sink: &mut S) {
        if mode != self.mode {
            self.flush(chunk, at, sink);
            self.mode = mode;
        }
    }

    pub(crate) fn hold<S: Sink>(&mut self, chunk: &Bytes, at: usize, comma: bool, sink: &mut S) {
        self.set_mode(chunk, at, Mode::Hold, sink);
        self.held_comma = comma;
    }

    pub(crate) fn discard_held(&mut self) {
        self.held.clear();
        self.held_len = 0;
        self.held_comma = false;
    }

    pub(crate) fn write_held<S: Sink>(&mut self, drop_comma: bool, sink: &mut S) {
        let skip_comma = drop_comma && self.held_comma;
        for (i, mut piece) in self.held.drain(..).enumerate() {
            if i == 0 && skip_comma {
                let _ = piece.split_to(1);
            }
            sink.write(piece);
        }
        self.held_len = 0;
        self.held_comma = false;
    }
}

impl Default for Output {
    fn default() -> Self {
        Output {
            mode: Mode::Pass,
            from: 0,
            held: Vec::new(),
            held_len: 0,
            held_comma: false,
        }
    }
}
