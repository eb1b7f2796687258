//! The fields one rewrite saw, for the egress inventory: each value's path
//! as a template (`$.data[*].user_data.em`) and what left of it. Paths and
//! counts only, never a value, and a bounded number of paths: a body of
//! endless distinct member names costs no more than one of a few.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Arc;

use super::path::{HASH_START, hash_bytes};
use crate::policy::{RuleId, Rules};
use crate::transform::ActionKind;

/// Distinct paths one rewrite, and one route in the inventory, keeps; the
/// values of any further path are counted in `overflow`.
pub const MAX_PATHS: usize = 256;

/// What left of a value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// As it came: no rule changed it (`keep`, unlisted, a guard that did
    /// not hold) and no detector found anything in it.
    Kept,
    /// Hashed (`hash`), or already a SHA-256 digest where a rule hashes.
    Hashed,
    /// A pseudonym: keyed (`hmac`), reversible by scrim (`encrypt`) or a
    /// vault token (`tokenize`).
    Pseudonymized,
    /// Cut down: `truncate_ip`, `mask`, `generalize`.
    Truncated,
    /// Replaced by a rule's tag (`redact`, or `on_invalid: redact`).
    Redacted,
    /// A detector of the route's `scan:` found an identifier in it, and the
    /// scan's action took the match.
    Detected,
    /// Removed: `drop`, `unlisted: drop`, `on_invalid: drop`.
    Dropped,
}

impl Outcome {
    pub const ALL: [Outcome; 7] = [
        Outcome::Kept,
        Outcome::Hashed,
        Outcome::Pseudonymized,
        Outcome::Truncated,
        Outcome::Redacted,
        Outcome::Detected,
        Outcome::Dropped,
    ];

    /// The key in `GET /inventory`.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Kept => "kept",
            Outcome::Hashed => "hashed",
            Outcome::Pseudonymized => "pseudonymized",
            Outcome::Truncated => "truncated",
            Outcome::Redacted => "redacted",
            Outcome::Detected => "detected",
            Outcome::Dropped => "dropped",
        }
    }

    /// What a rule of this kind makes of a value it rewrites.
    fn of_rewrite(kind: ActionKind) -> Outcome {
        match kind {
            ActionKind::Hash => Outcome::Hashed,
            ActionKind::Hmac | ActionKind::Tokenize | ActionKind::Encrypt => Outcome::Pseudonymized,
            ActionKind::Mask
            | ActionKind::TruncateIp
            | ActionKind::Generalize
            | ActionKind::StripUrl
            | ActionKind::GeneralizeUserAgent
            | ActionKind::BucketScreen => Outcome::Truncated,
            ActionKind::Redact => Outcome::Redacted,
            ActionKind::Drop => Outcome::Dropped,
            // `reveal` only runs on responses, which the inventory does
            // not count.
            ActionKind::Keep | ActionKind::AddMembers | ActionKind::Read | ActionKind::Reveal => {
                Outcome::Kept
            }
        }
    }
}

/// Counts by outcome, indexed by `Outcome as usize`.
pub type Counts = [u64; Outcome::ALL.len()];

/// Paths by the hash of their template ([`template_hash`]): already
/// mixed, so the map does not hash it again. Two templates of one hash
/// would share a row: a miscount in the inventory, never a value shown.
pub type ByTemplate<V> = HashMap<u64, V, BuildHasherDefault<Mixed>>;

/// Templates known already where the fields go (the inventory's), by
/// hash: a rewrite need not build their text again.
pub type KnownTemplates = HashSet<u64, BuildHasherDefault<Mixed>>;

/// The hasher of a key that is a hash already.
#[derive(Default)]
pub struct Mixed(u64);

impl Hasher for Mixed {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        self.0 = hash_bytes(self.0, bytes);
    }

    fn write_u64(&mut self, hash: u64) {
        self.0 = hash;
    }
}

/// The hash a template's text has: what a rewriter that builds it piece by
/// piece ([`super::path::hash_key`]) arrives at.
pub fn template_hash(template: &str) -> u64 {
    hash_bytes(HASH_START, template.as_bytes())
}

/// Where a counted value is: its path as errors show it, built only when
/// needed, and, when the rewriter kept it as it went, its template's hash.
pub(crate) trait Place {
    fn template_hash(&self) -> Option<u64>;
    fn path(self) -> String;
    /// The path as a template.
    fn template(self) -> String
    where
        Self: Sized,
    {
        templated(&self.path())
    }
}

