//! A value's SHA-256 in its rule's encoding: what `hash` writes. Hashing is
//! the one cost of a hashed body that cannot go (issue 17), so the work
//! around it is kept to the bytes: a short text is padded here and
//! compressed by `sha2` directly, and hex digits are made sixteen bytes at
//! a time.

use base64::Engine as _;
use sha2::{Digest as _, Sha256};

use super::Encoding;

/// A value's SHA-256, to be written in its rule's encoding. A JSON rewriter
/// writes its digits straight into its output, with no string in between
/// to fill, check as UTF-8 and copy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Digest {
    bytes: [u8; 32],
    encoding: Encoding,
}

impl Digest {
    /// The longest encoding of a digest: 64 hex digits (base64 takes 44).
    pub(crate) const MAX_LEN: usize = 64;

    /// The SHA-256 of `text`, to be written in `encoding`.
    pub(crate) fn of(text: &str, encoding: Encoding) -> Digest {
        Digest {
            bytes: sha256(text.as_bytes()),
            encoding,
        }
    }

    /// Writes the digest's encoding into the start of `out`; returns its
    /// length.
    pub(crate) fn encode(&self, out: &mut [u8; Self::MAX_LEN]) -> usize {
        let engine = match self.encoding {
            Encoding::Hex => {
                hex(&self.bytes, out);
                return Self::MAX_LEN;
            }
            Encoding::Base64 => &base64::engine::general_purpose::STANDARD,
            Encoding::Base64Url => &base64::engine::general_purpose::URL_SAFE_NO_PAD,
        };
        const _: () = assert!(base64::encoded_len(32, true).unwrap() <= Digest::MAX_LEN);
        // Never too short (asserted above): the error cannot happen.
        engine.encode_slice(self.bytes, out).unwrap_or_default()
    }

    /// Appends the digest's encoding to `out`.
    pub(super) fn push_text(&self, out: &mut String) {
        let mut text = [0u8; Self::MAX_LEN];
        let len = self.encode(&mut text);
        // Hex digits and base64 are ASCII: never the empty default.
        out.push_str(std::str::from_utf8(&text[..len]).unwrap_or_default());
    }
}

/// SHA-256's initial hash value (FIPS 180-4, 5.3.3), which `sha2` does not
/// export.
const INITIAL_STATE: [u32; 8] = [
    0x6a09_e667,
    0xbb67_ae85,
    0x3c6e_f372,
    0xa54f_f53a,
    0x510e_527f,
    0x9b05_688c,
    0x1f83_d9ab,
    0x5be0_cd19,
];

/// The longest text that one block holds with its padding: a `0x80` byte
/// and the text's length in bits, 8 bytes.
const ONE_BLOCK: usize = 64 - 1 - 8;

/// The SHA-256 of `text`. Nearly every value a rule hashes fits in one
/// block: that block is padded here (FIPS 180-4, 5.1.1) and compressed by
/// `sha2` directly, without the hasher's buffer and counters, which cost
/// half as much time as the compression itself (perf, `benches/ndjson.rs`).
/// Longer texts go through `Sha256`.
fn sha256(text: &[u8]) -> [u8; 32] {
    if text.len() > ONE_BLOCK {
        return Sha256::digest(text).into();
    }
    let mut block = [0u8; 64];
    block[..text.len()].copy_from_slice(text);
    block[text.len()] = 0x80;
    let bits = text.len() as u64 * 8;
    block[56..].copy_from_slice(&bits.to_be_bytes());
    let mut state = INITIAL_STATE;
    sha2::block_api::compress256(&mut state, &[block]);
    let mut digest = [0u8; 32];
    for (bytes, word) in digest.as_chunks_mut::<4>().0.iter_mut().zip(state) {
        *bytes = word.to_be_bytes();
    }
    digest
}

/// The lowercase hex digits of `bytes`.
fn hex(bytes: &[u8; 32], out: &mut [u8; 64]) {
    let (halves, _) = bytes.as_chunks::<16>();
    let (digits, _) = out.as_chunks_mut::<32>();
    for (half, digits) in halves.iter().zip(digits) {
        *digits = hex16(half);
    }
}

