//! Config → Policy. Every error is collected (not just the first), each
//! pointing at the value it is about.

mod consent;
mod forward_proxy;
mod preset;
#[cfg(test)]
mod readme;
mod rules;
mod scan;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use serde::de::DeserializeOwned;
use serde_saphyr::Spanned;

use super::{
    AdminToken, DEFAULT_MAX_BUFFERED_BYTES, DEFAULT_VAULT_CACHE_ENTRIES, DEFAULT_VAULT_TIMEOUT,
    Limits, Policy, Route, Rules, ServerSettings, Timeouts, VaultSettings, VaultStore,
};
use crate::config::{
    Choice, Config, ConfigError, ConfigErrors, Environment, LimitsConfig, RouteConfig,
    ServerConfig, TimeoutsConfig, TlsConfig, VaultConfig, resolve_secret,
};
use crate::transform::{EncryptKey, PseudonymKey};
use consent::compile_consent;
use preset::add_preset_rules;
use rules::{Direction, RuleContext, add_rules, parse_region};

const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
const DEFAULT_ADMIN_LISTEN: &str = "127.0.0.1:9090";
/// The key whose secret is the admin bearer token.
const ADMIN_KEY: &str = "admin";
/// The key the vault encrypts values under.
const VAULT_KEY: &str = "vault";

/// Compiles a parsed configuration. `file` names it in errors; `env`
/// resolves `${VAR}` secrets.
pub fn compile(config: &Config, file: &str, env: &dyn Environment) -> Result<Policy, ConfigErrors> {
    let mut errors = Errors {
        file,
        list: Vec::new(),
    };

    let mut keys = BTreeMap::new();
    let mut admin_token = None;
    let mut warnings = Vec::new();
    let credentials_key = config
        .forward_proxy
        .as_ref()
        .and_then(|forward| forward.credentials.as_ref())
        .map(|name| name.value.as_str());
    // Only the secret the forward proxy's credentials need, kept raw.
    let mut raw_secrets = BTreeMap::new();
    for (name, reference) in &config.keys {
        match resolve_secret(name, &reference.value, env, &mut warnings) {
            Ok(secret) => {
                if name == ADMIN_KEY {
                    admin_token = Some(AdminToken::new(&secret));
                }
                if credentials_key == Some(name.as_str()) {
                    raw_secrets.insert(name.clone(), secret.clone());
                }
                keys.insert(name.clone(), Arc::new(PseudonymKey::new(secret)));
            }
            Err(message) => errors.at(reference, message),
        }
    }
    let global_limits = limits(&mut errors, Limits::default(), &config.limits);
    if let Some(v) = &config.limits.max_buffered_bytes
        && v.value < global_limits.buffer_limit
    {
        errors.at(
            v,
            "max_buffered_bytes must hold at least one body of buffer_limit",
        );
    }
    let server = server_settings(&mut errors, &config.server);
    let timeouts = timeouts(&mut errors, &config.timeouts);
    let tls = config
        .tls
        .as_ref()
        .and_then(|tls| tls_config(&mut errors, tls));

    let vault = config.vault.as_ref().and_then(|vault| {
        vault_settings(
            &mut errors,
            vault,
            &keys,
            config.keys.contains_key(VAULT_KEY),
        )
    });
    let forward_proxy = config.forward_proxy.as_ref().and_then(|forward| {
        forward_proxy::forward_proxy_settings(&mut errors, forward, &raw_secrets, &mut warnings)
    });
    drop(zeroize::Zeroizing::new(
        raw_secrets.into_values().collect::<Vec<_>>(),
    ));
    let shared = Shared {
        keys: &keys,
        no_keys_configured: config.keys.is_empty(),
        global_limits,
        vault: vault.is_some() || config.vault.is_some(),
    };

    let mut routes: Vec<Arc<Route>> = Vec::new();
    let mut names: BTreeMap<&str, u64> = BTreeMap::new();
    if config.routes.is_empty() {
        errors.list.push(ConfigError::new(
            file,
            0,
            0,
            "no routes: add at least one under `routes:`",
        ));
    }
    let main_listen = config
        .listen
        .as_ref()
        .map_or(DEFAULT_LISTEN, |l| l.value.as_str());
    let admin_listen = config
        .admin
        .as_ref()
        .and_then(|a| a.listen.as_ref())
        .map_or(DEFAULT_ADMIN_LISTEN, |l| l.value.as_str());
    if let Some(listen) = config.admin.as_ref().and_then(|a| a.listen.as_ref())
        && !is_loopback(&listen.value)
        && !config.keys.contains_key(ADMIN_KEY)
    {
        errors.at(
            listen,
            "an admin listener beyond loopback needs `keys.admin`: the bearer token its POST endpoints (`/reload`) require",
        );
    }
    if let Some(listen) = config
        .forward_proxy
        .as_ref()
        .and_then(|forward| forward.listen.as_ref())
        // Port 0 takes a free port: two listeners never share it.
        && !listen.value.ends_with(":0")
        && (listen.value == main_listen
            || listen.value == admin_listen
            || config.routes.iter().any(|route| {
                route
                    .listen
                    .as_ref()
                    .is_some_and(|l| l.value == listen.value)
            }))
    {
        errors.at(
            listen,
            "`forward_proxy.listen` must differ from `listen`, `admin.listen` and every route's `listen`",
        );
    }
    for route in &config.routes {
        if let Some(listen) = &route.listen
            && (listen.value == main_listen || listen.value == admin_listen)
        {
            errors.at(
                listen,
                "a route's own `listen` must differ from `listen` and `admin.listen`",
            );
        }
        if let Some(first) = names.insert(&route.name.value, route.name.referenced.line()) {
            errors.at(
                &route.name,
                format!(
                    "duplicate route name `{}` (first on line {first})",
                    route.name.value
                ),
            );
        }
        if let Some(compiled) = compile_route(&mut errors, route, &shared) {
            routes.push(Arc::new(compiled));
        }
    }

    if !errors.list.is_empty() {
        return Err(ConfigErrors(errors.list));
    }
    let spanned_or = |value: &Option<Spanned<String>>, default: &str| {
        value
            .as_ref()
            .map_or_else(|| default.to_owned(), |v| v.value.clone())
    };
    Ok(Policy {
        listen: spanned_or(&config.listen, DEFAULT_LISTEN),
        admin_listen: spanned_or(
            &config.admin.as_ref().and_then(|a| a.listen.clone()),
            DEFAULT_ADMIN_LISTEN,
        ),
        key_ids: keys
            .iter()
            .map(|(name, key)| (name.clone(), key.id().to_owned()))
            .collect(),
        admin_token,
        server,
        max_buffered_bytes: config
            .limits
            .max_buffered_bytes
            .as_ref()
            .map_or(DEFAULT_MAX_BUFFERED_BYTES, |v| v.value),
        timeouts,
        tls,
        routes,
        vault,
        forward_proxy,
        warnings,
    })
}

