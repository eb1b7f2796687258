//! The selector automaton. All body selectors of a route are stepped together
//! as the rewriter walks the document: a value's *state set* says which
//! selectors are still alive at its children. An empty set means nothing below
//! can be selected, which lets the rewriter pass the subtree through without
//! looking at it again.

use super::RuleId;
use super::selector::Step;

/// One selector's progress: the index of its next step.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct State {
    selector: u32,
    step: u32,
}

/// The label of a child value: its (unescaped) member key or array index.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Label<'a> {
    Key(&'a [u8]),
    Index(u32),
}

#[derive(Debug, Clone)]
struct Compiled {
    steps: Box<[Step]>,
    rule: RuleId,
}

/// The body selectors of one route.
#[derive(Debug, Clone, Default)]
pub struct Matcher {
    selectors: Vec<Compiled>,
}

impl Matcher {
    pub fn new() -> Matcher {
        Matcher::default()
    }

    pub(super) fn add(&mut self, steps: Vec<Step>, rule: RuleId) {
        self.selectors.push(Compiled {
            steps: steps.into_boxed_slice(),
            rule,
        });
    }

    pub fn is_empty(&self) -> bool {
        self.selectors.is_empty()
    }

    /// The states at the document root, appended to `out`, and the rule that
    /// selects the root itself (`$`), if any.
    pub fn start(&self, out: &mut Vec<State>) -> Option<RuleId> {
        let from = out.len();
        let mut selected = None;
        for index in 0..self.selectors.len() as u32 {
            self.advance(index, 0, from, out, &mut selected);
        }
        selected
    }

    /// Steps `from` (the states of a container) over one child `label`:
    /// appends the child's states to `out` and returns the rule that selects
    /// the child, if any. Where several rules select it, the last one wins.
    pub fn step(&self, from: &[State], label: Label<'_>, out: &mut Vec<State>) -> Option<RuleId> {
        let base = out.len();
        let mut selected = None;
        for state in from {
            let steps = &self.selectors[state.selector as usize].steps;
            let Some(step) = steps.get(state.step as usize) else {
                continue;
            };
            let advances = match (step, label) {
                (Step::Child(name), Label::Key(key)) => name.as_slice() == key,
                (Step::Index(n), Label::Index(i)) => *n == i,
                (Step::Wildcard, _) => true,
                (Step::Descendant(name), label) => {
                    push_unique(out, base, *state);
                    matches!(label, Label::Key(key) if name.as_slice() == key)
                }
                (Step::DescendantWildcard, _) => {
                    push_unique(out, base, *state);
                    true
                }
                _ => false,
            };
            if advances {
                self.advance(state.selector, state.step + 1, base, out, &mut selected);
            }
        }
        selected
    }

    fn advance(
        &self,
        selector: u32,
        step: u32,
        base: usize,
        out: &mut Vec<State>,
        selected: &mut Option<RuleId>,
    ) {
        let compiled = &self.selectors[selector as usize];
        if step as usize == compiled.steps.len() {
            *selected = Some(selected.map_or(compiled.rule, |r: RuleId| r.max(compiled.rule)));
        } else {
            push_unique(out, base, State { selector, step });
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
