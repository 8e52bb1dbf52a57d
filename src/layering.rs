//! Checks on the crate's own source: its modules depend one way (`gpu` ← `kernels` ← `moe` ←
//! `model` ← CLI, with the plain data of `spec` below them and the CPU `reference` on `spec`
//! alone), and no two files import each other, directly or through a cycle. An import is a
//! `use` or path through `crate::`, `super::` or `self::`, or a `use` of a child module; it
//! points at the deepest module file the path names (a `mod.rs` or `name.rs` that re-exports
//! an item is that file, not the item's own).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// What each top-level module may import (besides itself).
const ALLOWED: &[(&str, &[&str])] = &[
    ("error", &[]),
    ("gguf", &["error"]),
    ("layering", &[]),
    ("spec", &["error"]),
    ("reference", &["error", "spec"]),
    ("synthetic", &["spec"]),
    ("calibration", &["error", "spec"]),
    ("gpu", &["error"]),
    ("cpu", &["error", "spec", "kernels"]),
    ("kernels", &["error", "spec", "gpu", "synthetic", "gguf"]),
    (
        "moe",
        &[
            "error",
            "spec",
            "gpu",
            "kernels",
            "cpu",
            "synthetic",
            "calibration",
        ],
    ),
    (
        "model",
        &[
            "error",
            "gguf",
            "spec",
            "gpu",
            "kernels",
            "cpu",
            "moe",
            "synthetic",
            "calibration",
        ],
    ),
    (
        "bench",
        &["error", "spec", "gpu", "kernels", "cpu", "moe", "synthetic"],
    ),
    (
        "prune",
        &["error", "spec", "reference", "gpu", "calibration", "model"],
    ),
    ("serve", &["error", "gpu", "model"]),
];

/// Module path (`["moe", "layer", "step"]`) of every library source file.
fn module_files(root: &Path) -> BTreeMap<Vec<String>, PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).expect("readable src/").flatten() {
            let p = entry.path();
            if p.is_dir() {
                walk(&p, out);
            } else if p.extension().is_some_and(|e| e == "rs") {
                out.push(p);
            }
        }
    }
    let mut files = Vec::new();
    walk(root, &mut files);
    let mut mods = BTreeMap::new();
    for f in files {
        let rel = f.strip_prefix(root).expect("under src/").with_extension("");
        let mut parts: Vec<String> = rel.iter().map(|s| s.to_string_lossy().into()).collect();
        if parts.first().is_some_and(|p| p == "bin") {
            continue;
        }
        if parts.last().is_some_and(|p| p == "mod" || p == "lib") {
            parts.pop();
        }
        mods.insert(parts, f);
    }
    mods
}

/// The source without line comments (doc comments mention paths that are not imports) and
/// without its test module (whose `super::` is the file itself), which ends a file by
/// convention.
fn code(path: &Path) -> String {
    let text = std::fs::read_to_string(path).expect("readable source");
    let text = text.split("#[cfg(test)]\nmod ").next().unwrap_or("");
    text.lines()
        .map(|l| l.split("//").next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Every path the code names after `prefix` (`crate::a::b::{c, d::e}` gives `a::b::c` and
/// `a::b::d::e`); items are kept, [`resolve`] trims them.
fn paths_after(code: &str, prefix: &str) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    for (at, _) in code.match_indices(prefix) {
        let before = code[..at].chars().next_back();
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':') {
            continue;
        }
        let rest = &code[at + prefix.len()..];
        let (mut depth, mut end) = (0, rest.len());
        for (i, c) in rest.char_indices() {
            match c {
                '{' => depth += 1,
                '}' if depth == 0 => {
                    end = i;
                    break;
                }
                '}' => depth -= 1,
                c if depth == 0 && !(c.is_alphanumeric() || c == '_' || c == ':') => {
                    end = i;
                    break;
                }
                _ => {}
            }
        }
        expand(&rest[..end], &[], &mut out);
    }
    out
}

/// Expands one path with nested `{...}` groups onto `base`.
fn expand(text: &str, base: &[String], out: &mut Vec<Vec<String>>) {
    let segments = |s: &str| -> Vec<String> {
        s.split("::")
            .filter_map(|seg| seg.split_whitespace().next())
            .map(String::from)
            .collect()
    };
    match (text.find('{'), text.rfind('}')) {
        (Some(open), Some(close)) if open < close => {
            let base = [base.to_vec(), segments(&text[..open])].concat();
            for item in split_top(&text[open + 1..close]) {
                expand(item.trim(), &base, out);
            }
        }
        _ => out.push([base.to_vec(), segments(text)].concat()),
    }
}

/// Splits a `{...}` group's contents at its top-level commas.
fn split_top(s: &str) -> Vec<&str> {
    let (mut parts, mut depth, mut start) = (Vec::new(), 0, 0);
    for (i, c) in s.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&s[start..]);
    parts
}

