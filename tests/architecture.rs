//! The structure ARCHITECTURE.md describes, checked against the code: its
//! module map names every file under `src/` and no other, and no module
//! imports one that imports it back (read from `crate::`, `super::` and
//! `self::` paths outside comments, between top-level modules and between
//! the files of one module).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Every `.rs` file under `src/`, as a path like `src/rewrite/json.rs`.
fn source_files() -> Vec<String> {
    fn walk(dir: &Path, out: &mut Vec<String>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path.to_string_lossy().replace('\\', "/"));
            }
        }
    }
    let mut files = Vec::new();
    walk(Path::new("src"), &mut files);
    files.sort();
    files
}

/// `src/rewrite/json.rs` → `["rewrite", "json"]`; `mod.rs` names its
/// directory; `lib.rs` and `main.rs` are the root.
fn module_of(file: &str) -> Vec<String> {
    let mut parts: Vec<String> = file
        .trim_start_matches("src/")
        .trim_end_matches(".rs")
        .split('/')
        .map(str::to_owned)
        .collect();
    if parts.last().is_some_and(|p| p == "mod") {
        parts.pop();
    }
    if parts == ["lib"] || parts == ["main"] {
        parts.clear();
    }
    parts
}

/// The modules a file refers to, by the longest module path that exists.
fn references(file: &str, modules: &BTreeSet<Vec<String>>) -> BTreeSet<Vec<String>> {
    let text = std::fs::read_to_string(file).unwrap();
    let current = module_of(file);
    let mut found = BTreeSet::new();
    for line in text.lines() {
        let code = line.trim_start();
        if code.starts_with("//") {
            continue;
        }
        let bytes = code.as_bytes();
        let mut at = 0;
        while at < code.len() {
            let start = ["crate::", "super::", "self::"]
                .iter()
                .filter_map(|p| code[at..].find(p).map(|i| at + i))
                .min();
            let Some(start) = start else { break };
            let preceded_by_ident =
                start > 0 && (bytes[start - 1].is_ascii_alphanumeric() || bytes[start - 1] == b'_');
            let end = code[start..]
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
                .map_or(code.len(), |i| start + i);
            at = end.max(start + 1);
            if preceded_by_ident {
                continue;
            }
            let segments: Vec<&str> = code[start..end]
                .split("::")
                .filter(|s| !s.is_empty())
                .collect();
            let mut base: Vec<String> = match segments[0] {
                "crate" => Vec::new(),
                "self" => current.clone(),
                _ => current[..current.len().saturating_sub(1)].to_vec(),
            };
            let mut rest = &segments[1..];
            while rest.first() == Some(&"super") {
                base.pop();
                rest = &rest[1..];
            }
            let mut best = None;
            for take in 0..=rest.len() {
                let mut candidate = base.clone();
                candidate.extend(rest[..take].iter().map(|s| s.to_string()));
                if modules.contains(&candidate) {
                    best = Some(candidate);
                }
            }
            if let Some(target) = best {
                found.insert(target);
            }
        }
    }
    found
}

/// The strongly connected groups of more than one node.
fn cycles(edges: &BTreeMap<Vec<String>, BTreeSet<Vec<String>>>) -> Vec<Vec<Vec<String>>> {
    let nodes: BTreeSet<&Vec<String>> = edges.keys().chain(edges.values().flatten()).collect();
    let reaches = |from: &Vec<String>| -> BTreeSet<Vec<String>> {
        let mut seen = BTreeSet::new();
        let mut todo = vec![from.clone()];
        while let Some(node) = todo.pop() {
            for next in edges.get(&node).into_iter().flatten() {
                if seen.insert(next.clone()) {
                    todo.push(next.clone());
                }
            }
        }
        seen
    };
    let reach: BTreeMap<&Vec<String>, BTreeSet<Vec<String>>> =
        nodes.iter().map(|n| (*n, reaches(n))).collect();
    let mut groups: Vec<Vec<Vec<String>>> = Vec::new();
    for node in &nodes {
        if groups.iter().any(|g| g.contains(node)) {
            continue;
        }
        let group: Vec<Vec<String>> = nodes
            .iter()
            .filter(|other| reach[node].contains(**other) && reach[**other].contains(*node))
            .map(|n| (*n).clone())
            .collect();
        if group.len() > 1 {
            groups.push(group);
        }
    }
    groups
}

#[test]
fn no_module_imports_one_that_imports_it_back() {
    let files = source_files();
    let modules: BTreeSet<Vec<String>> = files.iter().map(|f| module_of(f)).collect();
    // Between top-level modules, and between sibling files of one module
    // (a file's own parent and children do not count: `super::` re-exports
    // and `mod` declarations are how a module is put together).
    let mut top: BTreeMap<Vec<String>, BTreeSet<Vec<String>>> = BTreeMap::new();
    let mut siblings: BTreeMap<Vec<String>, BTreeSet<Vec<String>>> = BTreeMap::new();
    for file in &files {
        let from = module_of(file);
        if from.is_empty() {
            continue;
        }
        for to in references(file, &modules) {
            if to.is_empty() || to == from {
                continue;
            }
            if to[0] != from[0] {
                top.entry(vec![from[0].clone()])
                    .or_default()
                    .insert(vec![to[0].clone()]);
            } else if to.len() == from.len() && to[..to.len() - 1] == from[..from.len() - 1] {
                siblings.entry(from.clone()).or_default().insert(to);
            }
        }
    }
    let found: Vec<_> = cycles(&top).into_iter().chain(cycles(&siblings)).collect();
    assert!(
        found.is_empty(),
        "modules that import each other: {found:?}"
    );
}

#[test]
fn the_module_map_names_every_file() {
    let map = std::fs::read_to_string("ARCHITECTURE.md").unwrap();
    let named: BTreeSet<String> = map
        .lines()
        .filter_map(|line| line.trim_start().strip_prefix("- `src/"))
        .filter_map(|rest| rest.split('`').next())
        .map(|path| format!("src/{path}"))
        .collect();
    let files: BTreeSet<String> = source_files().into_iter().collect();
    let missing: Vec<_> = files.difference(&named).collect();
    let stale: Vec<_> = named.difference(&files).collect();
    assert!(
        missing.is_empty() && stale.is_empty(),
        "ARCHITECTURE.md's module map: files not in it {missing:?}, entries for no file {stale:?}"
    );
}
