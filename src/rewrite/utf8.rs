//! UTF-8 validation of a stream of chunks. A character split between two
//! chunks is carried (at most three bytes) and checked when the rest arrives.

#[derive(Default, Debug)]
pub(crate) struct Utf8Stream {
    tail: [u8; 4],
    tail_len: usize,
}

impl Utf8Stream {
    /// Checks the next chunk. `Ok(n)`: the first `n` bytes are valid (the
    /// rest, if any, is invalid). `Err(back)`: a character begun in the
    /// previous chunk is invalid; it started `back` bytes before this chunk.
    pub(crate) fn feed(&mut self, chunk: &[u8]) -> Result<usize, usize> {
        let mut start = 0;
        if self.tail_len > 0 {
            let needed = sequence_len(self.tail[0]);
            let take = (needed - self.tail_len).min(chunk.len());
            let mut buf = self.tail;
            buf[self.tail_len..self.tail_len + take].copy_from_slice(&chunk[..take]);
            let have = self.tail_len + take;
            match std::str::from_utf8(&buf[..have]) {
                Ok(_) => {
                    self.tail_len = 0;
                    start = take;
                }
                Err(err) if err.error_len().is_none() && take == chunk.len() => {
                    self.tail = buf;
                    self.tail_len = have;
                    return Ok(chunk.len());
                }
                Err(_) => return Err(self.tail_len),
            }
        }
        match std::str::from_utf8(&chunk[start..]) {
            Ok(_) => Ok(chunk.len()),
            Err(err) => {
                let valid = start + err.valid_up_to();
                if err.error_len().is_none() {
                    let rest = &chunk[valid..];
                    self.tail[..rest.len()].copy_from_slice(rest);
                    self.tail_len = rest.len();
                    Ok(chunk.len())
                } else {
                    Ok(valid)
                }
            }
        }
    }

    /// Bytes of an unfinished character at the end of the stream, if any.
    pub(crate) fn pending(&self) -> Option<usize> {
        (self.tail_len > 0).then_some(self.tail_len)
    }
}

fn sequence_len(first: u8) -> usize {
    match first {
        0xF0..=0xF4 => 4,
        0xE0..=0xEF => 3,
        _ => 2,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn characters_split_across_chunks_are_valid() {
        let text = "aé😀z".as_bytes();
        for cut in 0..=text.len() {
            let mut stream = Utf8Stream::default();
            assert_eq!(stream.feed(&text[..cut]), Ok(cut));
            assert_eq!(stream.feed(&text[cut..]), Ok(text.len() - cut));
            assert_eq!(stream.pending(), None, "cut {cut}");
        }
    }

    #[test]
    fn invalid_bytes_are_found_in_either_chunk() {
        let mut stream = Utf8Stream::default();
        assert_eq!(stream.feed(b"ab\xffcd"), Ok(2));
        let mut stream = Utf8Stream::default();
        assert_eq!(stream.feed(b"ab\xc3"), Ok(3));
        assert_eq!(stream.feed(b"(x"), Err(1));
        let mut stream = Utf8Stream::default();
        assert_eq!(stream.feed(b"\xf0\x9f"), Ok(2));
        assert_eq!(stream.pending(), Some(2));
    }
}
