//! What a rewrite changed, for metrics and for `scrim rewrite --explain`.
//! Counts and paths only: a report never holds a value.

use super::fields::{Fields, Outcome, Place};
use crate::detect::{Detector, Finding};
use crate::policy::consent::signal_matches;
use crate::policy::{RuleId, Rules};
use crate::transform::{Action, Scalar};

/// Counts per rule, plus the itemized changes when asked for.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Report {
    /// Values each rule rewrote (hashed, replaced, dropped), by rule index.
    pub rewritten: Vec<u64>,
    /// Values each rule could not handle (then dropped, redacted or
    /// rejected per `on_invalid`), by rule index.
    pub invalid: Vec<u64>,
    /// Values removed because no rule selected them (`unlisted: drop`).
    pub unlisted_dropped: u64,
    /// One entry per change, when explaining.
    pub changes: Option<Vec<Change>>,
    /// Values `read` rules found equal to what they look for (a consent
    /// probe's rules; no other rule set has them).
    pub read_matches: u64,
    /// Identifiers the route's `scan:` found, by detector (indexed by
    /// `Detector as usize`).
    pub detections: [u64; Detector::ALL.len()],
    /// Every value's path and outcome, for the egress inventory, when
    /// asked for.
    pub fields: Option<Box<Fields>>,
    /// Values accounted for so far (changed, found or counted as kept): a
    /// rewriter compares it before and after a value to tell whether the
    /// value still needs counting.
    accounted: u64,
}

/// One change, as `--explain` shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change {
    pub path: String,
    /// The rule that made it; `None` for `unlisted: drop`.
    pub rule: Option<RuleId>,
    pub what: ChangeKind,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChangeKind {
    /// The rule's action replaced the value.
    Rewritten,
    /// The rule's action removed the value.
    Dropped,
    /// The value could not be handled and was removed.
    InvalidDropped,
    /// The value could not be handled and was redacted.
    InvalidRedacted,
    /// No rule selected the value, and `unlisted: drop` removed it.
    Unlisted,
    /// A detector found an identifier in a value no rule selected, and the
    /// route's `scan:` action took it.
    Detected(Detector),
}

impl ChangeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ChangeKind::Rewritten => "rewritten",
            ChangeKind::Dropped => "dropped",
            ChangeKind::InvalidDropped => "invalid_dropped",
            ChangeKind::InvalidRedacted => "invalid_redacted",
            ChangeKind::Unlisted => "unlisted_dropped",
            ChangeKind::Detected(_) => "detected",
        }
    }
}

impl Report {
    pub fn new(rules: usize, explain: bool) -> Report {
        Report {
            rewritten: vec![0; rules],
            invalid: vec![0; rules],
            unlisted_dropped: 0,
            changes: explain.then(Vec::new),
            read_matches: 0,
            detections: [0; Detector::ALL.len()],
            fields: None,
            accounted: 0,
        }
    }

    /// Also counts every value by path and outcome ([`Report::fields`]).
    pub fn with_fields(mut self, rules: &Rules) -> Report {
        self.fields = Some(Box::new(Fields::new(rules)));
        self
    }

    /// Leaves the text of templates in `known` unbuilt ([`Fields::knowing`]).
    pub fn knowing(mut self, known: std::sync::Arc<super::fields::KnownTemplates>) -> Report {
        self.fields = self.fields.map(|fields| Box::new(fields.knowing(known)));
        self
    }

    /// An empty report that itemizes what this one does, for a nested
    /// rewrite (an embedded document).
    pub(crate) fn nested(&self, rules: usize) -> Report {
        Report {
            changes: self.changes.as_ref().map(|_| Vec::new()),
            fields: self.nested_fields(),
            ..Report::new(rules, false)
        }
    }

    /// Empty fields that count as this report's do (none if it counts
    /// none), for a rewrite whose report is absorbed into this one.
    pub(crate) fn nested_fields(&self) -> Option<Box<Fields>> {
        self.fields.as_ref().map(|fields| Box::new(fields.nested()))
    }

    pub(crate) fn accounted(&self) -> u64 {
        self.accounted
    }

