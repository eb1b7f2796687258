//! Email addresses in free text and in URLs: `jane@example.com`,
//! `jane%40example.com`, `jane%2Bads%40example.com`.

use super::is_word;

/// Characters of a local part as apps write them (RFC 5322 allows more,
/// but `=`, `/` and `&` would swallow the `email=` of a query string).
fn is_local(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'+' | b'-') || b >= 0x80
}

fn is_label(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-' || b >= 0x80
}

/// The local-part character a `%XX` escape ending at `end` stands for.
fn escaped_local(text: &[u8], end: usize) -> bool {
    end >= 3
        && text[end - 3] == b'%'
        && matches!(
            &text[end - 2..end],
            b"2B" | b"2b" | b"2E" | b"2e" | b"5F" | b"5f" | b"2D" | b"2d"
        )
}

/// File names that look like addresses: `logo@2x.png`.
const FILE_SUFFIXES: &[&str] = &[
    "png", "jpg", "jpeg", "gif", "svg", "webp", "avif", "ico", "css", "js", "html", "htm", "php",
    "pdf", "json", "xml", "txt", "mp4", "webm", "woff", "woff2",
];

pub(super) fn find(text: &str, out: &mut Vec<(usize, usize)>) {
    let bytes = text.as_bytes();
    let mut from = 0;
    while let Some(found) = memchr::memchr2(b'@', b'%', &bytes[from..]) {
        let at = from + found;
        from = at + 1;
        let domain_start = if bytes[at] == b'@' {
            at + 1
        } else if bytes[at + 1..].starts_with(b"40") {
            at + 3
        } else {
            continue;
        };
        let Some(start) = local_start(bytes, at) else {
            continue;
        };
        if let Some(end) = domain_end(bytes, domain_start) {
            out.push((start, end));
            from = end;
        }
    }
}

/// Where the local part ending at `at` starts, if it is one.
fn local_start(text: &[u8], at: usize) -> Option<usize> {
    let mut start = at;
    loop {
        if escaped_local(text, start) {
            start -= 3;
        } else if start > 0 && is_local(text[start - 1]) {
            start -= 1;
        } else {
            break;
        }
    }
    // A dot cannot start an address; `+` and `-` seldom do, and in a URL
    // they are more often what joins it to the text before.
    while start < at && matches!(text[start], b'.' | b'+' | b'-') {
        start += 1;
    }
    (start < at && at - start <= 64 && text[at - 1] != b'.').then_some(start)
}

/// Where the domain starting at `start` ends, if it is one: two labels or
/// more, a top-level label of letters, no file name.
fn domain_end(text: &[u8], start: usize) -> Option<usize> {
    let mut end = start;
    let mut labels = Vec::new();
    loop {
        let label_end = end + text[end..].iter().take_while(|&&b| is_label(b)).count();
        let label = &text[end..label_end];
        if label.is_empty()
            || label.len() > 63
            || label[0] == b'-'
            || label[label.len() - 1] == b'-'
        {
            break;
        }
        labels.push((end, label_end));
        end = label_end;
        let next_is_label = text.get(end) == Some(&b'.')
            && text.get(end + 1).is_some_and(|&b| is_label(b) && b != b'-');
        if !next_is_label {
            break;
        }
        end += 1;
    }
    let &(tld_start, tld_end) = labels.last()?;
    let tld = &text[tld_start..tld_end];
    let tld_ok = labels.len() >= 2
        && tld.len() >= 2
        && tld.iter().all(|&b| b.is_ascii_alphabetic() || b >= 0x80)
        && !FILE_SUFFIXES
            .iter()
            .any(|suffix| suffix.as_bytes().eq_ignore_ascii_case(tld));
    let after_ok = text.get(tld_end).is_none_or(|&b| !is_word(b));
    (tld_ok && after_ok).then_some(tld_end)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found(text: &str) -> Vec<&str> {
        let mut out = Vec::new();
        find(text, &mut out);
        out.iter().map(|&(s, e)| &text[s..e]).collect()
    }

    #[test]
    fn finds_addresses_plain_and_percent_encoded() {
        assert_eq!(found("jane@example.com"), ["jane@example.com"]);
        assert_eq!(
            found("https://shop.example/?email=jane%40example.com&x=1"),
            ["jane%40example.com"]
        );
        assert_eq!(
            found("/?u=jane.doe%2Bads%40mail.example.co.uk#top"),
            ["jane.doe%2Bads%40mail.example.co.uk"]
        );
        assert_eq!(
            found("Write to J.Doe+x@Example.ORG."),
            ["J.Doe+x@Example.ORG"]
        );
        assert_eq!(found("a@b.io, c@d.de"), ["a@b.io", "c@d.de"]);
        assert_eq!(found("élodie@exemple.fr"), ["élodie@exemple.fr"]);
    }

    #[test]
    fn leaves_what_is_not_an_address() {
        for text in [
            "user@localhost",
            "logo@2x.png",
            "50% off @ the bakery",
            "100%40 items",
            "@example.com",
            "jane@.com",
            "jane@example.c0m",
            "git clone repo",
        ] {
            assert_eq!(found(text), Vec::<&str>::new(), "{text}");
        }
    }
}
