//! Every file path and every Rust item that ARCHITECTURE.md names in backticks exists.
//!
//! The codemap names files relative to the folder its bullet is about (`hash.rs` under the
//! `protocol/` bullet is `protocol/src/hash.rs`), so a bare file name is looked for below the
//! folders named in its bullet and the bullets above it. A name like `Chain`, `Block::check`,
//! `MAX_LINE` or `difficulty_for_load` must be declared (struct, enum, trait, type, fn, const,
//! static, mod, or an enum variant) in some `.rs` file of the workspace, or be a crate in
//! `Cargo.lock`. Paths outside the repository (`/etc/...`) and the data files a program writes
//! (`demo.json`) are not looked for. Words that are neither
//! (opcodes such as `D`, a log line such as `listening on`, a command) are left alone.

use std::collections::HashSet;
use std::fs;
use std::path::{Path, PathBuf};

/// The workspace root: testkit's parent.
fn root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().unwrap_or(manifest).to_path_buf()
}

/// Every file below `dir`, skipping build output, VCS data and vendored packages.
fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if path.is_dir() {
            if !matches!(
                name.as_ref(),
                "target" | ".git" | "node_modules" | "corpus" | "artifacts"
            ) {
                walk(&path, out);
            }
        } else {
            out.push(path);
        }
    }
}

/// The backticked spans of one line.
fn spans(line: &str) -> Vec<&str> {
    line.split('`').skip(1).step_by(2).collect()
}

/// How deep a bullet is nested (two spaces a level), or `None` for a line that is no bullet.
fn bullet_depth(line: &str) -> Option<usize> {
    let trimmed = line.trim_start();
    trimmed
        .starts_with("- ")
        .then(|| (line.len() - trimmed.len()) / 2)
}

/// Whether `span` is written as a path: a folder (`web/`), or a file with an extension we
/// keep in the tree.
fn looks_like_path(span: &str) -> bool {
    const EXTENSIONS: &[&str] = &[".rs", ".js", ".md", ".css", ".html", ".toml", ".svg"];
    !span.contains(' ')
        && !span.starts_with('/')
        && (span.ends_with('/') || EXTENSIONS.iter().any(|ext| span.ends_with(ext)))
        && !span.starts_with('<')
}

/// The Rust names a span refers to: `Block::check` -> [`Block`, `check`], `Chain::ledger()` ->
/// [`Chain`, `ledger`], `LineCodec<M>` -> [`LineCodec`]. `None` when the span is not a Rust name.
fn rust_names(span: &str) -> Option<Vec<String>> {
    let span = span.trim_end_matches("()");
    let span = span.split('<').next().unwrap_or(span);
    let span = span.split(" → ").next().unwrap_or(span);
    let span = span.split(" -> ").next().unwrap_or(span);
    if span.contains(' ') || span.contains('/') || span.contains('.') {
        return None;
    }
    let parts: Vec<&str> = span.split("::").collect();
    let is_ident = |s: &str| {
        !s.is_empty()
            && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            && s.chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
    };
    if !parts.iter().all(|p| is_ident(p)) {
        return None;
    }
    // A lone word that is neither a type (CamelCase), a constant (UPPER_CASE) nor a function
    // (snake_case with an underscore, or followed by `()`) is prose: `run`, `mine`, `D`.
    let first = parts[0];
    let single = parts.len() == 1;
    let camel = first.chars().next().is_some_and(|c| c.is_ascii_uppercase())
        && first.chars().any(|c| c.is_ascii_lowercase());
    let constant = first.len() > 1
        && first.contains('_')
        && first
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_');
    let function = first.contains('_') && first.chars().all(|c| !c.is_ascii_uppercase());
    if single && !(camel || constant || function) {
        return None;
    }
    Some(parts.iter().map(|p| p.to_string()).collect())
}

/// Every name declared in the workspace's Rust sources, and the crates it uses (`tokio_util`).
fn declared_names(files: &[PathBuf]) -> HashSet<String> {
    const KEYWORDS: &[&str] = &[
        "struct", "enum", "trait", "type", "fn", "const", "static", "mod", "union",
    ];
    let mut names = HashSet::new();
    for file in files.iter().filter(|f| f.ends_with("Cargo.lock")) {
        let Ok(text) = fs::read_to_string(file) else {
            continue;
        };
        for line in text.lines() {
            if let Some(name) = line.strip_prefix("name = ") {
                names.insert(name.trim_matches('"').replace('-', "_"));
            }
        }
    }
    for file in files
        .iter()
        .filter(|f| f.extension().is_some_and(|e| e == "rs"))
    {
        let Ok(text) = fs::read_to_string(file) else {
            continue;
        };
        for line in text.lines() {
            let words: Vec<&str> = line
                .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .filter(|w| !w.is_empty())
                .collect();
            for pair in words.windows(2) {
                if KEYWORDS.contains(&pair[0]) {
                    names.insert(pair[1].to_string());
                }
            }
            // Enum variants and fields: an indented `Name,` `Name(`, `Name {` or `name:`.
            let trimmed = line.trim_start();
            if let Some(word) = words.first()
                && line.len() > trimmed.len()
                && trimmed.starts_with(word)
            {
                names.insert(word.to_string());
            }
        }
    }
    names
}