/// What every route's compile reads.
struct Shared<'a> {
    keys: &'a BTreeMap<String, Arc<PseudonymKey>>,
    no_keys_configured: bool,
    global_limits: Limits,
    /// Whether `vault:` is configured (even if it has errors of its own).
    vault: bool,
}

/// `vault:`, with `keys.vault` and its previous keys.
fn vault_settings(
    errors: &mut Errors<'_>,
    config: &VaultConfig,
    keys: &BTreeMap<String, Arc<PseudonymKey>>,
    vault_key_given: bool,
) -> Option<VaultSettings> {
    let before = errors.list.len();
    let store_kind = config
        .store
        .as_ref()
        .and_then(|v| errors.choice(v, "vault store"))
        .unwrap_or_default();
    let store = match store_kind {
        crate::config::VaultStore::Embedded => {
            if let Some(url) = &config.url {
                errors.at(
                    url,
                    "`url` is for `store: redis`; the embedded store takes `path`",
                );
            }
            match &config.path {
                Some(path) if !path.value.trim().is_empty() => Some(VaultStore::Embedded {
                    path: path.value.clone().into(),
                }),
                Some(path) => {
                    errors.at(
                        path,
                        "`path` names the vault's file, such as /var/lib/scrim/vault.redb",
                    );
                    None
                }
                None => {
                    errors.list.push(ConfigError::new(
                        errors.file,
                        0,
                        0,
                        "`vault:` with the embedded store needs `path:`, the file it keeps tokens in (such as /var/lib/scrim/vault.redb)",
                    ));
                    None
                }
            }
        }
        crate::config::VaultStore::Redis => {
            if let Some(path) = &config.path {
                errors.at(
                    path,
                    "`path` is for the embedded store; `store: redis` takes `url`",
                );
            }
            match &config.url {
                Some(url) => redis_url(errors, url).map(|url| VaultStore::Redis { url }),
                None => {
                    errors.list.push(ConfigError::new(
                        errors.file,
                        0,
                        0,
                        "`vault:` with `store: redis` needs `url:` (redis://host:6379/0)",
                    ));
                    None
                }
            }
        }
    };
    let key = keys.get(VAULT_KEY).cloned();
    if key.is_none() && !vault_key_given {
        errors.list.push(ConfigError::new(
            errors.file,
            0,
            0,
            "`vault:` needs the key `vault` under `keys:` (`${ENV_VAR}` or `file:/path`): values are encrypted under it",
        ));
    }
    let mut previous_keys = Vec::new();
    for name in &config.previous_keys {
        match keys.get(&name.value) {
            Some(_) if name.value == VAULT_KEY => {
                errors.at(
                    name,
                    "`vault` is the current key; list only the keys before it",
                );
            }
            Some(key) => previous_keys.push(key.clone()),
            None => errors.at(
                name,
                format!(
                    "`{}` is not under `keys:` (or could not be loaded)",
                    name.value
                ),
            ),
        }
    }
    let cache_entries = match &config.cache_entries {
        Some(v) if v.value == 0 => {
            errors.at(v, "cache_entries must be at least 1");
            0
        }
        Some(v) => v.value as usize,
        None => DEFAULT_VAULT_CACHE_ENTRIES,
    };
    let timeout = duration(errors, &config.timeout, DEFAULT_VAULT_TIMEOUT);
    if errors.list.len() != before {
        return None;
    }
    Some(VaultSettings {
        store: store?,
        cache_entries,
        timeout,
        key: key?,
        previous_keys,
    })
}

/// A Redis URL: `redis://` with a host. A password in it is
/// kept from every message.
fn redis_url(errors: &mut Errors<'_>, url: &Spanned<String>) -> Option<zeroize::Zeroizing<String>> {
    let text = url.value.trim();
    let plausible = text.starts_with("redis://")
        && text
            .split_once("://")
            .is_some_and(|(_, rest)| !rest.is_empty());
    if !plausible {
        errors.at(
            url,
            "a Redis URL is redis://[user:password@]host:port[/db] (TLS, rediss://, is not supported: keep Redis on loopback or a private network)",
        );
        return None;
    }
    Some(zeroize::Zeroizing::new(text.to_owned()))
}

