//! The import graph of the library, checked from its sources (docs/ARCHITECTURE.md, "Layers"):
//! no module imports the command line, every top-level module imports only the layers below
//! it, and no two modules of one folder import each other, directly or around a loop.
//!
//! Run it alone with `cargo test --test architecture`. It reads `src/` as text: every path that
//! starts with `crate::` or `super::` (in `use` items and in code) is an import of the module it
//! names; `src/cli` and `src/main.rs` are the binary's and may import anything.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// What each top-level module may import. Acyclic by construction: each entry names only
/// modules listed before it.
const LAYERS: &[(&str, &[&str])] = &[
    ("time", &[]),
    ("stop", &[]),
    ("retry", &[]),
    ("clip", &[]),
    ("moq", &[]),
    ("ts", &["time"]),
    ("http", &["stop"]),
    ("chunk", &["ts", "time"]),
    ("crypto", &["chunk"]),
    ("hls", &["chunk", "ts", "time"]),
    ("manifest", &["chunk", "crypto", "ts", "time"]),
    ("hdhr", &["chunk", "clip", "http", "stop", "ts", "time"]),
    (
        "capture",
        &["chunk", "clip", "hdhr", "retry", "stop", "ts", "time"],
    ),
    ("net", &["crypto", "moq"]),
    (
        "node",
        &[
            "capture", "chunk", "clip", "crypto", "hdhr", "hls", "http", "manifest", "moq", "net",
            "retry", "stop", "time", "ts",
        ],
    ),
];

/// A source file and the module path it defines (`["node", "tracks", "serve"]`).
struct Source {
    module: Vec<String>,
    text: String,
}

/// The library's sources (not the binary's `cli` and `main.rs`).
fn library_sources() -> Vec<Source> {
    all_sources()
        .into_iter()
        .filter(|s| s.module[0] != "cli")
        .collect()
}

/// Every source but the crate roots (`lib.rs`, `main.rs`).
fn all_sources() -> Vec<Source> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    collect(&root, &mut files);
    files
        .into_iter()
        .filter_map(|path| {
            let rel = path.strip_prefix(&root).unwrap();
            let mut module: Vec<String> = rel
                .with_extension("")
                .iter()
                .map(|c| c.to_string_lossy().into_owned())
                .collect();
            if module.last().is_some_and(|m| m == "mod") {
                module.pop();
            }
            let crate_root = module == ["lib"] || module == ["main"];
            (!crate_root).then(|| Source {
                text: std::fs::read_to_string(&path).unwrap(),
                module,
            })
        })
        .collect()
}

fn collect(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            collect(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The paths a source names, each as segments from the crate root: `crate::a::b` and
/// `super::…` (resolved against the file's module), including the items of `{…}` groups.
fn imports(source: &Source) -> Vec<Vec<String>> {
    let mut found = Vec::new();
    for (start, _) in source
        .text
        .match_indices("crate::")
        .chain(source.text.match_indices("super::"))
    {
        let before = source.text[..start].chars().next_back();
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':') {
            continue;
        }
        let rest = &source.text[start..];
        let (base, tail) = if let Some(tail) = rest.strip_prefix("crate::") {
            (Vec::new(), tail)
        } else {
            let mut base = source.module.clone();
            base.pop();
            (base, &rest["super::".len()..])
        };
        for path in expand(tail) {
            let mut full = base.clone();
            full.extend(path);
            found.push(full);
        }
    }
    found
}

/// The paths at the start of `text`: `a::b::c`, or a brace group `{a::b, c}` after a prefix.
fn expand(text: &str) -> Vec<Vec<String>> {
    let mut prefix = Vec::new();
    let mut rest = text;
    loop {
        let ident: String = rest
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        if ident.is_empty() {
            break;
        }
        rest = &rest[ident.len()..];
        prefix.push(ident);
        match rest.strip_prefix("::") {
            Some(r) => rest = r,
            None => return vec![prefix],
        }
    }
    let Some(group) = rest.strip_prefix('{') else {
        return vec![prefix];
    };
    let mut depth = 0;
    let mut items = vec![String::new()];
    for c in group.chars() {
        match c {
            '{' => depth += 1,
            '}' if depth == 0 => break,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                items.push(String::new());
                continue;
            }
            _ => {}
        }
        items.last_mut().unwrap().push(c);
    }
    items
        .iter()
        .flat_map(|item| expand(item.trim()))
        .map(|tail| prefix.iter().cloned().chain(tail).collect())
        .collect()
}

/// The longest prefix of `path` that is a module with a source file.
fn module_of(path: &[String], modules: &BTreeSet<Vec<String>>) -> Option<Vec<String>> {
    (1..=path.len())
        .rev()
        .map(|n| path[..n].to_vec())
        .find(|m| modules.contains(m))
}

#[test]
fn no_library_module_imports_the_command_line() {
    for source in library_sources() {
        for path in imports(&source) {
            assert_ne!(
                path.first().map(String::as_str),
                Some("cli"),
                "{} imports the command line",
                source.module.join("::")
            );
        }
    }
}

#[test]
fn top_level_modules_import_only_the_layers_below_them() {
    let layers: BTreeMap<&str, &[&str]> = LAYERS.iter().copied().collect();
    for source in library_sources() {
        let top = source.module[0].as_str();
        let allowed = layers
            .get(top)
            .unwrap_or_else(|| panic!("top-level module {top} is not in LAYERS"));
        for path in imports(&source) {
            let Some(target) = path.first().map(String::as_str) else {
                continue;
            };
            if target == top || !layers.contains_key(target) {
                continue;
            }
            assert!(
                allowed.contains(&target),
                "{} imports {}: {top} may import only {allowed:?}",
                source.module.join("::"),
                path.join("::")
            );
        }
    }
}

#[test]
fn no_two_modules_of_one_folder_import_each_other() {
    let sources = all_sources();
    let modules: BTreeSet<Vec<String>> = sources.iter().map(|s| s.module.clone()).collect();
    // Edges between siblings: files with the same parent module.
    let mut edges: BTreeMap<Vec<String>, BTreeSet<Vec<String>>> = BTreeMap::new();
    for source in &sources {
        for path in imports(source) {
            let Some(target) = module_of(&path, &modules) else {
                continue;
            };
            let siblings = target.len() == source.module.len()
                && target[..target.len() - 1] == source.module[..source.module.len() - 1];
            if siblings && target != source.module {
                edges
                    .entry(source.module.clone())
                    .or_default()
                    .insert(target);
            }
        }
    }
    // A loop through siblings shows as a module reachable from itself.
    for start in edges.keys() {
        let mut seen = BTreeSet::new();
        let mut todo: Vec<&Vec<String>> = edges[start].iter().collect();
        while let Some(m) = todo.pop() {
            assert_ne!(
                m,
                start,
                "import loop through {} (edges: {:?})",
                start.join("::"),
                edges[start]
            );
            if seen.insert(m.clone()) {
                todo.extend(edges.get(m).into_iter().flatten());
            }
        }
    }
}

#[test]
fn the_checker_sees_an_import_loop_and_a_brace_group() {
    let a = Source {
        module: vec!["x".into(), "a".into()],
        text: "use super::{b::Thing, c};\nfn f() { crate::x::b::g() }".into(),
    };
    let found = imports(&a);
    assert!(found.contains(&vec!["x".to_string(), "b".into(), "Thing".into()]));
    assert!(found.contains(&vec!["x".to_string(), "c".into()]));
    assert!(found.contains(&vec!["x".to_string(), "b".into(), "g".into()]));
}
