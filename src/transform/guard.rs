//! Conditions a rule can put on the values it selects (`only_if:`): the rule
//! applies to a string that meets it and leaves every other value as it is.
//! For fields that hold identifiers of several kinds (LinkedIn's `idValue`),
//! or free text that may hold an email address (GA4's page parameters).

use std::fmt;

use serde::Deserialize;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Guard {
    /// The whole value, trimmed, is shaped like an email address.
    Email,
    /// An email address appears somewhere in the value, also
    /// percent-encoded (`jane%40example.com` in a URL).
    ContainsEmail,
    /// The whole value, trimmed, is shaped like an absolute URL
    /// (`scheme://…`): a page title that is its page's address.
    Url,
}

impl Guard {
    pub fn as_str(self) -> &'static str {
        match self {
            Guard::Email => "email",
            Guard::ContainsEmail => "contains_email",
            Guard::Url => "url",
        }
    }

    pub fn holds(self, text: &str) -> bool {
        match self {
            Guard::Email => is_email(text.trim()),
            Guard::ContainsEmail => contains_email(text),
            Guard::Url => is_url(text.trim()),
        }
    }
}

impl fmt::Display for Guard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `scheme://` and something after it.
fn is_url(text: &str) -> bool {
    super::url::scheme_len(text).is_some_and(|after| after < text.len())
}

fn is_local_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b".!#$%&'*+/=?^_`{|}~-".contains(&b) || b >= 0x80
}

fn is_domain_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b >= 0x80
}

/// `local@domain.tld`: no whitespace, one `@`, a dot in the domain with
/// text on both sides.
fn is_email(text: &str) -> bool {
    let Some((local, domain)) = text.split_once('@') else {
        return false;
    };
    !local.is_empty()
        && local.bytes().all(is_local_char)
        && domain.bytes().all(is_domain_char)
        && domain_has_dot(domain.as_bytes())
}

fn domain_has_dot(domain: &[u8]) -> bool {
    let domain = domain.strip_suffix(b".").unwrap_or(domain);
    match domain.iter().rposition(|&b| b == b'.') {
        Some(dot) => dot > 0 && domain.len() - dot > 2,
        None => false,
    }
}

/// An `@` (or `%40`) with an address character before it and a dotted
/// domain after it.
fn contains_email(text: &str) -> bool {
    let bytes = text.as_bytes();
    let mut from = 0;
    while let Some(found) = memchr::memchr2(b'@', b'%', &bytes[from..]) {
        let at = from + found;
        from = at + 1;
        let after = if bytes[at] == b'@' {
            at + 1
        } else if bytes[at + 1..].starts_with(b"40") {
            at + 3
        } else {
            continue;
        };
        let local_ok = at > 0 && is_local_char(bytes[at - 1]) && bytes[at - 1] != b'%';
        let domain_len = bytes[after..]
            .iter()
            .take_while(|&&b| is_domain_char(b))
            .count();
        if local_ok && domain_has_dot(&bytes[after..after + domain_len]) {
            return true;
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_means_an_absolute_url() {
        for yes in [
            "https://shop.example/x?y",
            " http://a ",
            "android-app://com.x/",
        ] {
            assert!(Guard::Url.holds(yes), "{yes}");
        }
        for no in [
            "Checkout",
            "Search: https://x",
            "/cart",
            "https://",
            "1http://x",
        ] {
            assert!(!Guard::Url.holds(no), "{no}");
        }
    }

    #[test]
    fn email_means_the_whole_value() {
        for yes in [
            "jane@example.com",
            " J.Doe+x@mail.example.co.uk ",
            "élodie@exemple.fr",
        ] {
            assert!(Guard::Email.holds(yes), "{yes}");
        }
        for no in [
            "2e4d5c1a-4f3b-4e6a-9d2b-1c0e8f7a6b5d",
            "jane@localhost",
            "jane@ example.com",
            "@example.com",
            "visit jane@example.com",
            "a@b@c.com",
            "",
        ] {
            assert!(!Guard::Email.holds(no), "{no}");
        }
    }

    #[test]
    fn contains_email_finds_addresses_in_text_and_urls() {
        for yes in [
            "https://shop.example/confirm?email=jane%40example.com&x=1",
            "https://shop.example/?u=jane@example.com",
            "Thank you, jane.doe@example.org!",
            "jane@example.com",
        ] {
            assert!(Guard::ContainsEmail.holds(yes), "{yes}");
        }
        for no in [
            "https://shop.example/checkout?step=3",
            "50% off @ the bakery",
            "user@localhost",
            "100%40 items",
            "",
        ] {
            assert!(!Guard::ContainsEmail.holds(no), "{no}");
        }
    }
}
