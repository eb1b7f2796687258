//! The selector automaton. All body selectors of a route are compiled into
//! one trie (selectors sharing a prefix share its nodes) and stepped together
//! as the rewriter walks the document: a value's *state set* says where in the
//! trie its children are looked up. An empty set means nothing below can be
//! selected, which lets the rewriter pass the subtree through without looking
//! at it again.
//!
//! Cost. A node keeps each kind of edge apart (names and `..name` edges in
//! hash tables, indexes sorted for a binary search, at most one `[*]` and one
//! `..*`), so stepping one state over a label costs O(log E) at most for E
//! edges and yields at most five states. A `..` edge does not live on as a
//! state of its own: a node with descendant edges is carried down as one
//! "deep" state, however many rules start there. States are deduplicated per step, so a
//! value never has more than one per trie node (usually one or two in all).
//! One token thus costs O(S log S) for S live states, S ≤ the trie’s
//! nodes, whatever the number of rules: 200 rules `$..kN` keep one state
//! alive, like one rule does.

use super::RuleId;
use super::selector::Step;

/// A position in the trie, for the children of one value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct State {
    node: u32,
    /// Only the node's descendant edges (`..name`, `..*`) are alive: the
    /// state of a value somewhere below where those edges started.
    deep: bool,
}

/// The label of a child value: its (unescaped) member key or array index.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Label<'a> {
    Key(&'a [u8]),
    Index(u32),
}

#[derive(Debug, Clone, Default)]
struct Node {
    /// `.name` edges: a node like Meta's `user_data` has a dozen of them.
    named: Names,
    /// `[N]` edges, sorted by index.
    indexes: Vec<(u32, u32)>,
    /// The `[*]` edge.
    wildcard: Option<u32>,
    /// `..name` edges.
    descendants: Names,
    /// The `..*` edge.
    descendant_wildcard: Option<u32>,
    /// The last rule whose selector ends here.
    selected: Option<RuleId>,
}

impl Node {
    fn has_edges(&self) -> bool {
        !self.named.is_empty()
            || !self.indexes.is_empty()
            || self.wildcard.is_some()
            || self.has_descendants()
    }

    fn has_descendants(&self) -> bool {
        !self.descendants.is_empty() || self.descendant_wildcard.is_some()
    }

    /// The node an edge of this step leads to, if the trie has one.
    fn edge(&self, step: &Step) -> Option<u32> {
        match step {
            Step::Child(name) => self.named.find(name),
            Step::Descendant(name) => self.descendants.find(name),
            Step::Index(index) => find_index(&self.indexes, *index),
            Step::Wildcard => self.wildcard,
            Step::DescendantWildcard => self.descendant_wildcard,
        }
    }

    fn add_edge(&mut self, step: Step, to: u32) {
        match step {
            Step::Child(name) => self.named.insert(name, to),
            Step::Descendant(name) => self.descendants.insert(name, to),
            Step::Index(index) => {
                let at = self.indexes.partition_point(|(i, _)| *i < index);
                self.indexes.insert(at, (index, to));
            }
            Step::Wildcard => self.wildcard = Some(to),
            Step::DescendantWildcard => self.descendant_wildcard = Some(to),
        }
    }
}

/// Name edges, found through a hash table of their indexes. A name's
/// length and its first and last eight bytes, read as integers without a
/// loop, make its key: for names of up to 16 bytes the key is the name, so
/// a probe compares integers only. A binary search with a `memcmp` per
/// probe cost a tenth of a hashed NDJSON event, and its branches, taken one
/// way or the other by each name, mispredicted two times a key (perf and
/// callgrind's branch simulation, `benches/ndjson.rs`).
#[derive(Debug, Clone, Default)]
struct Names {
    edges: Vec<NameEdge>,
    /// Open addressing: an index in `edges` plus one, 0 where empty. A
    /// power of two long, at most a quarter full, so that most keys, there
    /// or not, take one probe.
    table: Vec<u32>,
    /// A bit for each length of the names (bit 63 for all of 63 bytes or
    /// more): most member names in a body are of a length no selector's
    /// name has, and are told apart with one test, before any hashing.
    lengths: u64,
}

