//! Compiling a [`Config`] into an immutable [`Policy`]: routes with their rules
//! parsed, selectors turned into a [`Matcher`], keys loaded and limits
//! resolved. Everything that can be wrong with a configuration is found here,
//! once, so that the request path never meets a configuration error.

mod compile;
pub mod consent;
pub mod describe;
pub mod matcher;
pub mod selector;

use std::sync::Arc;
use std::time::Duration;

pub use compile::compile;
pub use matcher::{Label, Matcher, State};
pub use selector::{Selector, SelectorError, Step, canonical_header_name};

use sha2::Digest as _;

pub use crate::config::{TextPlain, Unlisted};
pub use crate::transform::OnInvalid;
use crate::transform::{Action, HmacKey, PseudonymKey, RotatingKey};

/// Index of a rule within its route; later rules win.
pub type RuleId = usize;

/// A compiled configuration.
#[derive(Debug)]
pub struct Policy {
    pub listen: String,
    pub admin_listen: String,
    /// Each key's name and identifier (a fingerprint, never the secret).
    pub key_ids: Vec<(String, String)>,
    /// The bearer token of the admin listener's `POST` endpoints
    /// (`keys.admin`).
    pub admin_token: Option<AdminToken>,
    pub server: ServerSettings,
    /// `limits.max_buffered_bytes`: the process's budget for held bodies.
    pub max_buffered_bytes: u64,
    pub timeouts: Timeouts,
    /// The listener's certificate and key, when it serves TLS.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    pub routes: Vec<Arc<Route>>,
    /// The token vault, when `vault:` is configured.
    pub vault: Option<VaultSettings>,
    /// The forward proxy, when `forward_proxy:` is configured.
    pub forward_proxy: Option<ForwardProxySettings>,
    /// What is accepted but should be fixed (a key file others may read):
    /// printed by `scrim check`, logged by `scrim run` and on each reload.
    pub warnings: Vec<String>,
}

/// The admin bearer token, kept as its SHA-256 digest: a presented token is
/// compared digest to digest, in time that does not depend on where they
/// differ.
#[derive(Clone)]
pub struct AdminToken([u8; 32]);

impl AdminToken {
    /// Whitespace around the secret is not part of it (a secret file or
    /// variable often ends with a newline); a presented token is trimmed
    /// the same way.
    pub fn new(secret: &[u8]) -> AdminToken {
        AdminToken(sha2::Sha256::digest(secret.trim_ascii()).into())
    }

    /// Whether an `Authorization` header value is `Bearer <this token>`.
    pub fn accepts(&self, authorization: Option<&[u8]>) -> bool {
        let Some(presented) = authorization.and_then(|value| {
            let (scheme, token) = value.split_at_checked(7)?;
            scheme
                .eq_ignore_ascii_case(b"bearer ")
                .then_some(token.trim_ascii())
        }) else {
            return false;
        };
        same_digest(presented, &self.0)
    }
}

/// Whether `presented` hashes to `expected`, in time that does not depend
/// on where they differ.
fn same_digest(presented: &[u8], expected: &[u8; 32]) -> bool {
    let digest: [u8; 32] = sha2::Sha256::digest(presented).into();
    digest
        .iter()
        .zip(expected.iter())
        .fold(0u8, |differ, (a, b)| differ | (a ^ b))
        == 0
}

/// The forward proxy's credentials (`user:password`, from a key), kept as
/// their SHA-256 digest and compared digest to digest.
#[derive(Clone)]
pub struct ProxyCredentials([u8; 32]);

impl ProxyCredentials {
    pub fn new(user_and_password: &[u8]) -> ProxyCredentials {
        ProxyCredentials(sha2::Sha256::digest(user_and_password.trim_ascii()).into())
    }

    /// Whether a `Proxy-Authorization` value is `Basic` with these
    /// credentials.
    pub fn accepts(&self, authorization: Option<&[u8]>) -> bool {
        use base64::Engine as _;
        let Some(encoded) = authorization.and_then(|value| {
            let (scheme, rest) = value.split_at_checked(6)?;
            scheme
                .eq_ignore_ascii_case(b"basic ")
                .then_some(rest.trim_ascii())
        }) else {
            return false;
        };
        match base64::engine::general_purpose::STANDARD.decode(encoded) {
            Ok(presented) => same_digest(&presented, &self.0),
            Err(_) => false,
        }
    }
}

impl std::fmt::Debug for ProxyCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ProxyCredentials(..)")
    }
}

pub use crate::config::Others;

