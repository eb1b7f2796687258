//! The README's tables and the configuration's doc comments, checked
//! against the code: the names each setting accepts, the options of each
//! action, and every default. A change to one without the others fails here.

use super::consent::DEFAULT_BLOCK_STATUS;
use super::rules::{allowed_options, defaults};
use super::{DEFAULT_ADMIN_LISTEN, DEFAULT_LISTEN};
use serde::de::DeserializeOwned;

use crate::config::{Decision, GpcDecision, Unlisted, names};
use crate::policy::{
    DEFAULT_MAX_BUFFERED_BYTES, ForwardProxySettings, Limits, Others, REDACTED, ServerSettings,
    Timeouts,
};
use crate::presets::PSEUDONYM_KEY;
use crate::transform::tokenize::DEFAULT_TOKEN_PREFIX;
use crate::transform::{ActionKind, Encoding, Normalizer, OnInvalid, PhoneFormat, TokenFormatKind};

const README: &str = include_str!("../../../README.md");
const SCHEMA: &str = include_str!("../../config/mod.rs");

/// The rows of the first table after `heading`, as trimmed cells.
fn table(heading: &str) -> Vec<Vec<String>> {
    let Some(section) = README.split(heading).nth(1) else {
        return Vec::new();
    };
    section
        .lines()
        .skip_while(|line| !line.starts_with('|'))
        .take_while(|line| line.starts_with('|'))
        .skip(2)
        .map(|row| {
            let cells: Vec<&str> = row.split('|').collect();
            cells[1..cells.len().saturating_sub(1)]
                .iter()
                .map(|cell| cell.trim().to_owned())
                .collect()
        })
        .collect()
}

/// The first column of a table, without its backticks.
fn first_column(heading: &str) -> Vec<String> {
    table(heading)
        .into_iter()
        .filter_map(|row| row.first().map(|name| name.trim_matches('`').to_owned()))
        .collect()
}

/// The doc comment of `pub field:` in `pub struct name` of the schema.
fn doc_of(name: &str, field: &str) -> String {
    let body = SCHEMA
        .split(&format!("pub struct {name} {{"))
        .nth(1)
        .and_then(|rest| rest.split("\n}").next())
        .unwrap_or_default();
    let mut doc = Vec::new();
    for line in body.lines().map(str::trim) {
        if let Some(text) = line.strip_prefix("///") {
            doc.push(text.trim());
        } else if line.starts_with(&format!("pub {field}:")) {
            return doc.join(" ");
        } else if !line.starts_with("#[") {
            doc.clear();
        }
    }
    panic!("no field `{field}` in `{name}`");
}

/// Whether `text` holds `phrase` as whole words (`default 22` is not in
/// `default 220`).
fn says(text: &str, phrase: &str) -> bool {
    let word = |c: Option<char>| c.is_some_and(|c| c.is_alphanumeric() || c == '_');
    text.match_indices(phrase).any(|(at, _)| {
        !word(text[..at].chars().next_back()) && !word(text[at + phrase.len()..].chars().next())
    })
}

/// The options cell of an action's row: each backticked option that starts
/// a comma-separated item, with the text in the parentheses after it.
fn options_of(cell: &str) -> Vec<(String, String)> {
    let mut options: Vec<(String, String)> = Vec::new();
    let (mut depth, mut item_start, mut in_word) = (0, true, false);
    let mut word = String::new();
    for c in cell.chars() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => item_start = true,
            '`' if in_word => {
                in_word = false;
                options.push((std::mem::take(&mut word), String::new()));
            }
            '`' if depth == 0 && item_start => {
                in_word = true;
                item_start = false;
            }
            c if in_word => word.push(c),
            _ => {}
        }
        if depth > 0
            && !(c == '(' && depth == 1)
            && let Some((_, note)) = options.last_mut()
        {
            note.push(c);
        }
    }
    options
}