/// Whether a listen address is on loopback only (`127.0.0.1:9090`,
/// `[::1]:9090`, `localhost:9090`); a name that must be resolved is not.
fn is_loopback(address: &str) -> bool {
    match address.parse::<std::net::SocketAddr>() {
        Ok(addr) => addr.ip().is_loopback(),
        Err(_) => address
            .rsplit_once(':')
            .is_some_and(|(host, _)| host.eq_ignore_ascii_case("localhost")),
    }
}

struct Errors<'a> {
    file: &'a str,
    list: Vec<ConfigError>,
}

impl Errors<'_> {
    fn at<T>(&mut self, at: &Spanned<T>, message: impl Into<String>) {
        self.list.push(ConfigError::at(self.file, at, message));
    }

    /// The variant a setting names, or an error at it ("unknown `what`").
    fn choice<T: DeserializeOwned + Clone>(
        &mut self,
        at: &Spanned<Choice<T>>,
        what: &str,
    ) -> Option<T> {
        match at.value.get(what) {
            Ok(value) => Some(value.clone()),
            Err(message) => {
                self.at(at, message);
                None
            }
        }
    }
}

fn duration(
    errors: &mut Errors<'_>,
    value: &Option<Spanned<String>>,
    default: Duration,
) -> Duration {
    let Some(value) = value else {
        return default;
    };
    match humantime::parse_duration(&value.value) {
        Ok(parsed) if !parsed.is_zero() => parsed,
        _ => {
            errors.at(
                value,
                format!(
                    "`{}` is not a duration; write it like `10s`, `500ms` or `2m`",
                    value.value
                ),
            );
            default
        }
    }
}

fn server_settings(errors: &mut Errors<'_>, config: &ServerConfig) -> ServerSettings {
    let defaults = ServerSettings::default();
    let mut settings = ServerSettings {
        header_read_timeout: duration(
            errors,
            &config.header_read_timeout,
            defaults.header_read_timeout,
        ),
        body_read_timeout: duration(
            errors,
            &config.body_read_timeout,
            defaults.body_read_timeout,
        ),
        write_timeout: duration(errors, &config.write_timeout, defaults.write_timeout),
        shutdown_grace: duration(errors, &config.shutdown_grace, defaults.shutdown_grace),
        ..defaults
    };
    if let Some(v) = &config.max_concurrent_streams {
        if v.value == 0 {
            errors.at(v, "max_concurrent_streams must be at least 1");
        }
        settings.max_concurrent_streams = v.value;
    }
    if let Some(v) = &config.max_header_bytes {
        if v.value < 8192 {
            errors.at(v, "max_header_bytes must be at least 8192");
        }
        settings.max_header_bytes = v.value as usize;
    }
    if let Some(v) = &config.max_connections {
        if v.value == 0 {
            errors.at(v, "max_connections must be at least 1");
        }
        settings.max_connections = v.value as usize;
    }
    settings
}

fn timeouts(errors: &mut Errors<'_>, config: &TimeoutsConfig) -> Timeouts {
    let defaults = Timeouts::default();
    Timeouts {
        connect: duration(errors, &config.connect, defaults.connect),
        response: duration(errors, &config.response, defaults.response),
    }
}

fn read_certificates(
    errors: &mut Errors<'_>,
    file: &Spanned<String>,
) -> Vec<CertificateDer<'static>> {
    let certs: Result<Vec<_>, _> = match CertificateDer::pem_file_iter(&file.value) {
        Ok(iter) => iter.collect(),
        Err(error) => Err(error),
    };
    match certs {
        Ok(certs) if !certs.is_empty() => certs,
        Ok(_) => {
            errors.at(file, format!("no PEM certificate in {}", file.value));
            Vec::new()
        }
        Err(error) => {
            errors.at(
                file,
                format!("cannot read certificates from {}: {error}", file.value),
            );
            Vec::new()
        }
    }
}

/// The listener's TLS configuration, built once per load: every listener on
/// every worker shares it, and `scrim check` finds a key that does not
/// match its certificate.
fn tls_config(errors: &mut Errors<'_>, tls: &TlsConfig) -> Option<Arc<rustls::ServerConfig>> {
    let certs = read_certificates(errors, &tls.cert);
    // The error names the file, never its content.
    let key = PrivateKeyDer::from_pem_file(&tls.key.value)
        .map_err(|error| {
            errors.at(
                &tls.key,
                format!("cannot read a private key from {}: {error}", tls.key.value),
            )
        })
        .ok()?;
    let identity = (!certs.is_empty()).then_some(crate::tls::TlsIdentity { certs, key })?;
    match crate::tls::server_config(&identity) {
        Ok(config) => Some(Arc::new(config)),
        Err(error) => {
            errors.at(
                &tls.key,
                format!("this key cannot serve that certificate: {error}"),
            );
            None
        }
    }
}

/// Parses an upstream base URL: http or https, a host, an optional base path,
/// and nothing else (no query, no credentials).
fn upstream_uri(text: &str) -> Option<http::Uri> {
    let uri: http::Uri = text.parse().ok()?;
    let scheme_ok = matches!(uri.scheme_str(), Some("http" | "https"));
    let authority = uri.authority()?;
    let plain =
        !authority.as_str().contains('@') && uri.query().is_none() && !authority.host().is_empty();
    (scheme_ok && plain).then_some(uri)
}

