//! Request paths: which may be forwarded, and how one is written in the log.
//!
//! A dot segment (`/meta/../crm`, also percent-encoded, or behind an
//! encoded slash or a backslash, which some servers take for a slash) would
//! let a request reach another path upstream than the one its route was
//! chosen for; such a path is refused. In the log, segments shaped like a
//! personal identifier (an email, a phone number, a card number) are masked:
//! REST APIs put identifiers in paths (`/contacts/jane@example.com`).

use std::borrow::Cow;

/// Whether a segment of `path`, with `%2e`, `%2f` and `%5c` decoded and
/// `\` taken as `/`, is `.` or `..`.
pub(crate) fn has_dot_segment(path: &str) -> bool {
    let bytes = path.as_bytes();
    if memchr::memchr(b'.', bytes).is_none() && memchr::memchr(b'%', bytes).is_none() {
        return false;
    }
    let mut segment_dots = 0usize;
    let mut segment_other = false;
    let mut i = 0;
    let ends_dot_segment = |dots: usize, other: bool| !other && (dots == 1 || dots == 2);
    loop {
        let (byte, width) = match bytes.get(i) {
            None => (b'/', 1),
            Some(b'%') => match bytes.get(i + 1..i + 3) {
                Some([a, b]) => match (a.to_ascii_lowercase(), b.to_ascii_lowercase()) {
                    (b'2', b'e') => (b'.', 3),
                    (b'2', b'f') | (b'5', b'c') => (b'/', 3),
                    _ => (b'%', 1),
                },
                _ => (b'%', 1),
            },
            Some(b'\\') => (b'/', 1),
            // `..;x` is `..` to servers that cut path parameters (Tomcat).
            Some(b';') => (b'/', 1),
            Some(&other) => (other, 1),
        };
        match byte {
            b'/' => {
                if ends_dot_segment(segment_dots, segment_other) {
                    return true;
                }
                segment_dots = 0;
                segment_other = false;
            }
            b'.' => segment_dots += 1,
            _ => segment_other = true,
        }
        if i >= bytes.len() {
            return false;
        }
        i += width;
    }
}

/// `path` as the access log writes it: segments that look like an email,
/// a phone number or a card number replaced by `[email]`, `[phone]`,
/// `[card]`.
pub(crate) fn for_log(path: &str) -> Cow<'_, str> {
    if path.split('/').all(|segment| mask(segment).is_none()) {
        return Cow::Borrowed(path);
    }
    let masked: Vec<&str> = path
        .split('/')
        .map(|segment| mask(segment).unwrap_or(segment))
        .collect();
    Cow::Owned(masked.join("/"))
}

/// The mask for a segment that looks like an identifier. Runs on every
/// logged request, so it reads bytes in place and allocates nothing.
fn mask(segment: &str) -> Option<&'static str> {
    let bytes = segment.as_bytes();
    let encoded_at = bytes
        .windows(3)
        .any(|w| w[0] == b'%' && w[1] == b'4' && w[2] == b'0');
    if memchr::memchr(b'@', bytes).is_some() || encoded_at {
        return Some("[email]");
    }
    // Digits and the separators a phone or card number is written with
    // (`%20` a space, `%2B` a plus); anything else is no number.
    let mut digits = [0u8; 20];
    let (mut count, mut plus_first, mut separated) = (0usize, false, false);
    let mut i = 0;
    while i < bytes.len() {
        let byte = match (bytes[i], bytes.get(i + 1..i + 3)) {
            (b'%', Some([b'2', b'0'])) => b' ',
            (b'%', Some([b'2', b'b' | b'B'])) => b'+',
            (b'%', _) => return None,
            (byte, _) => byte,
        };
        i += if bytes[i] == b'%' { 3 } else { 1 };
        match byte {
            b'0'..=b'9' => {
                if count == digits.len() {
                    return None;
                }
                digits[count] = byte - b'0';
                count += 1;
            }
            b'+' if count == 0 => plus_first = true,
            b'-' | b' ' | b'(' | b')' | b'.' => separated = true,
            _ => return None,
        }
    }
    let digits = &digits[..count];
    if (13..=19).contains(&count) && crate::detect::luhn(digits) {
        return Some("[card]");
    }
    // A leading `+` or the separators of a written number: an ID of digits
    // alone (a pixel or an account) is left as it is.
    if (plus_first || separated) && (7..=15).contains(&count) {
        return Some("[phone]");
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dot_segments_are_found_however_written() {
        for path in [
            "/meta/../crm/x",
            "/meta/%2e%2e/%2e%2e/admin",
            "/meta/%2E./x",
            "/meta/.",
            "/meta/./x",
            "/meta/..%2fadmin",
            "/meta/..\\admin",
            "/meta/x/..",
            "/meta/..;/admin",
        ] {
            assert!(has_dot_segment(path), "{path}");
        }
        for path in [
            "/meta/v21.0/123/events",
            "/a/...",
            "/a/.well-known/x",
            "/a/b..c",
            "/a/%41",
            "/",
            "/100%",
        ] {
            assert!(!has_dot_segment(path), "{path}");
        }
    }

    #[test]
    fn identifiers_in_paths_are_masked_for_the_log() {
        assert_eq!(
            for_log("/crm/users/jane@example.com/events"),
            "/crm/users/[email]/events"
        );
        assert_eq!(for_log("/crm/u/jane%40example.com"), "/crm/u/[email]");
        assert_eq!(for_log("/crm/p/+1%20650%20555%201212"), "/crm/p/[phone]");
        assert_eq!(for_log("/crm/p/(650)555-1212"), "/crm/p/[phone]");
        assert_eq!(for_log("/crm/p/650.555.1212"), "/crm/p/[phone]");
        assert_eq!(for_log("/pay/4111111111111111/x"), "/pay/[card]/x");
        // Platform IDs stay readable.
        for path in [
            "/meta/v21.0/1234567890123456/events",
            "/ga4/mp/collect",
            "/v3/2024-01/x",
        ] {
            assert_eq!(for_log(path), path);
        }
    }
}
