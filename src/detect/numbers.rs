//! Identifiers with a check of their own: payment card numbers (issuer
//! prefix and Luhn), IBANs (country length and mod 97), US social security
//! numbers (the SSA's ranges), and IP addresses.

use std::net::{Ipv4Addr, Ipv6Addr};

use super::{stands_apart, starts_apart};

/// The most digits a card number has.
const CARD_DIGITS: usize = 19;

/// Digits from `from`, single spaces or dashes allowed between groups, up
/// to one more than a card holds: the end of the last digit, the digits'
/// values, and how many.
fn grouped_digits(text: &[u8], from: usize) -> (usize, [u8; CARD_DIGITS + 1], usize) {
    let mut digits = [0; CARD_DIGITS + 1];
    let mut count = 0;
    let mut end = from;
    let mut i = from;
    while i < text.len() && count < digits.len() {
        match text[i] {
            b'0'..=b'9' => {
                digits[count] = text[i] - b'0';
                count += 1;
                end = i + 1;
            }
            b' ' | b'-' if i > from && text[i - 1].is_ascii_digit() => {}
            _ => break,
        }
        i += 1;
    }
    (end, digits, count)
}

/// Where the group of digits after the one at `from` starts, within a run
/// of grouped digits ending at `end` (or `end`).
pub(super) fn next_group(text: &[u8], from: usize, end: usize) -> usize {
    (from + 1..end)
        .find(|&at| text[at].is_ascii_digit() && !text[at - 1].is_ascii_digit())
        .unwrap_or(end.max(from + 1))
}

