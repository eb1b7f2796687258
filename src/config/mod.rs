//! The configuration file: its YAML schema, how it is read, and where its
//! errors point. The doc comments on these structs are the reference for each
//! setting. Everything is checked against the schema (`deny_unknown_fields`);
//! meaning (selectors, actions, keys) is checked when the file is compiled into
//! a [`Policy`](crate::policy::Policy).

mod choice;
mod error;
mod secret;

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;
pub use serde_saphyr::Spanned;

use crate::detect::Detector;
use crate::transform::{
    ActionKind, Encoding, Guard, Normalizer, OnInvalid, PhoneFormat, Shape, TokenFormatKind,
};

pub use choice::{Choice, names};
pub use error::{ConfigError, ConfigErrors};
pub use secret::{Environment, ProcessEnvironment, resolve_secret};

/// A whole configuration file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Address the proxy listens on. Default `127.0.0.1:8080`.
    pub listen: Option<Spanned<String>>,
    /// Serve the proxy listener over TLS (ALPN `h2` and `http/1.1`).
    pub tls: Option<TlsConfig>,
    /// The admin listener (`/metrics`, `/healthz`, `/readyz`).
    pub admin: Option<AdminConfig>,
    /// Named secrets, each `${ENV_VAR}` or `file:/path`. Never inline.
    #[serde(default)]
    pub keys: BTreeMap<String, Spanned<String>>,
    /// Defaults for every route; a route may override them.
    #[serde(default)]
    pub limits: LimitsConfig,
    /// Limits and timeouts of the proxy listener.
    #[serde(default)]
    pub server: ServerConfig,
    /// Timeouts towards the platforms.
    #[serde(default)]
    pub timeouts: TimeoutsConfig,
    /// The token vault, for `tokenize` rules and `reveal` response rules.
    pub vault: Option<VaultConfig>,
    /// A forward proxy (`HTTPS_PROXY`) for apps that cannot change the base
    /// URL they call: what goes to a host a route claims is rewritten, the
    /// rest tunnelled or refused.
    pub forward_proxy: Option<ForwardProxyConfig>,
    /// Where requests go and what is rewritten on the way.
    pub routes: Vec<RouteConfig>,
}

/// The token vault: where the values behind `tokenize` tokens are kept,
/// encrypted under `keys.vault`. Read at start: changing it takes a
/// restart.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VaultConfig {
    /// `embedded` (default: one file on this machine, `path`) or `redis`
    /// (`url`, shared by every scrim of a site).
    pub store: Option<Spanned<Choice<VaultStore>>>,
    /// `embedded`: the store's file, created if missing
    /// (`/var/lib/scrim/vault.redb`). Required with `embedded`.
    pub path: Option<Spanned<String>>,
    /// `redis`: `redis://[user:password@]host:port[/db]`. TLS to Redis is
    /// not supported: keep it on loopback or a private network.
    pub url: Option<Spanned<String>>,
    /// Tokens and revealed values kept in memory, each way. Default 100000.
    pub cache_entries: Option<Spanned<u32>>,
    /// Longest wait for the store on a request; past it the request gets
    /// 503 and nothing is forwarded. Default `2s`.
    pub timeout: Option<Spanned<String>>,
    /// Keys under `keys:` that values were encrypted with before
    /// `keys.vault`: still read, never written. Default none.
    #[serde(default)]
    pub previous_keys: Vec<Spanned<String>>,
}

