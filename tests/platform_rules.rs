//! What each minimizing preset sends, held against what its platform accepts
//! in each field. A pseudonym placed in a field the platform validates fails
//! the whole call (Klaviyo refuses a `phone_number` that is not E.164), so for
//! every field a preset's rules name this file states the platform's rule and
//! its source, and checks the preset's output, and the output with each
//! opt-in its header shows, against it: the value passes, or is absent.
//!
//! The checks are written here from the platforms' documents, not with
//! scrim's normalizers, and the selectors are read by this file's own walker.

mod common;

use std::ffi::OsString;
use std::net::IpAddr;

use serde_json::Value;

use common::rewrite;
use scrim::config::Config;

const KEY: &str = "platform-rules-test-key-0123456789";

/// What a platform accepts in a field.
#[derive(Clone, Copy, Debug)]
enum Accepts {
    /// Any text: a pseudonym is stored as it is.
    Text,
    /// An email address, `local@domain.tld`, with no spaces or quotes.
    Email,
    /// E.164: `+`, a country code, at most 15 digits in all.
    E164,
    /// A US phone number: ten digits of the North American plan (area code
    /// 2-9), written with any separators and an optional `+1`.
    UsPhone,
    /// An IPv4 or IPv6 address.
    Ip,
}

impl Accepts {
    fn holds(self, value: &Value) -> bool {
        let Some(text) = value.as_str() else {
            return matches!(self, Accepts::Text) && !value.is_object();
        };
        match self {
            Accepts::Text => true,
            Accepts::Email => is_email(text),
            Accepts::E164 => {
                let digits = text.strip_prefix('+').unwrap_or("");
                (8..=15).contains(&digits.len())
                    && digits.bytes().all(|b| b.is_ascii_digit())
                    && !digits.starts_with('0')
            }
            Accepts::UsPhone => {
                let digits: String = text.chars().filter(char::is_ascii_digit).collect();
                let ten = match digits.len() {
                    11 => digits.strip_prefix('1').unwrap_or(""),
                    _ => &digits,
                };
                let separators_only = text
                    .chars()
                    .all(|c| c.is_ascii_digit() || " +-.()".contains(c));
                separators_only && ten.len() == 10 && !ten.starts_with(['0', '1'])
            }
            Accepts::Ip => text.parse::<IpAddr>().is_ok(),
        }
    }
}

fn is_email(text: &str) -> bool {
    let Some((local, domain)) = text.split_once('@') else {
        return false;
    };
    let tld = domain.rsplit('.').next().unwrap_or("");
    !local.is_empty()
        && !domain.contains('@')
        && domain.contains('.')
        && tld.len() >= 2
        && tld.chars().all(|c| c.is_ascii_alphabetic())
        && !text.contains([' ', '"'])
}

/// One field a preset's rules name: the platform's rule there, in words and
/// as a check, and where the platform documents it.
struct Field {
    select: &'static str,
    accepts: Accepts,
    rule: &'static str,
    source: &'static str,
}

const fn field(
    select: &'static str,
    accepts: Accepts,
    rule: &'static str,
    source: &'static str,
) -> Field {
    Field {
        select,
        accepts,
        rule,
        source,
    }
}

const KLAVIYO_PROFILE: &str = "https://developers.klaviyo.com/en/reference/create_profile";
const KLAVIYO_E164: &str = "https://github.com/klaviyo/klaviyo-api-python/issues/48";

const KLAVIYO: &[Field] = &[
    field(
        "$..attributes.email",
        Accepts::Email,
        "a profile email must be an address",
        KLAVIYO_PROFILE,
    ),
    field(
        "$..attributes.phone_number",
        Accepts::E164,
        "phone_number in E.164 only; the current API refuses any other shape",
        KLAVIYO_E164,
    ),
    field(
        "$..attributes.location.address1",
        Accepts::Text,
        "address lines are free text",
        KLAVIYO_PROFILE,
    ),
    field(
        "$..attributes.location.address2",
        Accepts::Text,
        "address lines are free text",
        KLAVIYO_PROFILE,
    ),
    field(
        "$..attributes.location.ip",
        Accepts::Ip,
        "an IP address",
        KLAVIYO_PROFILE,
    ),
    field(
        "$..attributes.location.latitude",
        Accepts::Text,
        "a coordinate (removed)",
        KLAVIYO_PROFILE,
    ),
    field(
        "$..attributes.location.longitude",
        Accepts::Text,
        "a coordinate (removed)",
        KLAVIYO_PROFILE,
    ),
];

const HUBSPOT_CONTACTS: &str = "https://developers.hubspot.com/docs/api/crm/contacts";
const HUBSPOT_PHONE: &str =
    "https://knowledge.hubspot.com/properties/phone-number-property-validation";

