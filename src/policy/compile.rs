//! Config → Policy. Every error is collected (not just the first), each
//! pointing at the value it is about.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use serde_saphyr::Spanned;

use super::consent::{self, Consent, Decision, Signal, Source};
use super::{
    Limits, OnInvalid, Policy, REDACTED, Route, Rule, Rules, Selector, ServerSettings, Timeouts,
    TlsIdentity, Unlisted,
};
use crate::config::{
    Config, ConfigError, ConfigErrors, ConsentConfig, Environment, LimitsConfig, RouteConfig,
    RuleConfig, ServerConfig, TimeoutsConfig, TlsConfig, resolve_secret,
};
use crate::presets;
use crate::transform::{
    Action, ActionKind, Encoding, Guard, Members, Normalizer, PhoneOptions, PseudonymKey, normalize,
};

const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
const DEFAULT_ADMIN_LISTEN: &str = "127.0.0.1:9090";
const DEFAULT_KEY: &str = "pseudonym";

/// Compiles a parsed configuration. `file` names it in errors; `env`
/// resolves `${VAR}` secrets.
pub fn compile(config: &Config, file: &str, env: &dyn Environment) -> Result<Policy, ConfigErrors> {
    let mut errors = Errors {
        file,
        list: Vec::new(),
    };

    let mut keys = BTreeMap::new();
    for (name, reference) in &config.keys {
        match resolve_secret(name, &reference.value, env) {
            Ok(secret) => {
                keys.insert(name.clone(), Arc::new(PseudonymKey::new(secret)));
            }
            Err(message) => errors.at(reference, message),
        }
    }
    let global_limits = limits(&mut errors, Limits::default(), &config.limits);
    let server = server_settings(&mut errors, &config.server);
    let timeouts = timeouts(&mut errors, &config.timeouts);
    let tls = config
        .tls
        .as_ref()
        .and_then(|tls| tls_identity(&mut errors, tls));

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
        if let Some(compiled) = compile_route(
            &mut errors,
            route,
            &keys,
            global_limits,
            config.keys.is_empty(),
        ) {
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
        server,
        timeouts,
        tls,
        routes,
    })
}

struct Errors<'a> {
    file: &'a str,
    list: Vec<ConfigError>,
}

impl Errors<'_> {
    fn at<T>(&mut self, at: &Spanned<T>, message: impl Into<String>) {
        self.list.push(ConfigError::at(self.file, at, message));
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
        shutdown_grace: duration(errors, &config.shutdown_grace, defaults.shutdown_grace),
        ..defaults
    };
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

fn tls_identity(errors: &mut Errors<'_>, tls: &TlsConfig) -> Option<TlsIdentity> {
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
    let identity = (!certs.is_empty()).then_some(TlsIdentity { certs, key })?;
    // Checked here so that `scrim check` finds a key that does not match.
    if let Err(error) = crate::tls::server_config(&identity) {
        errors.at(
            &tls.key,
            format!("this key cannot serve that certificate: {error}"),
        );
    }
    Some(identity)
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

fn compile_route(
    errors: &mut Errors<'_>,
    route: &RouteConfig,
    keys: &BTreeMap<String, Arc<PseudonymKey>>,
    global_limits: Limits,
    no_keys_configured: bool,
) -> Option<Route> {
    let before = errors.list.len();
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
    let unlisted = match &route.unlisted {
        None => Unlisted::Keep,
        Some(v) => match v.value.as_str() {
            "keep" => Unlisted::Keep,
            "drop" => Unlisted::Drop,
            other => {
                errors.at(
                    v,
                    format!("unknown `unlisted` value `{other}`; expected `keep` or `drop`"),
                );
                Unlisted::Keep
            }
        },
    };
    let mut rules = Rules {
        unlisted,
        limits: limits(errors, global_limits, &route.limits),
        ..Rules::default()
    };
    let context = RuleContext {
        keys,
        no_keys_configured,
        default_region: route
            .default_region
            .as_ref()
            .and_then(|region| parse_region(errors, region)),
    };
    let preset = route
        .preset
        .as_ref()
        .and_then(|name| add_preset_rules(errors, name, &context, &mut rules));
    add_rules(errors, &route.rules, &context, &mut rules);
    let consent = compile_consent(errors, route, preset.as_ref(), &rules);
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
        preset: route.preset.as_ref().map(|p| p.value.clone()),
        rules,
        consent,
    })
}