/// The forward-proxy listener (`HTTPS_PROXY=http://127.0.0.1:3128`). A
/// `CONNECT` to a host that a route claims (its `match.host`, or the host of
/// its `upstream`) is answered with a certificate minted for that host by
/// `ca`, and the requests inside go through that route as on the proxy
/// listener; a `CONNECT` anywhere else follows `others`. Read at start:
/// changing `listen`, `ca` or `certificate_cache` takes a restart.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ForwardProxyConfig {
    /// Address of the forward-proxy listener. Default `127.0.0.1:3128`.
    pub listen: Option<Spanned<String>>,
    /// The CA that signs the certificates of intercepted hosts (`scrim ca
    /// init` makes one). Apps must trust its certificate.
    pub ca: TlsConfig,
    /// `CONNECT` to a host no route claims: `tunnel` (default: bytes pass
    /// unread, so the rest of the app keeps working) or `deny` (403).
    pub others: Option<Spanned<Choice<Others>>>,
    /// Client networks that may use the proxy (`10.0.0.0/8`, `::1`).
    /// Default loopback only (`127.0.0.0/8`, `::1`).
    pub allow: Option<Vec<Spanned<String>>>,
    /// Ports a `CONNECT` may name. Default `[443]`.
    pub ports: Option<Vec<Spanned<u16>>>,
    /// Networks a tunnel or a plain-HTTP request may reach although they
    /// are loopback, private, link-local or otherwise not public
    /// (`10.1.2.0/24`). Default none.
    #[serde(default)]
    pub private_destinations: Vec<Spanned<String>>,
    /// A key under `keys:` holding `user:password`: clients must then send
    /// them as `Proxy-Authorization: Basic` (`http://user:password@host:3128`
    /// in `HTTPS_PROXY`). Default none.
    pub credentials: Option<Spanned<String>>,
    /// A tunnel with no byte either way for this long is closed. Default
    /// `5m`.
    pub idle_timeout: Option<Spanned<String>>,
    /// Minted certificates kept, one per host. Default 1000.
    pub certificate_cache: Option<Spanned<u32>>,
}

/// What the forward proxy does with a host no route claims
/// (`forward_proxy.others`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Others {
    #[default]
    Tunnel,
    Deny,
}

/// Where the vault keeps its mappings (`vault.store`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VaultStore {
    #[default]
    Embedded,
    Redis,
}

/// Limits and timeouts of the proxy listener. Durations are written `10s`,
/// `500ms`, `2m`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// A client must send a request's headers within this, or the connection
    /// is closed (against slowloris): from the connection's start to its
    /// first request (TLS handshake included, whatever the protocol), and
    /// between requests (an HTTP/1.1 keep-alive or HTTP/2 connection with no
    /// request in flight is closed after this). Default `10s`.
    pub header_read_timeout: Option<Spanned<String>>,
    /// A request's body must arrive whole within this from the end of its
    /// head, or the client gets 408 and the connection is closed (a body
    /// sent at a trickle holds a connection and a buffer). Default `60s`.
    pub body_read_timeout: Option<Spanned<String>>,
    /// A client that takes none of a response for this long (it does not
    /// read, or its HTTP/2 window stays shut) is disconnected. Default `30s`.
    pub write_timeout: Option<Spanned<String>>,
    /// Largest request head (request line and headers) accepted; at least
    /// 8192. Default 65536.
    pub max_header_bytes: Option<Spanned<u32>>,
    /// Most connections served at once by the whole process (every worker
    /// and listener); further ones wait to be accepted. Default 4096.
    pub max_connections: Option<Spanned<u32>>,
    /// Most requests at once on one HTTP/2 connection; more are refused
    /// with `REFUSED_STREAM` (clients retry them). Default 100.
    pub max_concurrent_streams: Option<Spanned<u32>>,
    /// On SIGTERM or SIGINT, requests in flight get this long to finish.
    /// Default `30s`.
    pub shutdown_grace: Option<Spanned<String>>,
}

/// Timeouts towards the platforms.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TimeoutsConfig {
    /// Connecting (TCP and TLS) to an upstream; 502 when it fails. Default
    /// `5s`.
    pub connect: Option<Spanned<String>>,
    /// From sending the request to the response's headers; 504 past it.
    /// Default `30s`.
    pub response: Option<Spanned<String>>,
}

/// A certificate chain and its private key, as PEM files.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM file with the certificate chain, leaf first.
    pub cert: Spanned<String>,
    /// PEM file with the private key (PKCS#8, PKCS#1 or SEC1).
    pub key: Spanned<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminConfig {
    /// Address of the admin listener. Default `127.0.0.1:9090`.
    pub listen: Option<Spanned<String>>,
}

