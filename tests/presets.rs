//! Each built-in preset against a realistic request of its platform
//! (`tests/data/presets/NAME.json`, shaped as the platform's documentation or
//! SDK sends it). Every hashed field is checked against the SHA-256 of the
//! normalized value written out by hand here, from the platform's rules, not
//! computed with scrim's normalizers; every field the platform needs in the
//! clear must arrive unchanged.

mod common;

use std::ffi::OsString;
use std::sync::Arc;

use base64::Engine as _;
use hmac::{Hmac, KeyInit, Mac};
use serde_json::Value;
use sha2::{Digest, Sha256};

use common::{rewrite, rewrite_chunked, rewrite_form_chunked, sha256_hex};
use scrim::config::Config;
use scrim::policy::Route;
use scrim::rewrite::Framing;

const KEY: &str = "presets-test-key-0123456789abcdef";

fn env(name: &str) -> Option<OsString> {
    (name == "SCRIM_TEST_KEY").then(|| OsString::from(KEY))
}

fn route(preset: &str) -> Arc<Route> {
    let yaml = format!(
        "keys:\n  pseudonym: ${{SCRIM_TEST_KEY}}\nroutes:\n  - name: r\n    match: {{path_prefix: /}}\n    upstream: https://platform.example\n    preset: {preset}\n    default_region: US\n"
    );
    let config = Config::parse(&yaml, "t.yaml").expect("config parses");
    let policy = scrim::policy::compile(&config, "t.yaml", &env).expect("config compiles");
    policy.routes[0].clone()
}

fn fixture(preset: &str) -> String {
    fixture_file(preset, "json")
}

fn fixture_file(preset: &str, extension: &str) -> String {
    let path = format!(
        "{}/tests/data/presets/{preset}.{extension}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The fixture before and after the preset, parsed; the output is also
/// checked to be the same when the body arrives one byte at a time.
fn through(preset: &str) -> (Value, Value) {
    let route = route(preset);
    let input = fixture(preset);
    let output = rewrite(&route.rules, &input).expect("fixture rewrites");
    let (bytewise, _) = rewrite_chunked(&route.rules, Framing::Single, input.as_bytes(), 1)
        .expect("fixture rewrites in 1-byte chunks");
    assert_eq!(
        output.as_bytes(),
        bytewise,
        "{preset}: chunking changed the output"
    );
    (
        serde_json::from_str(&input).expect("fixture is JSON"),
        serde_json::from_str(&output).expect("output is JSON"),
    )
}

fn at<'v>(value: &'v Value, pointer: &str) -> &'v Value {
    value
        .pointer(pointer)
        .unwrap_or_else(|| panic!("{pointer} missing in {value}"))
}

fn hashed(output: &Value, pointer: &str, normalized: &str) {
    assert_eq!(
        at(output, pointer),
        &Value::String(sha256_hex(normalized)),
        "{pointer} should be SHA-256 of {normalized:?}"
    );
}

fn clear(input: &Value, output: &Value, pointer: &str) {
    assert_eq!(
        at(output, pointer),
        at(input, pointer),
        "{pointer} must stay as sent"
    );
}

fn gone(output: &Value, pointer: &str) {
    assert!(
        output.pointer(pointer).is_none(),
        "{pointer} must be removed"
    );
}

/// The pseudonym scrim's `hmac` gives `normalized` with the test key,
/// computed from its documented definition: key id (first 3 bytes of
/// SHA-256 of "scrim key id\0" + key, hex), a dot, and the first 22
/// characters of the unpadded base64url HMAC-SHA256.
fn pseudonym(normalized: &str) -> String {
    let mut id = Sha256::new();
    id.update(b"scrim key id\0");
    id.update(KEY.as_bytes());
    let id: String = id.finalize()[..3]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(KEY.as_bytes()).unwrap();
    mac.update(normalized.as_bytes());
    let tag = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
    format!("{id}.{}", &tag[..22])
}

