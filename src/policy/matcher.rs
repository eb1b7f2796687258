//! The selector automaton. All body selectors of a route are compiled into
//! one trie (selectors sharing a prefix share its nodes) and stepped together
//! as the rewriter walks the document: a value's *state set* says where in the
//! trie its children are looked up. An empty set means nothing below can be
//! selected, which lets the rewriter pass the subtree through without looking
//! at it again.

use super::RuleId;
use super::selector::Step;

/// A position in the trie, for the children of one value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct State {
    node: u32,
    /// `ALL_EDGES`, or the one `..` edge (in `other`) of `node` that stays
    /// alive at every depth below where it started.
    edge: u32,
}

const ALL_EDGES: u32 = u32::MAX;

/// The label of a child value: its (unescaped) member key or array index.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Label<'a> {
    Key(&'a [u8]),
    Index(u32),
}

#[derive(Debug, Clone, Default)]
struct Node {
    /// `.name` edges, sorted by (length, name) for a binary search: a node
    /// like Meta's `user_data` has a dozen of them.
    named: Vec<(Vec<u8>, u32)>,
    /// Every other edge (`[N]`, `[*]`, `..name`, `..*`).
    other: Vec<(Step, u32)>,
    /// The last rule whose selector ends here.
    selected: Option<RuleId>,
}

impl Node {
    fn has_edges(&self) -> bool {
        !self.named.is_empty() || !self.other.is_empty()
    }

    fn find_named(&self, key: &[u8]) -> Option<u32> {
        self.named
            .binary_search_by(|(name, _)| {
                name.len()
                    .cmp(&key.len())
                    .then_with(|| name.as_slice().cmp(key))
            })
            .ok()
            .map(|index| self.named[index].1)
    }
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
            let node = &self.nodes[at];
            let existing = match &step {
                Step::Child(name) => node.find_named(name),
                other => node
                    .other
                    .iter()
                    .find(|(s, _)| s == other)
                    .map(|(_, to)| *to),
            };
            at = match existing {
                Some(to) => to as usize,
                None => {
                    let to = self.nodes.len() as u32;
                    self.nodes.push(Node::default());
                    let node = &mut self.nodes[at];
                    match step {
                        Step::Child(name) => {
                            node.named.push((name, to));
                            node.named.sort_by(|(a, _), (b, _)| {
                                a.len().cmp(&b.len()).then_with(|| a.cmp(b))
                            });
                        }
                        other => node.other.push((other, to)),
                    }
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
        let base = out.len();
        let mut selected = None;
        self.arrive(0, base, out, &mut selected);
        selected
    }

    /// Steps `from` (the states of a container) over one child `label`:
    /// appends the child's states to `out` and returns the rule that selects
    /// the child, if any. Where several rules select it, the last one wins.
    pub fn step(&self, from: &[State], label: Label<'_>, out: &mut Vec<State>) -> Option<RuleId> {
        let base = out.len();
        let mut selected = None;
        for state in from {
            let node = &self.nodes[state.node as usize];
            if state.edge == ALL_EDGES {
                if let Label::Key(key) = label
                    && let Some(to) = node.find_named(key)
                {
                    self.arrive(to, base, out, &mut selected);
                }
                for (index, (step, to)) in node.other.iter().enumerate() {
                    self.follow(
                        *state,
                        index as u32,
                        step,
                        *to,
                        label,
                        base,
                        out,
                        &mut selected,
                    );
                }
            } else if let Some((step, to)) = node.other.get(state.edge as usize) {
                self.follow(
                    *state,
                    state.edge,
                    step,
                    *to,
                    label,
                    base,
                    out,
                    &mut selected,
                );
            }
        }
        selected
    }

    #[allow(clippy::too_many_arguments)]
    #[inline]
    fn follow(
        &self,
        state: State,
        edge: u32,
        step: &Step,
        to: u32,
        label: Label<'_>,
        base: usize,
        out: &mut Vec<State>,
        selected: &mut Option<RuleId>,
    ) {
        let advances = match (step, label) {
            (Step::Index(n), Label::Index(i)) => *n == i,
            (Step::Wildcard, _) => true,
            (Step::Descendant(name), label) => {
                push_unique(
                    out,
                    base,
                    State {
                        node: state.node,
                        edge,
                    },
                );
                matches!(label, Label::Key(key) if name.as_slice() == key)
            }
            (Step::DescendantWildcard, _) => {
                push_unique(
                    out,
                    base,
                    State {
                        node: state.node,
                        edge,
                    },
                );
                true
            }
            _ => false,
        };
        if advances {
            self.arrive(to, base, out, selected);
        }
    }

    fn arrive(&self, node: u32, base: usize, out: &mut Vec<State>, selected: &mut Option<RuleId>) {
        let target = &self.nodes[node as usize];
        if let Some(rule) = target.selected {
            *selected = Some(selected.map_or(rule, |r: RuleId| r.max(rule)));
        }
        if target.has_edges() {
            push_unique(
                out,
                base,
                State {
                    node,
                    edge: ALL_EDGES,
                },
            );
        }
    }
}

fn push_unique(out: &mut Vec<State>, base: usize, state: State) {
    if !out[base..].contains(&state) {
        out.push(state);
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
}
