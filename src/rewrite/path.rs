//! Paths in error messages and reports. A member name is request data too (a
//! body can be keyed by email address), so only names that look like
//! identifiers are shown; anything else is `[?]`.

/// Longest member name shown in a path.
pub(crate) const MAX_KEY_SHOWN: usize = 64;

/// Names with more digits than this are hidden even when they look like
/// identifiers: a card, phone or social security number is letters-free.
const MAX_DIGITS_SHOWN: usize = 6;

pub(crate) fn push_key(path: &mut String, key: &[u8]) {
    let shown = !key.is_empty()
        && key.len() <= MAX_KEY_SHOWN
        && key.iter().filter(|b| b.is_ascii_digit()).count() <= MAX_DIGITS_SHOWN;
    let identifier = shown
        && key
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'$'));
    let bracketed = shown
        && key
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'[' | b']' | b' '));
    match std::str::from_utf8(key) {
        Ok(name) if identifier => {
            path.push('.');
            path.push_str(name);
        }
        Ok(name) if bracketed => {
            path.push_str("['");
            path.push_str(name);
            path.push_str("']");
        }
        _ => path.push_str("[?]"),
    }
}

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
}
