//! The one percent-decoder of scrim, for form bodies, query strings and
//! consent signals alike: strict, so that every part of scrim reads a name
//! the same way. `+` is a space; `%` must be followed by two hex digits
//! (`%+a` is an error, where a parser of signed numbers would read 0x0a).

/// Why a form or query field with `;NAME=` inside is refused, where rules
/// treat NAME otherwise than the field around it: servers that split fields
/// at `;` as well as `&` (the W3C's old recommendation; Python's `cgi`
/// before 3.9.2, some Java containers) would read a field there that the
/// rules never saw.
pub const SEMICOLON_REASON: &str = "`;` starts a field name that a rule selects: some servers split fields at `;`, \
     so this field would reach them unrewritten; percent-encode the `;` (%3B)";

/// Decodes `+` and `%XX`; `None` on a `%` not followed by two hex digits.
pub fn decode(raw: &[u8]) -> Option<Vec<u8>> {
    decode_with(raw, true)
}

/// Decodes `%XX` only, as in a URL's path, where `+` is itself.
pub fn decode_path(raw: &[u8]) -> Option<Vec<u8>> {
    decode_with(raw, false)
}

fn decode_with(raw: &[u8], plus_is_space: bool) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        match raw[i] {
            b'+' if plus_is_space => out.push(b' '),
            b'%' => {
                let high = hex_digit(*raw.get(i + 1)?)?;
                let low = hex_digit(*raw.get(i + 2)?)?;
                out.push(high << 4 | low);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    Some(out)
}

fn hex_digit(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// The raw name and value of each field of a form or query string, in
/// order (empty fields skipped; a field without `=` has an empty value).
pub fn fields(raw: &[u8]) -> impl Iterator<Item = (&[u8], &[u8])> {
    raw.split(|b| *b == b'&')
        .filter(|field| !field.is_empty())
        .map(|field| match memchr::memchr(b'=', field) {
            Some(at) => (&field[..at], &field[at + 1..]),
            None => (field, &b""[..]),
        })
}

/// Encodes for a form or query: unreserved bytes stay, a space is `+`.
pub fn encode(value: &[u8]) -> String {
    form_urlencoded::byte_serialize(value).collect()
}

/// Encodes a segment of a URL's path: unreserved bytes stay, a space is
/// `%20` (a `+` there is a plus).
pub fn encode_path(value: &[u8]) -> String {
    encode(value).replace('+', "%20")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_strictly() {
        assert_eq!(decode(b"a+b%40c%2B").as_deref(), Some(&b"a b@c+"[..]));
        for bad in [&b"%+a"[..], b"%-1", b"% 1", b"%4", b"%", b"%zz", b"%4g"] {
            assert_eq!(decode(bad), None, "{}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn splits_fields() {
        assert_eq!(
            fields(b"a=1&&b&c=%41=").collect::<Vec<_>>(),
            vec![(&b"a"[..], &b"1"[..]), (b"b", b""), (b"c", b"%41=")]
        );
    }
}