#[derive(Debug, Clone)]
struct NameEdge {
    key: NameKey,
    name: Box<[u8]>,
    to: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct NameKey {
    len: usize,
    /// The first eight bytes (fewer, zero-extended, in a shorter name).
    head: u64,
    /// The last eight bytes of a name longer than eight, else 0.
    tail: u64,
}

impl NameKey {
    fn of(name: &[u8]) -> NameKey {
        let len = name.len();
        let word = |at: usize| {
            let mut bytes = [0u8; 8];
            bytes.copy_from_slice(&name[at..at + 8]);
            u64::from_le_bytes(bytes)
        };
        let half = |at: usize| {
            let mut bytes = [0u8; 4];
            bytes.copy_from_slice(&name[at..at + 4]);
            u64::from(u32::from_le_bytes(bytes))
        };
        // Overlapping reads of fixed sizes, which give each byte its place.
        let head = match len {
            8.. => word(0),
            4..8 => half(0) | half(len - 4) << (8 * (len - 4)),
            1..4 => {
                let byte = |at: usize| u64::from(name[at]) << (8 * at);
                byte(0) | byte(len / 2) | byte(len - 1)
            }
            0 => 0,
        };
        let tail = if len > 8 { word(len - 8) } else { 0 };
        NameKey { len, head, tail }
    }

    fn hash(self) -> u64 {
        const SEED: u64 = 0x9E37_79B9_7F4A_7C15;
        let mixed = (self.head ^ self.len as u64).wrapping_mul(SEED);
        (mixed.rotate_left(26) ^ self.tail).wrapping_mul(SEED)
    }
}

impl Names {
    fn is_empty(&self) -> bool {
        self.edges.is_empty()
    }

    /// Where `key` goes in a table `mask + 1` long: its hash's top bits.
    fn start(key: NameKey, mask: usize) -> usize {
        (key.hash() >> 32) as usize & mask
    }

    fn length_bit(len: usize) -> u64 {
        1 << len.min(63)
    }

    /// Inlined for its first test, which most names fail.
    #[inline]
    fn find(&self, name: &[u8]) -> Option<u32> {
        if self.lengths & Names::length_bit(name.len()) == 0 {
            return None;
        }
        self.probe(name)
    }

    #[inline(never)]
    fn probe(&self, name: &[u8]) -> Option<u32> {
        let key = NameKey::of(name);
        let mask = self.table.len() - 1;
        let mut at = Names::start(key, mask);
        loop {
            let edge = self
                .edges
                .get((*self.table.get(at)?).checked_sub(1)? as usize)?;
            // Names of up to 16 bytes are equal when their keys are.
            if edge.key == key && (key.len <= 16 || edge.name[8..] == name[8..]) {
                return Some(edge.to);
            }
            at = (at + 1) & mask;
        }
    }

    /// Adds a name not in the set yet.
    fn insert(&mut self, name: Vec<u8>, to: u32) {
        let key = NameKey::of(&name);
        self.lengths |= Names::length_bit(name.len());
        let name = name.into_boxed_slice();
        self.edges.push(NameEdge { key, name, to });
        let size = (self.edges.len() * 4).next_power_of_two();
        if self.table.len() < size {
            self.table = vec![0; size];
            for index in 0..self.edges.len() {
                self.place(index);
            }
        } else {
            self.place(self.edges.len() - 1);
        }
    }

    fn place(&mut self, index: usize) {
        let mask = self.table.len() - 1;
        let mut at = Names::start(self.edges[index].key, mask);
        while self.table[at] != 0 {
            at = (at + 1) & mask;
        }
        self.table[at] = index as u32 + 1;
    }
}

fn find_index(edges: &[(u32, u32)], index: u32) -> Option<u32> {
    edges
        .binary_search_by(|(i, _)| i.cmp(&index))
        .ok()
        .map(|at| edges[at].1)
}

/// The body selectors of one route.
#[derive(Debug, Clone)]
pub struct Matcher {
    nodes: Vec<Node>,
}

impl Default for Matcher {
    fn default() -> Self {
        Matcher {
            nodes: vec![Node::default()],
        }
    }
}

impl Matcher {
    pub fn new() -> Matcher {
        Matcher::default()
    }

    pub(super) fn add(&mut self, steps: Vec<Step>, rule: RuleId) {
        let mut at = 0usize;
        for step in steps {
            at = match self.nodes[at].edge(&step) {
                Some(to) => to as usize,
                None => {
                    let to = self.nodes.len() as u32;
                    self.nodes.push(Node::default());
                    self.nodes[at].add_edge(step, to);
                    to as usize
                }
            };
        }
        let node = &mut self.nodes[at];
        node.selected = Some(node.selected.map_or(rule, |r| r.max(rule)));
    }

    pub fn is_empty(&self) -> bool {
        !self.nodes[0].has_edges() && self.nodes[0].selected.is_none()
    }

    /// The states at the document root, appended to `out`, and the rule that
    /// selects the root itself (`$`), if any.
    pub fn start(&self, out: &mut Vec<State>) -> Option<RuleId> {
        let mut selected = None;
        self.arrive(0, out, &mut selected);
        selected
    }

