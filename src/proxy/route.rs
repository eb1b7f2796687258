//! Which route takes a request: by `host` and/or `path_prefix`, the most
//! specific match winning (a host match first, then the longest prefix).

use std::collections::HashMap;

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

/// Where a request came in, which decides the routes that may take it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Entry<'a> {
    /// The proxy listener.
    Main,
    /// A route's own `listen`, as configured.
    RouteListener(&'a str),
    /// The forward proxy, for a host that routes claim (see
    /// [`RouteIndex::claims`]), lowercase: the host of the `CONNECT` that
    /// opened the tunnel the request came through, or of a plain-HTTP
    /// proxy request's URL. The `Host` header is not read.
    Claimed(&'a str),
}

/// The route that takes a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Found {
    /// Its index among the policy's routes.
    pub(crate) index: usize,
    /// Whether the request's path is the upstream's already: a request the
    /// app addressed to the platform itself, through the forward proxy, to
    /// a route that claims the host as its upstream's.
    pub(crate) as_sent: bool,
}

/// The routes of a policy, indexed for [`RouteIndex::find`]: by listener,
/// then by host, then by path prefix. A lookup costs a hash lookup per
/// distinct prefix length among the routes it could take (a handful),
/// whatever the number of routes and however long the path.
#[derive(Debug, Default)]
pub(crate) struct RouteIndex {
    main: Hosts,
    /// Routes with their own `listen`, by that address.
    listeners: HashMap<String, Hosts>,
    /// What the forward proxy intercepts: routes by their `match.host`, and
    /// by their upstream's host (with the upstream's base path as prefix).
    claimed_by_match: HashMap<String, Prefixes>,
    claimed_by_upstream: HashMap<String, Prefixes>,
}

#[derive(Debug, Default)]
struct Hosts {
    by_host: HashMap<String, Prefixes>,
    any_host: Prefixes,
}

#[derive(Debug, Default)]
struct Prefixes {
    /// The first route with each `path_prefix`.
    by_prefix: HashMap<String, usize>,
    /// The lengths of those prefixes, longest first: a lookup tries these
    /// only, so that its cost depends on the configuration, not on the
    /// path (a path of 60,000 `/` would otherwise try 120,000 prefixes).
    lengths: Vec<usize>,
    /// The first route without one.
    any_path: Option<usize>,
}

impl Prefixes {
    fn insert(&mut self, prefix: Option<&str>, index: usize) {
        match prefix {
            Some(prefix) => {
                self.by_prefix.entry(prefix.to_owned()).or_insert(index);
                if let Err(at) = self.lengths.binary_search_by(|l| prefix.len().cmp(l)) {
                    self.lengths.insert(at, prefix.len());
                }
            }
            None => {
                self.any_path.get_or_insert(index);
            }
        }
    }

    /// The route with the longest prefix that matches `path`; of two that
    /// match as long (an empty prefix and none), the first.
    fn find(&self, path: &str) -> Option<usize> {
        let longest = self.lengths.iter().find_map(|&length| {
            let prefix = path.get(..length)?;
            if !prefix_matches(prefix, path) {
                return None;
            }
            self.by_prefix
                .get(prefix)
                .map(|index| (*index, prefix.is_empty()))
        });
        match (longest, self.any_path) {
            (Some((index, true)), Some(any)) => Some(index.min(any)),
            (Some((index, _)), _) => Some(index),
            (None, any) => any,
        }
    }
}

impl RouteIndex {
    pub(crate) fn new<'a>(routes: impl Iterator<Item = &'a Route>) -> RouteIndex {
        let mut index = RouteIndex::default();
        for (at, route) in routes.enumerate() {
            let hosts = match &route.listen {
                None => &mut index.main,
                Some(listen) => index.listeners.entry(listen.clone()).or_default(),
            };
            let prefixes = match &route.host {
                None => &mut hosts.any_host,
                Some(host) => hosts.by_host.entry(host.clone()).or_default(),
            };
            prefixes.insert(route.path_prefix.as_deref(), at);
            if let Some(host) = route.claimed_host() {
                index
                    .claimed_by_match
                    .entry(host)
                    .or_default()
                    .insert(route.path_prefix.as_deref(), at);
            }
            if let Some(host) = route.upstream_host() {
                let base = route.upstream_uri.path().trim_end_matches('/');
                index
                    .claimed_by_upstream
                    .entry(host)
                    .or_default()
                    .insert(Some(base), at);
            }
        }
        index
    }

    /// Whether some route claims `host` (as [`canonical_host`](crate::policy::canonical_host) writes it):
    /// the forward proxy intercepts what goes there.
    pub(crate) fn claims(&self, host: &str) -> bool {
        self.claimed_by_match.contains_key(host) || self.claimed_by_upstream.contains_key(host)
    }

    /// The route for a request that came in on `entry`, with `host` the
    /// request's host (read only for the listeners' routes that match on
    /// one).
    pub(crate) fn route_for(
        &self,
        entry: Entry<'_>,
        host: Option<&str>,
        path: &str,
    ) -> Option<Found> {
        let on_listener = |listener| {
            self.find(listener, host, path).map(|index| Found {
                index,
                as_sent: false,
            })
        };
        match entry {
            Entry::Main => on_listener(None),
            Entry::RouteListener(listen) => on_listener(Some(listen)),
            // A route that names the host wins over one that only sends
            // there.
            Entry::Claimed(host) => self
                .claimed_by_match
                .get(host)
                .and_then(|prefixes| prefixes.find(path))
                .map(|index| Found {
                    index,
                    as_sent: false,
                })
                .or_else(|| {
                    let index = self.claimed_by_upstream.get(host)?.find(path)?;
                    Some(Found {
                        index,
                        as_sent: true,
                    })
                }),
        }
    }

    /// The index of the route that takes a request, if any: a route for its
    /// host first, then the longest prefix, then the first route listed.
    /// `listener` is the route listener it came in on (`None`: the main
    /// listener); a route with its own `listen` is only found from there.
    pub(crate) fn find(
        &self,
        listener: Option<&str>,
        host: Option<&str>,
        path: &str,
    ) -> Option<usize> {
        let hosts = match listener {
            None => &self.main,
            Some(listen) => self.listeners.get(listen)?,
        };
        host.and_then(|host| hosts.by_host.get(host))
            .and_then(|prefixes| prefixes.find(path))
            .or_else(|| hosts.any_host.find(path))
    }
}

