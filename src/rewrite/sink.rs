//! Where rewritten output goes.

use bytes::{Bytes, BytesMut};

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

impl Sink for BytesMut {
    fn write(&mut self, bytes: Bytes) {
        self.extend_from_slice(&bytes);
    }
}

impl<S: Sink + ?Sized> Sink for &mut S {
    fn write(&mut self, bytes: Bytes) {
        (**self).write(bytes);
    }
}