fn pseudonymized(output: &Value, pointer: &str, normalized: &str) {
    assert_eq!(
        at(output, pointer),
        &Value::String(pseudonym(normalized)),
        "{pointer} should be the pseudonym of {normalized:?}"
    );
}

/// Presets that hash leave their own output as it is: nothing is hashed twice.
fn idempotent(preset: &str) {
    let route = route(preset);
    let once = rewrite(&route.rules, &fixture(preset)).unwrap();
    let twice = rewrite(&route.rules, &once).unwrap();
    assert_eq!(once, twice, "{preset}: a second pass changed the output");
}

#[test]
fn published_examples_hold() {
    // Meta's documentation: the email and the US phone number.
    assert_eq!(
        sha256_hex("john_smith@gmail.com"),
        "62a14e44f765419d10fea99367361a727c12365e2520f32218d505ed9aa0f62f"
    );
    assert_eq!(
        sha256_hex("16505551212"),
        "e323ec626319ca94ee8bff2e4c87cf613be6ea19919ed1364124e16807ab3176"
    );
    // Snapchat's documentation: +44 844 412 4653.
    assert_eq!(
        sha256_hex("448444124653"),
        "dc008fda46e2e64002cf2f82a4906236282d431c4f75e5b60bfe79fc48546383"
    );
    // And scrim gives them through the presets.
    let meta = route("meta_capi");
    let out = rewrite(
        &meta.rules,
        r#"{"data":[{"user_data":{"em":"John_Smith@gmail.com","ph":"(650)555-1212"}}]}"#,
    )
    .unwrap();
    assert_eq!(
        out,
        r#"{"data":[{"user_data":{"em":"62a14e44f765419d10fea99367361a727c12365e2520f32218d505ed9aa0f62f","ph":"e323ec626319ca94ee8bff2e4c87cf613be6ea19919ed1364124e16807ab3176"}}]}"#
    );
    let snap = route("snapchat_capi");
    let out = rewrite(
        &snap.rules,
        r#"{"data":[{"user_data":{"ph":"+44 844 412 4653"}}]}"#,
    )
    .unwrap();
    assert_eq!(
        out,
        r#"{"data":[{"user_data":{"ph":"dc008fda46e2e64002cf2f82a4906236282d431c4f75e5b60bfe79fc48546383"}}]}"#
    );
}

#[test]
fn meta_capi() {
    let (input, output) = through("meta_capi");
    let user = "/data/0/user_data";
    hashed(&output, &format!("{user}/em/0"), "john_smith@gmail.com");
    clear(&input, &output, &format!("{user}/em/1")); // already a digest
    hashed(&output, &format!("{user}/ph/0"), "16505551212");
    hashed(&output, &format!("{user}/fn"), "zoë");
    hashed(&output, &format!("{user}/ln"), "obrien");
    hashed(&output, &format!("{user}/db"), "19900213");
    hashed(&output, &format!("{user}/ge"), "f");
    hashed(&output, &format!("{user}/ct"), "menlopark");
    hashed(&output, &format!("{user}/st"), "ca");
    hashed(&output, &format!("{user}/zp"), "94025");
    hashed(&output, &format!("{user}/country"), "us");
    hashed(&output, &format!("{user}/external_id"), "cust-00042");
    for field in ["client_ip_address", "client_user_agent", "fbc", "fbp"] {
        clear(&input, &output, &format!("{user}/{field}"));
    }
    for pointer in [
        "/data/0/custom_data",
        "/data/0/event_source_url",
        "/test_event_code",
    ] {
        clear(&input, &output, pointer);
    }
    idempotent("meta_capi");
}