/// Size and depth limits. Every field is optional: unset fields take the
/// global value, then the built-in default.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsConfig {
    /// Largest request body accepted (413 above). Default 10 MiB.
    pub max_body_bytes: Option<Spanned<u64>>,
    /// Bodies up to this size are rewritten whole and sent with
    /// `Content-Length`; larger ones stream. Default 256 KiB.
    pub buffer_limit: Option<Spanned<u64>>,
    /// Deepest nesting of objects and arrays accepted. Default 128.
    pub max_depth: Option<Spanned<u32>>,
    /// Largest single value a rule may buffer to rewrite it. Default 64 KiB.
    pub max_value_bytes: Option<Spanned<u32>>,
    /// Largest embedded document (JSON inside a string or a form field) that
    /// is opened to rewrite values inside it. Default 1 MiB.
    pub max_embedded_bytes: Option<Spanned<u32>>,
    /// Top level only: the bytes of request bodies the whole process holds
    /// at once, every connection and HTTP/2 stream together. A request with
    /// a body reserves what it may hold (its length up to `buffer_limit`)
    /// before its body is read; when the budget is spent it waits up to a
    /// second, then gets 503 with `Retry-After`. Default 64 MiB. Read at
    /// start: changing it takes a restart.
    pub max_buffered_bytes: Option<Spanned<u64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// Unique name, used in metrics and logs.
    pub name: Spanned<String>,
    /// Which requests this route takes.
    #[serde(rename = "match", default)]
    pub matches: MatchConfig,
    /// A listener of the route's own (`127.0.0.1:8081`), for SDKs that can
    /// change the host they call but not add a path: every request on it
    /// goes to the routes that name it. Changing it needs a restart.
    pub listen: Option<Spanned<String>>,
    /// Remove the matched `path_prefix` before forwarding.
    #[serde(default)]
    pub strip_prefix: bool,
    /// Base URL of the platform, `https://host[:port][/path]`.
    pub upstream: Spanned<String>,
    /// PEM file of CA certificates trusted for this upstream, besides the
    /// web PKI roots (a private CA in front of a self-hosted platform).
    pub ca_file: Option<Spanned<String>>,
    /// Pass `Forwarded`, `X-Forwarded-For`, `X-Real-IP` and the client
    /// address headers of CDNs and load balancers (`CF-Connecting-IP`,
    /// `True-Client-IP`, …) upstream. They identify the app's users, so by
    /// default they are removed.
    #[serde(default)]
    pub keep_forwarding_headers: bool,
    /// Browsers call this route directly (a site's analytics tag pointed at
    /// scrim): the `Cookie` header is removed (all but the cookies
    /// `keep_cookies` names), so are `Authorization` (the site's own
    /// credentials) and client hints beyond the low-entropy three
    /// (`Sec-CH-UA`, `-Mobile`, `-Platform`), and no `Set-Cookie` of the
    /// upstream reaches the browser. Default `false`; `true` with a preset for browsers
    /// (`ga4_web`).
    pub browser: Option<Spanned<bool>>,
    /// Browser routes: cookies passed upstream, by name. Default none.
    #[serde(default)]
    pub keep_cookies: Vec<Spanned<String>>,
    /// The site's own hosts (`shop.example`, `www.shop.example`): a URL
    /// to any other is external for `strip_url`'s `external: drop`.
    #[serde(default)]
    pub site: Vec<Spanned<String>>,
    /// URL parameters allowed to stay (`page`, `q`), by name, in every URL
    /// a `strip_url` rule of the route cuts. Default none.
    #[serde(default)]
    pub keep_params: Vec<Spanned<String>>,
    /// `text/plain` bodies: `refuse` (415) or `query_lines` (one
    /// URL-encoded hit per line, rewritten with the `query.NAME` rules; form
    /// bodies too, and any other body refused). Default `refuse`;
    /// `query_lines` with `preset: ga4_web`.
    pub text_plain: Option<Spanned<Choice<TextPlain>>>,
    /// A built-in rule set for one platform (`scrim presets` lists them):
    /// its rules come first, and the route's own `rules` after them win
    /// where they select the same value.
    pub preset: Option<Spanned<String>>,
    /// Region for phone numbers written without a country code (`US`), for
    /// every `phone` normalizer of the route (the preset's included) that
    /// does not name its own.
    pub default_region: Option<Spanned<String>>,
    /// Rewriting rules, applied in order; where two select the same value the
    /// later one wins.
    #[serde(default)]
    pub rules: Vec<RuleConfig>,
    /// Rules for the upstream's responses on their way back to the app:
    /// action `reveal` only, which puts back the values behind `tokenize`
    /// tokens and `encrypt` texts. Default none (responses pass as they
    /// come).
    #[serde(default)]
    pub response_rules: Vec<RuleConfig>,
    /// What happens to body values no rule selects: `keep` (default) or
    /// `drop` (allow-list mode: only what the rules name leaves).
    pub unlisted: Option<Spanned<Choice<Unlisted>>>,
    /// Overrides of the global limits for this route.
    #[serde(default)]
    pub limits: LimitsConfig,
    /// Opt-out signals and what they decide. A route with a preset honours
    /// `Sec-GPC: 1` by default (`strip_identifiers`) even without this.
    pub consent: Option<ConsentConfig>,
    /// Detectors over every string no rule selects (body values and member
    /// names, query values, `Referer`): `off`, `on`, or settings. Default
    /// `on` for a route with a preset, `off` otherwise.
    pub scan: Option<Spanned<ScanConfig>>,
}