impl<F: FnOnce() -> String> Place for F {
    fn template_hash(&self) -> Option<u64> {
        None
    }

    fn path(self) -> String {
        self()
    }
}

/// A [`Place`] whose template hash is known, with what builds its path
/// and its template.
pub(crate) struct Hashed<P, T>(pub(crate) u64, pub(crate) P, pub(crate) T);

impl<P: FnOnce() -> String, T: FnOnce() -> String> Place for Hashed<P, T> {
    fn template_hash(&self) -> Option<u64> {
        Some(self.0)
    }

    fn path(self) -> String {
        (self.1)()
    }

    fn template(self) -> String {
        (self.2)()
    }
}

/// The paths of one rewrite and their counts.
#[derive(Clone, Debug, Default)]
pub struct Fields {
    /// What each rule's rewrite is, by rule index.
    rewrites: Vec<Outcome>,
    paths: ByTemplate<(String, Counts)>,
    /// Values whose path did not fit under [`MAX_PATHS`].
    pub overflow: u64,
    /// The template being built (reused).
    template: String,
    /// Templates whose text need not be built: their rows leave it empty.
    known: Option<Arc<KnownTemplates>>,
}

/// Equal when they count the same: the scratch template does not count.
impl PartialEq for Fields {
    fn eq(&self, other: &Fields) -> bool {
        self.rewrites == other.rewrites
            && self.paths == other.paths
            && self.overflow == other.overflow
    }
}

impl Eq for Fields {}

impl Fields {
    pub fn new(rules: &Rules) -> Fields {
        Fields {
            rewrites: rules
                .rules
                .iter()
                .map(|rule| Outcome::of_rewrite(rule.action.kind()))
                .collect(),
            // Room for an event's fields: one allocation, not a growth step
            // every few of them.
            paths: ByTemplate::with_capacity_and_hasher(32, Default::default()),
            ..Fields::default()
        }
    }

    /// Leaves the text of the templates in `known` unbuilt: their rows
    /// have an empty path.
    pub fn knowing(mut self, known: Arc<KnownTemplates>) -> Fields {
        self.known = Some(known);
        self
    }

    /// Empty, for a nested rewrite (an embedded document) of the same rules.
    pub(crate) fn nested(&self) -> Fields {
        Fields {
            rewrites: self.rewrites.clone(),
            known: self.known.clone(),
            paths: ByTemplate::with_capacity_and_hasher(32, Default::default()),
            ..Fields::default()
        }
    }

    /// How many paths.
    pub fn len(&self) -> usize {
        self.paths.len()
    }

    pub fn is_empty(&self) -> bool {
        self.paths.is_empty()
    }

    /// Every path seen, with its counts, in no particular order.
    pub fn paths(&self) -> impl Iterator<Item = (&str, &Counts)> {
        self.paths
            .values()
            .map(|(path, counts)| (path.as_str(), counts))
    }

    /// Every path seen with the hash of its template.
    pub fn entries(&self) -> impl Iterator<Item = (u64, &str, &Counts)> {
        self.paths
            .iter()
            .map(|(hash, (path, counts))| (*hash, path.as_str(), counts))
    }

    /// What rule `rule`'s rewrite of a value leaves.
    pub(crate) fn rewrite_by(&self, rule: Option<RuleId>) -> Outcome {
        rule.and_then(|rule| self.rewrites.get(rule).copied())
            .unwrap_or(Outcome::Kept)
    }

    /// What a value left as it came under rule `rule` is: where the rule
    /// hashes, it already was a digest (or empty).
    pub(crate) fn outcome_of_kept(&self, rule: Option<RuleId>) -> Outcome {
        match rule.and_then(|rule| self.rewrites.get(rule)) {
            Some(Outcome::Hashed) => Outcome::Hashed,
            _ => Outcome::Kept,
        }
    }

    /// Counts one value at `path` (as errors show it: indices are made
    /// `[*]`).
    pub fn count(&mut self, path: &str, outcome: Outcome) {
        template_into(&mut self.template, path);
        let hash = template_hash(&self.template);
        let template = &self.template;
        let known = self.known.as_deref();
        count_in(
            &mut self.paths,
            &mut self.overflow,
            known,
            hash,
            || template.clone(),
            outcome,
        );
    }

