//! Who may use the forward proxy, and where it may go: the target a request
//! names, its port, and the addresses its host resolves to.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use ipnet::IpNet;

use crate::metrics::ForwardRefusal;
use crate::policy::ForwardProxySettings;
use crate::policy::canonical_host;

/// The host and port a `CONNECT` or a plain-HTTP proxy request names, the
/// host as [`canonical_host`] writes it (an IPv6 address in brackets), so
/// that no spelling of a claimed host slips past its claim.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Target {
    pub(crate) host: String,
    pub(crate) port: u16,
}

impl Target {
    fn new(authority: &http::uri::Authority, default_port: Option<u16>) -> Option<Target> {
        let host = canonical_host(authority.host());
        let port = authority.port_u16().or(default_port)?;
        if host.is_empty() || authority.as_str().contains('@') {
            return None;
        }
        // A name whose last label is a number is no host name (RFC 1123),
        // but resolvers read `0177.1` or `2130706433` as addresses: only
        // the canonical text of an address is taken.
        let last = host.rsplit('.').next().unwrap_or_default();
        let numeric = last.bytes().all(|b| b.is_ascii_digit()) || last.starts_with("0x");
        if numeric && host.parse::<IpAddr>().is_err() {
            return None;
        }
        Some(Target { host, port })
    }

    /// A `CONNECT` request's target: `host:port`, both required.
    pub(crate) fn of_connect(uri: &http::Uri) -> Option<Target> {
        if uri.scheme().is_some() || uri.path_and_query().is_some_and(|p| p.as_str() != "/") {
            return None;
        }
        Target::new(uri.authority()?, None)
    }

    /// A plain-HTTP proxy request's target: `http://host[:port]/…`.
    pub(crate) fn of_plain(uri: &http::Uri) -> Option<Target> {
        if uri.scheme_str() != Some("http") {
            return None;
        }
        Target::new(uri.authority()?, Some(80))
    }

    /// The host as a name to resolve or to put in a certificate: an IPv6
    /// address without its brackets.
    pub(crate) fn bare_host(&self) -> &str {
        self.host
            .strip_prefix('[')
            .and_then(|host| host.strip_suffix(']'))
            .unwrap_or(&self.host)
    }

    /// The host as an address, when it is one.
    pub(crate) fn ip(&self) -> Option<IpAddr> {
        self.bare_host().parse().ok()
    }
}

/// Whether a client at `peer` may use the proxy (`allow`).
pub(crate) fn client_allowed(settings: &ForwardProxySettings, peer: IpAddr) -> bool {
    let peer = peer.to_canonical();
    settings.allow.iter().any(|network| network.contains(&peer))
}

/// Whether `ip` is an address of the public internet: not loopback,
/// private, link-local, shared (CGNAT), documentation, benchmarking,
/// multicast, broadcast or reserved, in IPv4 or IPv6 (IPv4-mapped and NAT64
/// addresses are read as the IPv4 address inside).
pub(crate) fn is_public(ip: IpAddr) -> bool {
    match ip.to_canonical() {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => {
            let segments = v6.segments();
            let octets = v6.octets();
            let last_v4 = Ipv4Addr::new(octets[12], octets[13], octets[14], octets[15]);
            // Forms that carry an IPv4 address, read as that address: NAT64
            // 64:ff9b::/96, IPv4-compatible ::/96, SIIT ::ffff:0:0:0/96, and
            // 6to4 2002::/16 (the address after the prefix).
            if segments[..6] == [0x64, 0xff9b, 0, 0, 0, 0]
                || (segments[..6] == [0, 0, 0, 0, 0, 0]
                    && !v6.is_loopback()
                    && !v6.is_unspecified())
                || segments[..6] == [0, 0, 0, 0, 0xffff, 0]
            {
                return is_public_v4(last_v4);
            }
            if segments[0] == 0x2002 {
                return is_public_v4(Ipv4Addr::new(octets[2], octets[3], octets[4], octets[5]));
            }
            let first = segments[0];
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                // Unique local fc00::/7, link-local fe80::/10, site-local
                // fec0::/10, documentation 2001:db8::/32, Teredo 2001::/32
                // (a tunnel to anywhere), discard 100::/64, local-use NAT64
                // 64:ff9b:1::/48.
                || first & 0xfe00 == 0xfc00
                || first & 0xffc0 == 0xfe80
                || first & 0xffc0 == 0xfec0
                || (first == 0x2001 && (segments[1] == 0x0db8 || segments[1] == 0))
                || segments[..4] == [0x100, 0, 0, 0]
                || segments[..3] == [0x64, 0xff9b, 1])
        }
    }
}