#[test]
fn meta_capi_form_body_from_the_sdk() {
    // Meta's JavaScript and PHP SDKs post `data=<JSON array>` as a form.
    let route = route("meta_capi");
    let events = r#"[{"event_name":"Lead","user_data":{"em":"John_Smith@gmail.com","client_ip_address":"203.0.113.77"}}]"#;
    let body: String = form_urlencoded::Serializer::new(String::new())
        .append_pair("data", events)
        .append_pair("access_token", "EAAB-test")
        .finish();
    let (out, _) = rewrite_form_chunked(&route.rules, body.as_bytes(), 7).unwrap();
    let fields: Vec<(String, String)> = form_urlencoded::parse(out.as_bytes())
        .into_owned()
        .collect();
    let data: Value = serde_json::from_str(&fields[0].1).unwrap();
    hashed(&data, "/0/user_data/em", "john_smith@gmail.com");
    assert_eq!(at(&data, "/0/user_data/client_ip_address"), "203.0.113.77");
    assert_eq!(
        fields[1],
        ("access_token".to_owned(), "EAAB-test".to_owned())
    );
}

#[test]
fn google_ads() {
    let (input, output) = through("google_ads");
    let ids = "/conversions/0/userIdentifiers";
    hashed(
        &output,
        &format!("{ids}/0/hashedEmail"),
        "janedoe@gmail.com",
    );
    hashed(
        &output,
        &format!("{ids}/1/hashedPhoneNumber"),
        "+16505551212",
    );
    let address = format!("{ids}/2/addressInfo");
    hashed(&output, &format!("{address}/hashedFirstName"), "jane");
    hashed(&output, &format!("{address}/hashedLastName"), "doe");
    hashed(
        &output,
        &format!("{address}/hashedStreetAddress"),
        "1600 amphitheatre pkwy",
    );
    for field in ["city", "state", "countryCode", "postalCode"] {
        clear(&input, &output, &format!("{address}/{field}"));
    }
    for field in [
        "gclid",
        "orderId",
        "conversionAction",
        "conversionDateTime",
        "consent",
    ] {
        clear(&input, &output, &format!("/conversions/0/{field}"));
    }
    clear(&input, &output, &format!("{ids}/0/userIdentifierSource"));
    idempotent("google_ads");

    // Customer Match operations, deeper, in snake_case.
    let route = route("google_ads");
    let out = rewrite(
        &route.rules,
        r#"{"operations":[{"create":{"user_identifiers":[{"hashed_email":"J.Doe@googlemail.com"},{"hashed_phone_number":"(650) 555-1212"}]}}]}"#,
    )
    .unwrap();
    let out: Value = serde_json::from_str(&out).unwrap();
    hashed(
        &out,
        "/operations/0/create/user_identifiers/0/hashed_email",
        "jdoe@googlemail.com",
    );
    hashed(
        &out,
        "/operations/0/create/user_identifiers/1/hashed_phone_number",
        "+16505551212",
    );
}

#[test]
fn ga4_measurement_protocol() {
    let (input, output) = through("ga4_mp");
    hashed(
        &output,
        "/user_data/sha256_email_address/0",
        "janedoe@googlemail.com",
    );
    hashed(&output, "/user_data/sha256_phone_number/0", "+49301234567");
    hashed(&output, "/user_data/address/0/sha256_first_name", "jane");
    hashed(&output, "/user_data/address/0/sha256_last_name", "doesmith");
    hashed(&output, "/user_data/address/0/sha256_street", "main st 5");
    for field in ["city", "region", "postal_code", "country"] {
        clear(&input, &output, &format!("/user_data/address/0/{field}"));
    }
    // Values with an email address in them go, whatever their name.
    gone(&output, "/events/0/params/page_location");
    gone(&output, "/events/0/params/coupon");
    clear(&input, &output, "/events/0/params/page_title");
    gone(&output, "/events/0/params/email");
    gone(&output, "/events/0/params/phone_number");
    gone(&output, "/user_properties/email");
    for pointer in [
        "/client_id",
        "/user_id",
        "/timestamp_micros",
        "/user_properties/customer_tier",
        "/events/0/name",
        "/events/0/params/transaction_id",
        "/events/0/params/items",
        "/events/0/params/value",
    ] {
        clear(&input, &output, pointer);
    }
    idempotent("ga4_mp");
}