/// What rules of a route share: the keys, and the route's phone region.
struct RuleContext<'k> {
    keys: &'k BTreeMap<String, Arc<PseudonymKey>>,
    no_keys_configured: bool,
    default_region: Option<phonenumber::country::Id>,
}

fn add_rules(
    errors: &mut Errors<'_>,
    configs: &[RuleConfig],
    context: &RuleContext<'_>,
    rules: &mut Rules,
) {
    for rule in configs {
        let selector = Selector::parse(&rule.select.value)
            .map_err(|err| errors.at(&rule.select, format!("bad selector: {err}")));
        let action =
            compile_action(errors, rule, context).and_then(|action| guarded(errors, rule, action));
        let on_invalid = match &rule.on_invalid {
            None => OnInvalid::Drop,
            Some(v) => OnInvalid::from_name(&v.value).unwrap_or_else(|| {
                errors.at(
                    v,
                    format!(
                        "unknown on_invalid `{}`; expected drop, redact or reject",
                        v.value
                    ),
                );
                OnInvalid::Drop
            }),
        };
        if let (Ok(selector), Some(action)) = (selector, action) {
            rules.push(
                Rule {
                    selector: rule.select.value.clone(),
                    action,
                    on_invalid,
                },
                selector,
            );
        }
    }
}

/// The preset's rules, which come before the route's own. Its errors (there
/// should be none: every preset is compiled by the tests) name the preset
/// and its line; a missing key is reported at the route's `preset:`.
fn add_preset_rules(
    errors: &mut Errors<'_>,
    name: &Spanned<String>,
    context: &RuleContext<'_>,
    rules: &mut Rules,
) -> Option<(&'static presets::Preset, presets::PresetFile)> {
    let Some(preset) = presets::Preset::find(&name.value) else {
        let names: Vec<&str> = presets::ALL.iter().map(|p| p.name).collect();
        errors.at(
            name,
            format!(
                "unknown preset `{}`; expected one of {} (`scrim presets` describes them)",
                name.value,
                names.join(", ")
            ),
        );
        return None;
    };
    let file = match preset.parse() {
        Ok(file) => file,
        Err(parse_errors) => {
            errors.list.extend(parse_errors.0);
            return None;
        }
    };
    if file.needs_pseudonym_key() && !context.keys.contains_key(presets::PSEUDONYM_KEY) {
        errors.at(
            name,
            format!(
                "preset `{}` pseudonymizes (hmac) with the key `{}`: add it under `keys:` as `${{ENV_VAR}}` or `file:/path`",
                preset.name,
                presets::PSEUDONYM_KEY
            ),
        );
        return None;
    }
    let origin = preset.origin();
    let mut preset_errors = Errors {
        file: &origin,
        list: Vec::new(),
    };
    add_rules(&mut preset_errors, &file.rules, context, rules);
    errors.list.extend(preset_errors.list);
    Some((preset, file))
}

