//! Finding the workspace's binaries from any crate's tests.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Command;
use std::sync::{Mutex, PoisonError};

/// The package each binary belongs to.
const PACKAGES: &[(&str, &str)] = &[
    ("monkey-tracker", "tracker"),
    ("monkey-node", "node"),
    ("monkey-shop", "shop"),
    ("monkey-visualizer", "visualizer"),
    ("monkey-attack", "attack"),
];

/// Binaries already built by this test process.
static BUILT: Mutex<Option<HashMap<String, PathBuf>>> = Mutex::new(None);

/// The path of the workspace binary `name` (e.g. `monkey-node`), built first if this test
/// process has not built it yet. Panics with cargo's message if the build fails.
pub fn binary(name: &str) -> PathBuf {
    let mut built = BUILT.lock().unwrap_or_else(PoisonError::into_inner);
    let built = built.get_or_insert_with(HashMap::new);
    if let Some(path) = built.get(name) {
        return path.clone();
    }
    let package = PACKAGES
        .iter()
        .find(|(bin, _)| *bin == name)
        .map(|(_, package)| *package)
        .unwrap_or_else(|| panic!("unknown binary {name}"));
    // Test executables live in target/PROFILE/deps, binaries (the bench) in target/PROFILE.
    let exe = std::env::current_exe().expect("the executable's path");
    let mut profile_dir = exe.parent().expect("target/PROFILE").to_path_buf();
    if profile_dir.file_name().is_some_and(|n| n == "deps") {
        profile_dir.pop();
    }
    let profile = match profile_dir.file_name().and_then(|n| n.to_str()) {
        Some("debug") | None => "dev".to_string(),
        Some(other) => other.to_string(),
    };
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .args([
            "build",
            "-q",
            "-p",
            package,
            "--bin",
            name,
            "--profile",
            &profile,
        ])
        .output()
        .expect("run cargo build");
    assert!(
        out.status.success(),
        "cargo build of {name} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let path = profile_dir.join(name);
    assert!(
        path.exists(),
        "{} is missing after the build",
        path.display()
    );
    built.insert(name.to_string(), path.clone());
    path
}
