//! The shape of the source, read from the files: which module uses which. Dependencies point
//! one way (front-ends → run → engine, workers, stats → proto), `sys` and `proto` are leaves,
//! and no module uses one that uses it back, at the crate's top level and between the
//! sibling modules of a directory. Paths in strings count too (serde's `with = "…"`).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Module path (`stats::aggregate`) → source text.
fn modules() -> BTreeMap<String, String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut out = BTreeMap::new();
    let mut stack = vec![root.clone()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.insert(
                    module_of(&root, &path),
                    std::fs::read_to_string(&path).unwrap(),
                );
            }
        }
    }
    out
}

fn module_of(root: &Path, file: &Path) -> String {
    let rel: PathBuf = file.strip_prefix(root).unwrap().with_extension("");
    let mut parts: Vec<String> = rel
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    if matches!(
        parts.last().map(String::as_str),
        Some("mod" | "lib" | "main")
    ) {
        parts.pop();
    }
    parts.join("::")
}

/// The modules `text` (of module `me`) names: `crate::a::b…` and `super::a…`, code and strings.
fn uses(me: &str, text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let path_chars = |c: char| c.is_alphanumeric() || c == '_' || c == ':';
    for (at, _) in text.match_indices("crate::") {
        let path: String = text[at + 7..]
            .chars()
            .take_while(|&c| path_chars(c))
            .collect();
        out.insert(path);
    }
    let parent = me.rsplit_once("::").map_or("", |(p, _)| p);
    for (at, _) in text.match_indices("super::") {
        let path: String = text[at + 7..]
            .chars()
            .take_while(|&c| path_chars(c))
            .collect();
        out.insert(if parent.is_empty() {
            path
        } else {
            format!("{parent}::{path}")
        });
    }
    out.into_iter()
        .map(|p| p.trim_end_matches(':').to_string())
        .filter(|p| !p.is_empty())
        .collect()
}

/// The first `depth` segments of a path, when it has that many.
fn prefix(path: &str, depth: usize) -> Option<String> {
    let parts: Vec<&str> = path.split("::").collect();
    (parts.len() >= depth).then(|| parts[..depth].join("::"))
}

/// Edges between the modules `depth` segments deep (within `within` for depth 2).
fn graph(depth: usize) -> BTreeMap<String, BTreeSet<String>> {
    let mods = modules();
    let known: BTreeSet<String> = mods.keys().filter_map(|m| prefix(m, depth)).collect();
    let mut g: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (m, text) in &mods {
        let Some(from) = prefix(m, depth) else {
            continue;
        };
        for used in uses(m, text) {
            let Some(to) = prefix(&used, depth) else {
                continue;
            };
            let same_parent = depth == 1 || prefix(&to, depth - 1) == prefix(&from, depth - 1);
            if to != from && known.contains(&to) && same_parent {
                g.entry(from.clone()).or_default().insert(to);
            }
        }
    }
    g
}

/// A cycle in `g`, if there is one.
fn cycle(g: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        n: &str,
        g: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(i) = path.iter().position(|p| p == n) {
            let mut c = path[i..].to_vec();
            c.push(n.to_string());
            return Some(c);
        }
        if !done.insert(n.to_string()) {
            return None;
        }
        path.push(n.to_string());
        for next in g.get(n).into_iter().flatten() {
            if let Some(c) = visit(next, g, path, done) {
                return Some(c);
            }
        }
        path.pop();
        None
    }
    let mut done = BTreeSet::new();
    g.keys()
        .find_map(|n| visit(n, g, &mut Vec::new(), &mut done))
}

#[test]
fn sys_and_proto_are_leaves() {
    let g = graph(1);
    for leaf in ["sys", "proto", "fmt"] {
        assert_eq!(g.get(leaf), None, "{leaf} uses other modules of the crate");
    }
}

#[test]
fn no_module_uses_one_that_uses_it_back() {
    assert_eq!(cycle(&graph(1)), None, "{:#?}", graph(1));
    assert_eq!(cycle(&graph(2)), None, "{:#?}", graph(2));
}

#[test]
fn the_faces_stand_on_the_run_and_not_on_each_other() {
    let g = graph(1);
    assert!(!g["tui"].contains("headless"), "{:?}", g["tui"]);
    assert!(!g["headless"].contains("tui"), "{:?}", g["headless"]);
    for below in [
        "engine", "stats", "workers", "proto", "sys", "run", "control", "doctor",
    ] {
        let up: Vec<_> = ["tui", "headless", "ui"]
            .into_iter()
            .filter(|face| g.get(below).is_some_and(|e| e.contains(*face)))
            .collect();
        assert!(up.is_empty(), "{below} uses the faces {up:?}");
    }
}

#[test]
fn the_checker_sees_what_it_should() {
    // A serde `with` string is a use, as the one that once tied stats to workers was.
    let serde = r#"#[serde(with = "crate::workers::wire::histogram")]"#;
    assert!(uses("stats", serde).contains("workers::wire::histogram"));
    assert!(
        uses("stats::report", "use super::snapshot::Snapshot;")
            .contains("stats::snapshot::Snapshot")
    );
    let g = graph(1);
    assert!(
        g["run"].contains("engine") || g["run"].contains("workers"),
        "{g:#?}"
    );
    assert!(
        g["engine"].contains("proto") && g["engine"].contains("stats"),
        "{g:#?}"
    );
    let mut looped = g.clone();
    looped
        .entry("proto".into())
        .or_default()
        .insert("run".into());
    assert!(cycle(&looped).is_some(), "a planted cycle is found");
}
