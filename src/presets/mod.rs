//! Built-in rule sets, one per platform API. Each is a YAML file in the same
//! rule language as a route's `rules`, embedded in the binary, so that
//! `scrim presets NAME` prints exactly what runs and a user can copy it and
//! change it. A route names one with `preset:`; its rules come before the
//! route's own, which win where they select the same value.

use serde::Deserialize;
use serde_saphyr::Spanned;

use crate::config::{Config, ConfigErrors, RuleConfig};

/// A preset as embedded: its name and its YAML text.
pub struct Preset {
    pub name: &'static str,
    pub source: &'static str,
}

macro_rules! presets {
    ($($name:literal),* $(,)?) => {
        &[$(Preset { name: $name, source: include_str!(concat!($name, ".yaml")) }),*]
    };
}

/// Every preset, in the order `scrim presets` lists them.
pub const ALL: &[Preset] = presets!(
    "meta_capi",
    "google_ads",
    "ga4_mp",
    "ga4_web",
    "tiktok_events",
    "snapchat_capi",
    "pinterest_capi",
    "linkedin_capi",
    "segment",
    "klaviyo",
    "hubspot",
    "mailchimp",
);

/// The key that presets which pseudonymize (`hmac`) use.
pub const PSEUDONYM_KEY: &str = "pseudonym";

/// The content of a preset file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PresetFile {
    /// The platform and API, in a line.
    pub title: String,
    /// The platform's base URL, for the route's `upstream`.
    pub upstream: String,
    /// The endpoints the rules are written for.
    pub endpoints: Vec<String>,
    /// The platform documents each rule follows.
    pub sources: Vec<String>,
    /// Applied before the route's own rules.
    pub rules: Vec<RuleConfig>,
    /// Selectors of every field that identifies a person (hashed or not):
    /// what consent's `strip_identifiers` removes.
    pub identifiers: Vec<Spanned<String>>,
    /// What consent's `limited_data_use` adds, for the platforms that have
    /// such a mode.
    pub limited_data_use: Option<LimitedDataUse>,
    /// The route's `browser:` when it does not set it: browsers call the
    /// platform through this preset's route.
    #[serde(default)]
    pub browser: bool,
    /// The route's `text_plain:` when it does not set it.
    pub text_plain: Option<crate::config::TextPlain>,
}

/// Members added to the objects a selector names (each event).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitedDataUse {
    pub select: Spanned<String>,
    pub members: serde_json::Map<String, serde_json::Value>,
}

impl Preset {
    pub fn find(name: &str) -> Option<&'static Preset> {
        ALL.iter().find(|preset| preset.name == name)
    }

    /// How errors inside the preset name it, in place of a file name.
    pub fn origin(&self) -> String {
        format!("preset {}", self.name)
    }

    pub fn parse(&self) -> Result<PresetFile, ConfigErrors> {
        Config::parse_document(self.source, &self.origin())
    }
}

impl PresetFile {
    /// Whether any rule pseudonymizes with [`PSEUDONYM_KEY`] (a rotating
    /// key without a `key:` is random, and needs none).
    pub fn needs_pseudonym_key(&self) -> bool {
        self.rules.iter().any(|rule| {
            rule.action.value.value() == Some(&crate::transform::ActionKind::Hmac)
                && rule.rotate.is_none()
                && rule.key.is_none()
        })
    }
}
