//! Phone numbers in free text: `+CC …` anywhere (also `%2B` in a URL), and
//! numbers of the route's region written with separators (`(650) 253-0000`),
//! each held valid by libphonenumber's metadata. A bare run of digits is an
//! id, a timestamp or an amount far more often than a phone, so it is not
//! one.

use super::{stands_apart, starts_apart};

fn is_separator(b: u8) -> bool {
    matches!(b, b' ' | b'-' | b'.' | b'(' | b')')
}

/// The digit counts (bit N: N digits) a number of `region` may be written
/// with nationally: each length its metadata allows, plus room for a
/// national prefix or a country code written without `+`.
pub(super) fn national_lengths(region: Option<phonenumber::country::Id>) -> u32 {
    let Some(region) = region else {
        return 0;
    };
    let metadata = phonenumber::metadata::DATABASE.by_id(region.as_ref());
    let lengths = metadata.map_or(&[][..], |m| m.descriptors().general().possible_length());
    if lengths.is_empty() {
        // Nothing known: every length the shape allows.
        return (7..=15).fold(0, |mask, n| mask | 1 << n);
    }
    lengths
        .iter()
        .flat_map(|&length| length..=length + 3)
        .filter(|&n| n < 32)
        .fold(0, |mask, n| mask | 1 << n)
}

pub(super) fn find(
    text: &str,
    region: Option<phonenumber::country::Id>,
    national_lengths: u32,
    out: &mut Vec<(usize, usize)>,
) {
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let (plus, body) = if bytes[i] == b'+' {
            (true, i + 1)
        } else if bytes[i..].starts_with(b"%2B") || bytes[i..].starts_with(b"%2b") {
            (true, i + 3)
        } else if (bytes[i].is_ascii_digit() || bytes[i] == b'(') && starts_apart(bytes, i) {
            (false, i)
        } else {
            // A national number may still start at a later group.
            i += 1;
            continue;
        };
        let Some(run) = digit_run(bytes, body) else {
            i = body.max(i + 1);
            continue;
        };
        if let Some(end) = phone_at(bytes, i, plus, body, run, region, national_lengths) {
            out.push((i, end));
            i = end;
        } else if plus {
            // Anything starting inside the run follows a digit: not apart.
            i = run.end.max(i + 1);
        } else {
            // A national number may start at a later group (`qty 2 (650) …`).
            i = super::numbers::next_group(bytes, i, run.end);
        }
    }
}

/// The digits and separators from `from`: where the last digit ends, how
/// many digits, and whether separators split them.
#[derive(Clone, Copy)]
struct Run {
    end: usize,
    digits: usize,
    separated: bool,
}

fn digit_run(text: &[u8], from: usize) -> Option<Run> {
    let mut run = Run {
        end: from,
        digits: 0,
        separated: false,
    };
    let mut separators = 0;
    for (offset, &b) in text[from..].iter().enumerate() {
        if b.is_ascii_digit() {
            if separators > 0 && run.digits > 0 {
                run.separated = true;
            }
            separators = 0;
            run.digits += 1;
            run.end = from + offset + 1;
        } else if is_separator(b) && separators < 2 {
            separators += 1;
        } else {
            break;
        }
        if run.digits > 15 {
            return None;
        }
    }
    (run.digits > 0).then_some(run)
}

fn phone_at(
    text: &[u8],
    start: usize,
    plus: bool,
    body: usize,
    run: Run,
    region: Option<phonenumber::country::Id>,
    national_lengths: u32,
) -> Option<usize> {
    // `2026-12-02 10:00`: a date, and a time after it.
    let whole = &text[body..run.end];
    let dated = whole.len() >= 10
        && whole[..4].iter().all(u8::is_ascii_digit)
        && matches!(whole[4], b'-' | b'.' | b'/');
    let timed = text.get(run.end) == Some(&b':');
    if dated || timed || (!plus && dotted_quad(whole)) {
        return None;
    }
    // The run may go on past the number (`+1 415 555 2671 2 items`): each
    // end of a group of digits is tried, the longest first.
    let ends = (body + 1..=run.end).rev().filter(|&end| {
        text[end - 1].is_ascii_digit() && (end == run.end || is_separator(text[end]))
    });
    for end in ends {
        let candidate = &text[body..end];
        let digits = candidate.iter().filter(|b| b.is_ascii_digit()).count();
        let separated = candidate
            .iter()
            .skip_while(|b| !b.is_ascii_digit())
            .any(|b| is_separator(*b));
        let shaped = if plus {
            (8..=15).contains(&digits)
        } else {
            region.is_some()
                && separated
                && (7..=15).contains(&digits)
                && national_lengths & (1 << digits) != 0
        };
        if !shaped {
            if digits < 7 {
                return None;
            }
            continue;
        }
        if !stands_apart(text, start, end) {
            continue;
        }
        let Ok(written) = std::str::from_utf8(candidate) else {
            continue;
        };
        let number = if plus {
            phonenumber::parse(None, format!("+{written}"))
        } else {
            phonenumber::parse(region, written)
        };
        if number.ok().is_some_and(|n| phonenumber::is_valid(&n)) {
            return Some(end);
        }
    }
    None
}

/// `203.0.113.77`: four groups of at most three digits split by dots is
/// an IPv4 address, which no region writes a phone number as.
fn dotted_quad(run: &[u8]) -> bool {
    let mut groups = 0;
    for group in run.split(|&b| b == b'.') {
        groups += 1;
        if group.is_empty() || group.len() > 3 || !group.iter().all(u8::is_ascii_digit) {
            return false;
        }
    }
    groups == 4
}

#[cfg(test)]
mod tests {
    use super::*;
    use phonenumber::country::Id;

    fn found(text: &str, region: Option<Id>) -> Vec<&str> {
        let mut out = Vec::new();
        find(text, region, national_lengths(region), &mut out);
        out.iter().map(|&(s, e)| &text[s..e]).collect()
    }

    #[test]
    fn finds_international_and_separated_national_numbers() {
        assert_eq!(found("call +1 650-253-0000 now", None), ["+1 650-253-0000"]);
        assert_eq!(found("tel=%2B442079460958&x", None), ["%2B442079460958"]);
        assert_eq!(found("(650) 253-0000", Some(Id::US)), ["(650) 253-0000"]);
        assert_eq!(found("at 650.253.0000.", Some(Id::US)), ["650.253.0000"]);
        assert_eq!(found("01 42 68 53 00", Some(Id::FR)), ["01 42 68 53 00"]);
        assert_eq!(found("+1 415 555 2671 2 items", None), ["+1 415 555 2671"]);
        assert_eq!(found("(650) 253-0000 3x", Some(Id::US)), ["(650) 253-0000"]);
        assert_eq!(found("qty 2 650-253-0000", Some(Id::US)), ["650-253-0000"]);
    }

    #[test]
    fn leaves_ids_amounts_and_dates() {
        for text in [
            "6502530000",
            "ORD-650-253-0000",
            "2026-12-02 10:00:00",
            "203.0.113.77",
            "203.0.249.199",
            "12.50",
            "+1 650",
            "v650.253.0000",
        ] {
            assert_eq!(found(text, Some(Id::US)), Vec::<&str>::new(), "{text}");
        }
        // No region: only international numbers.
        assert_eq!(found("(650) 253-0000", None), Vec::<&str>::new());
    }
}