/// The forward proxy's settings (`forward_proxy:`). `listen`, the CA and
/// `certificate_cache` are read at start; the others on each connection,
/// so that a reload changes them.
#[derive(Debug)]
pub struct ForwardProxySettings {
    pub listen: String,
    pub authority: Arc<crate::ca::Authority>,
    pub others: Others,
    /// Client networks that may use the proxy.
    pub allow: Vec<ipnet::IpNet>,
    /// Ports a `CONNECT` may name.
    pub ports: Vec<u16>,
    /// Networks tunnels may reach although they are not public.
    pub private_destinations: Vec<ipnet::IpNet>,
    pub credentials: Option<ProxyCredentials>,
    /// A tunnel idle this long is closed.
    pub idle_timeout: Duration,
    /// Minted certificates kept.
    pub certificate_cache: usize,
}

impl ForwardProxySettings {
    pub const DEFAULT_LISTEN: &str = "127.0.0.1:3128";
    pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(300);
    pub const DEFAULT_CERTIFICATE_CACHE: usize = 1000;

    /// Whether `other` can take over from these settings without a
    /// restart: the same listener, CA and cache.
    fn same_start(&self, other: &ForwardProxySettings) -> bool {
        self.listen == other.listen
            && self.authority.certificate() == other.authority.certificate()
            && self.certificate_cache == other.certificate_cache
    }
}

impl std::fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AdminToken(..)")
    }
}

/// The token vault's settings (`vault:` with `keys.vault`).
#[derive(Debug)]
pub struct VaultSettings {
    pub store: VaultStore,
    /// Entries kept in memory, each way.
    pub cache_entries: usize,
    /// Longest wait for the store on a request.
    pub timeout: Duration,
    /// `keys.vault`: new values are encrypted under it.
    pub key: Arc<PseudonymKey>,
    /// `vault.previous_keys`: values encrypted under them are still read.
    pub previous_keys: Vec<Arc<PseudonymKey>>,
}

/// Where the vault keeps its mappings.
pub enum VaultStore {
    Embedded {
        path: std::path::PathBuf,
    },
    /// The URL may hold a password: it is never printed.
    Redis {
        url: zeroize::Zeroizing<String>,
    },
}

impl std::fmt::Debug for VaultStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            VaultStore::Embedded { path } => write!(f, "embedded {}", path.display()),
            VaultStore::Redis { .. } => f.write_str("redis"),
        }
    }
}

/// The default of `vault.cache_entries`.
pub const DEFAULT_VAULT_CACHE_ENTRIES: usize = 100_000;
/// The default of `vault.timeout`.
pub const DEFAULT_VAULT_TIMEOUT: Duration = Duration::from_secs(2);

/// Limits and timeouts of the proxy listener.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ServerSettings {
    pub header_read_timeout: Duration,
    pub body_read_timeout: Duration,
    pub write_timeout: Duration,
    pub max_header_bytes: usize,
    pub max_connections: usize,
    pub max_concurrent_streams: u32,
    pub shutdown_grace: Duration,
}

impl Default for ServerSettings {
    fn default() -> Self {
        ServerSettings {
            header_read_timeout: Duration::from_secs(10),
            body_read_timeout: Duration::from_secs(60),
            write_timeout: Duration::from_secs(30),
            max_header_bytes: 64 * 1024,
            max_connections: 4096,
            max_concurrent_streams: 100,
            shutdown_grace: Duration::from_secs(30),
        }
    }
}

/// The default of `limits.max_buffered_bytes`.
pub const DEFAULT_MAX_BUFFERED_BYTES: u64 = 64 * 1024 * 1024;

/// Timeouts towards the platforms.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timeouts {
    pub connect: Duration,
    pub response: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            connect: Duration::from_secs(5),
            response: Duration::from_secs(30),
        }
    }
}

impl Policy {
    /// The route listeners' addresses, each once.
    pub fn route_listeners(&self) -> Vec<String> {
        let mut addresses: Vec<String> = self
            .routes
            .iter()
            .filter_map(|r| r.listen.clone())
            .collect();
        addresses.sort();
        addresses.dedup();
        addresses
    }

    /// Reads, parses and compiles a configuration file, with secrets from the
    /// process environment.
    pub fn load(path: &std::path::Path) -> Result<Policy, crate::config::ConfigErrors> {
        let (config, file) = crate::config::Config::load(path)?;
        compile(&config, &file, &crate::config::ProcessEnvironment)
    }

    pub fn route(&self, name: &str) -> Option<&Arc<Route>> {
        self.routes.iter().find(|route| route.name == name)
    }