    /// Whether values are counted by path, so that a rewriter that would
    /// skip them must look at each.
    pub(crate) fn counts_fields(&self) -> bool {
        self.fields.is_some()
    }

    /// Counts a value that leaves as it came, under rule `rule` if one
    /// selected it; `path` is only built when fields are counted.
    pub(crate) fn kept(&mut self, rule: Option<RuleId>, place: impl Place) {
        self.accounted += 1;
        if let Some(fields) = &mut self.fields {
            let outcome = fields.outcome_of_kept(rule);
            fields.count_at(place, outcome);
        }
    }

    /// Counts a value that does not leave although no rule removed it (a
    /// header that is not text, where the detectors must read it).
    pub(crate) fn left_out(&mut self, place: impl Place) {
        self.accounted += 1;
        if let Some(fields) = &mut self.fields {
            fields.count_at(place, Outcome::Dropped);
        }
    }

    /// Counts a value that leaves as it came unless something was counted
    /// of it since `mark` (an [`Report::accounted`] reading).
    pub(crate) fn kept_since(&mut self, mark: u64, rule: Option<RuleId>, place: impl Place) {
        if self.accounted == mark {
            self.kept(rule, place);
        }
    }

    /// True when the rewrite changed anything at all.
    pub fn changed(&self) -> bool {
        self.unlisted_dropped > 0
            || self
                .rewritten
                .iter()
                .chain(&self.invalid)
                .chain(&self.detections)
                .any(|n| *n > 0)
    }

    /// Identifiers found by scanning, every detector together.
    pub fn total_detected(&self) -> u64 {
        self.detections.iter().sum()
    }

    /// Counts what a detector found in one value; `path` is only built
    /// when the change is itemized.
    pub(crate) fn detected(&mut self, findings: &[Finding], place: impl Place) {
        for finding in findings {
            self.detections[detector_index(finding.detector)] += 1;
        }
        self.accounted += 1;
        let Some(path) = self.count_field(Outcome::Detected, place) else {
            return;
        };
        if let Some(changes) = &mut self.changes {
            changes.extend(findings.iter().map(|finding| Change {
                path: path.clone(),
                rule: None,
                what: ChangeKind::Detected(finding.detector),
            }));
        }
    }

    pub fn total_rewritten(&self) -> u64 {
        self.rewritten.iter().sum()
    }

    /// Counts a change; `path` is only built when the change is itemized.
    pub(crate) fn record(&mut self, rule: Option<RuleId>, what: ChangeKind, place: impl Place) {
        match (rule, what) {
            (_, ChangeKind::Detected(detector)) => self.detections[detector_index(detector)] += 1,
            (Some(rule), ChangeKind::Rewritten | ChangeKind::Dropped) => {
                count(&mut self.rewritten, rule)
            }
            (Some(rule), _) => count(&mut self.invalid, rule),
            (None, _) => self.unlisted_dropped += 1,
        }
        self.accounted += 1;
        let outcome = match what {
            ChangeKind::Rewritten => self
                .fields
                .as_ref()
                .map_or(Outcome::Kept, |fields| fields.rewrite_by(rule)),
            ChangeKind::InvalidRedacted => Outcome::Redacted,
            ChangeKind::Dropped | ChangeKind::InvalidDropped | ChangeKind::Unlisted => {
                Outcome::Dropped
            }
            ChangeKind::Detected(_) => Outcome::Detected,
        };
        let Some(path) = self.count_field(outcome, place) else {
            return;
        };
        if let Some(changes) = &mut self.changes {
            changes.push(Change { path, rule, what });
        }
    }

    /// Counts the value at `place` as `outcome` when fields are counted;
    /// returns its path when changes are itemized (built once for both).
    fn count_field(&mut self, outcome: Outcome, place: impl Place) -> Option<String> {
        match (&mut self.fields, self.changes.is_some()) {
            (None, false) => None,
            (Some(fields), false) => {
                fields.count_at(place, outcome);
                None
            }
            (fields, true) => {
                let path = place.path();
                if let Some(fields) = fields {
                    fields.count(&path, outcome);
                }
                Some(path)
            }
        }
    }

