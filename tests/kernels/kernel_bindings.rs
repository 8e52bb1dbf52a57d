//! Every kernel's Rust declaration agrees with its WGSL, as assembled for it (family prefix,
//! then its file): the bindings of group 0 (index, name, uniform or storage access) and the
//! override constants the host sets. CPU only; no device needed.

use std::collections::BTreeSet;

use moe_gpu::gpu::{Access, KernelDef};
use moe_gpu::kernels::ALL_KERNELS;

/// One `@group(0) @binding(N) var<…> name: …;` declaration.
#[derive(Debug, PartialEq)]
struct Declared {
    index: usize,
    name: String,
    /// `uniform`, `storage, read` or `storage, read_write`.
    space: String,
}

/// The binding declarations of `source`, in source order. Any other group is an error.
fn declared_bindings(kernel: &str, source: &str) -> Vec<Declared> {
    let mut found = Vec::new();
    for line in source.lines().map(str::trim) {
        if !line.contains("@binding(") {
            continue;
        }
        let rest = line
            .strip_prefix("@group(0) @binding(")
            .unwrap_or_else(|| panic!("{kernel}: binding outside group 0: {line}"));
        let (index, rest) = rest.split_once(")").unwrap();
        let rest = rest.trim_start().strip_prefix("var<").unwrap();
        let (space, rest) = rest.split_once('>').unwrap();
        let (name, _) = rest.split_once(':').unwrap();
        found.push(Declared {
            index: index.parse().unwrap(),
            name: name.trim().to_string(),
            space: space.trim().to_string(),
        });
    }
    found
}

fn space_of(access: Access) -> &'static str {
    match access {
        Access::Uniform | Access::UniformDynamic => "uniform",
        Access::Read => "storage, read",
        Access::ReadWrite => "storage, read_write",
    }
}

/// The `override` constants of `source` and their initialisers.
fn declared_overrides(source: &str) -> Vec<(String, String)> {
    let lines: Vec<&str> = source.lines().collect();
    (0..lines.len())
        .filter_map(|i| Some((i, lines[i].trim().strip_prefix("override ")?)))
        .map(|(i, rest)| {
            // The declaration runs to its `;`, over several lines where its initialiser does.
            let mut decl = rest.to_string();
            for more in &lines[i + 1..] {
                if decl.contains(';') {
                    break;
                }
                decl.push(' ');
                decl.push_str(more.trim());
            }
            let (head, init) = decl.split_once('=').unwrap_or((&decl, ""));
            let name = head.split(':').next().unwrap().trim().to_string();
            let init = init.split(';').next().unwrap().trim().to_string();
            (name, init)
        })
        .collect()
}

/// The overrides the host sets: those whose default does not derive from another override
/// (`PER_WORD = 4u << WFMT`, `BLOCK_M = WG_M * TM` follow the ones they name).
fn host_overrides(source: &str) -> BTreeSet<String> {
    let all = declared_overrides(source);
    let names: BTreeSet<&str> = all.iter().map(|(n, _)| n.as_str()).collect();
    all.iter()
        .filter(|(_, init)| {
            !init
                .split(|c: char| !(c.is_alphanumeric() || c == '_'))
                .any(|word| names.contains(word))
        })
        .map(|(n, _)| n.clone())
        .collect()
}

fn check(def: &KernelDef) -> Vec<String> {
    let source = def.source();
    let mut errors = Vec::new();
    let declared = declared_bindings(def.name, &source);
    if declared.len() != def.bindings.len() {
        errors.push(format!(
            "{}: WGSL declares {} bindings, Rust {}",
            def.name,
            declared.len(),
            def.bindings.len()
        ));
    }
    for (i, b) in def.bindings.iter().enumerate() {
        let same_index: Vec<&Declared> = declared.iter().filter(|d| d.index == i).collect();
        match same_index[..] {
            [d] if d.name == b.name && d.space == space_of(b.access) => {}
            [d] => errors.push(format!(
                "{}: binding {i}: WGSL `{}` var<{}>, Rust `{}` {:?}",
                def.name, d.name, d.space, b.name, b.access
            )),
            _ => errors.push(format!(
                "{}: binding {i} (`{}`) is declared {} times in WGSL",
                def.name,
                b.name,
                same_index.len()
            )),
        }
    }
    for d in declared.iter().filter(|d| d.index >= def.bindings.len()) {
        errors.push(format!(
            "{}: WGSL binding {} `{}` is not in Rust",
            def.name, d.index, d.name
        ));
    }
    let wgsl = host_overrides(&source);
    let rust: BTreeSet<String> = def.overrides.iter().map(|o| o.name().to_string()).collect();
    if rust.len() != def.overrides.len() {
        errors.push(format!("{}: an override is listed twice", def.name));
    }
    for missing in wgsl.difference(&rust) {
        errors.push(format!(
            "{}: WGSL override {missing} is not listed",
            def.name
        ));
    }
    for extra in rust.difference(&wgsl) {
        errors.push(format!(
            "{}: listed override {extra} is not declared in WGSL",
            def.name
        ));
    }
    errors
}

#[test]
fn bindings_and_overrides_match_the_wgsl() {
    let errors: Vec<String> = ALL_KERNELS.iter().flat_map(|def| check(def)).collect();
    assert!(errors.is_empty(), "\n{}", errors.join("\n"));
}

#[test]
fn kernel_names_are_unique() {
    let names: BTreeSet<&str> = ALL_KERNELS.iter().map(|d| d.name).collect();
    assert_eq!(names.len(), ALL_KERNELS.len());
}

#[test]
fn every_shader_file_is_part_of_a_kernel() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("shaders");
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        let used = ALL_KERNELS
            .iter()
            .any(|def| def.parts.contains(&text.as_str()));
        assert!(used, "{} is in no kernel's source", path.display());
    }
}

#[test]
fn the_checks_see_bindings_and_overrides() {
    // Guards the parser: were it to find nothing, every comparison above would be vacuous.
    let matmul = ALL_KERNELS.iter().find(|d| d.name == "matmul").unwrap();
    let source = matmul.source();
    assert_eq!(declared_bindings("matmul", &source).len(), 8);
    assert!(host_overrides(&source).contains("WG_M"));
    assert!(!host_overrides(&source).contains("PER_WORD"));
}