    /// Whether `other` has the forward proxy this one started with (its
    /// listener, CA and certificate cache are made at start).
    pub fn same_forward_proxy_start(&self, other: &Policy) -> bool {
        match (&self.forward_proxy, &other.forward_proxy) {
            (None, None) => true,
            (Some(a), Some(b)) => a.same_start(b),
            _ => false,
        }
    }

    /// Whether `other` has the same vault: the same store and keys (a
    /// reload cannot open another).
    pub fn same_vault(&self, other: &Policy) -> bool {
        match (&self.vault, &other.vault) {
            (None, None) => true,
            (Some(a), Some(b)) => {
                let store = match (&a.store, &b.store) {
                    (VaultStore::Embedded { path: p }, VaultStore::Embedded { path: q }) => p == q,
                    (VaultStore::Redis { url: u }, VaultStore::Redis { url: v }) => u == v,
                    _ => false,
                };
                let ids = |v: &VaultSettings| {
                    std::iter::once(&v.key)
                        .chain(&v.previous_keys)
                        .map(|k| k.id().to_owned())
                        .collect::<Vec<_>>()
                };
                store
                    && ids(a) == ids(b)
                    && a.cache_entries == b.cache_entries
                    && a.timeout == b.timeout
            }
            _ => false,
        }
    }

    /// Every rotating key of every route's rules, for the sweep that drops
    /// an expired period's key when no request comes to replace it.
    pub fn rotating_keys(&self) -> Vec<Arc<RotatingKey>> {
        self.routes
            .iter()
            .flat_map(|route| rotating_keys(&route.rules).map(|(_, key)| key.clone()))
            .collect()
    }

    /// Takes over the current period's keys of `previous` (the policy a
    /// reload replaces) for the same rules here: same route, same selector,
    /// same schedule and key. A reload then leaves the tokens as they were
    /// until the period ends, even when its keys are random.
    pub fn adopt_rotating_keys(&self, previous: &Policy) {
        for route in &self.routes {
            let Some(old) = previous.route(&route.name) else {
                continue;
            };
            // Rules are matched by selector and by which of the rules with
            // that selector they are (a route's rule after its preset's).
            let previous: Vec<_> = numbered(rotating_keys(&old.rules)).collect();
            for (place, key) in numbered(rotating_keys(&route.rules)) {
                if let Some((_, old_key)) = previous
                    .iter()
                    .find(|(old_place, old_key)| *old_place == place && old_key.same_schedule(key))
                {
                    key.adopt(old_key);
                }
            }
        }
    }
}