#[test]
fn architecture_names_only_what_exists() {
    let root = root();
    let text = fs::read_to_string(root.join("ARCHITECTURE.md")).expect("read ARCHITECTURE.md");
    let mut files = Vec::new();
    walk(&root, &mut files);
    let relative: Vec<String> = files
        .iter()
        .filter_map(|f| f.strip_prefix(&root).ok())
        .map(|f| f.to_string_lossy().replace('\\', "/"))
        .collect();
    let dirs: HashSet<String> = relative
        .iter()
        .flat_map(|f| {
            let parts: Vec<&str> = f.split('/').collect();
            (1..parts.len()).map(move |n| format!("{}/", parts[..n].join("/")))
        })
        .collect();
    let declared = declared_names(&files);

    // The folders each open bullet is about, by nesting depth.
    let mut context: Vec<Vec<String>> = Vec::new();
    let mut missing = Vec::new();
    let mut checked = 0;
    for (number, line) in text.lines().enumerate() {
        if let Some(depth) = bullet_depth(line) {
            context.truncate(depth);
            let parent: Vec<String> = context.last().cloned().unwrap_or_default();
            let mut here = Vec::new();
            for span in spans(line).into_iter().filter(|s| s.ends_with('/')) {
                // A folder in a nested bullet may be named from the root (`web/`) or from
                // its parent's folder.
                let candidates = std::iter::once(span.to_string())
                    .chain(parent.iter().map(|p| format!("{p}{span}")));
                here.extend(candidates.filter(|c| dirs.contains(c)));
            }
            here.extend(parent);
            context.push(here);
        } else if line.trim().is_empty() || line.starts_with('#') {
            context.clear();
        }
        let folders: Vec<String> = context.iter().flatten().cloned().collect();
        for span in spans(line) {
            if looks_like_path(span) {
                checked += 1;
                let found = if span.ends_with('/') {
                    dirs.contains(span)
                        || folders.iter().any(|f| dirs.contains(&format!("{f}{span}")))
                } else if span.contains('/') {
                    relative
                        .iter()
                        .any(|f| f == span || f.ends_with(&format!("/{span}")))
                } else {
                    relative.iter().any(|f| {
                        (f == span || f.ends_with(&format!("/{span}")))
                            && (folders.is_empty() || folders.iter().any(|d| f.starts_with(d)))
                    })
                };
                if !found {
                    missing.push(format!("line {}: file `{span}`", number + 1));
                }
            } else if let Some(names) = rust_names(span) {
                checked += 1;
                for name in names.iter().filter(|n| !declared.contains(*n)) {
                    missing.push(format!(
                        "line {}: `{span}` ({name} is declared nowhere)",
                        number + 1
                    ));
                }
            }
        }
    }
    assert!(
        checked > 50,
        "only {checked} names checked: is the parser still reading the map?"
    );
    assert!(
        missing.is_empty(),
        "ARCHITECTURE.md names what does not exist:\n{}",
        missing.join("\n")
    );
}

#[test]
fn a_name_that_does_not_exist_is_caught() {
    // The checker's own building blocks, so that the test above cannot pass by reading nothing.
    assert_eq!(
        rust_names("Block::check"),
        Some(vec!["Block".into(), "check".into()])
    );
    assert_eq!(
        rust_names("Chain::ledger()"),
        Some(vec!["Chain".into(), "ledger".into()])
    );
    assert_eq!(rust_names("LineCodec<M>"), Some(vec!["LineCodec".into()]));
    assert_eq!(rust_names("MAX_LINE"), Some(vec!["MAX_LINE".into()]));
    assert_eq!(rust_names("D"), None);
    assert_eq!(rust_names("listening on"), None);
    assert!(looks_like_path("web/"));
    assert!(looks_like_path("hash.rs"));
    assert!(!looks_like_path("Block::check"));
    let root = root();
    let mut files = Vec::new();
    walk(&root.join("protocol"), &mut files);
    let declared = declared_names(&files);
    assert!(declared.contains("CheckedBlock"));
    assert!(!declared.contains("NoSuchTypeAnywhere"));
}
