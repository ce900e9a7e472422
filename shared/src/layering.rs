//! The crate's modules depend on each other in one direction only: a module's file never
//! reaches, through the `crate::` paths it names, back to itself. This test reads the sources
//! and fails with the circle it finds. (Test modules and comments are left out: a test may use
//! anything, and a doc link is no dependency.)

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Every module file, by module path (`http::error`), with the text it holds outside its tests.
fn modules(dir: &Path, prefix: &str, found: &mut BTreeMap<String, String>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        if path.is_dir() {
            modules(&path, &join(prefix, &name), found);
        } else if let Some(stem) = name.strip_suffix(".rs") {
            let module = match stem {
                "mod" | "lib" => prefix.to_owned(),
                _ => join(prefix, stem),
            };
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            // Comments (doc links among them) name modules without depending on them.
            let code: Vec<&str> = text
                .split("#[cfg(test)]")
                .next()
                .unwrap_or_default()
                .lines()
                .filter(|line| !line.trim_start().starts_with("//"))
                .collect();
            found.insert(module, code.join("\n"));
        }
    }
}

fn join(prefix: &str, name: &str) -> String {
    if prefix.is_empty() {
        name.to_owned()
    } else {
        format!("{prefix}::{name}")
    }
}

/// The modules a file's `crate::a::b::…` paths name: the longest prefix that is a module.
fn dependencies(code: &str, known: &BTreeSet<String>) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    for path in code.split("crate::").skip(1) {
        let segments: Vec<&str> = path
            .split(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
            .next()
            .unwrap_or_default()
            .split("::")
            .collect();
        if let Some(module) = (1..=segments.len())
            .rev()
            .map(|n| segments[..n].join("::"))
            .find(|candidate| known.contains(candidate))
        {
            found.insert(module);
        }
    }
    found
}

/// A circle through `start`, if there is one.
fn circle(
    graph: &BTreeMap<String, BTreeSet<String>>,
    start: &str,
    path: &mut Vec<String>,
) -> Option<Vec<String>> {
    for next in graph.get(path.last()?)?.clone() {
        if next == start {
            let mut found = path.clone();
            found.push(next);
            return Some(found);
        }
        if !path.contains(&next) {
            path.push(next);
            if let Some(found) = circle(graph, start, path) {
                return Some(found);
            }
            path.pop();
        }
    }
    None
}

#[test]
fn no_module_reaches_back_to_itself() {
    let mut files = BTreeMap::new();
    modules(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("src"),
        "",
        &mut files,
    );
    assert!(files.len() > 20, "found only {files:?}");
    let known: BTreeSet<String> = files.keys().cloned().collect();
    let graph: BTreeMap<String, BTreeSet<String>> = files
        .iter()
        .map(|(module, code)| {
            let mut uses = dependencies(code, &known);
            uses.remove(module);
            (module.clone(), uses)
        })
        .collect();
    let circles: Vec<String> = graph
        .keys()
        .filter_map(|module| circle(&graph, module, &mut vec![module.clone()]))
        .map(|found| found.join(" → "))
        .collect();
    assert!(
        circles.is_empty(),
        "import circles:\n{}",
        circles.join("\n")
    );
}
