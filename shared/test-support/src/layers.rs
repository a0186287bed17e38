//! The layer rule of a service crate, checked from its source: each top-level module (`grpc`,
//! `rules`, `store`, `domain.rs`, ...) has a place in an ordered list, and may import (`crate::…`,
//! in `use` lines or inline paths) only from modules *below* it. One order, strictly
//! descending, also means no two modules can import each other: no cycle between them.
//!
//! Reading `use` lines is enough here and exact for this codebase (no glob re-exports across
//! layers, no macros that name modules); it needs no tool on a fresh CI machine.

use std::{
    collections::BTreeSet,
    fs,
    path::{Path, PathBuf},
};

/// The layers of both services, top first: the tonic service, the use cases, all SQL, then
/// the values, the error type, the configuration and the metrics everything may use. A new
/// top-level module must be placed here.
pub const SERVICE_LAYERS: &[&str] = &[
    "grpc", "rules", "store", "domain", "error", "config", "metrics",
];

/// Panics, listing every offending import, unless the service crate at `manifest_dir` keeps
/// [`SERVICE_LAYERS`].
pub fn assert_layered(manifest_dir: &str) {
    let violations = layer_violations(&Path::new(manifest_dir).join("src"), SERVICE_LAYERS);
    assert!(
        violations.is_empty(),
        "imports against the layers (README \"Layout\"):\n{}",
        violations.join("\n")
    );
}

/// Every import in the crate under `src` that breaks `layers` (top first), one line each:
/// `rules/accounts.rs: rules -> grpc (upward)`. A top-level module missing from `layers` is a
/// violation too, so a new module must be placed deliberately. `lib.rs` and `main.rs` are the
/// composition root, above every layer.
pub fn layer_violations(src: &Path, layers: &[&str]) -> Vec<String> {
    let mut violations = BTreeSet::new();
    for file in rust_files(src) {
        let relative = file.strip_prefix(src).unwrap_or(&file).to_path_buf();
        let from = top_module(&relative);
        if from == "lib" || from == "main" {
            continue;
        }
        let Some(from_rank) = rank(layers, &from) else {
            violations.insert(format!(
                "{}: module `{from}` is not in the layer table",
                relative.display()
            ));
            continue;
        };
        let text = match fs::read_to_string(&file) {
            Ok(text) => without_comments(&text),
            Err(error) => {
                violations.insert(format!("{}: cannot read: {error}", relative.display()));
                continue;
            }
        };
        for to in crate_imports(&text) {
            if to == from {
                continue;
            }
            match rank(layers, &to) {
                None => {
                    violations.insert(format!(
                        "{}: imports `crate::{to}`, which is not in the layer table",
                        relative.display()
                    ));
                }
                Some(to_rank) if to_rank <= from_rank => {
                    violations.insert(format!(
                        "{}: {from} -> {to} (upward: {to} is above {from})",
                        relative.display()
                    ));
                }
                Some(_) => {}
            }
        }
    }
    violations.into_iter().collect()
}

fn rank(layers: &[&str], module: &str) -> Option<usize> {
    layers.iter().position(|layer| *layer == module)
}

/// `grpc/auth/keys.rs` → `grpc`; `domain.rs` → `domain`.
fn top_module(relative: &Path) -> String {
    let first = relative
        .components()
        .next()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .unwrap_or_default();
    first.strip_suffix(".rs").unwrap_or(&first).to_owned()
}

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let Ok(entries) = fs::read_dir(dir) else {
        return files;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            files.extend(rust_files(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            files.push(path);
        }
    }
    files.sort();
    files
}

fn without_comments(text: &str) -> String {
    text.lines()
        .map(|line| match line.find("//") {
            Some(at) => &line[..at],
            None => line,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The top-level modules named after every `crate::` in `text`, including each member of a
/// `crate::{a::…, b}` group.
fn crate_imports(text: &str) -> BTreeSet<String> {
    let mut modules = BTreeSet::new();
    let mut rest = text;
    while let Some(at) = rest.find("crate::") {
        let before = rest[..at].chars().next_back();
        rest = &rest[at + "crate::".len()..];
        // `some_crate::x` is another crate's path, not ours.
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            continue;
        }
        if let Some(group) = rest.strip_prefix('{') {
            let end = matching_brace(group);
            for member in split_top_level(&group[..end]) {
                modules.insert(leading_ident(member.trim()));
            }
        } else {
            modules.insert(leading_ident(rest));
        }
    }
    modules.retain(|m| !m.is_empty() && m != "self");
    modules
}

/// The index of the `}` closing a group whose `{` came just before `text`.
fn matching_brace(text: &str) -> usize {
    let mut depth = 0usize;
    for (i, c) in text.char_indices() {
        match c {
            '{' => depth += 1,
            '}' if depth == 0 => return i,
            '}' => depth -= 1,
            _ => {}
        }
    }
    text.len()
}

fn split_top_level(group: &str) -> Vec<&str> {
    let (mut parts, mut depth, mut start) = (Vec::new(), 0usize, 0);
    for (i, c) in group.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth = depth.saturating_sub(1),
            ',' if depth == 0 => {
                parts.push(&group[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&group[start..]);
    parts
}

fn leading_ident(text: &str) -> String {
    text.chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_')
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const LAYERS: &[&str] = &["grpc", "rules", "store", "domain", "error"];

    fn crate_with(files: &[(&str, &str)]) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("layers-{}", uuid::Uuid::now_v7().simple()));
        for (path, text) in files {
            let path = dir.join(path);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(path, text).unwrap();
        }
        dir
    }

    #[test]
    fn imports_downward_pass_and_upward_ones_and_unplaced_modules_are_named() {
        let src = crate_with(&[
            ("lib.rs", "mod grpc; use crate::grpc::Api;"),
            (
                "grpc/mod.rs",
                "use crate::{rules::Tasks, domain::{Task, Owner}};",
            ),
            (
                "rules/mod.rs",
                "use crate::store::Rows; // use crate::grpc::X; (a comment)\n",
            ),
            (
                "store/mod.rs",
                "fn f() -> crate::domain::Task { todo!() } use sea_orm::prelude::*;",
            ),
            (
                "error.rs",
                "use crate::{domain::Owner, grpc::unread::Exhausted};",
            ),
            (
                "domain.rs",
                "use grpc_edge::violations::FieldViolations; use crate::error::E;",
            ),
            ("extra.rs", "use crate::domain::Task;"),
        ]);
        let violations = layer_violations(&src, LAYERS);
        assert_eq!(
            violations,
            [
                "error.rs: error -> domain (upward: domain is above error)",
                "error.rs: error -> grpc (upward: grpc is above error)",
                "extra.rs: module `extra` is not in the layer table",
            ],
        );
        fs::remove_dir_all(src).unwrap();
    }

    #[test]
    fn a_path_of_another_crate_ending_in_crate_is_not_ours() {
        assert!(crate_imports("use my_crate::grpc::X;").is_empty());
        assert_eq!(
            crate_imports("use crate::{a::b, c::{d, e}, self};"),
            BTreeSet::from(["a".to_owned(), "c".to_owned()])
        );
    }
}