const HUBSPOT: &[Field] = &[
    field(
        "$..properties.email",
        Accepts::Email,
        "INVALID_EMAIL unless an address (RFC 2822, a known top-level domain)",
        HUBSPOT_CONTACTS,
    ),
    field(
        "$..properties.phone",
        Accepts::E164,
        "phone-number properties a portal can hold to E.164",
        HUBSPOT_PHONE,
    ),
    field(
        "$..properties.mobilephone",
        Accepts::E164,
        "phone-number properties a portal can hold to E.164",
        HUBSPOT_PHONE,
    ),
    field(
        "$..properties.fax",
        Accepts::E164,
        "a phone-number property",
        HUBSPOT_PHONE,
    ),
    field(
        "$..properties.address",
        Accepts::Text,
        "Street Address is a single-line text property",
        "https://knowledge.hubspot.com/properties/hubspots-default-contact-properties",
    ),
    field(
        "$..properties.message",
        Accepts::Text,
        "free text (removed)",
        HUBSPOT_CONTACTS,
    ),
    field(
        "$..properties.hs_content_membership_notes",
        Accepts::Text,
        "free text (removed)",
        HUBSPOT_CONTACTS,
    ),
];

const MAILCHIMP_MEMBERS: &str = "https://mailchimp.com/developer/marketing/api/list-members/";
const MAILCHIMP_MERGE: &str = "https://mailchimp.com/developer/marketing/docs/merge-fields/";

const MAILCHIMP: &[Field] = &[
    field(
        "$..email_address",
        Accepts::Email,
        "must be a real address; one that looks fake is refused",
        MAILCHIMP_MEMBERS,
    ),
    field(
        "$..merge_fields.PHONE",
        Accepts::UsPhone,
        "a phone merge field, validated in the audience's format (US by default)",
        MAILCHIMP_MERGE,
    ),
    field(
        "$..sms_phone_number",
        Accepts::E164,
        "an SMS number with its country code",
        MAILCHIMP_MEMBERS,
    ),
    field(
        "$..merge_fields.ADDRESS.addr1",
        Accepts::Text,
        "an address merge field needs addr1, city, state and zip; the lines are text",
        MAILCHIMP_MERGE,
    ),
    field(
        "$..merge_fields.ADDRESS.addr2",
        Accepts::Text,
        "an optional address line",
        MAILCHIMP_MERGE,
    ),
    field(
        "$..ip_signup",
        Accepts::Ip,
        "an IP address",
        MAILCHIMP_MEMBERS,
    ),
    field("$..ip_opt", Accepts::Ip, "an IP address", MAILCHIMP_MEMBERS),
    field(
        "$..location.latitude",
        Accepts::Text,
        "a coordinate (removed)",
        MAILCHIMP_MEMBERS,
    ),
    field(
        "$..location.longitude",
        Accepts::Text,
        "a coordinate (removed)",
        MAILCHIMP_MEMBERS,
    ),
    field(
        "$.note",
        Accepts::Text,
        "a member note, free text (removed)",
        MAILCHIMP_MEMBERS,
    ),
];

const SEGMENT_SPEC: &str = "https://segment.com/docs/connections/spec/identify/#traits";
const SEGMENT_API: &str =
    "https://segment.com/docs/connections/sources/catalog/libraries/server/http-api/";

const SEGMENT: &[Field] = &[
    field(
        "$..traits.email",
        Accepts::Text,
        "a string (the destinations that send email need the address: kept)",
        SEGMENT_SPEC,
    ),
    field("$..context.ip", Accepts::Ip, "an IP address", SEGMENT_SPEC),
    field(
        "$..traits.phone",
        Accepts::Text,
        "a string: Segment stores traits as they come",
        SEGMENT_SPEC,
    ),
    field(
        "$..traits.address.street",
        Accepts::Text,
        "a string",
        SEGMENT_SPEC,
    ),
    field(
        "$..properties.phone",
        Accepts::Text,
        "event properties are free-form",
        SEGMENT_API,
    ),
    field(
        "$..traits.description",
        Accepts::Text,
        "a string (removed)",
        SEGMENT_SPEC,
    ),
    field(
        "$..properties.notes",
        Accepts::Text,
        "free-form (removed)",
        SEGMENT_API,
    ),
    field(
        "$..properties.comment",
        Accepts::Text,
        "free-form (removed)",
        SEGMENT_API,
    ),
];

/// The minimizing presets, each with its platform's rules.
const PLATFORMS: &[(&str, &[Field])] = &[
    ("klaviyo", KLAVIYO),
    ("hubspot", HUBSPOT),
    ("mailchimp", MAILCHIMP),
    ("segment", SEGMENT),
];

