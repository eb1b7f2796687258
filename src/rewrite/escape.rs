//! JSON string escapes, both ways. The scanner has already validated the
//! escapes it hands over, so unescaping cannot meet a malformed one; it still
//! answers `None` rather than panic if it ever did.

/// Appends the unescaped content of a JSON string (without its quotes).
pub(crate) fn unescape_into(raw: &[u8], out: &mut Vec<u8>) -> Option<()> {
    let mut i = 0;
    while i < raw.len() {
        let Some(offset) = memchr::memchr(b'\\', &raw[i..]) else {
            out.extend_from_slice(&raw[i..]);
            break;
        };
        out.extend_from_slice(&raw[i..i + offset]);
        i += offset + 1;
        let escaped = *raw.get(i)?;
        i += 1;
        let simple = match escaped {
            b'"' => b'"',
            b'\\' => b'\\',
            b'/' => b'/',
            b'b' => 0x08,
            b'f' => 0x0c,
            b'n' => b'\n',
            b'r' => b'\r',
            b't' => b'\t',
            b'u' => {
                let high = hex4(raw.get(i..i + 4)?)?;
                i += 4;
                let code = if (0xD800..0xDC00).contains(&high) {
                    let low = hex4(raw.get(i + 2..i + 6)?)?;
                    i += 6;
                    0x10000 + ((u32::from(high) - 0xD800) << 10) + (u32::from(low) - 0xDC00)
                } else {
                    u32::from(high)
                };
                let c = char::from_u32(code)?;
                let mut buf = [0u8; 4];
                out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                continue;
            }
            _ => return None,
        };
        out.push(simple);
    }
    Some(())
}

fn hex4(digits: &[u8]) -> Option<u16> {
    let text = std::str::from_utf8(digits).ok()?;
    u16::from_str_radix(text, 16).ok()
}

/// Appends `text` as the content of a JSON string (without quotes).
pub(crate) fn escape_into(text: &[u8], out: &mut impl bytes::BufMut) {
    // Digests and tokens need no escape: one copy.
    if find_string_special(text) == text.len() {
        out.put_slice(text);
        return;
    }
    let mut start = 0;
    for (i, &b) in text.iter().enumerate() {
        let escape: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0x00..=0x1f => b"",
            _ => continue,
        };
        out.put_slice(&text[start..i]);
        if escape.is_empty() {
            const HEX: &[u8; 16] = b"0123456789abcdef";
            out.put_slice(&[
                b'\\',
                b'u',
                b'0',
                b'0',
                HEX[usize::from(b >> 4)],
                HEX[usize::from(b & 0xf)],
            ]);
        } else {
            out.put_slice(escape);
        }
        start = i + 1;
    }
    out.put_slice(&text[start..]);
}

/// Index of the first `"`, `\` or control character, or `bytes.len()`.
/// Sixteen bytes at a time: strings are most of a JSON body, and most
/// member names and values end within their first sixteen bytes, so the
/// loop's exit is taken at its first test, a branch predicted well (eight
/// bytes at a time mispredicted about once a string: callgrind's branch
/// simulation, `benches/ndjson.rs`).
#[inline]
pub(crate) fn find_string_special(bytes: &[u8]) -> usize {
    let mut i = 0;
    while let Some(block) = bytes.get(i..i + 16) {
        let found = specials_in(block);
        if found != 0 {
            return i + found.trailing_zeros() as usize;
        }
        i += 16;
    }
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'"' || b == b'\\' || b < 0x20 {
            return i;
        }
        i += 1;
    }
    bytes.len()
}

/// A mask of the 16 bytes whose lowest set bit is the first `"`, `\\` or
/// control character (bit `i` for byte `i`), 0 when there is none.
#[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
#[inline(always)]
fn specials_in(block: &[u8]) -> u32 {
    // SAFETY: SSE2 is enabled for the whole build (the `cfg` above), so
    // every CPU this code runs on has it. Calling a `#[target_feature]`
    // function is safe only from one that enables the same feature itself
    // (the build's features do not count), and this one cannot: it is
    // inlined into the scanner's loop.
    unsafe { specials_sse2(block) }
}

/// With SSE2, a block is three compares and a mask: about a third of the
/// instructions of the word-at-a-time test, which was a tenth of the
/// pass-through's (callgrind, `benches/ndjson.rs`).
#[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
#[target_feature(enable = "sse2")]
#[inline]
fn specials_sse2(block: &[u8]) -> u32 {
    use std::arch::x86_64::{
        _mm_cmpeq_epi8, _mm_max_epu8, _mm_movemask_epi8, _mm_or_si128, _mm_set_epi64x,
        _mm_set1_epi8,
    };
    let half = |at: usize| {
        let mut word = [0u8; 8];
        word.copy_from_slice(&block[at..at + 8]);
        i64::from_le_bytes(word)
    };
    // Two halves that the compiler joins into one unaligned load.
    let x = _mm_set_epi64x(half(8), half(0));
    let quote = _mm_cmpeq_epi8(x, _mm_set1_epi8(b'"' as i8));
    let backslash = _mm_cmpeq_epi8(x, _mm_set1_epi8(b'\\' as i8));
    // `max(x, 0x1f) == 0x1f` exactly when x <= 0x1f, unsigned.
    let control = _mm_cmpeq_epi8(_mm_max_epu8(x, _mm_set1_epi8(0x1f)), _mm_set1_epi8(0x1f));
    _mm_movemask_epi8(_mm_or_si128(_mm_or_si128(quote, backslash), control)) as u32
}

