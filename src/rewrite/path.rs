//! Paths in error messages and reports. A member name is request data too (a
//! body can be keyed by email address), so only names that look like
//! identifiers are shown; anything else is `[?]`.

/// Longest member name shown in a path.
pub(crate) const MAX_KEY_SHOWN: usize = 64;

/// Names with more digits than this are hidden even when they look like
/// identifiers: a card, phone or social security number is letters-free.
const MAX_DIGITS_SHOWN: usize = 6;

/// How a member name shows in a path.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Shown {
    /// `.name`
    Identifier,
    /// `['name']`
    Bracketed,
    /// `[?]`
    Hidden,
}

fn shown(key: &[u8]) -> Shown {
    if key.is_empty() || key.len() > MAX_KEY_SHOWN {
        return Shown::Hidden;
    }
    // One pass: a name is read for every member of a body.
    let (mut digits, mut identifier, mut bracketed) = (0, true, true);
    for &b in key {
        digits += usize::from(b.is_ascii_digit());
        let word = b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-');
        identifier &= word || b == b'$';
        bracketed &= word || matches!(b, b'[' | b']' | b' ');
    }
    match (digits > MAX_DIGITS_SHOWN, identifier, bracketed) {
        (true, _, _) | (false, false, false) => Shown::Hidden,
        (false, true, _) => Shown::Identifier,
        (false, false, true) => Shown::Bracketed,
    }
}

pub(crate) fn push_key(path: &mut String, key: &[u8]) {
    // Shown names are ASCII, by `shown`.
    let name = std::str::from_utf8(key).unwrap_or_default();
    match shown(key) {
        Shown::Identifier => {
            path.push('.');
            path.push_str(name);
        }
        Shown::Bracketed => {
            path.push_str("['");
            path.push_str(name);
            path.push_str("']");
        }
        Shown::Hidden => path.push_str("[?]"),
    }
}

/// The hash of an empty path: [`hash_bytes`] goes on from here.
pub(crate) const HASH_START: u64 = 0xcbf2_9ce4_8422_2325;

/// `hash` (of a path so far) continued over `bytes`: FNV-1a, so that a
/// path hashed piece by piece hashes as its whole text.
pub(crate) fn hash_bytes(hash: u64, bytes: &[u8]) -> u64 {
    bytes.iter().fold(hash, |hash, &b| {
        (hash ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// `hash` continued over what [`push_key`] would add for `key`.
pub(crate) fn hash_key(hash: u64, key: &[u8]) -> u64 {
    // Most names are identifiers: hashed as `.name` in the pass that
    // tells (one table lookup a byte), and hashed again otherwise.
    let mut named = hash_bytes(hash, b".");
    let mut kinds = IDENTIFIER_BYTE;
    let mut digits = 0;
    for &b in key {
        named = (named ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        let kind = NAME_BYTES[usize::from(b)];
        kinds &= kind;
        digits += usize::from(kind & DIGIT_BYTE != 0);
    }
    let identifier = kinds & IDENTIFIER_BYTE != 0 && !key.is_empty() && key.len() <= MAX_KEY_SHOWN;
    if identifier && digits <= MAX_DIGITS_SHOWN {
        return named;
    }
    match shown(key) {
        Shown::Identifier => hash_bytes(hash_bytes(hash, b"."), key),
        Shown::Bracketed => hash_bytes(hash_bytes(hash_bytes(hash, b"['"), key), b"']"),
        Shown::Hidden => hash_bytes(hash, b"[?]"),
    }
}

/// A byte an identifier-like name ([`Shown::Identifier`]) may hold.
const IDENTIFIER_BYTE: u8 = 1;
const DIGIT_BYTE: u8 = 2;

/// The kinds of each byte, as [`hash_key`] reads a name.
const NAME_BYTES: [u8; 256] = {
    let mut table = [0; 256];
    let mut b = 0;
    while b < 256 {
        let byte = b as u8;
        if byte.is_ascii_alphanumeric() || matches!(byte, b'_' | b'-' | b'$') {
            table[b] |= IDENTIFIER_BYTE;
        }
        if byte.is_ascii_digit() {
            table[b] |= DIGIT_BYTE;
        }
        b += 1;
    }
    table
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shows_identifiers_and_hides_the_rest() {
        let mut path = String::from("$");
        push_key(&mut path, b"user_data");
        push_key(&mut path, b"user_data[em]");
        push_key(&mut path, b"john@example.com");
        push_key(&mut path, b"");
        push_key(&mut path, b"123-45-6789");
        push_key(&mut path, b"item_123456");
        assert_eq!(path, "$.user_data['user_data[em]'][?][?][?].item_123456");
    }

    #[test]
    fn a_path_hashed_by_pieces_hashes_as_its_text() {
        let long = [b'a'; MAX_KEY_SHOWN + 1];
        let keys: [&[u8]; 10] = [
            b"user_data",
            b"user_data[em]",
            b"john@example.com",
            b"x",
            b"",
            b"$ref",
            b"a-1_B",
            b"id1234567",
            b"zo\xc3\xab",
            &long,
        ];
        let mut path = String::from("$");
        let mut hash = hash_bytes(HASH_START, b"$");
        for key in keys {
            push_key(&mut path, key);
            hash = hash_key(hash, key);
        }
        assert_eq!(hash, hash_bytes(HASH_START, path.as_bytes()));
    }
}