    /// Steps `from` (the states of a container) over one child `label`:
    /// appends the child's states to `out` and returns the rule that selects
    /// the child, if any. Where several rules select it, the last one wins.
    ///
    /// Inlined for the usual case, one state at a node of name and index
    /// edges only (`$.user_data`'s): a lookup and at most one arrival. The
    /// two calls it took, for a name no selector has, were a tenth of the
    /// pass-through's time (perf, `benches/ndjson.rs`).
    #[inline]
    pub fn step(&self, from: &[State], label: Label<'_>, out: &mut Vec<State>) -> Option<RuleId> {
        if let [state] = from
            && !state.deep
        {
            let node = &self.nodes[state.node as usize];
            if node.wildcard.is_none() && !node.has_descendants() {
                let mut selected = None;
                let to = match label {
                    Label::Key(key) => node.named.find(key),
                    Label::Index(index) => find_index(&node.indexes, index),
                };
                if let Some(to) = to {
                    self.arrive(to, out, &mut selected);
                }
                return selected;
            }
        }
        self.step_each(from, label, out)
    }

    /// [`step`](Self::step), for any states.
    #[inline(never)]
    fn step_each(&self, from: &[State], label: Label<'_>, out: &mut Vec<State>) -> Option<RuleId> {
        let base = out.len();
        let mut selected = None;
        for state in from {
            let node = &self.nodes[state.node as usize];
            if !state.deep {
                let to = match label {
                    Label::Key(key) => node.named.find(key),
                    Label::Index(index) => find_index(&node.indexes, index),
                };
                for to in to.into_iter().chain(node.wildcard) {
                    self.arrive(to, out, &mut selected);
                }
            }
            if node.has_descendants() {
                // Alive at every depth below.
                out.push(State {
                    node: state.node,
                    deep: true,
                });
                let to = match label {
                    Label::Key(key) => node.descendants.find(key),
                    Label::Index(_) => None,
                };
                for to in to.into_iter().chain(node.descendant_wildcard) {
                    self.arrive(to, out, &mut selected);
                }
            }
        }
        dedup_from(out, base);
        selected
    }

