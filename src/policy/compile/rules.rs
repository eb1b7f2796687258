//! Rules: selectors, actions with their options, normalizers, conditions.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_saphyr::Spanned;

use super::Errors;
use crate::config::External;
use crate::config::{ConfigError, RuleConfig};
use crate::policy::{REDACTED, Rule, Rules, Selector};
use crate::presets::PSEUDONYM_KEY as DEFAULT_KEY;
use crate::transform::tokenize::{DEFAULT_TOKEN_PREFIX, DIGITS_LENGTHS, is_prefix_char};
use crate::transform::{
    Action, ActionKind, EncryptKey, HmacKey, KeySource, Normalizer, PhoneFormat, PhoneOptions,
    PseudonymKey, RotatingKey, Shape, TokenFormat, TokenFormatKind, Tokenize, UrlRule,
};

/// The defaults of the actions' options: here, and in the README's table
/// of actions and the doc comments of `RuleConfig`, which a test compares
/// with these (`readme.rs`).
pub(super) mod defaults {
    pub const HMAC_LENGTH: u32 = 22;
    pub const MASK_KEEP_FIRST: u32 = 0;
    pub const MASK_KEEP_LAST: u32 = 4;
    pub const MASK_CHAR: char = '*';
    pub const TRUNCATE_V4_PREFIX: u8 = 24;
    pub const TRUNCATE_V6_PREFIX: u8 = 48;
    pub const GENERALIZE_KEEP_FIRST: u32 = 3;
    pub const TOKEN_DIGITS: u32 = 16;
    /// The longest `prefix` of `tokenize` and `encrypt`.
    pub const MAX_TOKEN_PREFIX: usize = 32;
}

/// What rules of a route share: the keys, the route's phone region, and
/// the site's own hosts.
#[derive(Clone, Copy)]
pub(super) struct RuleContext<'k> {
    pub(super) keys: &'k BTreeMap<String, Arc<PseudonymKey>>,
    pub(super) no_keys_configured: bool,
    pub(super) default_region: Option<phonenumber::country::Id>,
    /// Lowercase.
    pub(super) site: &'k [String],
    /// The URL parameters `strip_url` keeps.
    pub(super) keep_params: &'k [String],
    /// The route's name: the default namespace of its `tokenize` rules.
    pub(super) route: &'k str,
    /// Whether `vault:` and `keys.vault` are configured.
    pub(super) vault: bool,
    /// Response rules: the keys of the route's `encrypt` rules, and the
    /// namespaces of its `tokenize` rules, which `reveal` reads.
    pub(super) encrypt_keys: &'k [Arc<EncryptKey>],
    pub(super) namespaces: &'k [String],
    /// Which rules these are: a response's take `reveal` only.
    pub(super) direction: Direction,
}

/// Whether rules apply to requests on their way to the platform, or to
/// responses on their way back to the app.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Direction {
    Request,
    Response,
}

