//! A route's `consent:`: its signals, and the rule sets each decision
//! rewrites with.

use serde_saphyr::Spanned;

use super::Errors;
use crate::config::{ConfigError, ConsentConfig, GpcDecision, RouteConfig};
use crate::policy::consent::{self, Consent, Decision, Signal, Source};
use crate::policy::{OnInvalid, Rule, Rules, Selector};
use crate::presets;
use crate::transform::{Action, Members};

/// What `block` answers when `block_status` is not set.
pub(super) const DEFAULT_BLOCK_STATUS: http::StatusCode = http::StatusCode::NO_CONTENT;

type PresetRef<'p> = Option<&'p (&'static presets::Preset, presets::PresetFile)>;

/// A route's consent settings. A route with a preset honours GPC even
/// without a `consent:` block; one with neither has no consent gate.
pub(super) fn compile_consent(
    errors: &mut Errors<'_>,
    route: &RouteConfig,
    preset: PresetRef<'_>,
    rules: &Rules,
) -> Option<Consent> {
    let default = ConsentConfig::default();
    let config = match (&route.consent, preset) {
        (None, None) => return None,
        (Some(config), _) => config,
        (None, Some(_)) => &default,
    };
    let mut body_probes = Vec::new();
    let signals = signals(errors, config, rules, &mut body_probes);
    let block_status = match &config.block_status {
        None => DEFAULT_BLOCK_STATUS,
        Some(v) => match http::StatusCode::from_u16(v.value) {
            Ok(status) if (200..300).contains(&v.value) || (400..500).contains(&v.value) => status,
            _ => {
                errors.at(v, "block_status must be a 2xx or 4xx status");
                DEFAULT_BLOCK_STATUS
            }
        },
    };
    let decides = |decision| signals.iter().any(|s: &Signal| s.decision == decision);
    // Where to point when a decision cannot be made: its own `decision:`
    // (or `gpc:`), else the route (GPC's default).
    let asked = |wanted: Decision| {
        let signal = config
            .signals
            .iter()
            .find(|s| s.decision.value.value() == Some(&wanted))
            .map(|s| Spanned::new((), s.decision.referenced, s.decision.defined));
        let gpc = config
            .gpc
            .as_ref()
            .filter(|g| g.value.value().and_then(|g| g.decision()) == Some(wanted))
            .map(|g| Spanned::new((), g.referenced, g.defined));
        signal.or(gpc)
    };

    let (stripped, identifiers) = stripped_rules(errors, rules, preset, config);
    if identifiers == 0 && decides(Decision::StripIdentifiers) {
        match asked(Decision::StripIdentifiers) {
            Some(at) => errors.at(
                &at,
                "`strip_identifiers` needs identifier fields: use a `preset:` or list them under `consent.identifiers`",
            ),
            None => errors.at(
                &route.name,
                "`Sec-GPC: 1` decides `strip_identifiers` by default, which needs identifier fields: use a `preset:`, list them under `consent.identifiers`, or set `consent.gpc`",
            ),
        }
    }
    let limited = limited_rules(errors, rules, preset);
    if limited.is_none()
        && let Some(at) = asked(Decision::LimitedDataUse)
    {
        errors.at(
            &at,
            "`limited_data_use` needs a preset that defines it (`meta_capi`)",
        );
    }
    Some(Consent {
        signals,
        block_status,
        stripped,
        identifiers,
        limited,
        body_probes,
    })
}

/// GPC first (unless ignored), then the configured signals in order. The
/// body signals each get a probe in `body_probes`, under the route's limits.
fn signals(
    errors: &mut Errors<'_>,
    config: &ConsentConfig,
    rules: &Rules,
    body_probes: &mut Vec<Rules>,
) -> Vec<Signal> {
    let mut signals = Vec::new();
    let gpc = match &config.gpc {
        None => GpcDecision::default().decision(),
        Some(v) => errors
            .choice(v, "consent decision")
            .and_then(GpcDecision::decision),
    };
    if let Some(decision) = gpc {
        signals.push(Signal {
            label: consent::GPC_LABEL.to_owned(),
            source: Source::Header(consent::GPC_HEADER.to_owned()),
            equals: "1".to_owned(),
            decision,
        });
    }
    for signal in &config.signals {
        let source = match Selector::parse(&signal.select.value) {
            Ok(Selector::Header(name)) => Some(Source::Header(name)),
            Ok(Selector::Query(name)) => Some(Source::Query(name)),
            Ok(body @ Selector::Body(_)) => {
                let mut probe = Rules {
                    limits: rules.limits,
                    ..Rules::default()
                };
                probe.push(
                    Rule {
                        selector: signal.select.value.clone(),
                        action: Action::Read {
                            equals: signal.equals.value.trim().to_owned(),
                        },
                        on_invalid: OnInvalid::Drop,
                    },
                    body,
                );
                body_probes.push(probe);
                Some(Source::Body(body_probes.len() - 1))
            }
            Err(err) => {
                errors.at(&signal.select, format!("bad selector: {err}"));
                None
            }
        };
        let decision = errors.choice(&signal.decision, "consent decision");
        if let (Some(source), Some(decision)) = (source, decision) {
            signals.push(Signal {
                label: signal.select.value.clone(),
                source,
                equals: signal.equals.value.trim().to_owned(),
                decision,
            });
        }
    }
    signals
}

/// The route's rules followed by a `drop` of each identifier selector (the
/// preset's, then `consent.identifiers`), and how many there are.
fn stripped_rules(
    errors: &mut Errors<'_>,
    rules: &Rules,
    preset: PresetRef<'_>,
    config: &ConsentConfig,
) -> (Rules, usize) {
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
    (stripped, identifiers)
}

/// The route's rules followed by the preset's limited-data-use members, if
/// the preset has them.
fn limited_rules(errors: &mut Errors<'_>, rules: &Rules, preset: PresetRef<'_>) -> Option<Rules> {
    let (preset, file) = preset?;
    let ldu = file.limited_data_use.as_ref()?;
    let selector = match Selector::parse(&ldu.select.value) {
        Ok(selector) => selector,
        Err(err) => {
            let message = format!("bad selector: {err}");
            errors
                .list
                .push(ConfigError::at(&preset.origin(), &ldu.select, message));
            return None;
        }
    };
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
}