#[test]
fn tiktok_events() {
    let (input, output) = through("tiktok_events");
    hashed(&output, "/data/0/user/email", "jane.doe@example.com");
    hashed(&output, "/data/0/user/phone", "+16505551212");
    // TikTok's external_id is trimmed but not lowercased.
    hashed(&output, "/data/0/user/external_id", "Cust-00042");
    for field in ["ttclid", "ttp", "ip", "user_agent", "locale"] {
        clear(&input, &output, &format!("/data/0/user/{field}"));
    }
    for pointer in ["/data/0/properties", "/data/0/page", "/event_source_id"] {
        clear(&input, &output, pointer);
    }
    idempotent("tiktok_events");
}

#[test]
fn snapchat_capi() {
    let (input, output) = through("snapchat_capi");
    let user = "/data/0/user_data";
    hashed(&output, &format!("{user}/em/0"), "jane.doe@example.com");
    hashed(&output, &format!("{user}/ph/0"), "448444124653");
    hashed(&output, &format!("{user}/fn"), "jane");
    hashed(&output, &format!("{user}/ln"), "doe");
    hashed(&output, &format!("{user}/ge"), "f");
    hashed(&output, &format!("{user}/db"), "19900213");
    hashed(&output, &format!("{user}/ct"), "london");
    hashed(&output, &format!("{user}/zp"), "sw1a1aa");
    hashed(&output, &format!("{user}/country"), "gb");
    hashed(&output, &format!("{user}/external_id"), "cust-00042");
    for field in [
        "client_ip_address",
        "client_user_agent",
        "sc_click_id",
        "sc_cookie1",
    ] {
        clear(&input, &output, &format!("{user}/{field}"));
    }
    clear(&input, &output, "/data/0/custom_data");
    idempotent("snapchat_capi");
}

#[test]
fn pinterest_capi() {
    let (input, output) = through("pinterest_capi");
    let user = "/data/0/user_data";
    hashed(&output, &format!("{user}/em/0"), "jane.doe@example.com");
    hashed(&output, &format!("{user}/ph/0"), "16505551212");
    hashed(&output, &format!("{user}/fn/0"), "jane");
    hashed(&output, &format!("{user}/ln/0"), "doe");
    hashed(&output, &format!("{user}/ge/0"), "f");
    hashed(&output, &format!("{user}/db/0"), "19900213");
    hashed(&output, &format!("{user}/ct/0"), "menlopark");
    hashed(&output, &format!("{user}/st/0"), "ca");
    hashed(&output, &format!("{user}/zp/0"), "94025");
    hashed(&output, &format!("{user}/country/0"), "us");
    hashed(&output, &format!("{user}/external_id/0"), "cust-00042");
    for field in [
        "client_ip_address",
        "client_user_agent",
        "click_id",
        "hashed_maids",
    ] {
        clear(&input, &output, &format!("{user}/{field}"));
    }
    clear(&input, &output, "/data/0/custom_data");
    idempotent("pinterest_capi");
}

#[test]
fn linkedin_capi() {
    let (input, output) = through("linkedin_capi");
    let ids = "/elements/0/user/userIds";
    hashed(&output, &format!("{ids}/0/idValue"), "jane.doe@example.com");
    // Identifiers that are not emails pass as LinkedIn needs them.
    clear(&input, &output, &format!("{ids}/1/idValue"));
    clear(&input, &output, &format!("{ids}/2/idValue"));
    clear(&input, &output, &format!("{ids}/0/idType"));
    clear(&input, &output, "/elements/0/user/userInfo");
    clear(&input, &output, "/elements/0/conversionValue");
    // Already hashed by the app: left as it is.
    clear(&input, &output, "/elements/1/user/userIds/0/idValue");
    idempotent("linkedin_capi");
}

