//! A URL cut to where it points (`strip_url`): scheme, host and path, with
//! no credentials, no path parameters, no fragment, and only the query
//! parameters the route names.
//! A URL to a host outside the site can go whole (`external: drop`): a
//! referrer from elsewhere tells where a visitor came from.

use super::Invalid;

/// What `strip_url` does with a URL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UrlRule {
    /// Query parameters kept (by name, as written).
    pub keep_params: Vec<String>,
    /// The site's own hosts, lowercase; `None` keeps URLs to any host. An
    /// empty list makes every URL with a host external.
    pub external_dropped_unless: Option<Vec<String>>,
}

/// What became of a URL.
#[derive(Debug, PartialEq, Eq)]
pub enum Stripped {
    Unchanged,
    Replaced(String),
    /// A URL to a host outside the site, under `external: drop`.
    External,
}

impl UrlRule {
    pub fn apply(&self, text: &str) -> Result<Stripped, Invalid> {
        if text.is_empty() {
            return Ok(Stripped::Unchanged);
        }
        let (origin, rest) = split_origin(text)?;
        if let (Some(site), Some(origin)) = (&self.external_dropped_unless, &origin)
            && !site
                .iter()
                .any(|host| host.eq_ignore_ascii_case(origin.host))
        {
            return Ok(Stripped::External);
        }
        let before_fragment = rest.split('#').next().unwrap_or_default();
        let (path, query) = before_fragment
            .split_once('?')
            .unwrap_or((before_fragment, ""));
        let mut out = String::with_capacity(text.len());
        if let Some(origin) = &origin {
            out.push_str(origin.scheme);
            out.push_str("://");
            out.push_str(origin.host_and_port);
        }
        // Path parameters (`/cart;jsessionid=…`) go like the query: servers
        // put session ids there.
        for (i, segment) in path.split('/').enumerate() {
            if i > 0 {
                out.push('/');
            }
            out.push_str(segment.split(';').next().unwrap_or_default());
        }
        let mut first = true;
        for pair in query.split('&').filter(|pair| !pair.is_empty()) {
            let name = pair.split_once('=').map_or(pair, |(name, _)| name);
            if self.keep_params.iter().any(|kept| kept == name) {
                out.push(if first { '?' } else { '&' });
                out.push_str(pair);
                first = false;
            }
        }
        Ok(if out == text {
            Stripped::Unchanged
        } else {
            Stripped::Replaced(out)
        })
    }
}

/// The length of the `scheme://` a text starts with (a letter, then
/// letters, digits, `+`, `-` or `.`), if it starts with one: where a URL's
/// authority begins.
pub fn scheme_len(text: &str) -> Option<usize> {
    let at = text.find("://")?;
    let scheme = &text[..at];
    let valid = scheme.starts_with(|c: char| c.is_ascii_alphabetic())
        && scheme
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b));
    valid.then_some(at + 3)
}

struct Origin<'a> {
    scheme: &'a str,
    /// The authority without credentials.
    host_and_port: &'a str,
    host: &'a str,
}

/// An absolute URL's scheme and authority, and what follows them; a
/// reference that starts with `/` (a path on the same site) has no origin.
/// Anything else is not a URL.
fn split_origin(text: &str) -> Result<(Option<Origin<'_>>, &str), Invalid> {
    if text.starts_with('/') && !text.starts_with("//") {
        return Ok((None, text));
    }
    let after_scheme = scheme_len(text).ok_or(Invalid::NotAUrl)?;
    let scheme = &text[..after_scheme - 3];
    let after = &text[after_scheme..];
    let end = after.find(['/', '?', '#']).unwrap_or(after.len());
    let (authority, rest) = after.split_at(end);
    let host_and_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = if let Some(bracketed) = host_and_port.strip_prefix('[') {
        bracketed.split(']').next().unwrap_or_default()
    } else {
        host_and_port.split(':').next().unwrap_or_default()
    };
    if host.is_empty() {
        return Err(Invalid::NotAUrl);
    }
    Ok((
        Some(Origin {
            scheme,
            host_and_port,
            host,
        }),
        rest,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(keep: &[&str], site: Option<&[&str]>) -> UrlRule {
        UrlRule {
            keep_params: keep.iter().map(|s| (*s).to_owned()).collect(),
            external_dropped_unless: site.map(|s| s.iter().map(|h| (*h).to_owned()).collect()),
        }
    }

    #[test]
    fn query_fragment_and_credentials_go() {
        let strip = rule(&[], None);
        assert_eq!(
            strip.apply(
                "https://user:pw@shop.example:8443/cart?email=jane%40x.com&utm_source=nl#top"
            ),
            Ok(Stripped::Replaced("https://shop.example:8443/cart".into()))
        );
        assert_eq!(
            strip.apply("https://shop.example/"),
            Ok(Stripped::Unchanged)
        );
        assert_eq!(
            strip.apply("/search?q=jane"),
            Ok(Stripped::Replaced("/search".into()))
        );
        assert_eq!(strip.apply(""), Ok(Stripped::Unchanged));
        assert_eq!(strip.apply("jane@example.com"), Err(Invalid::NotAUrl));
        assert_eq!(strip.apply("://x"), Err(Invalid::NotAUrl));
    }

    #[test]
    fn kept_parameters_and_external_hosts() {
        let strip = rule(&["page"], Some(&["shop.example"]));
        assert_eq!(
            strip.apply("https://Shop.Example/list?utm_medium=x&page=2&gclid=abc"),
            Ok(Stripped::Replaced(
                "https://Shop.Example/list?page=2".into()
            ))
        );
        assert_eq!(
            strip.apply("https://mail.example.net/inbox?u=jane"),
            Ok(Stripped::External)
        );
        assert_eq!(
            strip.apply("android-app://com.google.android.gm/"),
            Ok(Stripped::External)
        );
        assert_eq!(
            strip.apply("https://[2001:db8::1]:8080/a?b"),
            Ok(Stripped::External)
        );
    }
}