/// The file a path (from the crate root) lands in: its longest prefix that is a module.
fn resolve<'a>(mods: &'a BTreeMap<Vec<String>, PathBuf>, path: &[String]) -> Option<&'a PathBuf> {
    (1..=path.len()).rev().find_map(|n| mods.get(&path[..n]))
}

fn imports(mods: &BTreeMap<Vec<String>, PathBuf>) -> BTreeMap<PathBuf, BTreeSet<PathBuf>> {
    let mut graph = BTreeMap::new();
    for (module, file) in mods {
        let src = code(file);
        let mut targets = BTreeSet::new();
        let mut add = |path: Vec<String>| {
            if let Some(t) = resolve(mods, &path).filter(|t| *t != file) {
                targets.insert(t.clone());
            }
        };
        for p in paths_after(&src, "crate::") {
            add(p);
        }
        for p in paths_after(&src, "self::") {
            add([module.clone(), p].concat());
        }
        for p in paths_after(&src, "super::") {
            add([module[..module.len().saturating_sub(1)].to_vec(), p].concat());
        }
        for p in paths_after(&src, "use ") {
            if p.first()
                .is_some_and(|f| mods.contains_key(&[module.clone(), vec![f.clone()]].concat()))
            {
                add([module.clone(), p].concat());
            }
        }
        graph.insert(file.clone(), targets);
    }
    graph
}

/// A cycle through `start`, if the graph has one.
fn cycle_from(
    graph: &BTreeMap<PathBuf, BTreeSet<PathBuf>>,
    start: &PathBuf,
) -> Option<Vec<PathBuf>> {
    let mut stack = vec![(start.clone(), vec![start.clone()])];
    let mut seen = BTreeSet::new();
    while let Some((at, trail)) = stack.pop() {
        for next in graph.get(&at).into_iter().flatten() {
            if next == start {
                return Some(trail);
            }
            if seen.insert(next.clone()) {
                stack.push((next.clone(), [trail.clone(), vec![next.clone()]].concat()));
            }
        }
    }
    None
}

#[test]
fn no_file_imports_itself_through_a_cycle() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mods = module_files(&root);
    assert!(mods.len() > 50, "found only {} source files", mods.len());
    let graph = imports(&mods);
    let cycles: Vec<String> = graph
        .keys()
        .filter_map(|f| cycle_from(&graph, f))
        .map(|c| {
            c.iter()
                .map(|p| p.strip_prefix(&root).unwrap_or(p).display().to_string())
                .collect::<Vec<_>>()
                .join(" → ")
        })
        .collect();
    assert!(cycles.is_empty(), "import cycles:\n{}", cycles.join("\n"));
}

#[test]
fn modules_depend_one_way() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mods = module_files(&root);
    let top_of = |file: &PathBuf| {
        mods.iter()
            .find(|(_, f)| *f == file)
            .and_then(|(m, _)| m.first().cloned())
    };
    let mut wrong = Vec::new();
    for (file, targets) in imports(&mods) {
        let Some(from) = top_of(&file) else { continue };
        let allowed = ALLOWED
            .iter()
            .find(|(m, _)| *m == from)
            .unwrap_or_else(|| panic!("module `{from}` has no entry in ALLOWED"))
            .1;
        for t in &targets {
            let Some(to) = top_of(t) else { continue };
            if to != from && !allowed.contains(&to.as_str()) {
                wrong.push(format!("{} imports {}", file.display(), t.display()));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "imports against the layering:\n{}",
        wrong.join("\n")
    );
}

#[test]
fn the_checker_sees_a_cycle_and_a_group_import() {
    let src = "use crate::a::{b::{C, d}, e};\nfn f() { super::g::h(); }";
    let paths = paths_after(src, "crate::");
    assert!(
        paths.contains(&vec!["a".into(), "b".into(), "C".into()]),
        "{paths:?}"
    );
    assert!(
        paths.contains(&vec!["a".into(), "b".into(), "d".into()]),
        "{paths:?}"
    );
    assert!(paths.contains(&vec!["a".into(), "e".into()]), "{paths:?}");
    let mut graph = BTreeMap::new();
    let (x, y) = (PathBuf::from("x.rs"), PathBuf::from("y.rs"));
    graph.insert(x.clone(), BTreeSet::from([y.clone()]));
    graph.insert(y.clone(), BTreeSet::from([x.clone()]));
    assert_eq!(cycle_from(&graph, &x), Some(vec![x, y]));
}