#[test]
fn segment() {
    let (input, output) = through("segment");
    let identify = "/batch/0";
    pseudonymized(&output, &format!("{identify}/traits/phone"), "+16505551212");
    pseudonymized(
        &output,
        &format!("{identify}/traits/address/street"),
        "1 main st",
    );
    gone(&output, &format!("{identify}/traits/description"));
    assert_eq!(
        at(&output, &format!("{identify}/context/ip")),
        "203.0.113.0"
    );
    assert_eq!(at(&output, "/batch/1/context/ip"), "2001:db8:85a3::");
    gone(&output, "/batch/1/properties/notes");
    gone(&output, "/batch/1/properties/comment");
    pseudonymized(&output, "/batch/1/properties/phone", "+16505551616");
    // Segment needs these to work; the README shows how to pseudonymize the email.
    for pointer in [
        "/traits/email",
        "/traits/name",
        "/traits/address/city",
        "/userId",
        "/context/userAgent",
    ] {
        clear(&input, &output, &format!("{identify}{pointer}"));
    }
    clear(&input, &output, "/batch/1/properties/total");
}

#[test]
fn klaviyo() {
    let (input, output) = through("klaviyo");
    let profile = "/data/attributes/profile/data/attributes";
    // Klaviyo accepts E.164 only there: removed, not pseudonymized.
    gone(&output, &format!("{profile}/phone_number"));
    pseudonymized(
        &output,
        &format!("{profile}/location/address1"),
        "1 main st",
    );
    pseudonymized(&output, &format!("{profile}/location/address2"), "apt 4");
    assert_eq!(
        at(&output, &format!("{profile}/location/ip")),
        "203.0.113.0"
    );
    gone(&output, &format!("{profile}/location/latitude"));
    gone(&output, &format!("{profile}/location/longitude"));
    for field in ["email", "first_name", "location/city", "location/zip"] {
        clear(&input, &output, &format!("{profile}/{field}"));
    }
    clear(&input, &output, "/data/attributes/properties");
}

#[test]
fn hubspot() {
    let (input, output) = through("hubspot");
    let contact = "/inputs/0/properties";
    // Phone-number properties a portal can hold to E.164: removed.
    for field in ["phone", "mobilephone", "fax"] {
        gone(&output, &format!("{contact}/{field}"));
    }
    pseudonymized(&output, &format!("{contact}/address"), "1 main st");
    gone(&output, &format!("{contact}/message"));
    gone(&output, &format!("{contact}/hs_content_membership_notes"));
    for field in [
        "email",
        "firstname",
        "lastname",
        "city",
        "zip",
        "lifecyclestage",
    ] {
        clear(&input, &output, &format!("{contact}/{field}"));
    }
}

#[test]
fn mailchimp() {
    let (input, output) = through("mailchimp");
    // Validated phone fields: removed.
    gone(&output, "/merge_fields/PHONE");
    gone(&output, "/sms_phone_number");
    gone(&output, "/note");
    pseudonymized(&output, "/merge_fields/ADDRESS/addr1", "1 main st");
    pseudonymized(&output, "/merge_fields/ADDRESS/addr2", "apt 4");
    assert_eq!(at(&output, "/ip_signup"), "203.0.113.0");
    assert_eq!(at(&output, "/ip_opt"), "2001:db8:85a3::");
    gone(&output, "/location/latitude");
    gone(&output, "/location/longitude");
    for pointer in [
        "/email_address",
        "/status",
        "/merge_fields/FNAME",
        "/merge_fields/ADDRESS/city",
        "/tags",
    ] {
        clear(&input, &output, pointer);
    }
}

