//! Request `Content-Encoding`s, decoded before rewriting: a compressed body
//! would hide its values from the rules.
//!
//! A decoder never runs ahead of its caller. Input is pushed as it arrives,
//! and decoded output is pulled in steps of at most [`STEP`] bytes, so that
//! the caller checks each step against `max_body_bytes` (and yields to the
//! runtime) before the next one is decoded: an 841-byte brotli body that
//! would inflate to 1 GiB costs `max_body_bytes` of decoding and one step of
//! memory, then its 413. The forwarding path and the consent gate use this
//! one implementation.

use std::io::Write;

use brotli::enc::StandardAlloc;
use brotli::{BrotliDecompressStream, BrotliResult, BrotliState};
use bytes::{Buf, Bytes};
use http::HeaderMap;

use super::error::ProxyError;

/// Most decoded bytes one step hands out. flate2's write decoders hold one
/// such buffer themselves.
pub const STEP: usize = 32 * 1024;

/// A request's `Content-Encoding`, as the decoder reads it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Coding {
    Identity,
    Gzip,
    Deflate,
    Brotli,
}

impl Coding {
    /// One coding (`identity` or none is no decoding); anything else is
    /// refused with 415.
    pub(crate) fn of(headers: &HeaderMap) -> Result<Coding, ProxyError> {
        let mut codings = headers
            .get_all(http::header::CONTENT_ENCODING)
            .iter()
            .flat_map(|value| value.to_str().unwrap_or("\u{0}").split(','))
            .map(|coding| coding.trim().to_ascii_lowercase())
            .filter(|coding| !coding.is_empty() && coding != "identity");
        let coding = match codings.next().as_deref() {
            None => Coding::Identity,
            Some("gzip" | "x-gzip") => Coding::Gzip,
            Some("deflate") => Coding::Deflate,
            Some("br") => Coding::Brotli,
            Some(_) => return Err(ProxyError::unsupported_encoding()),
        };
        // Stacked codings (`gzip, br`) are legal but unheard of from SDKs.
        if codings.next().is_some() {
            return Err(ProxyError::unsupported_encoding());
        }
        Ok(coding)
    }

    /// What its decoder holds besides the body: a window (brotli's up to
    /// 16 MiB, RFC 7932; the large-window extension is refused) and a step.
    pub(crate) fn window_bytes(self) -> u64 {
        match self {
            Coding::Identity => 0,
            Coding::Gzip | Coding::Deflate => 32 * 1024 + STEP as u64,
            Coding::Brotli => 16 * 1024 * 1024 + STEP as u64,
        }
    }
}

/// A decoder for one body: `push` raw input, `next` until `None`, `end`
/// once the body is read, then `next` until `None` again.
pub(crate) struct Decoder {
    codec: Codec,
    /// Raw input not decoded yet.
    input: Bytes,
    /// Decoded, not handed out yet: a flate2 call may produce somewhat
    /// more than one step.
    pending: Bytes,
    /// The body has been read to its end.
    ended: bool,
}

enum Codec {
    Identity,
    Gzip(flate2::write::MultiGzDecoder<Vec<u8>>),
    Deflate(flate2::write::ZlibDecoder<Vec<u8>>),
    Brotli(Box<Brotli>),
}

struct Brotli {
    state: BrotliState<StandardAlloc, StandardAlloc, StandardAlloc>,
    /// The last call stopped with output left to hand out.
    more_output: bool,
    /// The stream's last block has been decoded.
    done: bool,
}

impl Decoder {
    /// The decoder for a request's `Content-Encoding` (one coding; `identity`
    /// or none is no decoding). Anything else is refused with 415.
    pub(crate) fn for_headers(headers: &HeaderMap) -> Result<Decoder, ProxyError> {
        let codec = match Coding::of(headers)? {
            Coding::Identity => Codec::Identity,
            Coding::Gzip => Codec::Gzip(flate2::write::MultiGzDecoder::new(Vec::new())),
            Coding::Deflate => Codec::Deflate(flate2::write::ZlibDecoder::new(Vec::new())),
            Coding::Brotli => {
                let mut state = BrotliState::new(
                    StandardAlloc::default(),
                    StandardAlloc::default(),
                    StandardAlloc::default(),
                );
                // RFC 7932 windows only (at most 16 MiB of history): the
                // large-window extension would let a body ask for 1 GiB.
                state.large_window = false;
                Codec::Brotli(Box::new(Brotli {
                    state,
                    more_output: false,
                    done: false,
                }))
            }
        };
        Ok(Decoder {
            codec,
            input: Bytes::new(),
            pending: Bytes::new(),
            ended: false,
        })
    }