    fn arrive(&self, node: u32, out: &mut Vec<State>, selected: &mut Option<RuleId>) {
        let target = &self.nodes[node as usize];
        if let Some(rule) = target.selected {
            *selected = Some(selected.map_or(rule, |r: RuleId| r.max(rule)));
        }
        if target.has_edges() {
            out.push(State { node, deep: false });
        }
    }
}

/// Removes repeated states from `out[base..]` (their order does not matter).
/// A node's full state does all that its deep state does, so where both
/// are present only the full one stays.
fn dedup_from(out: &mut Vec<State>, base: usize) {
    match out.len() - base {
        0 | 1 => {}
        2 => {
            let (a, b) = (out[base], out[base + 1]);
            if a.node == b.node {
                out[base].deep = a.deep && b.deep;
                out.pop();
            }
        }
        _ => {
            // Sorted by node, the full state (`deep: false`) first.
            out[base..].sort_unstable();
            let mut kept = base + 1;
            for read in base + 1..out.len() {
                if out[read].node != out[kept - 1].node {
                    out[kept] = out[read];
                    kept += 1;
                }
            }
            out.truncate(kept);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::selector::Selector;

    fn matcher(selectors: &[&str]) -> Matcher {
        let mut m = Matcher::new();
        for (i, text) in selectors.iter().enumerate() {
            match Selector::parse(text) {
                Ok(Selector::Body(steps)) => m.add(steps, i),
                other => panic!("{other:?}"),
            }
        }
        m
    }

    /// Follows a path of labels from the root; returns the rule selecting the
    /// last value and whether anything below it can still match.
    fn walk(m: &Matcher, path: &[Label<'_>]) -> (Option<RuleId>, bool) {
        let mut states = Vec::new();
        let mut selected = m.start(&mut states);
        for label in path {
            let mut next = Vec::new();
            selected = m.step(&states, *label, &mut next);
            states = next;
        }
        (selected, !states.is_empty())
    }

    #[test]
    fn names_are_found_by_length_prefix_and_rest() {
        // Same length and first eight bytes, differing after; a prefix of
        // another; the empty name; bytes above 0x7f; inserted unsorted.
        let names: [&[u8]; 9] = [
            b"external_id",
            b"external_ix",
            b"external",
            b"externa",
            b"",
            b"em",
            b"\xc3\xa9m",
            b"z",
            b"\xff\xff\xff\xff\xff\xff\xff\xff\xff",
        ];
        let mut table = Names::default();
        for (to, name) in names.iter().enumerate().rev() {
            table.insert(name.to_vec(), to as u32);
        }
        for (to, name) in names.iter().enumerate() {
            assert_eq!(table.find(name), Some(to as u32), "{name:?}");
        }
        for absent in [&b"external_iy"[..], b"externals", b"e", b"em ", b"\0"] {
            assert_eq!(table.find(absent), None, "{absent:?}");
        }
    }

    #[test]
    fn names_of_every_length_are_found_and_others_not() {
        // Every length up to 70: those of 63 bytes and more share a bit of
        // the lengths' mask, and are told apart by their keys.
        assert_eq!(Names::default().find(b""), None);
        assert_eq!(Names::default().find(b"em"), None);
        let name = |len: usize| (0..len).map(|i| b'a' + (i % 26) as u8).collect::<Vec<u8>>();
        let mut table = Names::default();
        for len in (0..=70).step_by(3) {
            table.insert(name(len), len as u32);
        }
        for len in 0..=72 {
            let expected = (len % 3 == 0 && len <= 70).then_some(len as u32);
            assert_eq!(table.find(&name(len)), expected, "{len} bytes");
            let mut other = name(len);
            if let Some(last) = other.last_mut() {
                *last = b'!';
                assert_eq!(table.find(&other), None, "{len} bytes, last changed");
            }
        }
    }

    #[test]
    fn many_names_alike_are_all_found() {
        // Alike in length and first eight bytes; then alike in their last
        // eight too, told apart by the middle only.
        let names: Vec<Vec<u8>> = (0..300)
            .map(|i| format!("external_id_{i:03}").into_bytes())
            .chain((0..300).map(|i| format!("external_{i:03}_identifier_").into_bytes()))
            .collect();
        let mut table = Names::default();
        for (to, name) in names.iter().enumerate() {
            table.insert(name.clone(), to as u32);
            assert_eq!(table.find(name), Some(to as u32));
        }
        for (to, name) in names.iter().enumerate() {
            assert_eq!(table.find(name), Some(to as u32));
        }
        assert_eq!(table.find(b"external_id_300"), None);
        assert_eq!(table.find(b"external_id_"), None);
        assert_eq!(table.find(b"external_300_identifier_"), None);
    }

    #[test]
    fn steps_children_indexes_and_wildcards() {
        let m = matcher(&["$.data[*].user_data.em", "$.data[1].x"]);
        let em = [
            Label::Key(b"data"),
            Label::Index(0),
            Label::Key(b"user_data"),
            Label::Key(b"em"),
        ];
        assert_eq!(walk(&m, &em), (Some(0), false));
        assert_eq!(
            walk(
                &m,
                &[Label::Key(b"data"), Label::Index(1), Label::Key(b"x")]
            ),
            (Some(1), false)
        );
        assert_eq!(
            walk(
                &m,
                &[Label::Key(b"data"), Label::Index(0), Label::Key(b"x")]
            ),
            (None, false)
        );
        assert_eq!(walk(&m, &[Label::Key(b"other")]), (None, false));
        assert_eq!(walk(&m, &[Label::Key(b"data")]), (None, true));
    }

    #[test]
    fn descendants_match_at_any_depth() {
        let m = matcher(&["$..email"]);
        assert_eq!(walk(&m, &[Label::Key(b"email")]), (Some(0), true));
        assert_eq!(
            walk(
                &m,
                &[Label::Key(b"a"), Label::Index(3), Label::Key(b"email")]
            ),
            (Some(0), true)
        );
        assert_eq!(walk(&m, &[Label::Key(b"a"), Label::Index(3)]), (None, true));
    }

    #[test]
    fn the_root_and_the_last_rule_win() {
        let m = matcher(&["$", "$.a", "$.*"]);
        assert_eq!(walk(&m, &[]), (Some(0), true));
        assert_eq!(walk(&m, &[Label::Key(b"a")]), (Some(2), false));
    }

    #[test]
    fn indexes_and_descendant_wildcards() {
        let m = matcher(&["$.a[2]", "$.a[10].b", "$.c..*"]);
        assert_eq!(
            walk(&m, &[Label::Key(b"a"), Label::Index(2)]),
            (Some(0), false)
        );
        assert_eq!(
            walk(&m, &[Label::Key(b"a"), Label::Index(3)]),
            (None, false)
        );
        assert_eq!(
            walk(&m, &[Label::Key(b"a"), Label::Index(10), Label::Key(b"b")]),
            (Some(1), false)
        );
        assert_eq!(walk(&m, &[Label::Key(b"c")]), (None, true));
        assert_eq!(
            walk(&m, &[Label::Key(b"c"), Label::Index(0), Label::Key(b"x")]),
            (Some(2), true)
        );
    }

    /// The number of live states does not grow with the number of rules:
    /// every `..kN` edge lives on in the one deep state of its node.
    #[test]
    fn many_descendant_rules_keep_one_state_alive() {
        let selectors: Vec<String> = (0..200).map(|n| format!("$..k{n}")).collect();
        let selectors: Vec<&str> = selectors.iter().map(String::as_str).collect();
        let m = matcher(&selectors);
        let mut states = Vec::new();
        m.start(&mut states);
        for depth in 0..50u32 {
            let mut next = Vec::new();
            let key = format!("k{}", depth * 3);
            let selected = m.step(&states, Label::Key(key.as_bytes()), &mut next);
            assert_eq!(selected, Some(depth as usize * 3));
            assert_eq!(next.len(), 1, "at depth {depth}: {next:?}");
            states = next;
            let mut next = Vec::new();
            assert_eq!(m.step(&states, Label::Index(depth), &mut next), None);
            assert_eq!(next.len(), 1);
            states = next;
        }
    }

    #[test]
    fn nested_descendants_are_deduplicated() {
        // `$..a..a` reached along a a a a: each `a` starts a new `..a` match,
        // but they all share the same two trie nodes.
        let m = matcher(&["$..a..a", "$..a"]);
        let mut states = Vec::new();
        m.start(&mut states);
        for _ in 0..20 {
            let mut next = Vec::new();
            assert_eq!(m.step(&states, Label::Key(b"a"), &mut next), Some(1));
            assert!(next.len() <= 2, "{next:?}");
            states = next;
        }
    }

    /// A selector matches a path, by the definition of each step.
    fn matches(steps: &[Step], path: &[Label<'_>]) -> bool {
        let Some((step, rest)) = steps.split_first() else {
            return path.is_empty();
        };
        let at_any_depth = |name: Option<&[u8]>| {
            (0..path.len()).any(|k| {
                let named = match (name, path[k]) {
                    (None, _) => true,
                    (Some(name), Label::Key(key)) => name == key,
                    (Some(_), Label::Index(_)) => false,
                };
                named && matches(rest, &path[k + 1..])
            })
        };
        match (step, path.first()) {
            (Step::Descendant(name), _) => at_any_depth(Some(name)),
            (Step::DescendantWildcard, _) => at_any_depth(None),
            (_, None) => false,
            (Step::Child(name), Some(Label::Key(key))) => name == key && matches(rest, &path[1..]),
            (Step::Index(n), Some(Label::Index(i))) => n == i && matches(rest, &path[1..]),
            (Step::Wildcard, Some(_)) => matches(rest, &path[1..]),
            _ => false,
        }
    }

    fn step_strategy() -> impl proptest::strategy::Strategy<Value = Step> {
        use proptest::prelude::*;
        let name = prop::sample::select(vec![b"a".to_vec(), b"b".to_vec(), b"c".to_vec()]);
        prop_oneof![
            name.clone().prop_map(Step::Child),
            name.prop_map(Step::Descendant),
            (0u32..2).prop_map(Step::Index),
            Just(Step::Wildcard),
            Just(Step::DescendantWildcard),
        ]
    }

    fn label_strategy() -> impl proptest::strategy::Strategy<Value = (bool, u8)> {
        use proptest::prelude::*;
        (any::<bool>(), 0u8..3)
    }

    proptest::proptest! {
        /// The automaton selects exactly what the definition says, with the
        /// last matching rule winning, along every path.
        #[test]
        fn agrees_with_the_definition(
            selectors in proptest::collection::vec(proptest::collection::vec(step_strategy(), 0..5), 1..6),
            path in proptest::collection::vec(label_strategy(), 0..7),
        ) {
            let names: [&[u8]; 3] = [b"a", b"b", b"c"];
            let path: Vec<Label<'_>> = path
                .iter()
                .map(|(key, n)| if *key { Label::Key(names[usize::from(*n)]) } else { Label::Index(u32::from(*n)) })
                .collect();
            let mut m = Matcher::new();
            for (rule, steps) in selectors.iter().enumerate() {
                m.add(steps.clone(), rule);
            }
            for depth in 0..=path.len() {
                let expected = selectors
                    .iter()
                    .enumerate()
                    .filter(|(_, steps)| matches(steps, &path[..depth]))
                    .map(|(rule, _)| rule)
                    .max();
                proptest::prop_assert_eq!(walk(&m, &path[..depth]).0, expected, "at depth {}", depth);
            }
        }
    }
}