fn is_public_v4(v4: Ipv4Addr) -> bool {
    let [a, b, c, _] = v4.octets();
    !(v4.is_loopback()
        || v4.is_private()
        || v4.is_link_local()
        || v4.is_unspecified()
        || v4.is_broadcast()
        || v4.is_multicast()
        || v4.is_documentation()
        || a == 0
        // Shared address space (CGNAT), 100.64.0.0/10.
        || (a == 100 && b & 0xc0 == 64)
        // IETF protocol assignments, 192.0.0.0/24.
        || (a == 192 && b == 0 && c == 0)
        // Benchmarking, 198.18.0.0/15.
        || (a == 198 && b & 0xfe == 18)
        // Reserved, 240.0.0.0/4.
        || a >= 240)
}

/// Whether the proxy may connect to `ip`: a public address, or one in
/// `private_destinations`.
pub(crate) fn destination_allowed(private_destinations: &[IpNet], ip: IpAddr) -> bool {
    let ip = ip.to_canonical();
    is_public(ip)
        || private_destinations
            .iter()
            .any(|network| network.contains(&ip))
}

/// The addresses of `target` the proxy may connect to. A name that
/// resolves to any address it may not reach is refused whole: a name that
/// points into the private network is no platform's.
pub(crate) async fn resolve(
    target: &Target,
    private_destinations: &[IpNet],
    timeout: Duration,
) -> Result<Vec<SocketAddr>, ForwardRefusal> {
    let addresses: Vec<SocketAddr> = match target.ip() {
        Some(ip) => vec![SocketAddr::new(ip, target.port)],
        None => {
            let lookup = tokio::net::lookup_host((target.bare_host(), target.port));
            match tokio::time::timeout(timeout, lookup).await {
                Ok(Ok(found)) => found.collect(),
                _ => return Err(ForwardRefusal::Unreachable),
            }
        }
    };
    if addresses.is_empty() {
        return Err(ForwardRefusal::Unreachable);
    }
    if addresses
        .iter()
        .all(|address| destination_allowed(private_destinations, address.ip()))
    {
        Ok(addresses)
    } else {
        Err(ForwardRefusal::PrivateDestination)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_read_as_the_claims_are_written() {
        let connect = |text: &str| Target::of_connect(&text.parse().unwrap());
        assert_eq!(
            connect("Graph.Facebook.COM.:443"),
            Some(Target {
                host: "graph.facebook.com".into(),
                port: 443
            })
        );
        assert_eq!(connect("graph.facebook.com"), None);
        let v6 = connect("[::1]:443").unwrap();
        assert_eq!((v6.host.as_str(), v6.bare_host()), ("[::1]", "::1"));
        assert_eq!(v6.ip(), Some("::1".parse().unwrap()));
        let plain = |text: &str| Target::of_plain(&text.parse().unwrap());
        assert_eq!(plain("http://example.com/a?b").unwrap().port, 80);
        assert_eq!(plain("https://example.com/a"), None);
        assert_eq!(plain("/a"), None);
        // Every spelling of an address is one; numbers that are not one
        // are no host.
        assert_eq!(connect("[0:0::1]:443").unwrap().host, "[::1]");
        assert_eq!(connect("[::ffff:127.0.0.1]:443").unwrap().host, "127.0.0.1");
        for numeric in [
            "0177.0.0.1:443",
            "2130706433:443",
            "0x7f.1:443",
            "127.1:443",
            "a.b.123:443",
        ] {
            assert_eq!(connect(numeric), None, "{numeric}");
        }
    }

    #[test]
    fn only_public_addresses_are_public() {
        for private in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "255.255.255.255",
            "224.0.0.1",
            "::1",
            "::",
            "fd00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "64:ff9b::a9fe:a9fe",
            "2001:db8::1",
            "::127.0.0.1",
            "::ffff:0:127.0.0.1",
            "2002:7f00:1::",
            "2001:0:4136:e378::1",
            "100::1",
            "64:ff9b:1::1",
        ] {
            assert!(!is_public(private.parse().unwrap()), "{private}");
        }
        for public in [
            "157.240.1.35",
            "8.8.8.8",
            "2a03:2880:f10c:83:face:b00c:0:25de",
        ] {
            assert!(is_public(public.parse().unwrap()), "{public}");
        }
        let allowed: Vec<IpNet> = vec!["10.1.0.0/16".parse().unwrap()];
        assert!(destination_allowed(&allowed, "10.1.2.3".parse().unwrap()));
        assert!(!destination_allowed(&allowed, "10.2.0.1".parse().unwrap()));
    }

    #[tokio::test]
    async fn a_name_pointing_inside_is_refused() {
        let target = Target {
            host: "localhost".into(),
            port: 443,
        };
        let refused = resolve(&target, &[], Duration::from_secs(5)).await;
        assert_eq!(refused, Err(ForwardRefusal::PrivateDestination));
        let loopback: Vec<IpNet> = vec!["127.0.0.0/8".parse().unwrap(), "::1/128".parse().unwrap()];
        let allowed = resolve(&target, &loopback, Duration::from_secs(5))
            .await
            .unwrap();
        assert!(allowed.iter().all(|a| a.ip().is_loopback()));
    }
}