/// Every action a rule can name is in the README's table of actions, with
/// exactly the options the code accepts for it (the phone normalizer's
/// `default_region` and `phone_format` are the Normalizers table's).
#[test]
fn the_actions_table_lists_every_action_with_its_options() {
    let rows = table("### Actions");
    let mut documented: Vec<String> = rows
        .iter()
        .map(|row| row[0].trim_matches('`').to_owned())
        .collect();
    documented.sort_unstable();
    let mut actions = names::<ActionKind>().to_vec();
    actions.sort_unstable();
    assert_eq!(documented, actions, "the README's actions");
    for row in &rows {
        let name = row[0].trim_matches('`');
        let kind: ActionKind = serde_saphyr::from_str(name).expect("an action");
        let mut expected: Vec<&str> = allowed_options(kind)
            .iter()
            .copied()
            .filter(|option| !["default_region", "phone_format"].contains(option))
            .collect();
        let mut listed: Vec<String> = options_of(&row[1]).into_iter().map(|o| o.0).collect();
        expected.sort_unstable();
        listed.sort_unstable();
        assert_eq!(listed, expected, "options of `{name}` in the README");
    }
    let phone = table("### Normalizers")
        .into_iter()
        .find(|row| row[0] == "`phone`")
        .map(|row| row.join(" "))
        .unwrap_or_default();
    for option in ["default_region", "phone_format"] {
        assert!(
            phone.contains(&format!("`{option}")),
            "{option} in the Normalizers table's phone row"
        );
    }
}

/// Each option's default, as the code applies it, is the one the README's
/// table of actions and the option's doc comment give.
#[test]
fn the_options_defaults_are_the_codes() {
    let defaults = [
        ("redact", "with", REDACTED.to_owned()),
        ("hash", "encoding", Encoding::default().as_str().to_owned()),
        ("hmac", "key", PSEUDONYM_KEY.to_owned()),
        ("hmac", "length", defaults::HMAC_LENGTH.to_string()),
        ("tokenize", "prefix", DEFAULT_TOKEN_PREFIX.to_owned()),
        ("tokenize", "length", defaults::TOKEN_DIGITS.to_string()),
        (
            "tokenize",
            "format",
            TokenFormatKind::default().as_str().to_owned(),
        ),
        ("encrypt", "key", PSEUDONYM_KEY.to_owned()),
        ("mask", "keep_first", defaults::MASK_KEEP_FIRST.to_string()),
        ("mask", "keep_last", defaults::MASK_KEEP_LAST.to_string()),
        ("mask", "char", defaults::MASK_CHAR.to_string()),
        (
            "truncate_ip",
            "v4_prefix",
            defaults::TRUNCATE_V4_PREFIX.to_string(),
        ),
        (
            "truncate_ip",
            "v6_prefix",
            defaults::TRUNCATE_V6_PREFIX.to_string(),
        ),
        (
            "generalize",
            "keep_first",
            defaults::GENERALIZE_KEEP_FIRST.to_string(),
        ),
    ];
    let rows = table("### Actions");
    for (action, option, value) in defaults {
        let row = rows
            .iter()
            .find(|row| row[0] == format!("`{action}`"))
            .expect("the action's row");
        let note = options_of(&row[1])
            .into_iter()
            .find(|(name, _)| name == option)
            .map(|(_, note)| note.replace('`', ""))
            .unwrap_or_default();
        let readme_ok = note == value
            || says(&note, &format!("default {value}"))
            || note.starts_with(&format!("{value} default"));
        assert!(
            readme_ok,
            "README: `{option}` of `{action}` defaults to {value}, not ({note})"
        );
        let field = if option == "char" {
            "mask_char"
        } else {
            option
        };
        let doc = doc_of("RuleConfig", field).replace('`', "").to_lowercase();
        let value = value.to_lowercase();
        let doc_ok = says(&doc, &format!("default {value}"))
            || says(&doc, &format!("{value} (default)"))
            || says(&doc, &format!("{value} ({action})"));
        assert!(
            doc_ok,
            "RuleConfig::{field} must say its default {value} for {action}: {doc}"
        );
    }
}

/// `10 MiB`, `64 KiB`, `65536`, `10 s`, `10s`, `500ms` as bytes or
/// milliseconds; the first such quantity in `text`.
fn quantity(text: &str) -> Option<u64> {
    let text = text.replace('`', "");
    let start = text.find(|c: char| c.is_ascii_digit())?;
    let rest = &text[start..];
    let digits = rest
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(rest.len());
    let number: u64 = rest[..digits].parse().ok()?;
    let unit = rest[digits..].trim_start();
    let scale = [
        ("MiB", 1 << 20),
        ("KiB", 1 << 10),
        ("ms", 1),
        ("s", 1000),
        ("m", 60_000),
    ]
    .into_iter()
    .find(|(name, _)| {
        unit.strip_prefix(name)
            .is_some_and(|after| !after.starts_with(|c: char| c.is_ascii_alphabetic()))
    })
    .map_or(1, |(_, scale)| scale);
    Some(number * scale)
}