fn limits(errors: &mut Errors<'_>, base: Limits, config: &LimitsConfig) -> Limits {
    let mut limits = base;
    if let Some(v) = &config.max_body_bytes {
        limits.max_body_bytes = v.value;
    }
    if let Some(v) = &config.buffer_limit {
        limits.buffer_limit = v.value;
    }
    if let Some(v) = &config.max_depth {
        if !(1..=4096).contains(&v.value) {
            errors.at(v, "max_depth must be between 1 and 4096");
        }
        limits.max_depth = v.value;
    }
    if let Some(v) = &config.max_value_bytes {
        if v.value < 256 {
            errors.at(v, "max_value_bytes must be at least 256");
        }
        limits.max_value_bytes = v.value;
    }
    if let Some(v) = &config.max_embedded_bytes {
        limits.max_embedded_bytes = v.value;
    }
    limits
}

/// What a browser route refuses to be told: its cookies go by
/// `keep_cookies` only, never one that identifies the visitor to the
/// platform, and the visitor's address never goes.
fn browser_route_checks(errors: &mut Errors<'_>, route: &RouteConfig) {
    for name in &route.keep_cookies {
        let cookie = name.value.as_str();
        let identifies = cookie.starts_with("_ga")
            || cookie.starts_with("_gcl")
            || ["_gid", "FPID", "FPLC", "_fbp", "_fbc"].contains(&cookie);
        if identifies {
            errors.at(
                name,
                format!("`{cookie}` identifies the visitor to the platform: a browser route never passes it"),
            );
        }
    }
    if route.keep_forwarding_headers {
        errors.at(
            &route.name,
            "a browser route never passes the visitor's address: remove `keep_forwarding_headers`",
        );
    }
    for rule in &route.rules {
        let selector = rule.select.value.to_ascii_lowercase();
        if selector == "header.cookie" || selector == "header.authorization" {
            errors.at(
                &rule.select,
                "a browser route removes this header before rules see it (cookies go by `keep_cookies`)",
            );
        }
    }
}

fn compile_route(
    errors: &mut Errors<'_>,
    route: &RouteConfig,
    shared: &Shared<'_>,
) -> Option<Route> {
    let before = errors.list.len();
    let global_limits = shared.global_limits;
    if route.name.value.is_empty()
        || !route
            .name
            .value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        errors.at(
            &route.name,
            "a route name is letters, digits, `_` and `-` (it becomes a metric label)",
        );
    }
    let upstream = upstream_uri(&route.upstream.value);
    if upstream.is_none() {
        errors.at(
            &route.upstream,
            "upstream must be an http:// or https:// URL with a host (and no query or credentials)",
        );
    }
    if let Some(prefix) = &route.matches.path_prefix
        && !prefix.value.starts_with('/')
    {
        errors.at(prefix, "path_prefix must start with `/`");
    }
    if route.matches.path_prefix.is_none() && route.matches.host.is_none() && route.listen.is_none()
    {
        errors.at(
            &route.name,
            "route matches nothing: give `match:` a `path_prefix` or a `host`, or the route its own `listen`",
        );
    }

    let ca_roots = route
        .ca_file
        .as_ref()
        .map(|file| read_certificates(errors, file))
        .unwrap_or_default();
    let unlisted = route
        .unlisted
        .as_ref()
        .and_then(|v| errors.choice(v, "`unlisted` value"));
    let mut rules = Rules {
        unlisted: unlisted.unwrap_or_default(),
        limits: {
            if let Some(v) = &route.limits.max_buffered_bytes {
                errors.at(
                    v,
                    "max_buffered_bytes is one budget for the whole process: set it under the top-level `limits:`",
                );
            }
            limits(errors, global_limits, &route.limits)
        },
        ..Rules::default()
    };
    let site: Vec<String> = route
        .site
        .iter()
        .map(|host| host.value.trim().to_ascii_lowercase())
        .collect();
    for (host, written) in site.iter().zip(&route.site) {
        if host.is_empty() || host.contains(['/', ':', '?', '#', '@', ' ']) {
            errors.at(
                written,
                "a `site:` entry is a host name only, such as `shop.example`",
            );
        }
    }
    let keep_params: Vec<String> = route.keep_params.iter().map(|p| p.value.clone()).collect();
    let context = RuleContext {
        keys: shared.keys,
        no_keys_configured: shared.no_keys_configured,
        default_region: route
            .default_region
            .as_ref()
            .and_then(|region| parse_region(errors, region)),
        site: &site,
        keep_params: &keep_params,
        route: &route.name.value,
        vault: shared.vault,
        encrypt_keys: &[],
        namespaces: &[],
        direction: Direction::Request,
    };
    let preset = route
        .preset
        .as_ref()
        .and_then(|name| add_preset_rules(errors, name, &context, &mut rules));
    add_rules(errors, &route.rules, &context, &mut rules);
    let preset_file = preset.as_ref().map(|(_, file)| file);
    rules.text_plain = route
        .text_plain
        .as_ref()
        .and_then(|v| errors.choice(v, "`text_plain` value"))
        .or_else(|| preset_file.and_then(|file| file.text_plain))
        .unwrap_or_default();
    let browser = route
        .browser
        .as_ref()
        .map_or_else(|| preset_file.is_some_and(|file| file.browser), |b| b.value);
    if !browser && let Some(first) = route.keep_cookies.first() {
        errors.at(
            first,
            "`keep_cookies` applies to a route with `browser: true`",
        );
    }
    if browser {
        browser_route_checks(errors, route);
    }
    rules.scan = scan::compile_scan(errors, route.scan.as_ref(), preset.is_some(), &context);
    let consent = compile_consent(errors, route, preset.as_ref(), &rules);
    let response_rules = response_rules(errors, route, &context, &rules, browser);
    if errors.list.len() != before {
        return None;
    }
    Some(Route {
        name: route.name.value.clone(),
        listen: route.listen.as_ref().map(|l| l.value.clone()),
        path_prefix: route.matches.path_prefix.as_ref().map(|p| p.value.clone()),
        host: route
            .matches
            .host
            .as_ref()
            .map(|h| h.value.to_ascii_lowercase()),
        strip_prefix: route.strip_prefix,
        upstream: route.upstream.value.clone(),
        upstream_uri: upstream?,
        ca_roots,
        keep_forwarding_headers: route.keep_forwarding_headers,
        browser,
        keep_cookies: route.keep_cookies.iter().map(|c| c.value.clone()).collect(),
        preset: route.preset.as_ref().map(|p| p.value.clone()),
        rules,
        response_rules,
        consent,
    })
}

