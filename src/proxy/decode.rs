//! Request `Content-Encoding`s, decoded push-style before rewriting: a
//! compressed body would hide its values from the rules.

use std::io::Write;

use bytes::Bytes;
use http::HeaderMap;

use super::error::ProxyError;

/// A decoder for one body.
pub(crate) enum Decoder {
    Identity,
    Gzip(flate2::write::MultiGzDecoder<Vec<u8>>),
    Deflate(flate2::write::ZlibDecoder<Vec<u8>>),
    Brotli(Box<brotli::DecompressorWriter<Vec<u8>>>),
}

impl Decoder {
    /// The decoder for a request's `Content-Encoding` (one coding; `identity`
    /// or none is no decoding). Anything else is refused with 415.
    pub(crate) fn for_headers(headers: &HeaderMap) -> Result<Decoder, ProxyError> {
        let mut codings = headers
            .get_all(http::header::CONTENT_ENCODING)
            .iter()
            .flat_map(|value| value.to_str().unwrap_or("\u{0}").split(','))
            .map(|coding| coding.trim().to_ascii_lowercase())
            .filter(|coding| !coding.is_empty() && coding != "identity");
        let decoder = match codings.next().as_deref() {
            None => Decoder::Identity,
            Some("gzip" | "x-gzip") => {
                Decoder::Gzip(flate2::write::MultiGzDecoder::new(Vec::new()))
            }
            Some("deflate") => Decoder::Deflate(flate2::write::ZlibDecoder::new(Vec::new())),
            Some("br") => {
                Decoder::Brotli(Box::new(brotli::DecompressorWriter::new(Vec::new(), 8192)))
            }
            Some(_) => return Err(ProxyError::unsupported_encoding()),
        };
        // Stacked codings (`gzip, br`) are legal but unheard of from SDKs.
        if codings.next().is_some() {
            return Err(ProxyError::unsupported_encoding());
        }
        Ok(decoder)
    }

    pub(crate) fn is_identity(&self) -> bool {
        matches!(self, Decoder::Identity)
    }

    /// Decodes the next piece; returns what has been decoded so far.
    pub(crate) fn push(&mut self, input: Bytes) -> Result<Bytes, ProxyError> {
        let corrupt = |_| ProxyError::bad_body("the compressed body is corrupt");
        match self {
            Decoder::Identity => return Ok(input),
            Decoder::Gzip(d) => d.write_all(&input).map_err(corrupt)?,
            Decoder::Deflate(d) => d.write_all(&input).map_err(corrupt)?,
            Decoder::Brotli(d) => d.write_all(&input).map_err(corrupt)?,
        }
        Ok(self.take())
    }

    /// Ends the body: checks the stream is complete; returns the rest.
    pub(crate) fn finish(&mut self) -> Result<Bytes, ProxyError> {
        let truncated = |_| ProxyError::bad_body("the compressed body is truncated or corrupt");
        match self {
            Decoder::Identity => return Ok(Bytes::new()),
            Decoder::Gzip(d) => d.try_finish().map_err(truncated)?,
            Decoder::Deflate(d) => d.try_finish().map_err(truncated)?,
            Decoder::Brotli(d) => d.close().map_err(truncated)?,
        }
        Ok(self.take())
    }

    fn take(&mut self) -> Bytes {
        let buffer = match self {
            Decoder::Identity => return Bytes::new(),
            Decoder::Gzip(d) => d.get_mut(),
            Decoder::Deflate(d) => d.get_mut(),
            Decoder::Brotli(d) => d.get_mut(),
        };
        Bytes::from(std::mem::take(buffer))
    }
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

    fn decode_in_pieces(
        encoding: &str,
        compressed: &[u8],
    ) -> Result<Vec<u8>, Box<dyn std::error::Error>> {
        let mut decoder = decoder(encoding)?;
        let mut out = Vec::new();
        for piece in compressed.chunks(3) {
            out.extend_from_slice(&decoder.push(Bytes::copy_from_slice(piece))?);
        }
        out.extend_from_slice(&decoder.finish()?);
        Ok(out)
    }

    #[test]
    fn gzip_deflate_and_brotli() -> TestResult {
        let text = b"{\"em\":\"a@b.c\"}".repeat(50);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(&text)?;
        assert_eq!(decode_in_pieces("gzip", &gz.finish()?)?, text);
        let mut zlib = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        zlib.write_all(&text)?;
        assert_eq!(decode_in_pieces("deflate", &zlib.finish()?)?, text);
        let mut br = brotli::CompressorWriter::new(Vec::new(), 4096, 5, 22);
        br.write_all(&text)?;
        assert_eq!(decode_in_pieces("BR", &br.into_inner())?, text);
        Ok(())
    }

    #[test]
    fn unknown_stacked_and_truncated_encodings_are_refused() -> TestResult {
        assert!(decoder("zstd").is_err());
        assert!(decoder("gzip, br").is_err());
        assert!(decoder("identity")?.is_identity());
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(b"{\"a\":1}")?;
        let compressed = gz.finish()?;
        let mut decoder = decoder("gzip")?;
        decoder.push(Bytes::copy_from_slice(&compressed[..compressed.len() - 4]))?;
        assert!(decoder.finish().is_err());
        Ok(())
    }
}
