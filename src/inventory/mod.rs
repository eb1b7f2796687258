//! The egress inventory: for each route, every field path that left in a
//! forwarded request (body, query, headers) and what left of its values,
//! with the route's consent decisions. Paths and counts only, never a
//! value.
//!
//! Each worker writes to its own [`Shard`] (one lock nobody else takes but
//! a reader), so that counting costs a request no contention; a reader
//! merges the shards. Memory is bounded: at most [`MAX_PATHS`] paths per
//! route and shard, the values of any further path counted as overflow.

mod page;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::rewrite::{ByTemplate, Counts, KnownTemplates, MAX_PATHS, Outcome, Report};

pub use page::render_page;

/// Every worker's counts.
#[derive(Default)]
pub struct Inventory {
    shards: Mutex<Vec<Arc<Mutex<Table>>>>,
}

/// One worker's counts.
#[derive(Clone)]
pub struct Shard(Arc<Mutex<Table>>);

#[derive(Default)]
struct Table {
    routes: HashMap<String, RouteTable>,
}

#[derive(Clone, Default)]
struct RouteTable {
    requests: u64,
    consent: BTreeMap<&'static str, u64>,
    /// By the hash of the path's template, with the template.
    paths: ByTemplate<(String, Seen)>,
    /// The hashes of `paths`, handed to each request: a rewrite does not
    /// build the text of a template known here.
    known: Arc<KnownTemplates>,
    overflow: u64,
}

/// What left of the values at one path, and when.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Seen {
    pub counts: Counts,
    /// Seconds since the Unix epoch.
    pub first: u64,
    pub last: u64,
}

/// The consent decision of a request that no signal decided.
pub const NO_SIGNAL: &str = "no_signal";

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic elsewhere left counts, not broken invariants: keep counting.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Inventory {
    pub fn new() -> Inventory {
        Inventory::default()
    }

    /// A new shard, for one worker.
    pub fn shard(&self) -> Shard {
        let table = Arc::new(Mutex::new(Table::default()));
        lock(&self.shards).push(table.clone());
        Shard(table)
    }

    /// Every shard merged: routes by name, paths sorted.
    pub fn snapshot(&self) -> Snapshot {
        let shards: Vec<Arc<Mutex<Table>>> = lock(&self.shards).clone();
        let mut merged: BTreeMap<String, RouteTable> = BTreeMap::new();
        for shard in shards {
            let table = lock(&shard);
            for (name, theirs) in &table.routes {
                let mine = merged.entry(name.clone()).or_default();
                mine.requests += theirs.requests;
                mine.overflow += theirs.overflow;
                for (decision, n) in &theirs.consent {
                    *mine.consent.entry(decision).or_default() += n;
                }
                for (hash, (path, seen)) in &theirs.paths {
                    match mine.paths.get_mut(hash) {
                        Some((_, known)) => {
                            crate::rewrite::add_counts(&mut known.counts, &seen.counts);
                            known.first = known.first.min(seen.first);
                            known.last = known.last.max(seen.last);
                        }
                        None => {
                            mine.paths.insert(*hash, (path.clone(), *seen));
                        }
                    }
                }
            }
        }
        Snapshot {
            routes: merged
                .into_iter()
                .map(|(name, table)| {
                    let mut fields: Vec<(String, Seen)> = table.paths.into_values().collect();
                    fields.sort_by(|a, b| a.0.cmp(&b.0));
                    RouteInventory {
                        name,
                        requests: table.requests,
                        consent: table
                            .consent
                            .into_iter()
                            .map(|(k, v)| (k.to_owned(), v))
                            .collect(),
                        overflow: table.overflow,
                        fields,
                    }
                })
                .collect(),
        }
    }
}

impl Shard {
    /// Counts a request of route `route` that was forwarded, with what its
    /// rewrite `report` saw; `consent` is the decision of the signal that
    /// picked its rules, if one did.
    pub fn forwarded(
        &self,
        route: &str,
        report: &Report,
        consent: Option<&'static str>,
        now: SystemTime,
    ) {
        let now = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let mut table = lock(&self.0);
        let entry = table.route(route);
        entry.requests += 1;
        *entry
            .consent
            .entry(consent.unwrap_or(NO_SIGNAL))
            .or_default() += 1;
        let Some(fields) = &report.fields else {
            return;
        };
        entry.overflow += fields.overflow;
        for (hash, path, counts) in fields.entries() {
            let room = entry.paths.len() < MAX_PATHS && !path.is_empty();
            match entry.paths.get_mut(&hash) {
                Some((_, seen)) => {
                    crate::rewrite::add_counts(&mut seen.counts, counts);
                    seen.last = now;
                }
                None if room => {
                    let seen = Seen {
                        counts: *counts,
                        first: now,
                        last: now,
                    };
                    entry.paths.insert(hash, (path.to_owned(), seen));
                    Arc::make_mut(&mut entry.known).insert(hash);
                }
                None => entry.overflow += counts.iter().sum::<u64>(),
            }
        }
    }