/// The Limits table gives each setting's default as the code has it, and so
/// does the setting's doc comment in the schema.
#[test]
fn the_limits_table_gives_the_codes_defaults() {
    let limits = Limits::default();
    let server = ServerSettings::default();
    let timeouts = Timeouts::default();
    let ms = |d: std::time::Duration| d.as_millis() as u64;
    let defaults: [(&str, &str, &str, u64); 15] = [
        (
            "limits.max_body_bytes",
            "LimitsConfig",
            "max_body_bytes",
            limits.max_body_bytes,
        ),
        (
            "limits.buffer_limit",
            "LimitsConfig",
            "buffer_limit",
            limits.buffer_limit,
        ),
        (
            "limits.max_depth",
            "LimitsConfig",
            "max_depth",
            limits.max_depth.into(),
        ),
        (
            "limits.max_value_bytes",
            "LimitsConfig",
            "max_value_bytes",
            limits.max_value_bytes.into(),
        ),
        (
            "limits.max_embedded_bytes",
            "LimitsConfig",
            "max_embedded_bytes",
            limits.max_embedded_bytes.into(),
        ),
        (
            "limits.max_buffered_bytes",
            "LimitsConfig",
            "max_buffered_bytes",
            DEFAULT_MAX_BUFFERED_BYTES,
        ),
        (
            "server.header_read_timeout",
            "ServerConfig",
            "header_read_timeout",
            ms(server.header_read_timeout),
        ),
        (
            "server.body_read_timeout",
            "ServerConfig",
            "body_read_timeout",
            ms(server.body_read_timeout),
        ),
        (
            "server.write_timeout",
            "ServerConfig",
            "write_timeout",
            ms(server.write_timeout),
        ),
        (
            "server.max_header_bytes",
            "ServerConfig",
            "max_header_bytes",
            server.max_header_bytes as u64,
        ),
        (
            "server.max_connections",
            "ServerConfig",
            "max_connections",
            server.max_connections as u64,
        ),
        (
            "server.max_concurrent_streams",
            "ServerConfig",
            "max_concurrent_streams",
            server.max_concurrent_streams.into(),
        ),
        (
            "server.shutdown_grace",
            "ServerConfig",
            "shutdown_grace",
            ms(server.shutdown_grace),
        ),
        (
            "timeouts.connect",
            "TimeoutsConfig",
            "connect",
            ms(timeouts.connect),
        ),
        (
            "timeouts.response",
            "TimeoutsConfig",
            "response",
            ms(timeouts.response),
        ),
    ];
    let rows = table("### Limits");
    assert_eq!(rows.len(), defaults.len(), "one row per setting");
    for (setting, schema, field, value) in defaults {
        let row = rows
            .iter()
            .find(|row| row[0].starts_with(&format!("`{setting}`")))
            .unwrap_or_else(|| panic!("no row for {setting}"));
        assert_eq!(
            quantity(&row[1]),
            Some(value),
            "README default of {setting}"
        );
        let doc = doc_of(schema, field);
        let stated = doc.split("Default ").nth(1).and_then(quantity);
        assert_eq!(stated, Some(value), "{schema}::{field}: {doc}");
    }
}

/// The names the settings accept are the ones the README lists, and the
/// defaults written beside them are the code's.
#[test]
fn the_named_settings_and_their_defaults_are_the_codes() {
    let mut normalizers = first_column("### Normalizers");
    normalizers.sort_unstable();
    let mut accepted = names::<Normalizer>().to_vec();
    accepted.sort_unstable();
    assert_eq!(normalizers, accepted, "the Normalizers table");
    assert_eq!(
        first_column("## Consent"),
        names::<Decision>(),
        "the consent decisions table"
    );
    let consent = README.split("## Consent").nth(1).unwrap_or_default();
    let block = DEFAULT_BLOCK_STATUS.as_u16();
    assert!(consent.contains(&format!("`block_status` (default {block}")));
    assert!(doc_of("ConsentConfig", "block_status").contains(&format!("Default {block}.")));
    let first_screen: String = README.lines().take(25).collect::<Vec<_>>().join("\n");
    assert!(first_screen.contains(&format!(
        "proxy on {DEFAULT_LISTEN}, admin on {DEFAULT_ADMIN_LISTEN}"
    )));
    assert!(doc_of("Config", "listen").contains(&format!("Default `{DEFAULT_LISTEN}`")));
    assert!(doc_of("AdminConfig", "listen").contains(&format!("Default `{DEFAULT_ADMIN_LISTEN}`")));
}

