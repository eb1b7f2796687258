//! A route's `scan:`: detectors over the strings no rule selects.

use serde_saphyr::Spanned;

use super::Errors;
use super::rules::RuleContext;
use crate::config::{ScanActionKind, ScanConfig, ScanSettings};
use crate::detect::{Detector, Detectors, Scan, ScanAction};
use crate::presets::PSEUDONYM_KEY as DEFAULT_KEY;

/// The route's scan: as configured, or the default (on with a preset).
pub(super) fn compile_scan(
    errors: &mut Errors<'_>,
    config: Option<&Spanned<ScanConfig>>,
    has_preset: bool,
    context: &RuleContext<'_>,
) -> Option<Scan> {
    let default = || Scan::preset_default(context.default_region);
    match config.map(|c| &c.value) {
        None if has_preset => Some(default()),
        None | Some(ScanConfig::Off) => None,
        Some(ScanConfig::On) => Some(default()),
        Some(ScanConfig::Settings(settings)) => settings_scan(errors, config?, settings, context),
    }
}

fn settings_scan(
    errors: &mut Errors<'_>,
    at: &Spanned<ScanConfig>,
    settings: &ScanSettings,
    context: &RuleContext<'_>,
) -> Option<Scan> {
    let before = errors.list.len();
    let detectors = match &settings.detectors {
        None => Detectors::default_set(context.default_region),
        Some(list) => {
            let chosen: Vec<Detector> = list
                .iter()
                .filter_map(|d| errors.choice(d, "detector"))
                .collect();
            if list.is_empty() {
                errors.at(
                    at,
                    "`scan: detectors` is empty: name at least one, or write `scan: off`",
                );
            }
            Detectors::new(&chosen, context.default_region)
        }
    };
    let kind = settings
        .action
        .as_ref()
        .and_then(|a| errors.choice(a, "scan action"))
        .unwrap_or_default();
    if let Some(key) = &settings.key
        && kind != ScanActionKind::Hmac
    {
        errors.at(key, "`key` is for `action: hmac` only");
    }
    let action = match kind {
        ScanActionKind::Redact => ScanAction::Redact,
        ScanActionKind::Hash => ScanAction::Hash,
        ScanActionKind::Drop => ScanAction::Drop,
        ScanActionKind::Reject => ScanAction::Reject,
        ScanActionKind::Hmac => {
            let name = settings
                .key
                .as_ref()
                .map_or(DEFAULT_KEY, |k| k.value.as_str());
            match context.keys.get(name) {
                Some(key) => ScanAction::Hmac(key.clone()),
                None => {
                    let message = format!(
                        "scan action `hmac` uses key `{name}`, which is not under `keys:` (or could not be loaded)"
                    );
                    match (&settings.key, &settings.action) {
                        (Some(at), _) => errors.at(at, message),
                        (None, Some(at)) => errors.at(at, message),
                        (None, None) => unreachable!("hmac is never the default"),
                    }
                    return None;
                }
            }
        }
    };
    let mut headers = Vec::new();
    for header in &settings.headers {
        match http::HeaderName::from_bytes(header.value.as_bytes()) {
            Ok(name) => headers.push(name.as_str().to_owned()),
            Err(_) => errors.at(header, "not a header name"),
        }
    }
    if errors.list.len() != before {
        return None;
    }
    Some(Scan {
        detectors,
        action,
        headers,
    })
}