/// The hex digits of 16 bytes.
#[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
#[inline(always)]
fn hex16(bytes: &[u8; 16]) -> [u8; 32] {
    // SAFETY: SSE2 is enabled for the whole build (the `cfg` above), so
    // every CPU this code runs on has it. Calling a `#[target_feature]`
    // function is safe only from one that enables the same feature itself
    // (the build's features do not count), and this one does not: it is
    // inlined into the encoder.
    unsafe { hex16_sse2(bytes) }
}

/// With SSE2, 16 bytes are split into nibbles, interleaved high first and
/// turned into digits with one compare: about twenty instructions where a
/// table takes three a byte. Encoding was 4% of a hashed event's time, a
/// third of SHA-256's compression (perf, `benches/ndjson.rs`).
#[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
#[target_feature(enable = "sse2")]
fn hex16_sse2(bytes: &[u8; 16]) -> [u8; 32] {
    use std::arch::x86_64::{
        __m128i, _mm_add_epi8, _mm_and_si128, _mm_cmpgt_epi8, _mm_cvtsi128_si64, _mm_set_epi64x,
        _mm_set1_epi8, _mm_srli_epi16, _mm_unpackhi_epi8, _mm_unpackhi_epi64, _mm_unpacklo_epi8,
    };
    let (words, _) = bytes.as_chunks::<8>();
    let v = _mm_set_epi64x(i64::from_le_bytes(words[1]), i64::from_le_bytes(words[0]));
    let nibble = _mm_set1_epi8(0x0f);
    let high = _mm_and_si128(_mm_srli_epi16::<4>(v), nibble);
    let low = _mm_and_si128(v, nibble);
    // A nibble n is the digit b'0' + n, and b'a' + (n - 10) past nine.
    let digits = |n: __m128i| {
        let past_nine = _mm_cmpgt_epi8(n, _mm_set1_epi8(9));
        let letters = _mm_and_si128(past_nine, _mm_set1_epi8((b'a' - b'0' - 10) as i8));
        _mm_add_epi8(_mm_add_epi8(n, _mm_set1_epi8(b'0' as i8)), letters)
    };
    let first = digits(_mm_unpacklo_epi8(high, low));
    let second = digits(_mm_unpackhi_epi8(high, low));
    let mut out = [0u8; 32];
    let (quarters, _) = out.as_chunks_mut::<8>();
    for (quarter, (half, upper)) in quarters.iter_mut().zip([
        (first, false),
        (first, true),
        (second, false),
        (second, true),
    ]) {
        let half = if upper {
            _mm_unpackhi_epi64(half, half)
        } else {
            half
        };
        *quarter = _mm_cvtsi128_si64(half).to_le_bytes();
    }
    out
}

/// The hex digits of 16 bytes, from a table of every byte's two digits.
#[cfg(not(all(target_arch = "x86_64", target_feature = "sse2")))]
fn hex16(bytes: &[u8; 16]) -> [u8; 32] {
    hex16_table(bytes)
}

#[cfg(any(test, not(all(target_arch = "x86_64", target_feature = "sse2"))))]
fn hex16_table(bytes: &[u8; 16]) -> [u8; 32] {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = [0u8; 32];
    for (pair, b) in out.as_chunks_mut::<2>().0.iter_mut().zip(bytes) {
        *pair = [DIGITS[usize::from(b >> 4)], DIGITS[usize::from(b & 0xf)]];
    }
    out
}

#[cfg(test)]
mod tests {
    use sha2::{Digest as _, Sha256};

    use super::*;

    /// The one-block path agrees with `sha2`'s hasher on every length up
    /// to two blocks and a half, across the one-block limit.
    #[test]
    fn one_block_digests_match_the_hasher() {
        let text: Vec<u8> = (0..160u32).map(|i| (i * 37 % 251) as u8).collect();
        for len in 0..text.len() {
            let expected: [u8; 32] = Sha256::digest(&text[..len]).into();
            assert_eq!(sha256(&text[..len]), expected, "length {len}");
        }
    }

    /// The SSE2 digits (where built) and the table's agree on every byte
    /// value in every position, and are lowercase hex.
    #[test]
    fn hex_digits_match_the_table() {
        for start in 0..=255u8 {
            let bytes: [u8; 16] = std::array::from_fn(|i| start.wrapping_add(i as u8 * 17));
            let digits = hex16(&bytes);
            assert_eq!(digits, hex16_table(&bytes));
            let expected: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
            assert_eq!(digits.as_slice(), expected.as_bytes());
        }
    }
}