/// A route's `response_rules`: body selectors, action `reveal`, which
/// reads the tokens of the route's own `tokenize` rules (unless it names a
/// namespace) and the texts of its own `encrypt` rules. Never on a browser
/// route: a page's scripts could then hand any token in and read its value.
fn response_rules(
    errors: &mut Errors<'_>,
    route: &RouteConfig,
    context: &RuleContext<'_>,
    request_rules: &Rules,
    browser: bool,
) -> Rules {
    let mut rules = Rules {
        limits: request_rules.limits,
        ..Rules::default()
    };
    if browser && let Some(first) = route.response_rules.first() {
        errors.at(
            &first.select,
            "a browser route never reveals: the page's scripts could hand any token in and read its value",
        );
        return rules;
    }
    let mut namespaces: Vec<String> = Vec::new();
    let mut encrypt_keys: Vec<Arc<EncryptKey>> = Vec::new();
    for rule in &request_rules.rules {
        match rule.action.unguarded() {
            crate::transform::Action::Tokenize(tokenize)
                if !namespaces.contains(&tokenize.namespace) =>
            {
                namespaces.push(tokenize.namespace.clone());
            }
            crate::transform::Action::Encrypt { key, .. }
                if !encrypt_keys.iter().any(|k| k.id() == key.id()) =>
            {
                encrypt_keys.push(key.clone());
            }
            _ => {}
        }
    }
    for rule in &route.response_rules {
        if !rule.select.value.starts_with('$') {
            errors.at(
                &rule.select,
                "`response_rules` select in the response body (`$…`)",
            );
        }
    }
    let context = RuleContext {
        direction: Direction::Response,
        encrypt_keys: &encrypt_keys,
        namespaces: &namespaces,
        ..*context
    };
    add_rules(errors, &route.response_rules, &context, &mut rules);
    rules
}

#[cfg(test)]
mod tests {
    use std::ffi::OsString;

    use super::*;

    fn env(name: &str) -> Option<OsString> {
        (name == "PSEUDO").then(|| OsString::from("0123456789abcdef0123456789abcdef"))
    }

    fn check(yaml: &str) -> Result<Policy, String> {
        let config = Config::parse(yaml, "t.yaml").map_err(|e| e.to_string())?;
        compile(&config, "t.yaml", &env).map_err(|e| e.to_string())
    }

    const HEAD: &str = "keys:\n  pseudonym: ${PSEUDO}\nroutes:\n  - name: meta\n    match: {path_prefix: /meta}\n    upstream: https://graph.facebook.com\n    rules:\n";

    #[test]
    fn a_reload_keeps_the_period_keys_of_the_rules_it_leaves_alone() {
        let yaml = |period: &str| {
            format!(
                "{HEAD}      - {{select: query.cid, action: hmac, rotate: daily}}\n      - {{select: query.sid, action: hmac, rotate: {period}}}\n      - {{select: query.x, action: hmac, rotate: daily, key: pseudonym}}\n"
            )
        };
        let token = |policy: &Policy, rule: usize| {
            policy.routes[0].rules.rules[rule]
                .action
                .apply(crate::transform::Scalar::Str("1873456721.1733340000"))
        };
        let before = check(&yaml("hourly")).unwrap();
        let after = check(&yaml("30m")).unwrap();
        assert_ne!(
            token(&before, 0),
            token(&after, 0),
            "each compile draws its keys"
        );
        assert_eq!(
            token(&before, 2),
            token(&after, 2),
            "derived keys agree anyway"
        );
        after.adopt_rotating_keys(&before);
        assert_eq!(token(&before, 0), token(&after, 0));
        assert_ne!(
            token(&before, 1),
            token(&after, 1),
            "a new schedule, a new key"
        );
    }

    #[test]
    fn compiles_a_valid_route() {
        let yaml = format!(
            "{HEAD}      - select: $.data[*].user_data.em\n        action: hash\n        normalize: email\n      - select: query.email\n        action: drop\n      - select: $.x\n        action: hmac\n"
        );
        let policy = check(&yaml).unwrap();
        let route = policy.route("meta").unwrap();
        assert_eq!(route.rules.rules.len(), 3);
        assert_eq!(route.rules.query, vec![("email".to_owned(), 1)]);
        assert_eq!(policy.listen, DEFAULT_LISTEN);
    }

