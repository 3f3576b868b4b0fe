//! Release hygiene: every binary explains each flag in `--help` and prints its name and
//! version with `--version`, both with success.

use std::path::PathBuf;
use std::process::{Command, Output};

use crate::DEMO;

/// Every binary the workspace installs.
fn binaries() -> Vec<(&'static str, PathBuf)> {
    let mut out: Vec<(&'static str, PathBuf)> = [
        "monkey-tracker",
        "monkey-node",
        "monkey-shop",
        "monkey-visualizer",
        "monkey-attack",
    ]
    .into_iter()
    .map(|name| (name, testkit::binary(name)))
    .collect();
    out.push(("monkey-demo", PathBuf::from(DEMO)));
    out
}

/// Runs `binary` with `arg` and none of the caller's settings (an environment twin would show
/// in the help as a value).
fn run(binary: &PathBuf, arg: &str) -> Output {
    let mut cmd = Command::new(binary);
    for (key, _) in std::env::vars() {
        if key.starts_with("MONKEY_") {
            cmd.env_remove(key);
        }
    }
    cmd.arg(arg).output().expect("run the binary")
}

/// The flags `help` lists that have no words after them. An option's line is its flags, two
/// spaces or more, then its help; a line with only the flags is allowed when the help follows
/// on the next, more indented line.
fn unexplained(help: &str) -> Vec<String> {
    let lines: Vec<&str> = help.lines().collect();
    let mut bare = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let trimmed = line.trim_start();
        if !trimmed.starts_with('-') {
            continue;
        }
        let indent = line.len() - trimmed.len();
        let explained_here = trimmed
            .split_once("  ")
            .is_some_and(|(_, help)| !help.trim().is_empty());
        let explained_below = lines.get(i + 1).is_some_and(|next| {
            let words = next.trim_start();
            !words.is_empty() && !words.starts_with('-') && next.len() - words.len() > indent
        });
        if !explained_here && !explained_below {
            bare.push(trimmed.to_string());
        }
    }
    bare
}

#[test]
fn every_binary_explains_its_flags_and_prints_its_version() {
    let version = env!("CARGO_PKG_VERSION");
    for (name, path) in binaries() {
        let help = run(&path, "--help");
        let text = String::from_utf8_lossy(&help.stdout);
        assert!(help.status.success(), "{name} --help failed: {help:?}");
        assert!(text.contains("Usage:"), "{name} --help:\n{text}");
        assert!(text.contains("--version"), "{name} --help:\n{text}");
        let bare = unexplained(&text);
        assert!(
            bare.is_empty(),
            "{name} --help leaves {bare:?} unexplained:\n{text}"
        );

        let shown = run(&path, "--version");
        let text = String::from_utf8_lossy(&shown.stdout);
        assert!(shown.status.success(), "{name} --version failed: {shown:?}");
        assert_eq!(text.trim(), format!("{name} {version}"), "{name} --version");
    }
}