/// The Luhn check over digit values (0 to 9), the last one the check digit.
pub(crate) fn luhn(digits: &[u8]) -> bool {
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &d)| {
            let d = u32::from(d);
            if i % 2 == 1 {
                let doubled = d * 2;
                if doubled > 9 { doubled - 9 } else { doubled }
            } else {
                d
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

/// Whether the digits start like a card of a known network, at a length
/// it issues. Visa's old 13-digit numbers are left out: a 13-digit EAN of
/// a German product starts with 4 too.
fn issued(digits: &[u8]) -> bool {
    let prefix = |n: usize| {
        digits
            .iter()
            .take(n)
            .fold(0u32, |v, &d| v * 10 + u32::from(d))
    };
    let len = digits.len();
    match digits.first() {
        Some(4) => len == 16 || len == 19,
        Some(5) => (51..=55).contains(&prefix(2)) && len == 16,
        Some(2) => (2221..=2720).contains(&prefix(4)) && len == 16,
        Some(3) => {
            (matches!(prefix(2), 34 | 37) && len == 15)
                || ((3528..=3589).contains(&prefix(4)) && (16..=19).contains(&len))
        }
        Some(6) => {
            (prefix(4) == 6011 || prefix(2) == 65 || (644..=649).contains(&prefix(3)))
                && (16..=19).contains(&len)
                || prefix(2) == 62 && (16..=19).contains(&len)
        }
        _ => false,
    }
}

pub(super) fn find_cards(text: &str, out: &mut Vec<(usize, usize)>) {
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        // A digit after a digit is not apart either.
        if !bytes[i].is_ascii_digit() || !starts_apart(bytes, i) {
            i += 1;
            continue;
        }
        let (end, digits, count) = grouped_digits(bytes, i);
        let digits = &digits[..count];
        // The run may go on past the number (`4111 1111 1111 1111 2x`):
        // each end of a group is tried, the longest first.
        let found = (i + 1..=end).rev().find(|&to| {
            let group_end =
                bytes[to - 1].is_ascii_digit() && (to == end || matches!(bytes[to], b' ' | b'-'));
            if !group_end {
                return false;
            }
            let count = bytes[i..to].iter().filter(|b| b.is_ascii_digit()).count();
            let digits = &digits[..count.min(digits.len())];
            (13..=19).contains(&count)
                && issued(digits)
                && luhn(digits)
                && stands_apart(bytes, i, to)
        });
        match found {
            Some(to) => {
                out.push((i, to));
                i = to;
            }
            // The number may start at a later group (`order 7 4111 …`).
            None => i = next_group(bytes, i, end),
        }
    }
}

/// IBAN lengths by country (ISO 13616, SWIFT's registry).
const IBAN_LENGTHS: &[(&[u8; 2], usize)] = &[
    (b"AD", 24),
    (b"AE", 23),
    (b"AL", 28),
    (b"AT", 20),
    (b"AZ", 28),
    (b"BA", 20),
    (b"BE", 16),
    (b"BG", 22),
    (b"BH", 22),
    (b"BR", 29),
    (b"BY", 28),
    (b"CH", 21),
    (b"CR", 22),
    (b"CY", 28),
    (b"CZ", 24),
    (b"DE", 22),
    (b"DK", 18),
    (b"DO", 28),
    (b"EE", 20),
    (b"EG", 29),
    (b"ES", 24),
    (b"FI", 18),
    (b"FO", 18),
    (b"FR", 27),
    (b"GB", 22),
    (b"GE", 22),
    (b"GI", 23),
    (b"GL", 18),
    (b"GR", 27),
    (b"GT", 28),
    (b"HR", 21),
    (b"HU", 28),
    (b"IE", 22),
    (b"IL", 23),
    (b"IQ", 23),
    (b"IS", 26),
    (b"IT", 27),
    (b"JO", 30),
    (b"KW", 30),
    (b"KZ", 20),
    (b"LB", 28),
    (b"LC", 32),
    (b"LI", 21),
    (b"LT", 20),
    (b"LU", 20),
    (b"LV", 21),
    (b"MC", 27),
    (b"MD", 24),
    (b"ME", 22),
    (b"MK", 19),
    (b"MR", 27),
    (b"MT", 31),
    (b"MU", 30),
    (b"NL", 18),
    (b"NO", 15),
    (b"PK", 24),
    (b"PL", 28),
    (b"PS", 29),
    (b"PT", 25),
    (b"QA", 29),
    (b"RO", 24),
    (b"RS", 22),
    (b"SA", 24),
    (b"SC", 31),
    (b"SE", 24),
    (b"SI", 19),
    (b"SK", 24),
    (b"SM", 27),
    (b"ST", 25),
    (b"SV", 28),
    (b"TL", 23),
    (b"TN", 24),
    (b"TR", 26),
    (b"UA", 29),
    (b"VA", 22),
    (b"VG", 24),
    (b"XK", 20),
];

/// The longest IBAN of any country (ISO 13616 caps it at 34).
const IBAN_MOST: usize = 34;

fn iban_length(country: &[u8]) -> Option<usize> {
    IBAN_LENGTHS
        .iter()
        .find(|(code, _)| code.as_slice() == country)
        .map(|&(_, len)| len)
}

/// ISO 7064 mod 97-10 over the IBAN moved four characters left, letters as
/// 10 to 35.
fn iban_checks(iban: &[u8]) -> bool {
    let mut remainder = 0u32;
    for &b in iban[4..].iter().chain(&iban[..4]) {
        let value = match b {
            b'0'..=b'9' => u32::from(b - b'0'),
            b'A'..=b'Z' => u32::from(b - b'A') + 10,
            _ => return false,
        };
        remainder = if value >= 10 {
            (remainder * 100 + value) % 97
        } else {
            (remainder * 10 + value) % 97
        };
    }
    remainder == 1
}

pub(super) fn find_ibans(text: &str, out: &mut Vec<(usize, usize)>) {
    let bytes = text.as_bytes();
    let mut i = 0;
    while i + 4 <= bytes.len() {
        let starts = bytes[i].is_ascii_uppercase()
            && bytes[i + 1].is_ascii_uppercase()
            && bytes[i + 2].is_ascii_digit()
            && bytes[i + 3].is_ascii_digit()
            && (i == 0 || !super::is_word(bytes[i - 1]));
        let Some(length) = starts.then(|| iban_length(&bytes[i..i + 2])).flatten() else {
            i += 1;
            continue;
        };
        // Written whole, or in groups of four split by single spaces.
        let mut compact = [0; IBAN_MOST];
        let mut count = 0;
        let mut end = i;
        let mut j = i;
        while j < bytes.len() && count < length {
            let b = bytes[j];
            if b.is_ascii_uppercase() || b.is_ascii_digit() {
                compact[count] = b;
                count += 1;
                end = j + 1;
            } else if !(b == b' ' && count.is_multiple_of(4) && j + 1 < bytes.len()) {
                break;
            }
            j += 1;
        }
        if count == length && iban_checks(&compact[..count]) && stands_apart(bytes, i, end) {
            out.push((i, end));
            i = end;
        } else {
            i += 1;
        }
    }
}

pub(super) fn find_ssns(text: &str, out: &mut Vec<(usize, usize)>) {
    let bytes = text.as_bytes();
    let mut from = 0;
    while let Some(found) = memchr::memchr(b'-', &bytes[from..]) {
        let dash = from + found;
        from = dash + 1;
        let Some(start) = dash.checked_sub(3) else {
            continue;
        };
        let end = start + 11;
        let Some(candidate) = bytes.get(start..end) else {
            break;
        };
        let shaped = candidate.iter().enumerate().all(|(k, &b)| match k {
            3 | 6 => b == b'-',
            _ => b.is_ascii_digit(),
        });
        if !shaped || !stands_apart(bytes, start, end) {
            continue;
        }
        let number = |range: std::ops::Range<usize>| {
            candidate[range]
                .iter()
                .fold(0u32, |v, &b| v * 10 + u32::from(b - b'0'))
        };
        let (area, group, serial) = (number(0..3), number(4..6), number(7..11));
        if area != 0 && area != 666 && area < 900 && group != 0 && serial != 0 {
            out.push((start, end));
            from = end;
        }
    }
}

pub(super) fn find_ips(text: &str, out: &mut Vec<(usize, usize)>) {
    let bytes = text.as_bytes();
    let is_ip_char = |b: u8| b.is_ascii_hexdigit() || b == b'.' || b == b':';
    let mut i = 0;
    while i < bytes.len() {
        if !is_ip_char(bytes[i]) || (i > 0 && is_ip_char(bytes[i - 1])) {
            i += 1;
            continue;
        }
        let mut end = i + bytes[i..].iter().take_while(|&&b| is_ip_char(b)).count();
        // A sentence's full stop.
        while end > i && bytes[end - 1] == b'.' {
            end -= 1;
        }
        let candidate = &text[i..end];
        let ip = candidate.parse::<Ipv4Addr>().is_ok()
            || (candidate.contains("::") || candidate.matches(':').count() == 7)
                && candidate.parse::<Ipv6Addr>().is_ok();
        if ip && stands_apart(bytes, i, end) {
            out.push((i, end));
        }
        i = end.max(i + 1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found(find: fn(&str, &mut Vec<(usize, usize)>), text: &str) -> Vec<String> {
        let mut out = Vec::new();
        find(text, &mut out);
        out.iter().map(|&(s, e)| text[s..e].to_owned()).collect()
    }

    #[test]
    fn cards_need_an_issuer_and_luhn() {
        assert_eq!(found(find_cards, "4111111111111111"), ["4111111111111111"]);
        assert_eq!(
            found(find_cards, "pay 5555-5555-5555-4444."),
            ["5555-5555-5555-4444"]
        );
        assert_eq!(
            found(find_cards, "amex 3782 822463 10005"),
            ["3782 822463 10005"]
        );
        assert!(found(find_cards, "4111111111111112").is_empty(), "Luhn");
        assert!(found(find_cards, "9780306406157").is_empty(), "an ISBN");
        assert!(found(find_cards, "1764400000123").is_empty(), "a timestamp");
        assert!(
            found(find_cards, "sku-4111111111111111").is_empty(),
            "an id"
        );
    }

    #[test]
    fn ibans_need_their_length_and_check_digits() {
        assert_eq!(
            found(find_ibans, "IBAN: DE89 3704 0044 0532 0130 00"),
            ["DE89 3704 0044 0532 0130 00"]
        );
        assert_eq!(
            found(find_ibans, "GB29NWBK60161331926819"),
            ["GB29NWBK60161331926819"]
        );
        assert!(
            found(find_ibans, "DE89370400440532013001").is_empty(),
            "mod 97"
        );
        assert!(
            found(find_ibans, "DE8937040044053201300").is_empty(),
            "length"
        );
    }

    #[test]
    fn every_iban_fits_the_buffer() {
        assert!(IBAN_LENGTHS.iter().all(|&(_, len)| len <= IBAN_MOST));
    }

    #[test]
    fn ssns_in_assigned_ranges_only() {
        assert_eq!(found(find_ssns, "ssn 078-05-1120"), ["078-05-1120"]);
        for no in [
            "000-12-3456",
            "666-12-3456",
            "900-12-3456",
            "123-00-4567",
            "123-45-0000",
            "A123-45-6789",
            "2026-12-0212",
        ] {
            assert!(found(find_ssns, no).is_empty(), "{no}");
        }
    }

    #[test]
    fn ips_v4_and_v6() {
        assert_eq!(found(find_ips, "from 203.0.113.77."), ["203.0.113.77"]);
        assert_eq!(found(find_ips, "[2001:db8::1]"), ["2001:db8::1"]);
        assert!(found(find_ips, "10:00:00").is_empty());
        assert!(found(find_ips, "v1.2.3.4").is_empty());
    }
}