/// A route's `scan:`: a switch, or settings (which turn it on).
#[derive(Debug)]
pub enum ScanConfig {
    Off,
    On,
    Settings(Box<ScanSettings>),
}

/// What `scan:` looks for and does.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScanSettings {
    /// Which detectors look: `email`, `phone`, `card`, `iban`, `ssn`, `ip`.
    /// Default: all but `ip`.
    pub detectors: Option<Vec<Spanned<Choice<Detector>>>>,
    /// What becomes of a finding: `redact` (default: a tag such as
    /// `[email]`), `hash` or `hmac` (of its normalized form), `drop` (the
    /// whole value), or `reject` (the request).
    pub action: Option<Spanned<Choice<ScanActionKind>>>,
    /// `hmac`: the key under `keys:`. Default `default`.
    pub key: Option<Spanned<String>>,
    /// Request headers scanned besides `Referer`.
    #[serde(default)]
    pub headers: Vec<Spanned<String>>,
}

/// The names `scan: {action}` takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ScanActionKind {
    #[default]
    Redact,
    Hash,
    Hmac,
    Drop,
    Reject,
}

impl<'de> Deserialize<'de> for ScanConfig {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = ScanConfig;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("`off`, `on`, or a mapping of scan settings")
            }
            fn visit_bool<E: serde::de::Error>(self, on: bool) -> Result<ScanConfig, E> {
                Ok(if on { ScanConfig::On } else { ScanConfig::Off })
            }
            fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<ScanConfig, E> {
                match text {
                    "off" => Ok(ScanConfig::Off),
                    "on" => Ok(ScanConfig::On),
                    _ => Err(E::invalid_value(serde::de::Unexpected::Str(text), &self)),
                }
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                map: A,
            ) -> Result<ScanConfig, A::Error> {
                ScanSettings::deserialize(serde::de::value::MapAccessDeserializer::new(map))
                    .map(|settings| ScanConfig::Settings(Box::new(settings)))
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

/// Opt-out signals of a route, and what they decide.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsentConfig {
    /// What `Sec-GPC: 1` (Global Privacy Control) decides:
    /// `strip_identifiers` (default), `block`, `limited_data_use`, or
    /// `ignore`.
    pub gpc: Option<Spanned<Choice<GpcDecision>>>,
    /// More signals, checked after GPC; the first present decides.
    #[serde(default)]
    pub signals: Vec<SignalConfig>,
    /// Identifier fields, besides the preset's, that `strip_identifiers`
    /// removes (selectors, as in rules).
    #[serde(default)]
    pub identifiers: Vec<Spanned<String>>,
    /// The status `block` answers the app with. Default 204.
    pub block_status: Option<Spanned<u16>>,
}

/// What `strip_url` does with a URL to another site (`external:`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum External {
    /// Cut like any other URL.
    #[default]
    Keep,
    /// Removed whole (a referrer from elsewhere).
    Drop,
}

/// What a route does with a `text/plain` body (`text_plain:`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TextPlain {
    /// 415: scrim cannot tell what such a body holds.
    #[default]
    Refuse,
    /// One URL-encoded set of parameters per line (gtag.js batches hits
    /// so), each line rewritten with the route's `query.NAME` rules. Form
    /// bodies are read the same way, and other bodies are refused: the
    /// route's rules name query parameters only.
    QueryLines,
}

/// What happens to body values that no rule selects.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Unlisted {
    #[default]
    Keep,
    /// Allow-list mode: every scalar no rule selects is removed.
    Drop,
}

