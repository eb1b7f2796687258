//! Reading values out of a body without rewriting it: the values that
//! consent signals in the body name (`$.consent.ad_user_data`). Done on a
//! parsed tree: a route with such signals reads its bodies whole, within
//! `buffer_limit`, before deciding how to rewrite them.

use serde_json::Value;

use super::body::BodyKind;
use super::error::{Error, Kind};
use crate::policy::{Label, RuleId, Rules, State};

/// Every scalar the rules' body selectors select, as text (strings as they
/// are, numbers and literals as written by serde_json), with its rule.
pub fn probe(rules: &Rules, kind: BodyKind, body: &[u8]) -> Result<Vec<(RuleId, String)>, Error> {
    let invalid = || Error::new(Kind::Syntax, 0, "$".to_owned(), "invalid body");
    let mut found = Vec::new();
    let mut visit = |value: Value| {
        let mut states = Vec::new();
        let selected = rules.body.start(&mut states);
        walk(rules, &value, selected, &states, &mut found);
    };
    match kind {
        BodyKind::Json => visit(serde_json::from_slice(body).map_err(|_| invalid())?),
        BodyKind::Ndjson => {
            for line in body.split(|&b| b == b'\n') {
                if !line.iter().all(u8::is_ascii_whitespace) {
                    visit(serde_json::from_slice(line).map_err(|_| invalid())?);
                }
            }
        }
        BodyKind::Form => {
            let mut fields = serde_json::Map::new();
            let mut root = Vec::new();
            let root_rule = rules.body.start(&mut root);
            // Read with the rewriter's own decoder. A name it cannot decode
            // is refused, as the rewriter refuses it; a value only where the
            // probe reads that field (it might be the signal: fail closed).
            for (name, value) in crate::percent::fields(body) {
                let name = crate::percent::decode(name)
                    .and_then(|name| String::from_utf8(name).ok())
                    .ok_or_else(invalid)?;
                let mut states = Vec::new();
                let read = root_rule.is_some()
                    || rules
                        .body
                        .step(&root, Label::Key(name.as_bytes()), &mut states)
                        .is_some()
                    || !states.is_empty();
                let value = crate::percent::decode(value).and_then(|v| String::from_utf8(v).ok());
                match value {
                    Some(value) => {
                        fields.insert(name, Value::String(value));
                    }
                    None if read => return Err(invalid()),
                    None => {}
                }
            }
            visit(Value::Object(fields));
        }
    }
    Ok(found)
}

fn walk(
    rules: &Rules,
    value: &Value,
    selected: Option<RuleId>,
    states: &[State],
    found: &mut Vec<(RuleId, String)>,
) {
    if let Some(rule) = selected {
        match value {
            Value::String(text) => found.push((rule, text.clone())),
            Value::Object(_) | Value::Array(_) => {}
            scalar => found.push((rule, scalar.to_string())),
        }
    }
    if states.is_empty() {
        return;
    }
    let mut child_states = Vec::new();
    match value {
        Value::Object(map) => {
            for (key, child) in map {
                child_states.clear();
                let selected =
                    rules
                        .body
                        .step(states, Label::Key(key.as_bytes()), &mut child_states);
                walk(rules, child, selected, &child_states, found);
            }
        }
        Value::Array(items) => {
            for (index, child) in items.iter().enumerate() {
                child_states.clear();
                let selected = rules.body.step(
                    states,
                    Label::Index(u32::try_from(index).unwrap_or(u32::MAX)),
                    &mut child_states,
                );
                walk(rules, child, selected, &child_states, found);
            }
        }
        // An embedded document (Meta's `data=` form field).
        Value::String(text) if text.trim_start().starts_with(['{', '[']) => {
            if let Ok(inner) = serde_json::from_str::<Value>(text) {
                walk(rules, &inner, None, states, found);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::{Limits, OnInvalid, SelectorError, Unlisted};
    use crate::transform::Action;

    fn rules(selectors: &[&str]) -> Result<Rules, SelectorError> {
        Rules::build(
            selectors
                .iter()
                .map(|s| (s.to_string(), Action::Keep, OnInvalid::Drop)),
            Unlisted::Keep,
            Limits::default(),
        )
    }

    #[test]
    fn finds_selected_scalars_in_json_ndjson_and_forms() -> Result<(), Box<dyn std::error::Error>> {
        let rules_json = rules(&["$.consent.ad_user_data", "$.n"])?;
        let json = br#"{"consent":{"ad_user_data":"DENIED"},"n":3,"x":{"consent":1}}"#;
        assert_eq!(
            probe(&rules_json, BodyKind::Json, json)?,
            vec![(0, "DENIED".to_owned()), (1, "3".to_owned())]
        );
        let lines = b"{\"n\":1}\n\n{\"n\":true}\n";
        assert_eq!(
            probe(&rules_json, BodyKind::Ndjson, lines)?,
            vec![(1, "1".to_owned()), (1, "true".to_owned())]
        );
        // A form field holding JSON is looked into.
        let form = b"a=1&consent=%7B%22ad%22%3A%22no%22%7D";
        assert_eq!(
            probe(&rules(&["$.consent.ad"])?, BodyKind::Form, form)?,
            vec![(0, "no".to_owned())]
        );
        assert!(probe(&rules_json, BodyKind::Json, b"{").is_err());
        Ok(())
    }
}