pub(super) fn add_rules(
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
        let on_invalid = rule
            .on_invalid
            .as_ref()
            .and_then(|v| errors.choice(v, "on_invalid"))
            .unwrap_or_default();
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

/// Wraps `action` in the rule's `only_if` condition, if it has one.
fn guarded(errors: &mut Errors<'_>, rule: &RuleConfig, action: Action) -> Option<Action> {
    let Some(name) = &rule.only_if else {
        return Some(action);
    };
    let when = errors.choice(name, "only_if")?;
    if action.kind() == ActionKind::Keep {
        errors.at(name, "`only_if` does not apply to action `keep`");
        return None;
    }
    Some(Action::Only {
        when,
        then: Box::new(action),
    })
}

pub(super) fn parse_region(
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
pub(super) fn allowed_options(kind: ActionKind) -> &'static [&'static str] {
    match kind {
        ActionKind::Drop => &[],
        ActionKind::Keep => &["normalize", "default_region", "phone_format"],
        ActionKind::Redact => &["with"],
        ActionKind::Hash => &["normalize", "default_region", "phone_format", "encoding"],
        ActionKind::Hmac => &[
            "normalize",
            "default_region",
            "phone_format",
            "key",
            "prefix",
            "length",
            "rotate",
            "shape",
        ],
        ActionKind::Mask => &["keep_first", "keep_last", "char"],
        ActionKind::TruncateIp => &["v4_prefix", "v6_prefix"],
        ActionKind::Generalize => &["keep_first"],
        ActionKind::StripUrl => &["external"],
        ActionKind::GeneralizeUserAgent | ActionKind::BucketScreen => &[],
        ActionKind::Tokenize => &[
            "normalize",
            "default_region",
            "phone_format",
            "format",
            "prefix",
            "length",
            "namespace",
            "ttl",
        ],
        ActionKind::Encrypt => &[
            "normalize",
            "default_region",
            "phone_format",
            "key",
            "prefix",
        ],
        ActionKind::Reveal => &["namespace"],
        ActionKind::AddMembers | ActionKind::Read => &[],
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
        site,
        keep_params,
        ..
    } = *context;
    let kind = errors.choice(&rule.action, "action")?;
    let before = errors.list.len();
    match (context.direction, kind) {
        (Direction::Request, ActionKind::Reveal) => errors.at(
            &rule.action,
            "action `reveal` puts values back into responses: it belongs under `response_rules`",
        ),
        (Direction::Response, ActionKind::Reveal) | (Direction::Request, _) => {}
        (Direction::Response, _) => errors.at(
            &rule.action,
            format!(
                "`response_rules` take action `reveal` only, not `{}`",
                kind.as_str()
            ),
        ),
    }
    let given: [(&str, Option<(u64, u64)>); 19] = [
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
        ("rotate", loc(&rule.rotate)),
        ("shape", loc(&rule.shape)),
        ("external", loc(&rule.external)),
        ("format", loc(&rule.format)),
        ("namespace", loc(&rule.namespace)),
        ("ttl", loc(&rule.ttl)),
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
        // Made by consent decisions; no file can name them.
        ActionKind::AddMembers | ActionKind::Read => return None,
        ActionKind::Drop => Action::Drop,
        ActionKind::Keep => match normalizer(errors, rule, default_region) {
            Normalizer::None => Action::Keep,
            normalizer => Action::KeepNormalized { normalizer },
        },
        ActionKind::Redact => Action::Redact {
            with: rule
                .with
                .as_ref()
                .map_or_else(|| REDACTED.to_owned(), |w| w.value.clone()),
        },
        ActionKind::Hash => Action::Hash {
            normalizer: normalizer(errors, rule, default_region),
            encoding: rule
                .encoding
                .as_ref()
                .and_then(|v| errors.choice(v, "encoding"))
                .unwrap_or_default(),
        },
        ActionKind::Hmac => {
            let key = hmac_key(errors, rule, keys, no_keys_configured);
            let length = rule
                .length
                .as_ref()
                .map_or(defaults::HMAC_LENGTH, |l| l.value);
            if let Some(at) = &rule.length
                && !(16..=43).contains(&length)
            {
                errors.at(at, "length must be between 16 and 43");
            }
            let normalizer = normalizer(errors, rule, default_region);
            let shape = rule
                .shape
                .as_ref()
                .and_then(|v| errors.choice(v, "shape"))
                .unwrap_or_default();
            if shape != Shape::Token
                && let Some(at) = rule
                    .prefix
                    .as_ref()
                    .map(|p| &p.referenced)
                    .or(rule.length.as_ref().map(|l| &l.referenced))
            {
                errors.list.push(ConfigError::new(
                    errors.file,
                    at.line(),
                    at.column(),
                    format!(
                        "`prefix` and `length` shape a `token`, not a `{}`",
                        shape.as_str()
                    ),
                ));
            }
            Action::Hmac {
                key: key?,
                prefix: rule
                    .prefix
                    .as_ref()
                    .map(|p| p.value.clone())
                    .unwrap_or_default(),
                length: length as usize,
                normalizer,
                shape,
            }
        }
        ActionKind::Mask => Action::Mask {
            keep_first: rule
                .keep_first
                .as_ref()
                .map_or(defaults::MASK_KEEP_FIRST, |v| v.value) as usize,
            keep_last: rule
                .keep_last
                .as_ref()
                .map_or(defaults::MASK_KEEP_LAST, |v| v.value) as usize,
            with: rule
                .mask_char
                .as_ref()
                .map_or(defaults::MASK_CHAR, |v| v.value),
        },
        ActionKind::TruncateIp => {
            let v4_prefix = rule
                .v4_prefix
                .as_ref()
                .map_or(defaults::TRUNCATE_V4_PREFIX, |v| v.value);
            let v6_prefix = rule
                .v6_prefix
                .as_ref()
                .map_or(defaults::TRUNCATE_V6_PREFIX, |v| v.value);
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
            keep_first: rule
                .keep_first
                .as_ref()
                .map_or(defaults::GENERALIZE_KEEP_FIRST, |v| v.value)
                as usize,
        },
        ActionKind::StripUrl => {
            let external = rule
                .external
                .as_ref()
                .and_then(|v| errors.choice(v, "external"))
                .unwrap_or_default();
            Action::StripUrl(UrlRule {
                keep_params: keep_params.to_vec(),
                external_dropped_unless: (external == External::Drop).then(|| site.to_vec()),
            })
        }
        ActionKind::GeneralizeUserAgent => Action::GeneralizeUserAgent,
        ActionKind::BucketScreen => Action::BucketScreen,
        ActionKind::Tokenize => tokenize(errors, rule, context)?,
        ActionKind::Encrypt => {
            let key_name = rule.key.as_ref().map_or(DEFAULT_KEY, |k| k.value.as_str());
            let key = named_key(errors, rule, "encrypt", key_name, keys, no_keys_configured);
            let prefix = token_prefix(errors, rule).unwrap_or_default();
            Action::Encrypt {
                key: Arc::new(EncryptKey::new(&*key?)),
                prefix,
                normalizer: normalizer(errors, rule, default_region),
            }
        }
        ActionKind::Reveal => Action::Reveal {
            keys: context.encrypt_keys.to_vec(),
            namespaces: match &rule.namespace {
                Some(name) => vec![name.value.clone()],
                None if context.namespaces.is_empty() => vec![context.route.to_owned()],
                None => context.namespaces.to_vec(),
            },
        },
    };
    if kind == ActionKind::Tokenize && !context.vault {
        errors.at(
            &rule.action,
            "action `tokenize` needs the token vault: add `vault:` (see the README) and its key `keys.vault`",
        );
    }
    if kind == ActionKind::Reveal && !context.vault && context.encrypt_keys.is_empty() {
        errors.at(
            &rule.action,
            "action `reveal` has nothing to reveal: no `vault:`, and no `encrypt` rule whose key it could use",
        );
    }
    (errors.list.len() == before).then_some(action)
}

/// A `tokenize` rule's options.
fn tokenize(
    errors: &mut Errors<'_>,
    rule: &RuleConfig,
    context: &RuleContext<'_>,
) -> Option<Action> {
    let format_kind = rule
        .format
        .as_ref()
        .and_then(|v| errors.choice(v, "format"))
        .unwrap_or_default();
    let prefix = token_prefix(errors, rule);
    if format_kind != TokenFormatKind::Opaque
        && let Some(at) = &rule.prefix
    {
        errors.at(
            at,
            format!(
                "`prefix` applies to format `opaque`, not `{}`",
                format_kind.as_str()
            ),
        );
    }
    if format_kind != TokenFormatKind::Digits
        && let Some(at) = &rule.length
    {
        errors.at(
            at,
            format!(
                "`length` applies to format `digits`, not `{}`",
                format_kind.as_str()
            ),
        );
    }
    let format = match format_kind {
        TokenFormatKind::Opaque => TokenFormat::Opaque {
            prefix: prefix.unwrap_or_else(|| DEFAULT_TOKEN_PREFIX.to_owned()),
        },
        TokenFormatKind::Uuid => TokenFormat::Uuid,
        TokenFormatKind::Digits => {
            let length = rule
                .length
                .as_ref()
                .map_or(defaults::TOKEN_DIGITS, |l| l.value) as usize;
            if let Some(at) = &rule.length
                && !DIGITS_LENGTHS.contains(&length)
            {
                errors.at(
                    at,
                    "a `digits` token has 16 to 32 digits (fewer could be read as a phone number)",
                );
            }
            TokenFormat::Digits { length }
        }
    };
    let namespace = match &rule.namespace {
        Some(name) => {
            if name.value.is_empty() || !name.value.chars().all(is_prefix_char) {
                errors.at(
                    name,
                    "a namespace is letters, digits, `_`, `-`, `.`, `:` and `~`",
                );
            }
            name.value.clone()
        }
        None => context.route.to_owned(),
    };
    let ttl = rule.ttl.as_ref().and_then(|ttl| {
        let parsed = humantime::parse_duration(&ttl.value)
            .ok()
            .filter(|d| d.as_secs() >= 1);
        if parsed.is_none() {
            errors.at(
                ttl,
                format!(
                    "`{}` is not a time to live; write a duration of at least a second, such as `30d` or `12h`",
                    ttl.value
                ),
            );
        }
        parsed
    });
    Some(Action::Tokenize(Arc::new(Tokenize {
        namespace,
        format,
        ttl,
        normalizer: normalizer(errors, rule, context.default_region),
    })))
}

/// The `prefix` of a `tokenize` or `encrypt` rule, if given and fit to
/// pass unescaped through JSON, URLs, forms and headers.
fn token_prefix(errors: &mut Errors<'_>, rule: &RuleConfig) -> Option<String> {
    let prefix = rule.prefix.as_ref()?;
    if prefix.value.len() > defaults::MAX_TOKEN_PREFIX || !prefix.value.chars().all(is_prefix_char)
    {
        errors.at(
            prefix,
            format!(
                "a token prefix is at most {} letters, digits, `_`, `-`, `.`, `:` and `~`",
                defaults::MAX_TOKEN_PREFIX
            ),
        );
    }
    Some(prefix.value.clone())
}

/// The key `key_name` under `keys:`, for an action that needs it, or an
/// error at the rule's `key` (or its action).
fn named_key(
    errors: &mut Errors<'_>,
    rule: &RuleConfig,
    action: &str,
    key_name: &str,
    keys: &BTreeMap<String, Arc<PseudonymKey>>,
    no_keys_configured: bool,
) -> Option<Arc<PseudonymKey>> {
    let key = keys.get(key_name).cloned();
    if key.is_none() {
        let message = if no_keys_configured {
            format!(
                "action `{action}` needs the key `{key_name}`: add it under `keys:` as `${{ENV_VAR}}` or `file:/path`"
            )
        } else {
            format!(
                "action `{action}` uses key `{key_name}`, which is not under `keys:` (or could not be loaded)"
            )
        };
        match &rule.key {
            Some(at) => errors.at(at, message),
            None => errors.at(&rule.action, message),
        }
    }
    key
}

/// The key of an `hmac` rule: the named one, or with `rotate:` one that
/// changes every period (random, or derived from the named key).
fn hmac_key(
    errors: &mut Errors<'_>,
    rule: &RuleConfig,
    keys: &BTreeMap<String, Arc<PseudonymKey>>,
    no_keys_configured: bool,
) -> Option<HmacKey> {
    let named = |errors: &mut Errors<'_>, key_name: &str| {
        named_key(errors, rule, "hmac", key_name, keys, no_keys_configured)
    };
    let Some(rotate) = &rule.rotate else {
        let key_name = rule.key.as_ref().map_or(DEFAULT_KEY, |k| k.value.as_str());
        return named(errors, key_name).map(HmacKey::Fixed);
    };
    let period = match rotate.value.as_str() {
        "daily" => Some(std::time::Duration::from_secs(86_400)),
        "hourly" => Some(std::time::Duration::from_secs(3_600)),
        text => humantime::parse_duration(text)
            .ok()
            .filter(|period| *period >= RotatingKey::MIN_PERIOD && period.subsec_nanos() == 0),
    };
    let Some(period) = period else {
        errors.at(
            rotate,
            format!(
                "`{}` is not a rotation period; write `daily`, `hourly`, or whole seconds such as `30m` or `2s`",
                rotate.value
            ),
        );
        return None;
    };
    let source = match &rule.key {
        None => KeySource::Random,
        Some(name) => KeySource::Derived(named(errors, &name.value)?),
    };
    Some(HmacKey::Rotating(Arc::new(RotatingKey::new(
        period, source,
    ))))
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
    let Some(mut normalizer) = errors.choice(name, "normalizer") else {
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
    if let Some(format) = rule
        .phone_format
        .as_ref()
        .and_then(|v| errors.choice(v, "phone_format"))
    {
        options.plus = format == PhoneFormat::E164;
    }
    options
}
