//! Which route takes a request: by `host` and/or `path_prefix`, the most
//! specific match winning (a host match first, then the longest prefix).

use crate::policy::Route;

/// A prefix matches at a segment boundary: `/meta` takes `/meta` and
/// `/meta/v1/events`, not `/metadata`.
fn prefix_matches(prefix: &str, path: &str) -> bool {
    match path.strip_prefix(prefix) {
        Some(rest) => rest.is_empty() || rest.starts_with('/') || prefix.ends_with('/'),
        None => false,
    }
}

/// The request's host, lowercase and without a port.
pub(crate) fn request_host(uri: &http::Uri, headers: &http::HeaderMap) -> Option<String> {
    let raw = match uri.authority() {
        Some(authority) => authority.host().to_owned(),
        None => {
            let header = headers.get(http::header::HOST)?.to_str().ok()?;
            let authority: http::uri::Authority = header.parse().ok()?;
            authority.host().to_owned()
        }
    };
    Some(raw.to_ascii_lowercase())
}

/// The index of the route that takes a request, if any. `listener` is the
/// route listener it came in on (`None`: the main listener); a route with
/// its own `listen` is only found from there.
pub(crate) fn find<'a>(
    routes: impl Iterator<Item = &'a Route>,
    listener: Option<&str>,
    host: Option<&str>,
    path: &str,
) -> Option<usize> {
    let mut best: Option<(usize, (bool, usize))> = None;
    for (index, route) in routes.enumerate() {
        if route.listen.as_deref() != listener {
            continue;
        }
        let host_ok = match (&route.host, host) {
            (None, _) => true,
            (Some(wanted), Some(host)) => wanted == host,
            (Some(_), None) => false,
        };
        let prefix_len = match &route.path_prefix {
            None => Some(0),
            Some(prefix) => prefix_matches(prefix, path).then_some(prefix.len()),
        };
        if let (true, Some(len)) = (host_ok, prefix_len) {
            let score = (route.host.is_some(), len);
            if best.is_none_or(|(_, best_score)| score > best_score) {
                best = Some((index, score));
            }
        }
    }
    best.map(|(index, _)| index)
}

/// The path sent upstream: the route's base path, then the request path
/// (without the matched prefix when the route strips it).
pub(crate) fn upstream_path(route: &Route, path: &str) -> String {
    let rest = match (&route.path_prefix, route.strip_prefix) {
        (Some(prefix), true) => path.strip_prefix(prefix.as_str()).unwrap_or(path),
        _ => path,
    };
    let base = route.upstream_uri.path().trim_end_matches('/');
    match (base.is_empty(), rest.is_empty(), rest.starts_with('/')) {
        (_, true, _) if base.is_empty() => "/".to_owned(),
        (_, true, _) => base.to_owned(),
        (_, false, true) => format!("{base}{rest}"),
        (_, false, false) => format!("{base}/{rest}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_match_whole_segments() {
        assert!(prefix_matches("/meta", "/meta"));
        assert!(prefix_matches("/meta", "/meta/v21.0/1/events"));
        assert!(!prefix_matches("/meta", "/metadata"));
        assert!(prefix_matches("/", "/anything"));
        assert!(prefix_matches("/api/", "/api/x"));
    }
}