/// The path sent upstream: the route's base path, then the request path
/// (without the matched prefix when the route strips it); or the request's
/// path itself when it was sent to the upstream's address already
/// (`as_sent`).
pub(crate) fn upstream_path(route: &Route, path: &str, as_sent: bool) -> String {
    if as_sent {
        return path.to_owned();
    }
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

    /// The definition: every route tried, the best score winning, the first
    /// of equals.
    fn find_by_scan(
        routes: &[Route],
        listener: Option<&str>,
        host: Option<&str>,
        path: &str,
    ) -> Option<usize> {
        let mut best: Option<(usize, (bool, usize))> = None;
        for (index, route) in routes.iter().enumerate() {
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

    fn route(listen: Option<&str>, host: Option<&str>, prefix: Option<&str>) -> Route {
        Route {
            name: String::new(),
            listen: listen.map(str::to_owned),
            path_prefix: prefix.map(str::to_owned),
            host: host.map(str::to_owned),
            strip_prefix: false,
            upstream: String::new(),
            upstream_uri: http::Uri::from_static("http://upstream.example"),
            ca_roots: Vec::new(),
            keep_forwarding_headers: false,
            browser: false,
            keep_cookies: Vec::new(),
            preset: None,
            rules: crate::policy::Rules::default(),
            response_rules: crate::policy::Rules::default(),
            consent: None,
        }
    }

    /// A lookup among 5,000 routes costs about what it costs among 3 (a scan
    /// of the list cost 5,000 comparisons).
    #[test]
    fn lookups_do_not_grow_with_the_number_of_routes() {
        let table = |count: usize| -> Vec<Route> {
            (0..count)
                .map(|i| {
                    let prefix = format!("/r{i}/api");
                    let host = format!("shop{i}.example");
                    route(
                        None,
                        (i % 2 == 1).then_some(host.as_str()),
                        Some(prefix.as_str()),
                    )
                })
                .chain([route(None, None, Some("/v21.0"))])
                .collect()
        };
        let time = |routes: &[Route]| {
            let index = RouteIndex::new(routes.iter());
            (0..5)
                .map(|_| {
                    let started = std::time::Instant::now();
                    for _ in 0..20_000 {
                        let found = index.find(None, Some("shop1.example"), "/v21.0/1/events");
                        assert_eq!(found, Some(routes.len() - 1));
                        std::hint::black_box(index.find(None, None, "/nothing/here"));
                    }
                    started.elapsed()
                })
                .fold(std::time::Duration::MAX, std::cmp::min)
        };
        let few = time(&table(3));
        let many = time(&table(5_000));
        // A scan of 5,000 routes costs three orders of magnitude more; the
        // margin is for a busy machine.
        assert!(
            many.as_secs_f64() < 10.0 * few.as_secs_f64(),
            "5,000 routes: {many:?}, 3 routes: {few:?}"
        );
    }

    /// A path of 60,000 `/` (it fits a request head) costs what a short one
    /// does: trying every place a prefix could end cost 0.8 s of CPU each.
    #[test]
    fn long_paths_cost_no_more_than_short_ones() {
        let routes: Vec<Route> = ["/", "/a", "/a/b/", "/v21.0"]
            .iter()
            .map(|prefix| route(None, None, Some(prefix)))
            .collect();
        let index = RouteIndex::new(routes.iter());
        let path = "/".repeat(60_000);
        let started = std::time::Instant::now();
        for _ in 0..1_000 {
            assert_eq!(index.find(None, None, &path), Some(0));
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );
    }

    proptest::proptest! {
        #[test]
        fn the_index_finds_what_a_scan_finds(
            specs in proptest::collection::vec(
                (proptest::option::of(0..2usize), proptest::option::of(0..2usize), proptest::option::of(0..8usize)),
                1..12,
            ),
            path in 0..12usize,
            host in proptest::option::of(0..3usize),
            listener in proptest::option::of(0..2usize),
        ) {
            const LISTENERS: [&str; 2] = ["127.0.0.1:1", "127.0.0.1:2"];
            const HOSTS: [&str; 3] = ["a.example", "b.example", "c.example"];
            const PREFIXES: [&str; 8] = ["/", "", "/a", "/a/", "/a/b", "/ab", "/a/b/", "/b"];
            const PATHS: [&str; 12] = ["/", "/a", "/a/", "/a/b", "/a/b/", "/a/bc", "/ab", "/ab/c", "/b", "/b/a", "*", "/a//b"];
            let routes: Vec<Route> = specs
                .iter()
                .map(|(l, h, p)| route(l.map(|i| LISTENERS[i]), h.map(|i| HOSTS[i]), p.map(|i| PREFIXES[i])))
                .collect();
            let index = RouteIndex::new(routes.iter());
            let listener = listener.map(|i| LISTENERS[i]);
            let host = host.map(|i| HOSTS[i]);
            let path = PATHS[path];
            proptest::prop_assert_eq!(
                index.find(listener, host, path),
                find_by_scan(&routes, listener, host, path)
            );
        }
    }
}