fn env(name: &str) -> Option<OsString> {
    (name == "SCRIM_TEST_KEY").then(|| OsString::from(KEY))
}

/// The preset's fixture through a route with the preset and `extra` rules
/// (YAML flow mappings, one per rule): the input and the output, parsed.
fn through(preset: &str, extra: &[&str]) -> (Value, Value) {
    let mut yaml = format!(
        "keys:\n  pseudonym: ${{SCRIM_TEST_KEY}}\nroutes:\n  - name: r\n    match: {{path_prefix: /}}\n    upstream: https://platform.example\n    preset: {preset}\n    default_region: US\n"
    );
    if !extra.is_empty() {
        yaml.push_str("    rules:\n");
        for rule in extra {
            yaml.push_str(&format!("      - {rule}\n"));
        }
    }
    let config = Config::parse(&yaml, "t.yaml").unwrap_or_else(|e| panic!("{preset}: {e}"));
    let policy = scrim::policy::compile(&config, "t.yaml", &env)
        .unwrap_or_else(|e| panic!("{preset} with {extra:?}: {e}"));
    let path = format!(
        "{}/tests/data/presets/{preset}.json",
        env!("CARGO_MANIFEST_DIR")
    );
    let input = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let output = rewrite(&policy.routes[0].rules, &input).unwrap_or_else(|e| panic!("{e}"));
    (
        serde_json::from_str(&input).unwrap(),
        serde_json::from_str(&output).unwrap(),
    )
}

/// The values a selector of the forms these presets use (`$.a`, `$..a.b`)
/// names in `value`.
fn select<'v>(value: &'v Value, selector: &str) -> Vec<&'v Value> {
    let mut rest = selector
        .strip_prefix('$')
        .expect("a selector starts with $");
    let mut current = vec![value];
    while !rest.is_empty() {
        let descendant = rest.starts_with("..");
        rest = &rest[if descendant { 2 } else { 1 }..];
        let end = rest.find('.').unwrap_or(rest.len());
        let name = &rest[..end];
        rest = &rest[end..];
        let mut next = Vec::new();
        for v in current {
            if descendant {
                descendants_named(v, name, &mut next);
            } else if let Some(child) = v.get(name) {
                next.push(child);
            }
        }
        current = next;
    }
    current
}

fn descendants_named<'v>(value: &'v Value, name: &str, out: &mut Vec<&'v Value>) {
    match value {
        Value::Object(map) => {
            for (key, child) in map {
                if key == name {
                    out.push(child);
                }
                descendants_named(child, name, out);
            }
        }
        Value::Array(items) => items.iter().for_each(|v| descendants_named(v, name, out)),
        _ => {}
    }
}

fn table(preset: &str) -> &'static [Field] {
    PLATFORMS
        .iter()
        .find(|(name, _)| *name == preset)
        .map(|(_, fields)| *fields)
        .unwrap_or_else(|| panic!("no platform rules for {preset}"))
}

/// Each value `field` selects in `output` passes the platform's rule.
fn passes(preset: &str, field: &Field, output: &Value, with: &str) {
    for value in select(output, field.select) {
        assert!(
            field.accepts.holds(value),
            "{preset}{with}: {} = {value} breaks the platform's rule: {} ({:?}, {})",
            field.select,
            field.rule,
            field.accepts,
            field.source
        );
    }
}

/// The opt-in lines a preset's header shows: `#   - {select: …}`.
fn opt_ins(preset: &str) -> Vec<&'static str> {
    let source = scrim::presets::Preset::find(preset).unwrap().source;
    source
        .lines()
        .take_while(|line| line.starts_with('#'))
        .filter_map(|line| line.trim_start_matches('#').trim().strip_prefix("- "))
        .filter(|rule| rule.starts_with("{select:"))
        .collect()
}

#[test]
fn every_field_a_minimizing_preset_names_states_its_platforms_rule() {
    for (preset, fields) in PLATFORMS {
        let file = scrim::presets::Preset::find(preset)
            .unwrap()
            .parse()
            .unwrap();
        let mut named: Vec<&str> = file.rules.iter().map(|r| r.select.value.as_str()).collect();
        let mut stated: Vec<&str> = fields.iter().map(|f| f.select).collect();
        named.sort_unstable();
        stated.sort_unstable();
        assert_eq!(named, stated, "{preset}: the fields its rules name");
        for field in *fields {
            assert!(
                field.source.starts_with("https://") && !field.rule.is_empty(),
                "{preset}: {} states a rule and its source",
                field.select
            );
        }
    }
}