/// What a route does with a request that carries an opt-out signal.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    /// Answer the app with the route's `block_status`; forward nothing.
    Block,
    /// Forward with every identifier field removed.
    StripIdentifiers,
    /// Forward flagged for the platform's restricted processing (Meta's
    /// Limited Data Use), rewritten as usual otherwise.
    LimitedDataUse,
}

impl Decision {
    /// The name as the metrics' `decision` label and `scrim check` show it.
    pub fn as_str(self) -> &'static str {
        match self {
            Decision::Block => "block",
            Decision::StripIdentifiers => "strip_identifiers",
            Decision::LimitedDataUse => "limited_data_use",
        }
    }
}

/// What `Sec-GPC: 1` decides: a [`Decision`], or nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GpcDecision {
    Block,
    #[default]
    StripIdentifiers,
    LimitedDataUse,
    /// GPC is not read.
    Ignore,
}

impl GpcDecision {
    pub fn decision(self) -> Option<Decision> {
        match self {
            GpcDecision::Block => Some(Decision::Block),
            GpcDecision::StripIdentifiers => Some(Decision::StripIdentifiers),
            GpcDecision::LimitedDataUse => Some(Decision::LimitedDataUse),
            GpcDecision::Ignore => None,
        }
    }
}

/// One opt-out signal.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignalConfig {
    /// Where it is read: `header.NAME` or `query.NAME`.
    pub select: Spanned<String>,
    /// The value that means the user opted out (compared trimmed and
    /// ASCII case-insensitively), e.g. `G100` for Google's `gcs`.
    pub equals: Spanned<String>,
    /// `block`, `strip_identifiers` or `limited_data_use`.
    pub decision: Spanned<Choice<Decision>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MatchConfig {
    /// Requests whose path starts with this; the longest prefix wins.
    pub path_prefix: Option<Spanned<String>>,
    /// Requests for this `Host`.
    pub host: Option<Spanned<String>>,
}

/// One rule: a selector, an action, and the action's options.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleConfig {
    /// What the rule applies to: `$.path` in the body, `query.NAME`, or
    /// `header.NAME`.
    pub select: Spanned<String>,
    /// `drop`, `redact`, `hash`, `hmac`, `mask`, `truncate_ip`,
    /// `generalize` or `keep`.
    pub action: Spanned<Choice<ActionKind>>,
    /// Apply the rule only to strings that are `email` (shaped like an
    /// email address), that `contains_email` (one appears in the text,
    /// also percent-encoded), or that are a `url` (`scheme://…`); every
    /// other value stays as it is.
    pub only_if: Option<Spanned<Choice<Guard>>>,
    /// What to do with a value the action cannot handle: `drop` (default),
    /// `redact` or `reject` (fail the whole request).
    pub on_invalid: Option<Spanned<Choice<OnInvalid>>>,
    /// `hash`, `hmac`: the normalizer applied first. `keep`: the value is
    /// kept clear in the normalizer's form. Default `none`.
    pub normalize: Option<Spanned<Choice<Normalizer>>>,
    /// `phone` normalizer: region for numbers without a country code (`US`).
    pub default_region: Option<Spanned<String>>,
    /// `phone` normalizer: `e164` (`+16505551212`, default) or `digits`
    /// (`16505551212`).
    pub phone_format: Option<Spanned<Choice<PhoneFormat>>>,
    /// `hash`: `hex` (default), `base64` or `base64url`.
    pub encoding: Option<Spanned<Choice<Encoding>>>,
    /// `hmac`, `encrypt`: name of the key under `keys:`. Default
    /// `pseudonym`.
    pub key: Option<Spanned<String>>,
    /// `hmac`, `encrypt`, `tokenize` (`opaque`): text put before each
    /// token. `hmac`, `encrypt`: default none; `tokenize`: default `tok_`.
    pub prefix: Option<Spanned<String>>,
    /// `hmac`: characters of the MAC kept in the token (16 to 43, default
    /// 22). `tokenize` (`digits`): digits in the token (16 to 32, default
    /// 16).
    pub length: Option<Spanned<u32>>,
    /// `tokenize`: how a token is written: `opaque` (the prefix and 22
    /// base64url characters), `uuid`, or `digits` (`length` digits, never a
    /// valid card or phone number). Default `opaque`.
    pub format: Option<Spanned<Choice<TokenFormatKind>>>,
    /// `tokenize`: values get the same token within a namespace. Default
    /// the route's name.
    pub namespace: Option<Spanned<String>>,
    /// `tokenize`: the mapping is removed this long after it was made
    /// (`30d`); the value then gets a new token. Default none (kept until
    /// erased).
    pub ttl: Option<Spanned<String>>,
    /// `hmac`: change the key every period: `daily` (at midnight UTC),
    /// `hourly`, or a duration (`30m`, at least `1s`). Each period's key is
    /// random and forgotten when the period ends, unless `key` is given:
    /// then it is derived from that key and the period's start, so that
    /// every scrim of a site makes the same tokens.
    pub rotate: Option<Spanned<String>>,
    /// `hmac`: how a token is written: `token` (default,
    /// `{prefix}{key id}.{MAC}`), `ga_client_id` (`1234567890.1234567890`,
    /// as Google Analytics writes a client id) or `digits` (ten digits).
    pub shape: Option<Spanned<Choice<Shape>>>,
    /// `strip_url`: what becomes of a URL to a host that is not one of the
    /// route's `site:` hosts: `keep` (default) or `drop` (without `site:`,
    /// every URL with a host is dropped).
    pub external: Option<Spanned<Choice<External>>>,
    /// `redact`: the replacement. Default `[REDACTED]`.
    pub with: Option<Spanned<String>>,
    /// `mask`, `generalize`: characters kept at the start. Default 0 (`mask`)
    /// and 3 (`generalize`).
    pub keep_first: Option<Spanned<u32>>,
    /// `mask`: characters kept at the end. Default 4.
    pub keep_last: Option<Spanned<u32>>,
    /// `mask`: the masking character. Default `*`.
    #[serde(rename = "char")]
    pub mask_char: Option<Spanned<char>>,
    /// `truncate_ip`: IPv4 bits kept. Default 24.
    pub v4_prefix: Option<Spanned<u8>>,
    /// `truncate_ip`: IPv6 bits kept. Default 48.
    pub v6_prefix: Option<Spanned<u8>>,
}

