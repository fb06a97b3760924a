//! ARCHITECTURE.md's rule that imports between the library's top-level modules go one way: reads
//! every `crate::` path (and `super::` from a file directly under `src/`) outside test modules,
//! and fails naming the modules of any import circle.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Files that are tests themselves, and the binary's side (`main.rs`, `cli/`).
fn skipped(rel: &Path) -> bool {
    let name = rel.file_name().and_then(|n| n.to_str()).unwrap_or("");
    rel.starts_with("cli")
        || matches!(
            name,
            "main.rs" | "lib.rs" | "tests.rs" | "emu_tests.rs" | "props.rs"
        )
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read src") {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The source without comments and without its `#[cfg(test)]` module (at the end by habit).
fn library_code(source: &str) -> String {
    let code: String = source
        .lines()
        .map(|l| l.split("//").next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n");
    match code.find("#[cfg(test)]\nmod ") {
        Some(i) => code[..i].to_string(),
        None => code,
    }
}

/// The top-level modules `code` names through `prefix::name` or `prefix::{name, ...}`.
fn named_modules(code: &str, prefix: &str, modules: &BTreeSet<String>) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = code;
    while let Some(i) = rest.find(prefix) {
        let after = &rest[i + prefix.len()..];
        let names: Vec<&str> = match after.strip_prefix('{') {
            Some(group) => group
                .split('}')
                .next()
                .unwrap_or("")
                .split(',')
                .map(|item| item.trim().split("::").next().unwrap_or(""))
                .collect(),
            None => vec![after
                .split(|c: char| !(c.is_alphanumeric() || c == '_'))
                .next()
                .unwrap_or("")],
        };
        out.extend(
            names
                .into_iter()
                .filter(|n| modules.contains(*n))
                .map(String::from),
        );
        rest = after;
    }
    out
}

#[test]
fn top_level_modules_import_each_other_one_way() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let top_of = |f: &Path| -> String {
        let rel = f.strip_prefix(&src).expect("under src");
        let first = rel.components().next().expect("a component");
        let name = first.as_os_str().to_string_lossy();
        name.trim_end_matches(".rs").to_string()
    };
    let modules: BTreeSet<String> = files
        .iter()
        .filter(|f| !skipped(f.strip_prefix(&src).expect("under src")))
        .map(|f| top_of(f))
        .collect();
    assert!(
        modules.len() > 10 && modules.contains("repo") && modules.contains("codec"),
        "found only {modules:?} under {}",
        src.display()
    );
    let mut imports: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for f in &files {
        let rel = f.strip_prefix(&src).expect("under src");
        if skipped(rel) {
            continue;
        }
        let code = library_code(&std::fs::read_to_string(f).expect("read source"));
        let from = top_of(f);
        let mut named = named_modules(&code, "crate::", &modules);
        if rel.components().count() == 1 {
            // In src/x.rs, `super::` is the crate root.
            named.extend(named_modules(&code, "super::", &modules));
        }
        named.remove(&from);
        imports.entry(from).or_default().extend(named);
    }
    // A circle is a module reachable from one it imports.
    let reaches = |from: &str, to: &str| -> Option<Vec<String>> {
        let mut stack = vec![vec![from.to_string()]];
        let mut seen = BTreeSet::new();
        while let Some(path) = stack.pop() {
            let last = path.last().expect("non-empty").clone();
            if last == to {
                return Some(path);
            }
            if seen.insert(last.clone()) {
                for next in imports.get(&last).into_iter().flatten() {
                    let mut p = path.clone();
                    p.push(next.clone());
                    stack.push(p);
                }
            }
        }
        None
    };
    let mut circles = Vec::new();
    for (module, named) in &imports {
        for n in named {
            if let Some(path) = reaches(n, module) {
                circles.push(format!("{module} -> {}", path.join(" -> ")));
            }
        }
    }
    assert!(circles.is_empty(), "import circles: {circles:#?}");
}