    /// For a body that is not decoded.
    pub(crate) fn identity() -> Decoder {
        Decoder {
            codec: Codec::Identity,
            input: Bytes::new(),
            pending: Bytes::new(),
            ended: false,
        }
    }

    pub(crate) fn is_identity(&self) -> bool {
        matches!(self.codec, Codec::Identity)
    }

    /// Adds raw input. Call `next` until `None` before pushing more.
    pub(crate) fn push(&mut self, input: Bytes) {
        if self.input.is_empty() {
            self.input = input;
        } else {
            // Only when a caller pushes twice without pulling.
            let mut joined = Vec::with_capacity(self.input.len() + input.len());
            joined.extend_from_slice(&self.input);
            joined.extend_from_slice(&input);
            self.input = Bytes::from(joined);
        }
    }

    /// The body has been read to its end: what `next` returns from now on
    /// is the rest, and `None` then means the stream was complete.
    pub(crate) fn end(&mut self) {
        self.ended = true;
    }

    /// Whether the input has ended (what is decoded of it may not be
    /// taken yet).
    pub(crate) fn is_ended(&self) -> bool {
        self.ended
    }

    /// The next decoded piece, at most [`STEP`] bytes (a piece of an
    /// identity body is the input as it came). `None` when the input pushed
    /// so far is used up; after `end`, when the whole body is decoded.
    pub(crate) fn next(&mut self) -> Result<Option<Bytes>, ProxyError> {
        if !self.pending.is_empty() {
            let take = self.pending.len().min(STEP);
            return Ok(Some(self.pending.split_to(take)));
        }
        let corrupt = |_| ProxyError::bad_body("the compressed body is corrupt");
        let truncated = |_| ProxyError::bad_body("the compressed body is truncated or corrupt");
        let piece = match &mut self.codec {
            Codec::Identity => {
                return Ok((!self.input.is_empty()).then(|| std::mem::take(&mut self.input)));
            }
            Codec::Gzip(decoder) => {
                flate_step(decoder, &mut self.input, self.ended, corrupt, truncated)
            }
            Codec::Deflate(decoder) => {
                flate_step(decoder, &mut self.input, self.ended, corrupt, truncated)
            }
            Codec::Brotli(brotli) => brotli.step(&mut self.input, self.ended),
        }?;
        Ok(piece.map(|mut piece| {
            if piece.len() > STEP {
                self.pending = piece.split_off(STEP);
            }
            piece
        }))
    }
}

/// What the flate2 write decoders have in common.
trait FlateDecoder: Write {
    fn output(&mut self) -> &mut Vec<u8>;
    fn try_finish(&mut self) -> std::io::Result<()>;
}

impl FlateDecoder for flate2::write::MultiGzDecoder<Vec<u8>> {
    fn output(&mut self) -> &mut Vec<u8> {
        self.get_mut()
    }
    fn try_finish(&mut self) -> std::io::Result<()> {
        flate2::write::MultiGzDecoder::try_finish(self)
    }
}

impl FlateDecoder for flate2::write::ZlibDecoder<Vec<u8>> {
    fn output(&mut self) -> &mut Vec<u8> {
        self.get_mut()
    }
    fn try_finish(&mut self) -> std::io::Result<()> {
        flate2::write::ZlibDecoder::try_finish(self)
    }
}

/// One step of a flate2 decoder. A single `write` (not `write_all`) inflates
/// into the decoder's own buffer of 32 KiB and hands the previous buffer on,
/// so each call produces at most one buffer of output.
fn flate_step<D: FlateDecoder>(
    decoder: &mut D,
    input: &mut Bytes,
    ended: bool,
    corrupt: impl Fn(std::io::Error) -> ProxyError,
    truncated: impl Fn(std::io::Error) -> ProxyError,
) -> Result<Option<Bytes>, ProxyError> {
    loop {
        if input.is_empty() {
            if !ended {
                return Ok(None);
            }
            // What the decoder still holds; bounded by its buffer and
            // window, since all input has been taken in.
            decoder.try_finish().map_err(&truncated)?;
            let rest = std::mem::take(decoder.output());
            return Ok((!rest.is_empty()).then(|| Bytes::from(rest)));
        }
        let used = decoder.write(input).map_err(&corrupt)?;
        input.advance(used);
        let output = std::mem::take(decoder.output());
        if !output.is_empty() {
            return Ok(Some(Bytes::from(output)));
        }
        if used == 0 {
            // The stream has ended and input is left over.
            return Err(ProxyError::bad_body(
                "data after the end of the compressed body",
            ));
        }
    }
}