#[test]
fn every_preset_compiles_and_names_valid_identifier_selectors() {
    for preset in scrim::presets::ALL {
        let file = preset
            .parse()
            .unwrap_or_else(|e| panic!("{}: {e}", preset.name));
        assert!(!file.rules.is_empty(), "{}", preset.name);
        assert!(!file.identifiers.is_empty(), "{}", preset.name);
        for selector in &file.identifiers {
            scrim::policy::Selector::parse(&selector.value)
                .unwrap_or_else(|e| panic!("{}: {}: {e}", preset.name, selector.value));
        }
        for rule in &file.rules {
            // Presets that pseudonymize use the one key their check asks for.
            assert!(
                rule.key.is_none(),
                "{}: a preset rule names a key",
                preset.name
            );
        }
        let route = route(preset.name);
        assert_eq!(route.preset.as_deref(), Some(preset.name));
        assert_eq!(route.rules.rules.len(), file.rules.len());
        if file.text_plain == Some(scrim::config::TextPlain::QueryLines) {
            // A browser preset's body is a batch of hits, one per line
            // (tests/ga4_web.rs sends them through the proxy).
            let batch = fixture_file(preset.name, "txt");
            let kind = scrim::rewrite::BodyKind::for_route("text/plain", &route.rules)
                .expect("the preset reads text/plain");
            let mut rewriter =
                scrim::rewrite::BodyRewriter::new(kind, &route.rules, Vec::new(), false);
            rewriter
                .write(bytes::Bytes::from(batch))
                .and_then(|()| rewriter.finish().map(|_| ()))
                .unwrap_or_else(|e| panic!("{}: {e}", preset.name));
            continue;
        }
        let fixture = fixture(preset.name);
        rewrite(&route.rules, &fixture).unwrap_or_else(|e| panic!("{}: {e}", preset.name));
    }
}

#[test]
fn route_rules_come_after_the_preset_and_win() {
    let yaml = "routes:\n  - name: r\n    match: {path_prefix: /}\n    upstream: https://platform.example\n    preset: tiktok_events\n    rules:\n      - {select: \"$.data[*].user.ip\", action: truncate_ip}\n      - {select: \"$.data[*].user.email\", action: drop}\n";
    let config = Config::parse(yaml, "t.yaml").unwrap();
    let policy = scrim::policy::compile(&config, "t.yaml", &env).unwrap();
    let out = rewrite(
        &policy.routes[0].rules,
        r#"{"data":[{"user":{"email":"a@b.example","phone":"+16505551212","ip":"203.0.113.77"}}]}"#,
    )
    .unwrap();
    assert_eq!(
        out,
        format!(
            r#"{{"data":[{{"user":{{"phone":"{}","ip":"203.0.113.0"}}}}]}}"#,
            sha256_hex("+16505551212")
        )
    );
}

#[test]
fn presets_that_pseudonymize_need_the_pseudonym_key() {
    let yaml = "routes:\n  - name: crm\n    match: {path_prefix: /}\n    upstream: https://api.hubapi.com\n    preset: hubspot\n";
    let config = Config::parse(yaml, "t.yaml").unwrap();
    let errors = scrim::policy::compile(&config, "t.yaml", &env)
        .unwrap_err()
        .to_string();
    assert!(
        errors.starts_with(
            "t.yaml:5:13: preset `hubspot` pseudonymizes (hmac) with the key `pseudonym`"
        ),
        "{errors}"
    );
}

/// The route each README platform section shows compiles as written.
#[test]
fn readme_platform_routes_compile() {
    let readme =
        std::fs::read_to_string(format!("{}/README.md", env!("CARGO_MANIFEST_DIR"))).unwrap();
    let routes: Vec<&str> = readme
        .split("**Route**: `")
        .skip(1)
        .filter_map(|rest| rest.split_once('`').map(|(route, _)| route))
        .collect();
    assert!(routes.len() >= 7, "{routes:?}");
    let yaml = format!(
        "keys:\n  pseudonym: ${{SCRIM_TEST_KEY}}\nroutes:\n{}",
        routes
            .iter()
            .map(|r| format!("  - {r}\n"))
            .collect::<String>()
    );
    let config = Config::parse(&yaml, "README.md").unwrap();
    let policy = scrim::policy::compile(&config, "README.md", &env).unwrap();
    for route in &policy.routes {
        assert!(route.preset.is_some(), "{}", route.name);
    }
}