/// A route's consent settings. A route with a preset honours GPC even
/// without a `consent:` block; one with neither has no consent gate.
fn compile_consent(
    errors: &mut Errors<'_>,
    route: &RouteConfig,
    preset: Option<&(&'static presets::Preset, presets::PresetFile)>,
    rules: &Rules,
) -> Option<Consent> {
    let default = ConsentConfig::default();
    let config = match (&route.consent, preset) {
        (None, None) => return None,
        (Some(config), _) => config,
        (None, Some(_)) => &default,
    };
    let mut signals = Vec::new();
    let gpc = match &config.gpc {
        None => Some(Decision::StripIdentifiers),
        Some(v) if v.value == "ignore" => None,
        Some(v) => decision(errors, v),
    };
    if let Some(decision) = gpc {
        signals.push(Signal {
            label: consent::GPC_LABEL.to_owned(),
            source: Source::Header(consent::GPC_HEADER.to_owned()),
            equals: "1".to_owned(),
            decision,
        });
    }
    let mut body_probe = Rules {
        limits: rules.limits,
        ..Rules::default()
    };
    for signal in &config.signals {
        let source = match Selector::parse(&signal.select.value) {
            Ok(Selector::Header(name)) => Some(Source::Header(name)),
            Ok(Selector::Query(name)) => Some(Source::Query(name)),
            Ok(body @ Selector::Body(_)) => {
                let id = body_probe.rules.len();
                body_probe.push(
                    Rule {
                        selector: signal.select.value.clone(),
                        action: Action::Keep,
                        on_invalid: OnInvalid::Drop,
                    },
                    body,
                );
                Some(Source::Body(id))
            }
            Err(err) => {
                errors.at(&signal.select, format!("bad selector: {err}"));
                None
            }
        };
        if let (Some(source), Some(decision)) = (source, decision(errors, &signal.decision)) {
            signals.push(Signal {
                label: signal.select.value.clone(),
                source,
                equals: signal.equals.value.trim().to_owned(),
                decision,
            });
        }
    }
    let block_status = match &config.block_status {
        None => http::StatusCode::NO_CONTENT,
        Some(v) => match http::StatusCode::from_u16(v.value) {
            Ok(status) if (200..300).contains(&v.value) || (400..500).contains(&v.value) => status,
            _ => {
                errors.at(v, "block_status must be a 2xx or 4xx status");
                http::StatusCode::NO_CONTENT
            }
        },
    };

    let mut stripped = rules.clone();
    let mut identifiers = 0;
    let preset_identifiers = preset.map(|(preset, file)| (preset.origin(), &file.identifiers));
    let sources = preset_identifiers
        .iter()
        .map(|(origin, list)| (Some(origin.as_str()), list.as_slice()))
        .chain(std::iter::once((None, config.identifiers.as_slice())));
    for (origin, list) in sources {
        for selector in list {
            match Selector::parse(&selector.value) {
                Ok(parsed) => {
                    stripped.push(
                        Rule {
                            selector: selector.value.clone(),
                            action: Action::Drop,
                            on_invalid: OnInvalid::Drop,
                        },
                        parsed,
                    );
                    identifiers += 1;
                }
                Err(err) => errors.list.push(ConfigError::at(
                    origin.unwrap_or(errors.file),
                    selector,
                    format!("bad selector: {err}"),
                )),
            }
        }
    }
    if identifiers == 0
        && signals
            .iter()
            .any(|s| s.decision == Decision::StripIdentifiers)
    {
        let explicit = config
            .signals
            .iter()
            .map(|s| &s.decision)
            .chain(config.gpc.as_ref())
            .find(|d| d.value == "strip_identifiers");
        match explicit {
            Some(at) => errors.at(
                at,
                "`strip_identifiers` needs identifier fields: use a `preset:` or list them under `consent.identifiers`",
            ),
            None => errors.at(
                &route.name,
                "`Sec-GPC: 1` decides `strip_identifiers` by default, which needs identifier fields: use a `preset:`, list them under `consent.identifiers`, or set `consent.gpc`",
            ),
        }
    }
    let limited = preset
        .and_then(|(preset, file)| Some((preset, file.limited_data_use.as_ref()?)))
        .and_then(|(preset, ldu)| {
            let selector = Selector::parse(&ldu.select.value)
                .map_err(|err| {
                    errors.list.push(ConfigError::at(
                        &preset.origin(),
                        &ldu.select,
                        format!("bad selector: {err}"),
                    ))
                })
                .ok()?;
            let members: Vec<(String, String)> = ldu
                .members
                .iter()
                .map(|(name, value)| (name.clone(), value.to_string()))
                .collect();
            let members: Vec<(&str, &str)> = members
                .iter()
                .map(|(name, value)| (name.as_str(), value.as_str()))
                .collect();
            let mut limited = rules.clone();
            limited.push(
                Rule {
                    selector: ldu.select.value.clone(),
                    action: Action::AddMembers(Members::new(&members)),
                    on_invalid: OnInvalid::Drop,
                },
                selector,
            );
            Some(limited)
        });
    if limited.is_none() {
        let asked = config
            .signals
            .iter()
            .map(|s| &s.decision)
            .chain(config.gpc.as_ref())
            .find(|d| d.value == "limited_data_use");
        if let Some(at) = asked {
            errors.at(
                at,
                "`limited_data_use` needs a preset that defines it (`meta_capi`)",
            );
        }
    }
    Some(Consent {
        signals,
        block_status,
        stripped,
        limited,
        body_probe: (!body_probe.rules.is_empty()).then_some(body_probe),
    })
}

fn decision(errors: &mut Errors<'_>, value: &Spanned<String>) -> Option<Decision> {
    let decision = Decision::from_name(&value.value);
    if decision.is_none() {
        errors.at(
            value,
            format!(
                "unknown consent decision `{}`; expected {}",
                value.value,
                Decision::NAMES.join(" or ")
            ),
        );
    }
    decision
}

/// Wraps `action` in the rule's `only_if` condition, if it has one.
fn guarded(errors: &mut Errors<'_>, rule: &RuleConfig, action: Action) -> Option<Action> {
    let Some(name) = &rule.only_if else {
        return Some(action);
    };
    let Some(when) = Guard::from_name(&name.value) else {
        errors.at(
            name,
            format!(
                "unknown only_if `{}`; expected {}",
                name.value,
                Guard::NAMES.join(" or ")
            ),
        );
        return None;
    };
    if matches!(action, Action::Keep) {
        errors.at(name, "`only_if` does not apply to action `keep`");
        return None;
    }
    Some(Action::Only {
        when,
        then: Box::new(action),
    })
}

fn parse_region(
    errors: &mut Errors<'_>,
    region: &Spanned<String>,
) -> Option<phonenumber::country::Id> {
    let parsed = region
        .value
        .to_ascii_uppercase()
        .parse::<phonenumber::country::Id>();
    if parsed.is_err() {
        errors.at(
            region,
            format!(
                "unknown region `{}`; expected a two-letter country code such as US",
                region.value
            ),
        );
    }
    parsed.ok()
}

/// The options each action takes, checked so that a misplaced option is an
/// error rather than silently ignored.
fn allowed_options(kind: ActionKind) -> &'static [&'static str] {
    match kind {
        ActionKind::Drop | ActionKind::Keep => &[],
        ActionKind::Redact => &["with"],
        ActionKind::Hash => &["normalize", "default_region", "phone_format", "encoding"],
        ActionKind::Hmac => &[
            "normalize",
            "default_region",
            "phone_format",
            "key",
            "prefix",
            "length",
        ],
        ActionKind::Mask => &["keep_first", "keep_last", "char"],
        ActionKind::TruncateIp => &["v4_prefix", "v6_prefix"],
        ActionKind::Generalize => &["keep_first"],
        ActionKind::AddMembers => &[],
    }
}

