//! A policy as `scrim check` prints it, for the operator: listeners, keys by
//! identifier, routes with their rules and consent. Never a secret.

use std::io::{self, Write};

use super::{Policy, Route, Unlisted};

/// What `scrim check` prints: the listeners, the keys by identifier, and
/// each route with its rules and consent signals. Never a secret.
pub fn write_policy(
    out: &mut impl Write,
    config: &std::path::Path,
    policy: &Policy,
) -> io::Result<()> {
    writeln!(out, "{}: OK", config.display())?;
    let tls = if policy.tls.is_some() { " (TLS)" } else { "" };
    writeln!(
        out,
        "listen {}{tls}   admin {}",
        policy.listen, policy.admin_listen
    )?;
    for (name, id) in &policy.key_ids {
        writeln!(out, "key {name} (id {id})")?;
    }
    if let Some(vault) = &policy.vault {
        let previous: Vec<&str> = vault.previous_keys.iter().map(|k| k.id()).collect();
        writeln!(
            out,
            "vault {:?}: key id {}{}; cache {} entries; store timeout {}ms",
            vault.store,
            vault.key.id(),
            if previous.is_empty() {
                String::new()
            } else {
                format!(" (previous {})", previous.join(", "))
            },
            vault.cache_entries,
            vault.timeout.as_millis()
        )?;
    }
    if let Some(forward) = &policy.forward_proxy {
        write_forward_proxy(out, policy, forward)?;
    }
    for route in &policy.routes {
        write_route(out, route)?;
    }
    out.flush()
}

fn write_forward_proxy(
    out: &mut impl Write,
    policy: &Policy,
    forward: &crate::policy::ForwardProxySettings,
) -> io::Result<()> {
    let mut claimed: Vec<String> = policy
        .routes
        .iter()
        .flat_map(|route| {
            route
                .claimed_host()
                .into_iter()
                .chain(route.upstream_host())
        })
        .collect();
    claimed.sort();
    claimed.dedup();
    let list = |items: Vec<String>| {
        if items.is_empty() {
            "none".to_owned()
        } else {
            items.join(", ")
        }
    };
    let others = match forward.others {
        crate::policy::Others::Tunnel => "tunnelled unread",
        crate::policy::Others::Deny => "refused (403)",
    };
    writeln!(
        out,
        "forward proxy on {}: intercepts {}; other hosts {others}; CONNECT ports {}; clients {}; private destinations {}; credentials {}; CA {}",
        forward.listen,
        list(claimed),
        list(forward.ports.iter().map(u16::to_string).collect()),
        list(forward.allow.iter().map(ToString::to_string).collect()),
        list(
            forward
                .private_destinations
                .iter()
                .map(ToString::to_string)
                .collect()
        ),
        if forward.credentials.is_some() {
            "required"
        } else {
            "none"
        },
        crate::ca::fingerprint(forward.authority.certificate()),
    )
}

fn write_route(out: &mut impl Write, route: &Route) -> io::Result<()> {
    let mut matches = Vec::new();
    if let Some(listen) = &route.listen {
        matches.push(format!("own listener {listen}"));
    }
    if let Some(host) = &route.host {
        matches.push(format!("host {host}"));
    }
    if let Some(prefix) = &route.path_prefix {
        matches.push(format!(
            "path {prefix}{}",
            if route.strip_prefix {
                " (stripped)"
            } else {
                ""
            }
        ));
    }
    let unlisted = match route.rules.unlisted {
        Unlisted::Keep => "unlisted values kept",
        Unlisted::Drop => "unlisted values dropped",
    };
    writeln!(out)?;
    writeln!(
        out,
        "route {}: {} -> {}   {unlisted}",
        route.name,
        matches.join(", "),
        route.upstream
    )?;
    if let Some(preset) = &route.preset {
        writeln!(
            out,
            "  preset {preset} (its rules first, then the route's own)"
        )?;
    }
    for (i, rule) in route.rules.rules.iter().enumerate() {
        writeln!(out, "  {:>2}. {:<40} {}", i + 1, rule.selector, rule.action)?;
    }
    for (i, rule) in route.response_rules.rules.iter().enumerate() {
        writeln!(
            out,
            "  response {:>2}. {:<31} {}",
            i + 1,
            rule.selector,
            rule.action
        )?;
    }
    match &route.rules.scan {
        Some(scan) => {
            let detectors: Vec<&str> = scan
                .detectors
                .enabled()
                .iter()
                .map(|d| d.as_str())
                .collect();
            let mut headers = vec!["referer"];
            headers.extend(scan.headers.iter().map(String::as_str));
            writeln!(
                out,
                "  scan: {} -> {} (strings no rule selects, member names, query values; headers {})",
                detectors.join(", "),
                scan.action.as_str(),
                headers.join(", ")
            )?;
        }
        None => writeln!(out, "  scan: off")?,
    }
    if let Some(consent) = &route.consent {
        let identifiers = consent.identifiers;
        for signal in &consent.signals {
            let source = match signal.label.as_str() {
                super::consent::GPC_LABEL => "Sec-GPC",
                label => label,
            };
            writeln!(
                out,
                "  consent: {source} = {:?} -> {}",
                signal.equals,
                signal.decision.as_str()
            )?;
        }
        if consent.signals.is_empty() {
            writeln!(out, "  consent: no signal honoured")?;
        }
        writeln!(
            out,
            "  consent: identifier selectors dropped by strip_identifiers: {identifiers}; block answers {}",
            consent.block_status.as_u16()
        )?;
    }
    Ok(())
}