impl Brotli {
    fn step(&mut self, input: &mut Bytes, ended: bool) -> Result<Option<Bytes>, ProxyError> {
        loop {
            if self.done {
                return if input.is_empty() {
                    Ok(None)
                } else {
                    Err(ProxyError::bad_body(
                        "data after the end of the compressed body",
                    ))
                };
            }
            if input.is_empty() && !self.more_output {
                return if ended {
                    Err(ProxyError::bad_body(
                        "the compressed body is truncated or corrupt",
                    ))
                } else {
                    Ok(None)
                };
            }
            let mut output = vec![0u8; STEP];
            let (mut available_in, mut input_offset) = (input.len(), 0);
            let (mut available_out, mut output_offset, mut total_out) = (STEP, 0, 0);
            let result = BrotliDecompressStream(
                &mut available_in,
                &mut input_offset,
                input,
                &mut available_out,
                &mut output_offset,
                &mut output,
                &mut total_out,
                &mut self.state,
            );
            input.advance(input_offset);
            self.more_output = matches!(result, BrotliResult::NeedsMoreOutput);
            match result {
                BrotliResult::ResultFailure => {
                    return Err(ProxyError::bad_body("the compressed body is corrupt"));
                }
                BrotliResult::ResultSuccess => self.done = true,
                BrotliResult::NeedsMoreInput | BrotliResult::NeedsMoreOutput => {}
            }
            // Nothing decoded from this input (it ended inside a block
            // header, or the stream ended): the next turn settles it.
            if output_offset > 0 {
                output.truncate(output_offset);
                return Ok(Some(Bytes::from(output)));
            }
            if input_offset == 0 && !self.done {
                // No progress at all: never spin on it.
                return Err(ProxyError::bad_body("the compressed body is corrupt"));
            }
        }
    }
}