fn compile_action(
    errors: &mut Errors<'_>,
    rule: &RuleConfig,
    context: &RuleContext<'_>,
) -> Option<Action> {
    let RuleContext {
        keys,
        no_keys_configured,
        default_region,
    } = *context;
    let Some(kind) = ActionKind::from_name(&rule.action.value) else {
        let names: Vec<&str> = ActionKind::ALL.iter().map(|k| k.as_str()).collect();
        errors.at(
            &rule.action,
            format!(
                "unknown action `{}`; expected one of {}",
                rule.action.value,
                names.join(", ")
            ),
        );
        return None;
    };
    let before = errors.list.len();
    let given: [(&str, Option<(u64, u64)>); 13] = [
        ("normalize", loc(&rule.normalize)),
        ("default_region", loc(&rule.default_region)),
        ("phone_format", loc(&rule.phone_format)),
        ("encoding", loc(&rule.encoding)),
        ("key", loc(&rule.key)),
        ("prefix", loc(&rule.prefix)),
        ("length", loc(&rule.length)),
        ("with", loc(&rule.with)),
        ("keep_first", loc(&rule.keep_first)),
        ("keep_last", loc(&rule.keep_last)),
        ("char", loc(&rule.mask_char)),
        ("v4_prefix", loc(&rule.v4_prefix)),
        ("v6_prefix", loc(&rule.v6_prefix)),
    ];
    for (option, at) in given {
        if let Some((line, column)) = at
            && !allowed_options(kind).contains(&option)
        {
            errors.list.push(ConfigError::new(
                errors.file,
                line,
                column,
                format!("`{option}` does not apply to action `{}`", kind.as_str()),
            ));
        }
    }

    let action = match kind {
        // Made by consent decisions; `from_name` never returns it.
        ActionKind::AddMembers => return None,
        ActionKind::Drop => Action::Drop,
        ActionKind::Keep => Action::Keep,
        ActionKind::Redact => Action::Redact {
            with: rule
                .with
                .as_ref()
                .map_or_else(|| REDACTED.to_owned(), |w| w.value.clone()),
        },
        ActionKind::Hash => Action::Hash {
            normalizer: normalizer(errors, rule, default_region),
            encoding: match &rule.encoding {
                None => Encoding::Hex,
                Some(v) => Encoding::from_name(&v.value).unwrap_or_else(|| {
                    errors.at(
                        v,
                        format!(
                            "unknown encoding `{}`; expected hex, base64 or base64url",
                            v.value
                        ),
                    );
                    Encoding::Hex
                }),
            },
        },
        ActionKind::Hmac => {
            let key_name = rule.key.as_ref().map_or(DEFAULT_KEY, |k| k.value.as_str());
            let key = keys.get(key_name).cloned();
            if key.is_none() {
                let message = if no_keys_configured {
                    format!(
                        "action `hmac` needs the key `{key_name}`: add it under `keys:` as `${{ENV_VAR}}` or `file:/path`"
                    )
                } else {
                    format!(
                        "action `hmac` uses key `{key_name}`, which is not under `keys:` (or could not be loaded)"
                    )
                };
                match &rule.key {
                    Some(at) => errors.at(at, message),
                    None => errors.at(&rule.action, message),
                }
            }
            let length = rule.length.as_ref().map_or(22, |l| l.value);
            if let Some(at) = &rule.length
                && !(16..=43).contains(&length)
            {
                errors.at(at, "length must be between 16 and 43");
            }
            let normalizer = normalizer(errors, rule, default_region);
            Action::Hmac {
                key: key?,
                prefix: rule
                    .prefix
                    .as_ref()
                    .map(|p| p.value.clone())
                    .unwrap_or_default(),
                length: length as usize,
                normalizer,
            }
        }
        ActionKind::Mask => Action::Mask {
            keep_first: rule.keep_first.as_ref().map_or(0, |v| v.value as usize),
            keep_last: rule.keep_last.as_ref().map_or(4, |v| v.value as usize),
            with: rule.mask_char.as_ref().map_or('*', |v| v.value),
        },
        ActionKind::TruncateIp => {
            let v4_prefix = rule.v4_prefix.as_ref().map_or(24, |v| v.value);
            let v6_prefix = rule.v6_prefix.as_ref().map_or(48, |v| v.value);
            if let Some(at) = &rule.v4_prefix
                && v4_prefix > 32
            {
                errors.at(at, "v4_prefix must be between 0 and 32");
            }
            if let Some(at) = &rule.v6_prefix
                && v6_prefix > 128
            {
                errors.at(at, "v6_prefix must be between 0 and 128");
            }
            Action::TruncateIp {
                v4_prefix,
                v6_prefix,
            }
        }
        ActionKind::Generalize => Action::Generalize {
            keep_first: rule.keep_first.as_ref().map_or(3, |v| v.value as usize),
        },
    };
    (errors.list.len() == before).then_some(action)
}

