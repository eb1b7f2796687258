//! Where rewritten output goes.

use bytes::Bytes;

/// Receives the rewritten body, piece by piece, in order. Untouched spans
/// arrive as slices of the input chunks (no copy).
pub trait Sink {
    fn write(&mut self, bytes: Bytes);
}

impl Sink for Vec<Bytes> {
    fn write(&mut self, bytes: Bytes) {
        if !bytes.is_empty() {
            self.push(bytes);
        }
    }
}

impl<S: Sink + ?Sized> Sink for &mut S {
    fn write(&mut self, bytes: Bytes) {
        (**self).write(bytes);
    }
}