    #[test]
    fn each_error_names_its_place() {
        let cases = [
            (
                "      - select: $.a[\n        action: hash\n",
                "t.yaml:8:17: bad selector",
            ),
            (
                "      - select: $.a\n        action: shred\n",
                "t.yaml:9:17: unknown action `shred`",
            ),
            (
                "      - select: $.a\n        action: hash\n        normalize: shout\n",
                "t.yaml:10:20: unknown normalizer `shout`",
            ),
            (
                "      - select: $.a\n        action: hash\n        with: x\n",
                "t.yaml:10:15: `with` does not apply to action `hash`",
            ),
            (
                "      - select: $.a\n        action: hmac\n        key: other\n",
                "t.yaml:10:14: action `hmac` uses key `other`",
            ),
            (
                "      - select: $.a\n        action: hash\n        on_invalid: ignore\n",
                "t.yaml:10:21: unknown on_invalid",
            ),
            (
                "      - select: $.a\n        action: hmac\n        rotate: weekly\n",
                "t.yaml:10:17: `weekly` is not a rotation period",
            ),
            (
                "      - select: $.a\n        action: hmac\n        rotate: 1500ms\n",
                "t.yaml:10:17: `1500ms` is not a rotation period",
            ),
            (
                "      - select: $.a\n        action: hmac\n        shape: digits\n        length: 20\n",
                "t.yaml:11:17: `prefix` and `length` shape a `token`, not a `digits`",
            ),
            (
                "      - select: $.a\n        action: strip_url\n        rotate: daily\n",
                "t.yaml:10:17: `rotate` does not apply to action `strip_url`",
            ),
            (
                "      - select: $.a\n        action: keep\n    keep_cookies: [a]\n",
                "t.yaml:10:20: `keep_cookies` applies to a route with `browser: true`",
            ),
            (
                "      - select: $.a\n        action: keep\n    site: [https://shop.example]\n",
                "t.yaml:10:12: a `site:` entry is a host name only",
            ),
            (
                "      - select: $.a\n        action: keep\n    browser: true\n    keep_cookies: [_ga]\n",
                "t.yaml:11:20: `_ga` identifies the visitor to the platform",
            ),
            (
                "      - select: header.Cookie\n        action: drop\n    browser: true\n",
                "t.yaml:8:17: a browser route removes this header before rules see it",
            ),
            (
                "      - select: $.a\n        action: keep\n    browser: true\n    keep_forwarding_headers: true\n",
                "t.yaml:4:11: a browser route never passes the visitor's address",
            ),
        ];
        for (rules, expected) in cases {
            let err = check(&format!("{HEAD}{rules}")).unwrap_err();
            assert!(
                err.starts_with(expected),
                "expected {expected:?}, got {err:?}"
            );
        }
    }

    #[test]
    fn scan_is_on_with_a_preset_and_configurable() {
        let base = "keys:\n  pseudonym: ${PSEUDO}\nroutes:\n  - name: r\n    match: {path_prefix: /r}\n    upstream: https://example.com\n";
        let scan_of = |extra: &str| {
            let policy = check(&format!("{base}{extra}")).unwrap();
            policy.route("r").unwrap().rules.scan.clone()
        };
        assert!(scan_of("").is_none(), "off without a preset");
        let preset = scan_of("    preset: meta_capi\n").unwrap();
        assert_eq!(preset.action.as_str(), "redact");
        assert_eq!(preset.detectors.enabled().len(), 5);
        assert!(scan_of("    preset: meta_capi\n    scan: off\n").is_none());
        assert!(scan_of("    scan: on\n").is_some());
        let custom =
            scan_of("    scan: {detectors: [ip], action: hmac, headers: [X-Page]}\n").unwrap();
        assert_eq!(custom.action.as_str(), "hmac");
        assert_eq!(custom.detectors.enabled(), [crate::detect::Detector::Ip]);
        assert_eq!(custom.headers, ["x-page"]);
        let err = check(&format!(
            "{base}    scan: {{detectors: [emial], action: zap, key: k}}\n"
        ))
        .unwrap_err();
        assert!(
            err.contains("t.yaml:7:24: unknown detector `emial`"),
            "{err}"
        );
        assert!(err.contains("unknown scan action `zap`"), "{err}");
        assert!(err.contains("`key` is for `action: hmac` only"), "{err}");
        let err = check(&format!("{base}    scan: maybe\n")).unwrap_err();
        assert!(err.contains("expected `off`, `on`, or a mapping"), "{err}");
    }

    /// Every setting that names one of a set reports an unknown name at
    /// the name, beside the other errors of the file, with what it accepts.
    #[test]
    fn an_unknown_name_is_an_error_at_it() {
        let cases = [
            (
                "      - select: $.a\n        action: hash\n        only_if: mail\n",
                "mail",
                "only_if",
                "email, contains_email",
            ),
            (
                "      - select: $.a\n        action: hash\n        encoding: hax\n",
                "hax",
                "encoding",
                "hex, base64, base64url",
            ),
            (
                "      - select: $.a\n        action: hash\n        normalize: phone\n        phone_format: plus\n",
                "plus",
                "phone_format",
                "e164, digits",
            ),
            (
                "      - select: $.a\n        action: keep\n    unlisted: all\n",
                "all",
                "`unlisted` value",
                "keep, drop",
            ),
            (
                "      - select: $.a\n        action: keep\n    consent: {gpc: never}\n",
                "never",
                "consent decision",
                "block, strip_identifiers, limited_data_use, ignore",
            ),
            (
                "      - select: $.a\n        action: keep\n    consent:\n      signals:\n        - {select: header.x, equals: y, decision: nope}\n",
                "nope",
                "consent decision",
                "block, strip_identifiers, limited_data_use",
            ),
        ];
        for (rules, name, what, expected) in cases {
            let yaml = format!("{HEAD}      - select: $.b[\n        action: keep\n{rules}");
            let at = yaml
                .find(&format!(": {name}"))
                .map(|at| at + 2)
                .unwrap_or(0);
            let line = yaml[..at].matches('\n').count() + 1;
            let column = at - yaml[..at].rfind('\n').map_or(0, |nl| nl + 1) + 1;
            let err = check(&yaml).err().unwrap_or_default();
            let message = format!(
                "t.yaml:{line}:{column}: unknown {what} `{name}`; expected one of {expected}"
            );
            assert!(err.contains(&message), "expected {message:?} in {err:?}");
            assert!(err.contains("bad selector"), "the other error too: {err:?}");
        }
    }