impl Config {
    /// Parses a configuration text; `file` names it in errors.
    pub fn parse(source: &str, file: &str) -> Result<Config, ConfigErrors> {
        serde_saphyr::from_str(source).map_err(|err| ConfigErrors::from_yaml(file, &err))
    }

    /// Parses another document of the same YAML dialect (a preset), with its
    /// errors placed in `file`.
    pub fn parse_document<T: serde::de::DeserializeOwned>(
        source: &str,
        file: &str,
    ) -> Result<T, ConfigErrors> {
        serde_saphyr::from_str(source).map_err(|err| ConfigErrors::from_yaml(file, &err))
    }

    /// Reads and parses a configuration file.
    pub fn load(path: &Path) -> Result<(Config, String), ConfigErrors> {
        let file = path.display().to_string();
        let source = std::fs::read_to_string(path).map_err(|err| {
            ConfigErrors::single(ConfigError::new(
                &file,
                0,
                0,
                format!("cannot read the file: {err}"),
            ))
        })?;
        Config::parse(&source, &file).map(|config| (config, file))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_keys_are_errors_with_a_position() {
        let yaml = "routes:\n  - name: a\n    match: {path_prefix: /a}\n    upstream: https://x\n    rulez: []\n";
        let err = Config::parse(yaml, "scrim.yaml").unwrap_err().to_string();
        assert!(err.starts_with("scrim.yaml:5:5: "), "{err}");
        assert!(err.contains("rulez"), "{err}");
    }

    #[test]
    fn syntax_errors_have_a_position() {
        let err = Config::parse("routes: [\n", "c.yaml")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("c.yaml:"), "{err}");
    }

    #[test]
    fn spans_point_at_values() {
        let yaml = "routes:\n  - name: a\n    match: {path_prefix: /a}\n    upstream: https://x\n    rules:\n      - select: $.email\n        action: hash\n";
        let config = Config::parse(yaml, "c.yaml").unwrap();
        let action = &config.routes[0].rules[0].action;
        assert_eq!(
            (action.referenced.line(), action.referenced.column()),
            (7, 17)
        );
    }
}
