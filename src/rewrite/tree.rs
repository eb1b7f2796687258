//! The same rewrite, done on a parsed `serde_json::Value` tree.
//!
//! This is the executable specification of what the streaming rewriter does
//! (the property tests compare the two) and the baseline it is benchmarked
//! against. It is simple on purpose: parse everything, walk, serialize.

use serde_json::Value;

use super::error::{Error, Kind};
use super::verdict::{self, Rejected, Verdict};
use crate::policy::{Label, RuleId, Rules, State, Unlisted};
use crate::transform::{Action, Invalid, Scalar};

/// Rewrites a parsed document. `seen` is told every original string value a
/// rule replaced or removed (for tests that check none of them leaks).
pub fn rewrite_value(
    rules: &Rules,
    value: Value,
    seen: &mut dyn FnMut(&str),
) -> Result<Value, Error> {
    let mut states = Vec::new();
    let selected = rules.body.start(&mut states);
    let mut walker = Walker { rules, seen };
    let slot = slot_for(selected, &states, rules.unlisted, true);
    Ok(walker.value(value, slot, &states)?.unwrap_or(Value::Null))
}

/// Parses, rewrites and serializes: the whole round trip.
pub fn rewrite_bytes(rules: &Rules, body: &[u8]) -> Result<Vec<u8>, Error> {
    let value: Value = serde_json::from_slice(body).map_err(|err| {
        Error::new(
            Kind::Syntax,
            err.column() as u64,
            "$".to_owned(),
            "invalid JSON",
        )
    })?;
    let rewritten = rewrite_value(rules, value, &mut |_| {})?;
    serde_json::to_vec(&rewritten)
        .map_err(|_| Error::new(Kind::Syntax, 0, "$".to_owned(), "cannot serialize"))
}

#[derive(Clone, Copy)]
enum Slot {
    Pass,
    Track,
    Select(RuleId),
    Unlisted,
}

fn slot_for(selected: Option<RuleId>, states: &[State], unlisted: Unlisted, root: bool) -> Slot {
    match selected {
        Some(rule) => Slot::Select(rule),
        None if !states.is_empty() => Slot::Track,
        // The root is never removed as unlisted: its members are.
        None if unlisted == Unlisted::Drop && root => Slot::Track,
        None if unlisted == Unlisted::Drop => Slot::Unlisted,
        None => Slot::Pass,
    }
}

struct Walker<'a> {
    rules: &'a Rules,
    seen: &'a mut dyn FnMut(&str),
}

