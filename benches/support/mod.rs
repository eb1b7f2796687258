//! What the rewriting benches share: a sink that counts, and bodies cut
//! into chunks.

use bytes::Bytes;
use scrim::rewrite::Sink;

/// Counts output bytes, as a socket or a file would take them, without
/// copying.
pub struct CountSink(pub usize);

impl Sink for CountSink {
    fn write(&mut self, bytes: Bytes) {
        self.0 += bytes.len();
    }
}

/// `body` in pieces of `size` bytes (the last one shorter), sharing its
/// memory.
pub fn chunks(body: &Bytes, size: usize) -> impl Iterator<Item = Bytes> + '_ {
    (0..body.len())
        .step_by(size)
        .map(move |at| body.slice(at..(at + size).min(body.len())))
}