    #[test]
    fn missing_secret_and_duplicate_routes() {
        let yaml = "keys:\n  pseudonym: ${NOT_SET}\nroutes:\n  - name: a\n    match: {path_prefix: /a}\n    upstream: https://x\n  - name: a\n    match: {path_prefix: /b}\n    upstream: https://y\n";
        let err = check(yaml).unwrap_err();
        assert!(
            err.contains("t.yaml:2:14: key `pseudonym`: environment variable NOT_SET is not set"),
            "{err}"
        );
        assert!(
            err.contains("t.yaml:7:11: duplicate route name `a` (first on line 4)"),
            "{err}"
        );
    }

    #[test]
    fn hmac_without_any_key_says_how_to_add_one() {
        let yaml = "routes:\n  - name: a\n    match: {path_prefix: /a}\n    upstream: https://x\n    rules:\n      - select: $.phone\n        action: hmac\n";
        let err = check(yaml).unwrap_err();
        assert!(
            err.contains("t.yaml:7:17: action `hmac` needs the key `pseudonym`"),
            "{err}"
        );
    }

    #[test]
    fn inline_secrets_are_refused_without_being_echoed() {
        let yaml = "keys:\n  pseudonym: correct-horse-battery-staple\nroutes:\n  - name: a\n    match: {path_prefix: /a}\n    upstream: https://x\n";
        let err = check(yaml).unwrap_err();
        assert!(err.contains("inline secrets are not allowed"), "{err}");
        assert!(!err.contains("correct-horse"), "{err}");
    }

    /// Every vault setting's mistakes, each at its place.
    #[test]
    fn vault_settings_errors_point_at_their_place() {
        let route =
            "routes:\n  - name: crm\n    match: {path_prefix: /crm}\n    upstream: https://x\n";
        let rules = "    rules:\n";
        let cases = [
            (
                format!("{route}{rules}      - {{select: $.email, action: tokenize}}\n"),
                "t.yaml:6:35: action `tokenize` needs the token vault",
            ),
            (
                format!("keys:\n  vault: ${{PSEUDO}}\nvault: {{}}\n{route}"),
                "`vault:` with the embedded store needs `path:`",
            ),
            (
                format!("vault: {{path: /tmp/v}}\n{route}"),
                "`vault:` needs the key `vault` under `keys:`",
            ),
            (
                format!(
                    "keys:\n  vault: ${{PSEUDO}}\nvault: {{store: redis, url: rediss://h:6380}}\n{route}"
                ),
                "t.yaml:3:28: a Redis URL is redis://",
            ),
            (
                format!("keys:\n  vault: ${{PSEUDO}}\nvault: {{store: memcached}}\n{route}"),
                "t.yaml:3:16: unknown vault store `memcached`",
            ),
            (
                format!(
                    "keys:\n  vault: ${{PSEUDO}}\nvault: {{path: /tmp/v, previous_keys: [old]}}\n{route}"
                ),
                "t.yaml:3:39: `old` is not under `keys:`",
            ),
            (
                format!(
                    "keys:\n  vault: ${{PSEUDO}}\nvault: {{path: /tmp/v}}\n{route}{rules}      - {{select: $.e, action: tokenize, format: digits, length: 12}}\n"
                ),
                "t.yaml:9:65: a `digits` token has 16 to 32 digits",
            ),
            (
                format!(
                    "keys:\n  vault: ${{PSEUDO}}\nvault: {{path: /tmp/v}}\n{route}{rules}      - {{select: $.e, action: tokenize, format: uuid, prefix: x_}}\n"
                ),
                "t.yaml:9:63: `prefix` applies to format `opaque`, not `uuid`",
            ),
            (
                format!(
                    "keys:\n  vault: ${{PSEUDO}}\nvault: {{path: /tmp/v}}\n{route}{rules}      - {{select: $.e, action: tokenize, prefix: \"a b\"}}\n"
                ),
                "t.yaml:9:49: a token prefix is at most 32 letters",
            ),
            (
                format!(
                    "keys:\n  vault: ${{PSEUDO}}\nvault: {{path: /tmp/v}}\n{route}{rules}      - {{select: $.e, action: tokenize, ttl: soon}}\n"
                ),
                "t.yaml:9:46: `soon` is not a time to live",
            ),
            (
                format!(
                    "keys:\n  vault: ${{PSEUDO}}\nvault: {{path: /tmp/v}}\n{route}{rules}      - {{select: $.e, action: reveal}}\n"
                ),
                "t.yaml:9:31: action `reveal` puts values back into responses",
            ),
            (
                format!(
                    "keys:\n  vault: ${{PSEUDO}}\nvault: {{path: /tmp/v}}\n{route}    response_rules:\n      - {{select: $.e, action: hash}}\n"
                ),
                "t.yaml:9:31: `response_rules` take action `reveal` only, not `hash`",
            ),
            (
                format!(
                    "keys:\n  vault: ${{PSEUDO}}\nvault: {{path: /tmp/v}}\n{route}    browser: true\n    response_rules:\n      - {{select: $.e, action: reveal}}\n"
                ),
                "t.yaml:10:18: a browser route never reveals",
            ),
            (
                format!("{route}{rules}      - {{select: $.e, action: encrypt, key: nope}}\n"),
                "t.yaml:6:45: action `encrypt` needs the key `nope`",
            ),
        ];
        let mut wrong = Vec::new();
        for (yaml, expected) in cases {
            let err = check(&yaml).map(|_| ()).unwrap_err();
            if !err.contains(expected) {
                wrong.push(format!("{expected}\n in: {err}"));
            }
        }
        assert!(wrong.is_empty(), "{}", wrong.join("\n"));
        let good = format!(
            "keys:\n  vault: ${{PSEUDO}}\n  pseudonym: ${{PSEUDO}}\nvault: {{path: /tmp/v}}\n{route}{rules}      - {{select: $.e, action: tokenize, format: digits, length: 18, namespace: people, ttl: 30d}}\n      - {{select: $.n, action: encrypt, prefix: enc_}}\n    response_rules:\n      - {{select: $..e, action: reveal}}\n"
        );
        let policy = check(&good).unwrap();
        assert!(policy.vault.is_some());
        assert_eq!(policy.routes[0].response_rules.rules.len(), 1);
    }