#[cfg(not(all(target_arch = "x86_64", target_feature = "sse2")))]
#[inline(always)]
fn specials_in(block: &[u8]) -> u32 {
    specials_word(block)
}

/// The same mask, a word of 16 bytes at a time, where there is no SSE2;
/// only the lowest special's bit, which is all `find_string_special`
/// reads.
#[cfg(any(test, not(all(target_arch = "x86_64", target_feature = "sse2"))))]
#[inline(always)]
fn specials_word(block: &[u8]) -> u32 {
    const ONES: u128 = u128::from_le_bytes([1; 16]);
    const HIGHS: u128 = u128::from_le_bytes([0x80; 16]);
    let zero_in = |v: u128| v.wrapping_sub(ONES) & !v & HIGHS;
    let mut block_bytes = [0u8; 16];
    block_bytes.copy_from_slice(block);
    let x = u128::from_le_bytes(block_bytes);
    let quote = x ^ (ONES * u128::from(b'"'));
    let backslash = x ^ (ONES * u128::from(b'\\'));
    let control = x.wrapping_sub(ONES * 0x20) & !x & HIGHS;
    let found = zero_in(quote) | zero_in(backslash) | control;
    if found == 0 {
        return 0;
    }
    // Only the lowest special byte's bit is exact (a borrow may set bits
    // above it): its bit alone.
    1 << (found.trailing_zeros() / 8)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unescape(raw: &str) -> Option<String> {
        let mut out = Vec::new();
        unescape_into(raw.as_bytes(), &mut out)?;
        String::from_utf8(out).ok()
    }

    #[test]
    fn unescapes_every_form() {
        assert_eq!(unescape(r#"\u0065m"#).as_deref(), Some("em"));
        assert_eq!(
            unescape(r#"a\"b\\c\/d\b\f\n\r\t"#).as_deref(),
            Some("a\"b\\c/d\u{8}\u{c}\n\r\t")
        );
        assert_eq!(unescape(r#"\ud83d\ude00!"#).as_deref(), Some("😀!"));
        assert_eq!(unescape("plain é").as_deref(), Some("plain é"));
    }

    #[test]
    fn escape_round_trips_through_serde_json() -> Result<(), serde_json::Error> {
        let text = "q\"b\\s\n\u{1}é😀";
        let mut out = b"\"".to_vec();
        escape_into(text.as_bytes(), &mut out);
        out.push(b'"');
        let back: String = serde_json::from_slice(&out)?;
        assert_eq!(back, text);
        Ok(())
    }

    #[test]
    fn finds_string_specials_at_every_position() {
        // Across the first block of sixteen, the second, and the bytes
        // after the last whole block; among bytes that are not specials
        // whatever their high bit (borrows in the word must not spill).
        for (len, background) in (0..40).flat_map(|len| [(len, b'a'), (len, 0xff), (len, b' ')]) {
            for at in 0..len {
                for special in [b'"', b'\\', 0x00, 0x1f] {
                    let mut bytes = vec![background; len];
                    bytes[at] = special;
                    if at + 1 < len {
                        bytes[at + 1] = b'"';
                    }
                    assert_eq!(
                        find_string_special(&bytes),
                        at,
                        "len {len} at {at} byte {special}"
                    );
                }
            }
            assert_eq!(find_string_special(&vec![0xC3u8; len]), len);
            assert_eq!(find_string_special(&vec![0x20u8; len]), len);
            assert_eq!(find_string_special(&vec![0x7fu8; len]), len);
        }
    }

    /// Both ways of finding a block's first special agree, on every byte
    /// value at every position among bytes of every class.
    #[test]
    #[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
    fn word_and_sse2_blocks_agree() {
        let first = |mask: u32| mask.trailing_zeros();
        for background in [b'a', b' ', 0x1f, 0x20, 0x7f, 0x80, 0xC3, 0xff, b'"'] {
            for at in 0..16 {
                for b in 0..=255u8 {
                    let mut block = [background; 16];
                    block[at] = b;
                    assert_eq!(
                        first(specials_in(&block)),
                        first(specials_word(&block)),
                        "byte {b:#x} at {at} among {background:#x}"
                    );
                }
            }
        }
    }
}