    /// Adds the counts of a nested rewrite (an embedded document).
    pub(crate) fn absorb(&mut self, other: Report) {
        add(&mut self.rewritten, &other.rewritten);
        add(&mut self.invalid, &other.invalid);
        self.unlisted_dropped += other.unlisted_dropped;
        if let (Some(mine), Some(theirs)) = (&mut self.changes, other.changes) {
            mine.extend(theirs);
        }
        self.read_matches += other.read_matches;
        self.accounted += other.accounted;
        if let (Some(mine), Some(mut theirs)) = (&mut self.fields, other.fields) {
            // The larger takes in the smaller (a body's fields, the
            // headers' and the query's).
            if theirs.len() > mine.len() {
                std::mem::swap(mine, &mut theirs);
            }
            mine.absorb(&theirs);
        }
        for (mine, theirs) in self.detections.iter_mut().zip(other.detections) {
            *mine += theirs;
        }
    }

    /// Counts `value` if rule `rule` reads it (its action is
    /// [`Action::Read`]) and it is what the rule looks for.
    pub(crate) fn read(&mut self, rules: &Rules, rule: RuleId, value: Scalar<'_>) {
        let Action::Read { equals } = &rules.rules[rule].action else {
            return;
        };
        let text = match value {
            Scalar::Str(text) | Scalar::Number(text) => text,
            Scalar::Bool(true) => "true",
            Scalar::Bool(false) => "false",
            Scalar::Null => "null",
        };
        if signal_matches(text, equals) {
            self.read_matches += 1;
        }
    }
}

impl Report {
    /// The `--explain` report of `scrim rewrite`: each change by path, rule
    /// and action, and the counts per rule, for route `route`. Never a value.
    pub fn explain(&self, route: &str, rules: &Rules) -> String {
        let report = self;
        let scan_action = rules.scan.as_ref().map(|scan| scan.action.as_str());
        let rules = &rules.rules;
        let changes: Vec<serde_json::Value> = report
            .changes
            .iter()
            .flatten()
            .map(|change| match change.what {
                ChangeKind::Detected(detector) => serde_json::json!({
                    "path": change.path,
                    "detector": detector.as_str(),
                    "action": scan_action,
                    "outcome": change.what.as_str(),
                }),
                _ => serde_json::json!({
                    "path": change.path,
                    "rule": change.rule.map(|r| r + 1),
                    "selector": change.rule.map(|r| rules[r].selector.as_str()),
                    "action": change.rule.map_or("unlisted", |r| rules[r].action.kind().as_str()),
                    "outcome": change.what.as_str(),
                }),
            })
            .collect();
        let counts: Vec<serde_json::Value> = rules
            .iter()
            .enumerate()
            .map(|(i, rule)| {
                serde_json::json!({
                    "rule": i + 1,
                    "selector": rule.selector,
                    "action": rule.action.kind().as_str(),
                    "rewritten": report.rewritten[i],
                    "invalid": report.invalid[i],
                })
            })
            .collect();
        serde_json::json!({
            "route": route,
            "changes": changes,
            "rules": counts,
            "unlisted_dropped": report.unlisted_dropped,
            "detected": Detector::ALL
                .iter()
                .map(|d| (d.as_str().to_owned(), report.detections[detector_index(*d)].into()))
                .collect::<serde_json::Map<_, _>>(),
        })
        .to_string()
    }
}

/// Where `detector` counts in [`Report::detections`].
pub(crate) fn detector_index(detector: Detector) -> usize {
    detector as usize
}

/// Counts one for `rule`. A report is made for its rules
/// ([`Report::new`]); one that is not grows rather than panics in a
/// release build.
fn count(counts: &mut Vec<u64>, rule: RuleId) {
    debug_assert!(
        rule < counts.len(),
        "a report made for fewer rules than rule {rule}"
    );
    if counts.len() <= rule {
        counts.resize(rule + 1, 0);
    }
    counts[rule] += 1;
}

fn add(counts: &mut Vec<u64>, other: &[u64]) {
    if counts.len() < other.len() {
        counts.resize(other.len(), 0);
    }
    for (mine, theirs) in counts.iter_mut().zip(other) {
        *mine += theirs;
    }
}