    /// The templates route `route` knows, for a request's
    /// [`Report::knowing`].
    pub fn known(&self, route: &str) -> Arc<KnownTemplates> {
        lock(&self.0)
            .routes
            .get(route)
            .map(|table| table.known.clone())
            .unwrap_or_default()
    }

    /// Counts a request of route `route` that a consent signal blocked.
    pub fn blocked(&self, route: &str, consent: &'static str) {
        let mut table = lock(&self.0);
        *table.route(route).consent.entry(consent).or_default() += 1;
    }
}

impl Table {
    fn route(&mut self, route: &str) -> &mut RouteTable {
        // Looked up by `&str` first: the name is only copied once.
        if !self.routes.contains_key(route) {
            self.routes.insert(route.to_owned(), RouteTable::default());
        }
        self.routes
            .get_mut(route)
            .unwrap_or_else(|| unreachable!("the route's table was inserted just above"))
    }
}

/// The inventory at one moment, as `GET /inventory` and the page show it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Snapshot {
    pub routes: Vec<RouteInventory>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RouteInventory {
    pub name: String,
    /// Requests forwarded.
    pub requests: u64,
    /// Requests by consent decision (`no_signal` when none decided).
    pub consent: BTreeMap<String, u64>,
    /// Values whose path did not fit under the cap.
    pub overflow: u64,
    /// Paths, sorted.
    pub fields: Vec<(String, Seen)>,
}

/// An instant as RFC 3339, to the second.
pub(crate) fn timestamp(seconds: u64) -> String {
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(seconds)).to_string()
}

impl Snapshot {
    /// The JSON of `GET /inventory`.
    pub fn to_json(&self) -> serde_json::Value {
        let routes: Vec<serde_json::Value> = self
            .routes
            .iter()
            .map(|route| {
                let fields: Vec<serde_json::Value> = route
                    .fields
                    .iter()
                    .map(|(path, seen)| {
                        let mut field = serde_json::Map::new();
                        field.insert("path".into(), path.as_str().into());
                        for outcome in Outcome::ALL {
                            field.insert(
                                outcome.as_str().into(),
                                seen.counts[outcome as usize].into(),
                            );
                        }
                        field.insert("first_seen".into(), timestamp(seen.first).into());
                        field.insert("last_seen".into(), timestamp(seen.last).into());
                        field.into()
                    })
                    .collect();
                serde_json::json!({
                    "route": route.name,
                    "requests": route.requests,
                    "consent": route.consent,
                    "overflow": route.overflow,
                    "fields": fields,
                })
            })
            .collect();
        serde_json::json!({ "max_paths": MAX_PATHS, "routes": routes })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::Rules;
    use crate::rewrite::Fields;

    fn report_with(paths: &[(&str, Outcome)]) -> Report {
        let mut fields = Fields::new(&Rules::default());
        for (path, outcome) in paths {
            fields.count(path, *outcome);
        }
        let mut report = Report::default();
        report.fields = Some(Box::new(fields));
        report
    }

    #[test]
    fn shards_merge_by_route_and_path() {
        let inventory = Inventory::new();
        let (one, two) = (inventory.shard(), inventory.shard());
        let at = |s: u64| UNIX_EPOCH + Duration::from_secs(s);
        let report = report_with(&[("$.a[3]", Outcome::Kept), ("$.b", Outcome::Hashed)]);
        one.forwarded("meta", &report, None, at(100));
        two.forwarded("meta", &report, Some("strip_identifiers"), at(200));
        two.blocked("meta", "block");
        let snapshot = inventory.snapshot();
        let meta = &snapshot.routes[0];
        assert_eq!(meta.requests, 2);
        assert_eq!(meta.consent.get("no_signal"), Some(&1));
        assert_eq!(meta.consent.get("strip_identifiers"), Some(&1));
        assert_eq!(meta.consent.get("block"), Some(&1));
        let paths: Vec<&str> = meta.fields.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(paths, ["$.a[*]", "$.b"]);
        let a = meta.fields[0].1;
        assert_eq!(
            (a.counts[Outcome::Kept as usize], a.first, a.last),
            (2, 100, 200)
        );
        assert_eq!(meta.fields[1].1.counts[Outcome::Hashed as usize], 2);
    }

    #[test]
    fn a_route_holds_a_bounded_number_of_paths() {
        let inventory = Inventory::new();
        let shard = inventory.shard();
        for batch in 0..3 {
            let paths: Vec<String> = (0..MAX_PATHS).map(|i| format!("$.k{batch}_{i}")).collect();
            let named: Vec<(&str, Outcome)> =
                paths.iter().map(|p| (p.as_str(), Outcome::Kept)).collect();
            shard.forwarded("r", &report_with(&named), None, SystemTime::now());
        }
        let snapshot = inventory.snapshot();
        assert_eq!(snapshot.routes[0].fields.len(), MAX_PATHS);
        assert_eq!(snapshot.routes[0].overflow, 2 * MAX_PATHS as u64);
    }
}
