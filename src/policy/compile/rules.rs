//! Rules: selectors, actions with their options, normalizers, conditions.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_saphyr::Spanned;

use super::Errors;
use crate::config::{ConfigError, RuleConfig};
use crate::policy::{OnInvalid, REDACTED, Rule, Rules, Selector};
use crate::presets::PSEUDONYM_KEY as DEFAULT_KEY;
use crate::transform::{
    Action, ActionKind, Encoding, Guard, Normalizer, PhoneOptions, PseudonymKey, normalize,
};

/// What rules of a route share: the keys, and the route's phone region.
pub(super) struct RuleContext<'k> {
    pub(super) keys: &'k BTreeMap<String, Arc<PseudonymKey>>,
    pub(super) no_keys_configured: bool,
    pub(super) default_region: Option<phonenumber::country::Id>,
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
mod readme {
    use super::*;

    const README: &str = include_str!("../../../README.md");

    /// The options the README's table of actions lists for each action: the
    /// backticked word that starts each comma-separated item of its options
    /// cell (words inside parentheses are defaults and values).
    fn documented() -> Vec<(String, Vec<String>)> {
        let table = README
            .split("### Actions")
            .nth(1)
            .and_then(|rest| rest.split("\n\n").nth(1))
            .unwrap_or_default();
        table
            .lines()
            .skip(2)
            .filter_map(|row| {
                let cells: Vec<&str> = row.split('|').map(str::trim).collect();
                let name = cells.get(1)?.trim_matches('`').to_owned();
                let mut options = Vec::new();
                let mut depth = 0;
                let mut item_start = true;
                let mut word = String::new();
                let mut in_word = false;
                for c in cells.get(2)?.chars() {
                    match c {
                        '(' => depth += 1,
                        ')' => depth -= 1,
                        ',' if depth == 0 => item_start = true,
                        '`' if in_word => {
                            in_word = false;
                            options.push(std::mem::take(&mut word));
                        }
                        '`' if depth == 0 && item_start => {
                            in_word = true;
                            item_start = false;
                        }
                        c if in_word => word.push(c),
                        _ => {}
                    }
                }
                Some((name, options))
            })
            .collect()
    }

    /// The README's table of actions names every action a rule can take and
    /// exactly the options the code accepts for it (the phone normalizer's
    /// `default_region` and `phone_format` are the Normalizers table's).
    #[test]
    fn the_readme_lists_every_action_with_its_options() {
        let documented = documented();
        let names: Vec<&str> = documented.iter().map(|(name, _)| name.as_str()).collect();
        let actions: Vec<&str> = ActionKind::ALL.iter().map(|kind| kind.as_str()).collect();
        assert_eq!(
            names
                .iter()
                .copied()
                .collect::<std::collections::BTreeSet<_>>(),
            actions.iter().copied().collect(),
            "the README's actions"
        );
        for (name, options) in &documented {
            let Some(kind) = ActionKind::from_name(name) else {
                continue;
            };
            let mut expected: Vec<&str> = allowed_options(kind)
                .iter()
                .copied()
                .filter(|option| !["default_region", "phone_format"].contains(option))
                .collect();
            let mut listed: Vec<&str> = options.iter().map(String::as_str).collect();
            expected.sort_unstable();
            listed.sort_unstable();
            assert_eq!(listed, expected, "options of `{name}` in the README");
        }
        let normalizers = README.split("### Normalizers").nth(1).unwrap_or_default();
        for option in ["default_region", "phone_format"] {
            assert!(
                normalizers.contains(option),
                "{option} in the Normalizers table"
            );
        }
    }
}
