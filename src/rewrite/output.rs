//! Output steering shared by the rewriters. One mode at a time decides what
//! becomes of the input bytes since the last decision point:
//! - `Pass`: they go out as they are, as slices of the input chunk.
//! - `Hold`: they are kept aside (a separator and a member name) until the
//!   rewriter knows whether the member stays.
//! - `Suppress`: they are discarded (a dropped or replaced value).

use bytes::{BufMut, Bytes, BytesMut};

use super::escape::escape_into;
use super::sink::Sink;
use crate::transform::Digest;

/// Spans of the input shorter than this are copied into the output buffer
/// rather than sliced: a slice costs two atomic operations on its chunk and
/// an entry in the sink, more than copying a member name (measured in
/// `benches/rewrite.rs`). Longer spans leave as slices, without a copy.
const COPY_BELOW: usize = 512;

/// Spans up to this long are copied from the chunk as one block this long.
const BLOCK: usize = 64;

/// The buffer is handed to the sink once it holds this much.
const FLUSH_AT: usize = 16 * 1024;

const INITIAL_CAPACITY: usize = 2048;

/// Writes output to the sink, coalescing small pieces into one buffer.
#[derive(Clone, Debug)]
pub(crate) struct Writer<S> {
    pub(crate) sink: S,
    buf: BytesMut,
}

impl<S: Sink> Writer<S> {
    pub(crate) fn new(sink: S) -> Self {
        Writer {
            sink,
            // One allocation up front rather than a growth step every few
            // small copies (a 1 KiB event took five).
            buf: BytesMut::with_capacity(INITIAL_CAPACITY),
        }
    }

    /// Writes `chunk[from..to]`.
    pub(crate) fn slice(&mut self, chunk: &Bytes, from: usize, to: usize) {
        let len = to - from;
        if len <= BLOCK
            && let Some(block) = chunk.get(from..from + BLOCK)
        {
            // Most spans between decisions are a member or two: copied as
            // one block of a fixed size (the chunk holds the bytes after
            // the span) and cut back, rather than through `memcpy`, whose
            // branches on the length mispredicted once a span or so
            // (callgrind's branch simulation, `benches/ndjson_branches.sh`).
            let kept = self.buf.len() + len;
            self.buf.extend_from_slice(block);
            self.buf.truncate(kept);
            self.flush_when_full();
        } else if len < COPY_BELOW {
            self.copy(&chunk[from..to]);
        } else {
            self.flush();
            self.sink.write(chunk.slice(from..to));
        }
    }

    /// Writes bytes made by the rewriter (or a short original).
    pub(crate) fn copy(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
        self.flush_when_full();
    }

    /// Writes `text` as a JSON string, quoted and escaped.
    pub(crate) fn json_string(&mut self, text: &[u8]) {
        self.buf.reserve(text.len() + 2);
        self.buf.put_u8(b'"');
        escape_into(text, &mut self.buf);
        self.buf.put_u8(b'"');
        self.flush_when_full();
    }

    /// Writes a digest as a JSON string: its digits hold nothing a string
    /// escapes, and go straight into the buffer.
    pub(crate) fn json_digest(&mut self, digest: &Digest) {
        let mut digits = [0u8; Digest::MAX_LEN];
        let len = digest.encode(&mut digits);
        // Quoted in a block of the longest encoding's size, copied whole
        // and cut back (as `slice` does): copying `len` bytes, a length
        // known only here, went through `memcpy`, 2.5% of a hashed event's
        // time (perf, `benches/ndjson.rs`).
        let mut quoted = [b'"'; Digest::MAX_LEN + 2];
        quoted[1..=Digest::MAX_LEN].copy_from_slice(&digits);
        quoted[len + 1] = b'"';
        let kept = self.buf.len() + len + 2;
        self.buf.extend_from_slice(&quoted);
        self.buf.truncate(kept);
        self.flush_when_full();
    }

    /// Writes the pieces, one text, as a JSON string: escaped into the
    /// output as they are, without joining them first.
    pub(crate) fn json_string_pieces(&mut self, pieces: &[Bytes]) {
        let length: usize = pieces.iter().map(Bytes::len).sum();
        self.buf.reserve(length + 2);
        self.buf.put_u8(b'"');
        for piece in pieces {
            escape_into(piece, &mut self.buf);
        }
        self.buf.put_u8(b'"');
        self.flush_when_full();
    }