/// The name of a fieldless enum's variant, as a file writes it.
fn name_of<T: DeserializeOwned>(variant: usize) -> &'static str {
    names::<T>()[variant]
}

/// The defaults of the settings that name one of a set are the ones their
/// doc comments give, and the README's where it gives one.
#[test]
fn the_named_defaults_are_the_codes() {
    let on_invalid = name_of::<OnInvalid>(OnInvalid::default() as usize);
    assert!(doc_of("RuleConfig", "on_invalid").contains(&format!("`{on_invalid}` (default)")));
    let unlisted = name_of::<Unlisted>(Unlisted::default() as usize);
    assert!(doc_of("RouteConfig", "unlisted").contains(&format!("`{unlisted}` (default)")));
    let gpc = name_of::<GpcDecision>(GpcDecision::default() as usize);
    assert!(doc_of("ConsentConfig", "gpc").contains(&format!("`{gpc}` (default)")));
    let consent = README.split("## Consent").nth(1).unwrap_or_default();
    assert!(consent.contains(&format!("{gpc} (default)")));
    let phone = name_of::<PhoneFormat>(PhoneFormat::default() as usize);
    assert!(
        doc_of("RuleConfig", "phone_format")
            .contains(&format!("`{phone}` (`+16505551212`, default)"))
    );
    assert!(doc_of("RuleConfig", "normalize").contains("Default `none`"));
    // GPC decides what a signal decides, or nothing.
    let mut gpc_names = names::<GpcDecision>().to_vec();
    gpc_names.retain(|name| *name != "ignore");
    assert_eq!(gpc_names, names::<Decision>());
}

/// The fields of `pub struct name` in the schema.
fn fields_of(name: &str) -> Vec<String> {
    let body = SCHEMA
        .split(&format!("pub struct {name} {{"))
        .nth(1)
        .and_then(|rest| rest.split("\n}").next())
        .unwrap_or_default();
    body.lines()
        .filter_map(|line| line.trim().strip_prefix("pub ")?.split_once(':'))
        .map(|(field, _)| field.to_owned())
        .collect()
}

/// The forward proxy's table lists every setting, with the defaults the
/// code applies and the doc comments state.
#[test]
fn the_forward_proxy_table_gives_every_setting_and_the_codes_defaults() {
    let rows = table("### Without changing the app: the forward proxy");
    let mut listed: Vec<String> = rows
        .iter()
        .map(|row| row[0].trim_matches('`').to_owned())
        .collect();
    let mut fields = fields_of("ForwardProxyConfig");
    listed.sort();
    fields.sort();
    assert_eq!(listed, fields, "the forward proxy's settings");
    let default = |setting: &str| {
        rows.iter()
            .find(|row| row[0] == format!("`{setting}`"))
            .map(|row| row[1].clone())
            .unwrap_or_default()
    };
    let listen = ForwardProxySettings::DEFAULT_LISTEN;
    assert_eq!(default("listen"), format!("`{listen}`"));
    assert!(doc_of("ForwardProxyConfig", "listen").contains(&format!("Default `{listen}`")));
    let others = name_of::<Others>(Others::default() as usize);
    assert_eq!(default("others"), format!("`{others}`"));
    assert!(doc_of("ForwardProxyConfig", "others").contains(&format!("`{others}` (default")));
    let idle = default("idle_timeout");
    assert_eq!(
        humantime::parse_duration(idle.trim_matches('`')).ok(),
        Some(ForwardProxySettings::DEFAULT_IDLE_TIMEOUT)
    );
    assert!(doc_of("ForwardProxyConfig", "idle_timeout").contains(&format!("Default {idle}")));
    let cache = ForwardProxySettings::DEFAULT_CERTIFICATE_CACHE as u64;
    assert_eq!(quantity(&default("certificate_cache")), Some(cache));
    assert!(
        doc_of("ForwardProxyConfig", "certificate_cache").contains(&format!("Default {cache}."))
    );
    assert_eq!(default("ports"), "`[443]`");
    assert!(doc_of("ForwardProxyConfig", "ports").contains("Default `[443]`"));
    assert!(doc_of("ForwardProxyConfig", "allow").contains("`127.0.0.0/8`, `::1`"));
    assert!(default("allow").contains("127.0.0.0/8, ::1"));
}