#[test]
fn what_each_minimizing_preset_sends_passes_its_platforms_rules() {
    for (preset, fields) in PLATFORMS {
        let file = scrim::presets::Preset::find(preset)
            .unwrap()
            .parse()
            .unwrap();
        let (input, output) = through(preset, &[]);
        for field in *fields {
            let sent = select(&input, field.select);
            assert!(
                !sent.is_empty(),
                "{preset}: the fixture has no {} to check",
                field.select
            );
            passes(preset, field, &output, "");
            let rule = file
                .rules
                .iter()
                .find(|r| r.select.value == field.select)
                .unwrap();
            let action = rule.action.value.value().copied();
            let arrived = select(&output, field.select);
            match action {
                Some(scrim::transform::ActionKind::Drop) => {
                    assert!(arrived.is_empty(), "{preset}: {} removed", field.select)
                }
                Some(scrim::transform::ActionKind::Keep) => {
                    assert_eq!(arrived, sent, "{preset}: {} as sent", field.select)
                }
                _ => assert_eq!(
                    arrived.len(),
                    sent.len(),
                    "{preset}: {} rewritten, not removed",
                    field.select
                ),
            }
        }
    }
}

#[test]
fn the_opt_ins_each_header_shows_compile_and_pass_the_platforms_rules() {
    // The opt-ins that keep a value say so; the phone ones in the shape the
    // platform takes.
    let expected: &[(&str, &str, &str)] = &[
        ("klaviyo", "$..attributes.email", "drop"),
        ("klaviyo", "$..attributes.phone_number", "+16505551212"),
        ("hubspot", "$..properties.email", "drop"),
        ("hubspot", "$..properties.phone", "+16505551212"),
        ("mailchimp", "$..merge_fields.PHONE", "+1 650 555 1212"),
        ("mailchimp", "$..sms_phone_number", "+16505551515"),
        ("segment", "$..traits.phone", "+16505551212"),
    ];
    let mut seen = 0;
    for (preset, _) in PLATFORMS {
        for line in opt_ins(preset) {
            let (_, output) = through(preset, &[line]);
            let selector = line.split('"').nth(1).expect("a quoted selector");
            let field = table(preset)
                .iter()
                .find(|f| f.select == selector)
                .unwrap_or_else(|| panic!("{preset}: opt-in {line} names a field with no rule"));
            passes(preset, field, &output, &format!(" with {line}"));
            let arrived = select(&output, field.select);
            if let Some((_, _, want)) = expected
                .iter()
                .find(|(p, s, _)| p == preset && *s == field.select)
            {
                seen += 1;
                if *want == "drop" {
                    assert!(arrived.is_empty(), "{preset} with {line}: removed");
                } else {
                    assert_eq!(
                        arrived.first().and_then(|v| v.as_str()),
                        Some(*want),
                        "{preset} with {line}"
                    );
                }
            }
        }
    }
    assert_eq!(seen, expected.len(), "every expected opt-in is in a header");
}

#[test]
fn keep_with_normalize_sends_the_normal_form_and_refuses_what_it_cannot_read() {
    let yaml = "routes:\n  - name: r\n    match: {path_prefix: /}\n    upstream: https://platform.example\n    default_region: US\n    rules:\n      - {select: \"$.phone\", action: keep, normalize: phone}\n      - {select: \"$.list\", action: keep, normalize: phone}\n";
    let config = Config::parse(yaml, "t.yaml").unwrap();
    let policy = scrim::policy::compile(&config, "t.yaml", &env).unwrap();
    let rules = &policy.routes[0].rules;
    assert_eq!(
        rewrite(
            rules,
            r#"{"phone":"(650) 555-1212","list":["+44 20 7946 0958",16505551313,"",null]}"#
        )
        .unwrap(),
        r#"{"phone":"+16505551212","list":["+442079460958","+16505551313","",null]}"#
    );
    // Already in E.164: left byte for byte, and the detectors leave it alone
    // (the default scan would otherwise redact a phone number).
    assert_eq!(
        rewrite(rules, r#"{"phone":"+16505551212"}"#).unwrap(),
        r#"{"phone":"+16505551212"}"#
    );
    // Not a phone number: `on_invalid` (drop by default), never sent as it came.
    assert_eq!(
        rewrite(rules, r#"{"phone":"call me maybe","other":1}"#).unwrap(),
        r#"{"other":1}"#
    );
    // `keep` takes no other option.
    let yaml = "routes:\n  - name: r\n    match: {path_prefix: /}\n    upstream: https://platform.example\n    rules:\n      - {select: \"$.a\", action: keep, encoding: hex}\n";
    let config = Config::parse(yaml, "t.yaml").unwrap();
    let errors = scrim::policy::compile(&config, "t.yaml", &env)
        .unwrap_err()
        .to_string();
    assert!(
        errors.contains("`encoding` does not apply to action `keep`"),
        "{errors}"
    );
}