/// Each rotating key with its selector and how many rules with that
/// selector came before it.
fn numbered<'r>(
    keys: impl Iterator<Item = (&'r str, &'r Arc<RotatingKey>)>,
) -> impl Iterator<Item = ((&'r str, usize), &'r Arc<RotatingKey>)> {
    let mut seen: Vec<&str> = Vec::new();
    keys.map(move |(selector, key)| {
        let before = seen.iter().filter(|s| **s == selector).count();
        seen.push(selector);
        ((selector, before), key)
    })
}

/// The rotating keys of a route's rules, with each rule's selector.
fn rotating_keys(rules: &Rules) -> impl Iterator<Item = (&str, &Arc<RotatingKey>)> {
    rules
        .rules
        .iter()
        .filter_map(|rule| match rule.action.unguarded() {
            Action::Hmac {
                key: HmacKey::Rotating(key),
                ..
            } => Some((rule.selector.as_str(), key)),
            _ => None,
        })
}

/// A host as the forward proxy's claims and targets compare it: lowercase,
/// without a trailing dot (`graph.facebook.com.` is `graph.facebook.com`),
/// an IP address in one text whichever way it was written (`[::1]` for
/// `[0:0::1]`, `127.0.0.1` for `[::ffff:127.0.0.1]`), so that no spelling
/// of a claimed host slips past its claim.
pub fn canonical_host(host: &str) -> String {
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    let bare = host
        .strip_prefix('[')
        .and_then(|inner| inner.strip_suffix(']'))
        .unwrap_or(&host);
    match bare.parse::<std::net::IpAddr>().map(|ip| ip.to_canonical()) {
        Ok(std::net::IpAddr::V4(v4)) => v4.to_string(),
        Ok(std::net::IpAddr::V6(v6)) => format!("[{v6}]"),
        Err(_) => host,
    }
}

/// One route: where it forwards and what it rewrites.
#[derive(Debug)]
pub struct Route {
    pub name: String,
    /// The route's own listener, if it has one: it then takes requests from
    /// that listener only (and the main listener never routes to it).
    pub listen: Option<String>,
    pub path_prefix: Option<String>,
    pub host: Option<String>,
    pub strip_prefix: bool,
    /// The upstream base URL as written.
    pub upstream: String,
    /// The same, parsed: scheme, authority and base path.
    pub upstream_uri: http::Uri,
    /// CA certificates trusted for this upstream besides the web PKI.
    pub ca_roots: Vec<rustls_pki_types::CertificateDer<'static>>,
    pub keep_forwarding_headers: bool,
    /// Browsers call this route: cookies go only by name, and no
    /// `Set-Cookie` comes back.
    pub browser: bool,
    /// The cookies a browser route passes upstream.
    pub keep_cookies: Vec<String>,
    /// The built-in preset whose rules come first in `rules`.
    pub preset: Option<String>,
    pub rules: Rules,
    /// Rules for the upstream's responses (`reveal`); empty when responses
    /// pass as they come.
    pub response_rules: Rules,
    /// Opt-out signals and what they decide; `None` when the route has
    /// neither a preset nor a `consent:` block.
    pub consent: Option<consent::Consent>,
}

impl Route {
    /// The host the forward proxy intercepts for this route by its
    /// `match.host`, as [`canonical_host`] writes it.
    pub fn claimed_host(&self) -> Option<String> {
        self.host.as_deref().map(canonical_host)
    }

    /// The host of its upstream, which the forward proxy intercepts for
    /// it too, as [`canonical_host`] writes it.
    pub fn upstream_host(&self) -> Option<String> {
        self.upstream_uri.host().map(canonical_host)
    }
}

/// The rewriting rules of a route, as the rewriters use them.
#[derive(Debug, Clone, Default)]
pub struct Rules {
    pub rules: Vec<Rule>,
    /// Body selectors (`$...`), stepped together.
    pub body: Matcher,
    /// `query.NAME` selectors: the name and the rule, in rule order.
    pub query: Vec<(String, RuleId)>,
    /// `header.NAME` selectors (names lowercase), in rule order.
    pub headers: Vec<(String, RuleId)>,
    pub unlisted: Unlisted,
    /// Detectors over the strings no rule names (`scan:`); `None` when off.
    pub scan: Option<crate::detect::Scan>,
    /// What a `text/plain` body is read as.
    pub text_plain: TextPlain,
    pub limits: Limits,
}

impl Rules {
    /// Builds rules from selector texts and actions, without a configuration
    /// file: for tests, benches and embedding.
    pub fn build(
        rules: impl IntoIterator<Item = (String, Action, OnInvalid)>,
        unlisted: Unlisted,
        limits: Limits,
    ) -> Result<Rules, SelectorError> {
        let mut built = Rules {
            unlisted,
            limits,
            ..Rules::default()
        };
        for (selector, action, on_invalid) in rules {
            let parsed = Selector::parse(&selector)?;
            built.push(
                Rule {
                    selector,
                    action,
                    on_invalid,
                },
                parsed,
            );
        }
        Ok(built)
    }

    fn push(&mut self, rule: Rule, selector: Selector) {
        let id = self.rules.len();
        match selector {
            Selector::Body(steps) => self.body.add(steps, id),
            Selector::Query(name) => self.query.push((name, id)),
            Selector::Header(name) => self.headers.push((name, id)),
        }
        self.rules.push(rule);
    }

    /// The rule that selects a flat field by name (query parameters and
    /// headers): the last one wins.
    pub fn field_rule(fields: &[(String, RuleId)], name: &str) -> Option<RuleId> {
        fields
            .iter()
            .rev()
            .find(|(field, _)| field == name)
            .map(|(_, id)| *id)
    }

    pub fn has_body_rules(&self) -> bool {
        !self.body.is_empty() || self.unlisted == Unlisted::Drop || self.scan.is_some()
    }

    /// Whether some rule needs the vault's answers (`tokenize`, `reveal`).
    pub fn uses_vault(&self) -> bool {
        self.rules
            .iter()
            .any(|rule| rule.action.vault_action().is_some())
    }
}

/// One compiled rule.
#[derive(Debug, Clone)]
pub struct Rule {
    /// The selector as written, for reports.
    pub selector: String,
    pub action: Action,
    pub on_invalid: OnInvalid,
}

/// The replacement `redact` and `on_invalid: redact` use by default.
pub const REDACTED: &str = "[REDACTED]";

/// Size and depth limits of one route.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    pub max_body_bytes: u64,
    pub buffer_limit: u64,
    pub max_depth: u32,
    pub max_value_bytes: u32,
    pub max_embedded_bytes: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_body_bytes: 10 * 1024 * 1024,
            buffer_limit: 256 * 1024,
            max_depth: 128,
            max_value_bytes: 64 * 1024,
            max_embedded_bytes: 1024 * 1024,
        }
    }
}