    /// Counts one value at the template of hash `hash`, built by `template`
    /// the first time it is seen.
    pub(crate) fn count_hashed(
        &mut self,
        hash: u64,
        template: impl FnOnce() -> String,
        outcome: Outcome,
    ) {
        let known = self.known.as_deref();
        count_in(
            &mut self.paths,
            &mut self.overflow,
            known,
            hash,
            template,
            outcome,
        );
    }

    /// Counts one value at `place`.
    pub(crate) fn count_at(&mut self, place: impl Place, outcome: Outcome) {
        match place.template_hash() {
            Some(hash) => self.count_hashed(hash, || place.template(), outcome),
            None => self.count(&place.path(), outcome),
        }
    }

    /// Adds a nested rewrite's paths.
    pub(crate) fn absorb(&mut self, other: &Fields) {
        self.overflow += other.overflow;
        for (hash, (path, theirs)) in &other.paths {
            let room = self.paths.len() < MAX_PATHS;
            match self.paths.get_mut(hash) {
                Some((_, mine)) => add_counts(mine, theirs),
                None if room => {
                    self.paths.insert(*hash, (path.clone(), *theirs));
                }
                None => self.overflow += theirs.iter().sum::<u64>(),
            }
        }
    }
}

fn count_in(
    paths: &mut ByTemplate<(String, Counts)>,
    overflow: &mut u64,
    known: Option<&KnownTemplates>,
    hash: u64,
    template: impl FnOnce() -> String,
    outcome: Outcome,
) {
    let room = paths.len() < MAX_PATHS;
    // One probe whether the path is new or not.
    match paths.entry(hash) {
        Entry::Occupied(mut seen) => seen.get_mut().1[outcome as usize] += 1,
        Entry::Vacant(new) if room => {
            let template = if known.is_some_and(|known| known.contains(&hash)) {
                String::new()
            } else {
                template()
            };
            debug_assert!(
                template.is_empty() || template_hash(&template) == hash,
                "{template}: the hash kept piece by piece is not its text's"
            );
            let mut counts = Counts::default();
            counts[outcome as usize] = 1;
            new.insert((template, counts));
        }
        Entry::Vacant(_) => *overflow += 1,
    }
}

/// `path` as a template.
pub(crate) fn templated(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    template_into(&mut out, path);
    out
}

/// Adds `theirs` to `mine`, outcome by outcome.
pub fn add_counts(mine: &mut Counts, theirs: &Counts) {
    for (mine, theirs) in mine.iter_mut().zip(theirs) {
        *mine += theirs;
    }
}

/// `path` with every array index made `[*]`. A bracketed member name
/// (`['user_data[0]']`) is copied as it is.
fn template_into(out: &mut String, path: &str) {
    out.clear();
    let mut rest = path;
    while let Some(at) = rest.find('[') {
        out.push_str(&rest[..at]);
        let tail = &rest[at..];
        if tail.starts_with("['") {
            let end = tail.find("']").map_or(tail.len(), |end| end + 2);
            out.push_str(&tail[..end]);
            rest = &tail[end..];
            continue;
        }
        let digits = tail[1..].bytes().take_while(u8::is_ascii_digit).count();
        if digits > 0 && tail.as_bytes().get(1 + digits) == Some(&b']') {
            out.push_str("[*]");
            rest = &tail[digits + 2..];
        } else {
            out.push('[');
            rest = &tail[1..];
        }
    }
    out.push_str(rest);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indices_become_stars_and_bracketed_names_stay() {
        let mut out = String::new();
        for (path, template) in [
            ("$.data[0].user_data.em[12]", "$.data[*].user_data.em[*]"),
            ("$['user_data[0]'][3][?]", "$['user_data[0]'][*][?]"),
            ("query.utm_source", "query.utm_source"),
            ("$[", "$["),
            ("$[12", "$[12"),
        ] {
            template_into(&mut out, path);
            assert_eq!(out, template, "{path}");
        }
    }

    #[test]
    fn paths_beyond_the_cap_are_counted_as_overflow() {
        let mut fields = Fields::default();
        for i in 0..MAX_PATHS + 10 {
            fields.count(&format!("$.k{i}"), Outcome::Kept);
        }
        fields.count("$.k0", Outcome::Dropped);
        assert_eq!(fields.paths().count(), MAX_PATHS);
        assert_eq!(fields.overflow, 10);
        let k0 = fields.paths().find(|(p, _)| *p == "$.k0").map(|(_, c)| *c);
        assert_eq!(k0.map(|c| (c[0], c[6])), Some((1, 1)));
    }
}