    fn flush_when_full(&mut self) {
        if self.buf.len() >= FLUSH_AT {
            self.flush();
            // Room for the next FLUSH_AT bytes and the write that crosses
            // that mark: what the buffer had left ran out just short of it,
            // and growing it then copied nearly FLUSH_AT bytes a flush
            // (callgrind). Once the sink has let go of what it was handed,
            // this takes the allocation back, with nothing to copy.
            self.buf.reserve(2 * FLUSH_AT);
        }
    }

    /// Hands whatever is buffered to the sink.
    pub(crate) fn flush(&mut self) {
        if !self.buf.is_empty() {
            self.sink.write(self.buf.split().freeze());
        }
    }

    pub(crate) fn into_sink(mut self) -> S {
        self.flush();
        self.sink
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Mode {
    Pass,
    Hold,
    Suppress,
}

/// The output state of one rewriter.
#[derive(Clone, Debug)]
pub(crate) struct Steering {
    pub(crate) mode: Mode,
    /// First byte of the current chunk not yet handed to the mode.
    pub(crate) from: usize,
    /// The held separator and member name (bounded by `max_value_bytes`).
    pub(crate) held: Vec<u8>,
    pub(crate) held_comma: bool,
}

impl Steering {
    /// Hands `[from, at)` of the chunk to the current mode.
    pub(crate) fn flush<S: Sink>(&mut self, chunk: &Bytes, at: usize, out: &mut Writer<S>) {
        if at > self.from {
            match self.mode {
                Mode::Pass => out.slice(chunk, self.from, at),
                Mode::Hold => self.held.extend_from_slice(&chunk[self.from..at]),
                Mode::Suppress => {}
            }
        }
        self.from = at;
    }

    pub(crate) fn set_mode<S: Sink>(
        &mut self,
        chunk: &Bytes,
        at: usize,
        mode: Mode,
        out: &mut Writer<S>,
    ) {
        if mode != self.mode {
            self.flush(chunk, at, out);
            self.mode = mode;
        }
    }

    pub(crate) fn hold<S: Sink>(
        &mut self,
        chunk: &Bytes,
        at: usize,
        comma: bool,
        out: &mut Writer<S>,
    ) {
        self.set_mode(chunk, at, Mode::Hold, out);
        self.held_comma = comma;
    }

    /// Ends a hold, its member kept: bytes pass again, the held separator
    /// and name first (without the separator when `drop_comma`). What was
    /// held in this chunk is not copied anywhere: it is pending, and leaves
    /// with the value after it, in one piece.
    pub(crate) fn release_held<S: Sink>(&mut self, drop_comma: bool, out: &mut Writer<S>) {
        debug_assert_eq!(self.mode, Mode::Hold);
        let skip = usize::from(drop_comma && self.held_comma);
        if self.held.is_empty() {
            // The hold began in this chunk, at its separator, and nothing
            // of it has moved since.
            self.from += skip;
        } else if self.held.len() > skip {
            out.copy(&self.held[skip..]);
        }
        self.mode = Mode::Pass;
        self.discard_held();
    }

    pub(crate) fn discard_held(&mut self) {
        self.held.clear();
        self.held_comma = false;
    }

    /// Writes what was held; without its leading separator when the member
    /// is the first to be written in its container.
    pub(crate) fn write_held<S: Sink>(&mut self, drop_comma: bool, out: &mut Writer<S>) {
        let skip = usize::from(drop_comma && self.held_comma);
        if self.held.len() > skip {
            out.copy(&self.held[skip..]);
        }
        self.discard_held();
    }
}

impl Default for Steering {
    fn default() -> Self {
        Steering {
            mode: Mode::Pass,
            from: 0,
            held: Vec::new(),
            held_comma: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slices_of_every_length_leave_whole_and_in_order() {
        // Spans copied as a block (with bytes after them in the chunk or
        // not), copied exactly, and sliced; after something already
        // buffered, so that the block's cut lands mid-buffer.
        let chunk = Bytes::from((0..700u32).map(|i| (i % 251) as u8).collect::<Vec<u8>>());
        for len in 0..=600 {
            for from in [0, 1, 63, chunk.len() - len.min(chunk.len())] {
                let to = from + len;
                if to > chunk.len() {
                    continue;
                }
                let mut writer = Writer::new(Vec::<Bytes>::new());
                writer.copy(b"<");
                writer.slice(&chunk, from, to);
                writer.copy(b">");
                let out: Vec<u8> = writer.into_sink().concat();
                let mut expected = b"<".to_vec();
                expected.extend_from_slice(&chunk[from..to]);
                expected.push(b'>');
                assert_eq!(out, expected, "from {from} len {len}");
            }
        }
    }
}
