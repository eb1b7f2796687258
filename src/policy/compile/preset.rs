//! A route's `preset:`: the built-in rules that come before its own.

use serde_saphyr::Spanned;

use super::Errors;
use super::rules::{RuleContext, add_rules};
use crate::policy::Rules;
use crate::presets;

/// The preset's rules, which come before the route's own. Its errors (there
/// should be none: every preset is compiled by the tests) name the preset
/// and its line; a missing key is reported at the route's `preset:`.
pub(super) fn add_preset_rules(
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