/// Decodes `input` under `encoding`, pushed in `pieces`, handing each step
/// to `step` until it returns `false` (as the body limit stops a body);
/// the decoder's verdict.
#[cfg(any(test, feature = "fuzzing"))]
pub fn decode_in_pieces(
    encoding: &str,
    input: &[u8],
    pieces: impl IntoIterator<Item = usize>,
    mut step: impl FnMut(&[u8]) -> bool,
) -> Result<(), String> {
    let mut headers = HeaderMap::new();
    let value = http::HeaderValue::from_str(encoding).map_err(|e| e.to_string())?;
    headers.insert(http::header::CONTENT_ENCODING, value);
    let mut decoder = Decoder::for_headers(&headers).map_err(|e| e.to_string())?;
    // Whether to go on.
    let mut pull = |decoder: &mut Decoder| -> Result<bool, String> {
        while let Some(piece) = decoder.next().map_err(|e| e.to_string())? {
            if !step(&piece) {
                return Ok(false);
            }
        }
        Ok(true)
    };
    let mut rest = input;
    for piece in pieces {
        let (now, later) = rest.split_at(piece.min(rest.len()));
        decoder.push(Bytes::copy_from_slice(now));
        if !pull(&mut decoder)? {
            return Ok(());
        }
        rest = later;
    }
    decoder.push(Bytes::copy_from_slice(rest));
    if !pull(&mut decoder)? {
        return Ok(());
    }
    decoder.end();
    pull(&mut decoder).map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    type TestResult = Result<(), Box<dyn std::error::Error>>;

    fn decoder(encoding: &str) -> Result<Decoder, Box<dyn std::error::Error>> {
        let mut headers = HeaderMap::new();
        headers.insert(http::header::CONTENT_ENCODING, encoding.parse()?);
        Ok(Decoder::for_headers(&headers)?)
    }

    /// Decodes `compressed` pushed `piece` bytes at a time; also checks that
    /// no step hands out more than `STEP` bytes.
    fn decode_chunked(encoding: &str, compressed: &[u8], piece: usize) -> Result<Vec<u8>, String> {
        let mut out = Vec::new();
        let pieces = std::iter::repeat_n(piece, compressed.len() / piece + 1);
        decode_in_pieces(encoding, compressed, pieces, |step| {
            assert!(step.len() <= STEP, "a step of {} bytes", step.len());
            out.extend_from_slice(step);
            true
        })?;
        Ok(out)
    }

    fn gzip(text: &[u8]) -> std::io::Result<Vec<u8>> {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(text)?;
        gz.finish()
    }

    fn brotli(text: &[u8]) -> std::io::Result<Vec<u8>> {
        let mut br = brotli::CompressorWriter::new(Vec::new(), 4096, 5, 22);
        br.write_all(text)?;
        br.flush()?;
        Ok(br.into_inner())
    }

    #[test]
    fn gzip_deflate_and_brotli() -> TestResult {
        let text = b"{\"em\":\"a@b.c\"}".repeat(50);
        let mut zlib = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        zlib.write_all(&text)?;
        let zlib = zlib.finish()?;
        for piece in [1, 3, 1000] {
            assert_eq!(decode_chunked("gzip", &gzip(&text)?, piece)?, text);
            assert_eq!(decode_chunked("deflate", &zlib, piece)?, text);
            assert_eq!(decode_chunked("BR", &brotli(&text)?, piece)?, text);
        }
        // Two gzip members are one body.
        let two = [gzip(b"{\"a\":")?, gzip(b"1}")?].concat();
        assert_eq!(decode_chunked("gzip", &two, 5)?, b"{\"a\":1}");
        Ok(())
    }

    /// A body that inflates a thousandfold and more comes out in steps,
    /// each at most `STEP`, whatever the size of the piece pushed.
    #[test]
    fn bombs_come_out_in_bounded_steps() -> TestResult {
        let text = vec![b' '; 8 * 1024 * 1024];
        for (encoding, compressed) in [("gzip", gzip(&text)?), ("br", brotli(&text)?)] {
            assert!(compressed.len() < text.len() / 500, "{encoding}");
            let decoded = decode_chunked(encoding, &compressed, compressed.len())?;
            assert_eq!(decoded.len(), text.len(), "{encoding}");
        }
        Ok(())
    }

    /// Found by the fuzz target: one flate2 call made 35,993 bytes.
    #[test]
    fn no_step_is_larger_than_step() {
        let input = b"\x78\x9c\xed\xc1\x31\x01\x00\x00\x00\xc2\xa0\x2a\xeb\x9f\xd2\x1a\x1e\x40\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x05\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x07\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x1c\x1f\x8b\x08\x1c\x00\xff\xed\xc1\x32\x04\x00\x00\x00\x00\x00\x01\x00\x00\x00\x00\x00\x80\x00\x00\x00\x00\x00\x00\x00\x00\x00\x05\x00\x00\x00\x00\x00\x00\x00\x00\x00\xfd\xfe\xff\xff\xff\xff\xff\x7f\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\xd6\xd1";
        let pieces = std::iter::repeat_n(36, input.len() / 36 + 1);
        let _ = decode_in_pieces("deflate", input, pieces, |step| {
            assert!(step.len() <= STEP, "a step of {} bytes", step.len());
            true
        });
    }

    #[test]
    fn unknown_stacked_truncated_and_trailing_encodings_are_refused() -> TestResult {
        assert!(decoder("zstd").is_err());
        assert!(decoder("gzip, br").is_err());
        assert!(decoder("identity")?.is_identity());
        let compressed = gzip(b"{\"a\":1}")?;
        let cut = &compressed[..compressed.len() - 4];
        assert!(decode_chunked("gzip", cut, 100).is_err());
        let compressed = brotli(b"{\"a\":1}")?;
        let cut = &compressed[..compressed.len() - 2];
        assert!(decode_chunked("br", cut, 100).is_err());
        let trailing = [compressed.as_slice(), b"xx"].concat();
        assert!(decode_chunked("br", &trailing, 100).is_err());
        let mut zlib = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        zlib.write_all(b"{}")?;
        let trailing = [zlib.finish()?.as_slice(), b"xx"].concat();
        assert!(decode_chunked("deflate", &trailing, 100).is_err());
        Ok(())
    }
}