impl Walker<'_> {
    /// `None` when the value is removed.
    fn value(
        &mut self,
        value: Value,
        slot: Slot,
        states: &[State],
    ) -> Result<Option<Value>, Error> {
        match slot {
            Slot::Pass => Ok(Some(value)),
            Slot::Unlisted => {
                self.forget(&value);
                Ok(None)
            }
            Slot::Track => self.track(value, states),
            Slot::Select(rule) => self.select(value, rule, states),
        }
    }

    fn track(&mut self, value: Value, states: &[State]) -> Result<Option<Value>, Error> {
        let matcher = &self.rules.body;
        match value {
            Value::Object(map) => {
                let mut out = serde_json::Map::new();
                for (key, child) in map {
                    let mut child_states = Vec::new();
                    let selected =
                        matcher.step(states, Label::Key(key.as_bytes()), &mut child_states);
                    let slot = slot_for(selected, &child_states, self.rules.unlisted, false);
                    if let Some(kept) = self.value(child, slot, &child_states)? {
                        out.insert(key, kept);
                    }
                }
                Ok(Some(Value::Object(out)))
            }
            Value::Array(items) => {
                let mut out = Vec::new();
                for (index, child) in items.into_iter().enumerate() {
                    let mut child_states = Vec::new();
                    let selected =
                        matcher.step(states, Label::Index(index as u32), &mut child_states);
                    let slot = slot_for(selected, &child_states, self.rules.unlisted, false);
                    if let Some(kept) = self.value(child, slot, &child_states)? {
                        out.push(kept);
                    }
                }
                Ok(Some(Value::Array(out)))
            }
            Value::String(text) if looks_like_json(&text) => {
                let inner: Value = serde_json::from_str(&text).map_err(|_| {
                    Error::new(Kind::Syntax, 0, "$".to_owned(), "invalid embedded JSON")
                })?;
                let before = inner.clone();
                let rewritten = self.track(inner, states)?.unwrap_or(Value::Null);
                if rewritten == before {
                    Ok(Some(Value::String(text)))
                } else {
                    Ok(Some(Value::String(rewritten.to_string())))
                }
            }
            scalar if self.rules.unlisted == Unlisted::Drop => {
                self.forget(&scalar);
                Ok(None)
            }
            scalar => Ok(Some(scalar)),
        }
    }

    fn select(
        &mut self,
        value: Value,
        rule: RuleId,
        states: &[State],
    ) -> Result<Option<Value>, Error> {
        let action = &self.rules.rules[rule].action;
        match (action, value) {
            (Action::Drop, value) => {
                self.forget(&value);
                Ok(None)
            }
            (Action::Keep, value) => Ok(Some(value)),
            (Action::AddMembers(members), Value::Object(mut map)) => {
                // Members of the added names go first, unexamined.
                for name in members.names() {
                    if let Some(old) = map.remove(name) {
                        self.forget(&old);
                    }
                }
                let Some(Value::Object(mut map)) = self.track(Value::Object(map), states)? else {
                    return Ok(None);
                };
                let added: serde_json::Map<String, Value> =
                    serde_json::from_str(&format!("{{{}}}", members.text())).map_err(|_| {
                        Error::new(Kind::Syntax, 0, "$".to_owned(), "invalid added members")
                    })?;
                map.extend(added);
                Ok(Some(Value::Object(map)))
            }
            (Action::AddMembers(_), value @ Value::Array(_)) => match states {
                [] => Ok(Some(value)),
                states => self.track(value, states),
            },
            (Action::AddMembers(_), value) => Ok(Some(value)),
            // A probe's read keeps what it selects; below a container the
            // other selectors go on.
            (Action::Read { .. }, value @ (Value::Object(_) | Value::Array(_))) => match states {
                [] => Ok(Some(value)),
                states => self.track(value, states),
            },
            // A guard reads strings: an object is left to the other
            // selectors, an array is checked element by element.
            (Action::Only { .. }, value @ Value::Object(_)) => match states {
                [] => Ok(Some(value)),
                states => self.track(value, states),
            },
            (Action::Only { .. }, Value::Array(items)) => {
                let mut out = Vec::new();
                for item in items {
                    if let Some(kept) = self.select(item, rule, &[])? {
                        out.push(kept);
                    }
                }
                Ok(Some(Value::Array(out)))
            }
            (Action::Redact { with }, value @ (Value::Object(_) | Value::Array(_))) => {
                self.forget(&value);
                Ok(Some(Value::String(with.clone())))
            }
            (action, Value::Array(items)) if action.is_per_scalar() => {
                let mut out = Vec::new();
                for item in items {
                    if let Some(kept) = self.scalar(item, rule)? {
                        out.push(kept);
                    }
                }
                Ok(Some(Value::Array(out)))
            }
            (_, value) => self.scalar(value, rule),
        }
    }

    fn scalar(&mut self, value: Value, rule: RuleId) -> Result<Option<Value>, Error> {
        let number;
        let scalar = match &value {
            Value::Null => Ok(Scalar::Null),
            Value::Bool(b) => Ok(Scalar::Bool(*b)),
            Value::Number(n) => {
                number = n.to_string();
                Ok(Scalar::Number(&number))
            }
            Value::String(s) => Ok(Scalar::Str(s)),
            Value::Object(_) | Value::Array(_) => Err(Invalid::NotAScalar),
        };
        let mut out = String::new();
        match verdict::judge(
            self.rules,
            rule,
            scalar,
            &mut out,
            &mut Vec::new(),
            &mut super::Lookups::default(),
        ) {
            Ok(Verdict::Keep | Verdict::Unchanged) => Ok(Some(value)),
            Ok(Verdict::Remove(_)) => {
                self.forget(&value);
                Ok(None)
            }
            Ok(Verdict::Replace(_)) => {
                self.forget(&value);
                Ok(Some(Value::String(out)))
            }
            Err(Rejected(reason)) => Err(Error::new(Kind::Rejected, 0, "$".to_owned(), reason)),
        }
    }

    /// Reports every string in a value that is being replaced or removed.
    fn forget(&mut self, value: &Value) {
        match value {
            Value::String(s) => (self.seen)(s),
            Value::Array(items) => items.iter().for_each(|v| self.forget(v)),
            Value::Object(map) => map.values().for_each(|v| self.forget(v)),
            _ => {}
        }
    }
}

fn looks_like_json(text: &str) -> bool {
    text.trim_start_matches([' ', '\t', '\n', '\r'])
        .starts_with(['{', '['])
}