    /// Every forward proxy setting's mistakes, each at its place, and
    /// nothing of the CA's key in them.
    #[test]
    fn forward_proxy_errors_point_at_their_place() {
        let dir = std::env::temp_dir().join(format!("scrim-compile-ca-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let cert = crate::ca::init(&dir).unwrap().display().to_string();
        let key = dir.join(crate::ca::KEY_FILE).display().to_string();
        let route = "routes:\n  - name: meta\n    match: {host: graph.facebook.com}\n    upstream: https://graph.facebook.com\n";
        let ca = format!("{{cert: {cert}, key: {key}}}");
        let cases = [
            (
                format!("forward_proxy:\n  ca: {{cert: {cert}, key: {cert}}}\n{route}"),
                format!(
                    "t.yaml:2:{}: cannot read a private key from {cert}",
                    21 + cert.len()
                ),
            ),
            (
                format!("forward_proxy:\n  ca: {{cert: /nonexistent/ca.pem, key: {key}}}\n{route}"),
                "t.yaml:2:14: cannot read certificates from /nonexistent/ca.pem".to_owned(),
            ),
            (
                format!("forward_proxy:\n  ca: {ca}\n  others: allow\n{route}"),
                "t.yaml:3:11: unknown forward_proxy others `allow`".to_owned(),
            ),
            (
                format!("forward_proxy:\n  ca: {ca}\n  allow: [10.0.0.0/8, everyone]\n{route}"),
                "t.yaml:3:23: `everyone` in `allow` is not a network".to_owned(),
            ),
            (
                format!(
                    "forward_proxy:\n  ca: {ca}\n  private_destinations: [10.0.0.0/33]\n{route}"
                ),
                "t.yaml:3:26: `10.0.0.0/33` in `private_destinations` is not a network".to_owned(),
            ),
            (
                format!("forward_proxy:\n  ca: {ca}\n  ports: [443, 0]\n{route}"),
                "t.yaml:3:16: port 0 cannot be connected to".to_owned(),
            ),
            (
                format!("forward_proxy:\n  ca: {ca}\n  credentials: proxy\n{route}"),
                "t.yaml:3:16: no key `proxy` under `keys:`".to_owned(),
            ),
            (
                format!(
                    "keys:\n  proxy: ${{PSEUDO}}\nforward_proxy:\n  ca: {ca}\n  credentials: proxy\n{route}"
                ),
                "t.yaml:5:16: key `proxy` must hold `user:password`".to_owned(),
            ),
            (
                format!("forward_proxy:\n  ca: {ca}\n  idle_timeout: forever\n{route}"),
                "t.yaml:3:17: `forever` is not a duration".to_owned(),
            ),
            (
                format!("forward_proxy:\n  ca: {ca}\n  certificate_cache: 0\n{route}"),
                "t.yaml:3:22: certificate_cache must be at least 1".to_owned(),
            ),
            (
                format!(
                    "listen: 127.0.0.1:8080\nforward_proxy:\n  listen: 127.0.0.1:8080\n  ca: {ca}\n{route}"
                ),
                "t.yaml:3:11: `forward_proxy.listen` must differ".to_owned(),
            ),
            (
                format!("forward_proxy:\n  ca: {ca}\n  intercept: all\n{route}"),
                "unknown field `intercept`".to_owned(),
            ),
        ];
        let secret = std::fs::read_to_string(&key).unwrap();
        let secret_line = secret.lines().nth(1).unwrap();
        let mut wrong = Vec::new();
        for (yaml, expected) in cases {
            let err = check(&yaml).map(|_| ()).unwrap_err();
            if !err.contains(&expected) || err.contains(&secret_line[..16]) {
                wrong.push(format!("{expected}\n in: {err}"));
            }
        }
        assert!(wrong.is_empty(), "{}", wrong.join("\n"));
        let policy = check(&format!("forward_proxy:\n  ca: {ca}\n{route}")).unwrap();
        let forward = policy.forward_proxy.unwrap();
        assert_eq!(forward.listen, "127.0.0.1:3128");
        assert_eq!(forward.ports, [443]);
        assert_eq!(forward.others, crate::policy::Others::Tunnel);
        assert_eq!(forward.allow.len(), 2);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
