//! `forward_proxy:`: the listener, its CA, and who may go where through it.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use serde_saphyr::Spanned;

use super::{Errors, duration};
use crate::ca::{Authority, AuthorityError};
use crate::config::ForwardProxyConfig;
use crate::policy::{ForwardProxySettings, ProxyCredentials};

/// The forward proxy's settings; `secrets` holds the secret of the key
/// `credentials` names, if it resolved.
pub(super) fn forward_proxy_settings(
    errors: &mut Errors<'_>,
    config: &ForwardProxyConfig,
    secrets: &BTreeMap<String, Vec<u8>>,
    warnings: &mut Vec<String>,
) -> Option<ForwardProxySettings> {
    let before = errors.list.len();
    let authority = match Authority::load(
        Path::new(&config.ca.cert.value),
        Path::new(&config.ca.key.value),
        warnings,
    ) {
        Ok(authority) => Some(Arc::new(authority)),
        Err(error @ AuthorityError::Certificate(_)) => {
            errors.at(&config.ca.cert, error.to_string());
            None
        }
        Err(error @ AuthorityError::Key(_)) => {
            errors.at(&config.ca.key, error.to_string());
            None
        }
    };
    let others = config
        .others
        .as_ref()
        .and_then(|others| errors.choice(others, "forward_proxy others"))
        .unwrap_or_default();
    let allow = match &config.allow {
        None => vec![
            ipnet::Ipv4Net::new_assert(std::net::Ipv4Addr::new(127, 0, 0, 0), 8).into(),
            ipnet::Ipv6Net::new_assert(std::net::Ipv6Addr::LOCALHOST, 128).into(),
        ],
        Some(list) => networks(errors, list, "allow"),
    };
    let private_destinations =
        networks(errors, &config.private_destinations, "private_destinations");
    let ports = match &config.ports {
        None => vec![443],
        Some(list) => {
            for port in list.iter().filter(|port| port.value == 0) {
                errors.at(port, "port 0 cannot be connected to");
            }
            list.iter().map(|port| port.value).collect()
        }
    };
    let credentials = config.credentials.as_ref().and_then(|name| {
        let Some(secret) = secrets.get(&name.value) else {
            errors.at(
                name,
                format!(
                    "no key `{}` under `keys:`: `credentials` names the key that holds `user:password`",
                    name.value
                ),
            );
            return None;
        };
        if !secret.contains(&b':') {
            errors.at(
                name,
                format!(
                    "key `{}` must hold `user:password` (a colon between them) to be proxy credentials",
                    name.value
                ),
            );
            return None;
        }
        Some(ProxyCredentials::new(secret))
    });
    let idle_timeout = duration(
        errors,
        &config.idle_timeout,
        ForwardProxySettings::DEFAULT_IDLE_TIMEOUT,
    );
    let certificate_cache = match &config.certificate_cache {
        None => ForwardProxySettings::DEFAULT_CERTIFICATE_CACHE,
        Some(entries) if entries.value == 0 => {
            errors.at(entries, "certificate_cache must be at least 1");
            1
        }
        Some(entries) => entries.value as usize,
    };
    if errors.list.len() > before {
        return None;
    }
    Some(ForwardProxySettings {
        listen: config.listen.as_ref().map_or_else(
            || ForwardProxySettings::DEFAULT_LISTEN.to_owned(),
            |listen| listen.value.clone(),
        ),
        authority: authority?,
        others,
        allow,
        ports,
        private_destinations,
        credentials,
        idle_timeout,
        certificate_cache,
    })
}

/// Networks written `10.0.0.0/8`, `::1` or `192.168.1.7` (one address).
fn networks(errors: &mut Errors<'_>, list: &[Spanned<String>], setting: &str) -> Vec<ipnet::IpNet> {
    list.iter()
        .filter_map(|text| {
            let parsed = text.value.parse::<ipnet::IpNet>().ok().or_else(|| {
                text.value
                    .parse::<std::net::IpAddr>()
                    .ok()
                    .map(ipnet::IpNet::from)
            });
            if parsed.is_none() {
                errors.at(
                    text,
                    format!(
                        "`{}` in `{setting}` is not a network: write an address (`10.1.2.3`, `::1`) or a network (`10.0.0.0/8`)",
                        text.value
                    ),
                );
            }
            parsed.map(|network| network.trunc())
        })
        .collect()
}