fn loc<T>(value: &Option<Spanned<T>>) -> Option<(u64, u64)> {
    value
        .as_ref()
        .map(|v| (v.referenced.line(), v.referenced.column()))
}

fn normalizer(
    errors: &mut Errors<'_>,
    rule: &RuleConfig,
    route_region: Option<phonenumber::country::Id>,
) -> Normalizer {
    let Some(name) = &rule.normalize else {
        if let Some(at) = &rule.default_region {
            errors.at(at, "`default_region` applies only with `normalize: phone`");
        }
        return Normalizer::None;
    };
    let Some(mut normalizer) = Normalizer::from_name(&name.value) else {
        errors.at(
            name,
            format!(
                "unknown normalizer `{}`; expected one of {}",
                name.value,
                normalize::NAMES.join(", ")
            ),
        );
        return Normalizer::None;
    };
    match &mut normalizer {
        Normalizer::Phone(options) => *options = phone_options(errors, rule, route_region),
        _ => {
            for (option, at) in [
                ("default_region", loc(&rule.default_region)),
                ("phone_format", loc(&rule.phone_format)),
            ] {
                if let Some((line, column)) = at {
                    errors.list.push(ConfigError::new(
                        errors.file,
                        line,
                        column,
                        format!("`{option}` applies only with `normalize: phone`"),
                    ));
                }
            }
        }
    }
    normalizer
}

fn phone_options(
    errors: &mut Errors<'_>,
    rule: &RuleConfig,
    route_region: Option<phonenumber::country::Id>,
) -> PhoneOptions {
    let mut options = PhoneOptions {
        default_region: route_region,
        ..PhoneOptions::default()
    };
    if let Some(region) = &rule.default_region {
        options.default_region = parse_region(errors, region).or(route_region);
    }
    if let Some(format) = &rule.phone_format {
        match format.value.as_str() {
            "e164" => options.plus = true,
            "digits" => options.plus = false,
            other => errors.at(
                format,
                format!("unknown phone_format `{other}`; expected e164 or digits"),
            ),
        }
    }
    options
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
}
