//! Integration tests of monkey-shop: the real binary, run as a script would (subcommands with
//! `--json`) or as a person would (menus in a pseudo-terminal), against a real tracker and real
//! nodes on loopback (all from `testkit`), at a low difficulty floor so blocks come fast. Each
//! test checks a feature through the helpers below, so a change of the command line touches one
//! place.

mod bad_input;
mod cache;
mod failover;
mod liars;
mod multihost;
mod records;
mod terminal;
mod wallet;

use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};

use serde_json::Value;
use testkit::{DEADLINE, Network, NodeProc, Tracker};

/// The shop binary under test.
pub const SHOP: &str = env!("CARGO_BIN_EXE_monkey-shop");

/// A tracker, `n` nodes and a folder for wallets; everything goes when it drops.
pub struct Net {
    /// The tracker.
    pub tracker: Tracker,
    /// The nodes.
    pub nodes: Vec<NodeProc>,
    /// Where nodes and wallets live.
    pub dir: tempfile::TempDir,
}

impl Net {
    /// Starts a tracker and `n` nodes, and waits until the tracker lists them all.
    pub async fn start(n: usize) -> Net {
        let Network {
            nodes,
            tracker,
            dir,
        } = Network::start(n).await;
        Net {
            tracker,
            nodes,
            dir,
        }
    }

    /// A wallet folder of this test (not created: the shop makes it).
    pub fn wallet(&self, name: &str) -> PathBuf {
        self.dir.path().join("wallets").join(name)
    }

    /// The node addresses.
    pub fn addrs(&self) -> Vec<String> {
        self.nodes.iter().map(|n| n.addr.clone()).collect()
    }
}

/// The shop command with `tracker` and `wallet`, none of the caller's shop settings, and the
/// default log level.
pub fn command(tracker: &str, wallet: &Path, args: &[&str]) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(SHOP);
    for (key, _) in std::env::vars() {
        if key.starts_with("MONKEY_SHOP_") || key == "RUST_LOG" {
            cmd.env_remove(key);
        }
    }
    cmd.arg("--tracker")
        .arg(tracker)
        .arg("--wallet-dir")
        .arg(wallet)
        // The nodes' floor: blocks below it would be the nodes' lies.
        .arg("--floor")
        .arg(testkit::FLOOR.to_string())
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    cmd
}

/// Runs the shop to its end (failing the test if it takes longer than two deadlines).
pub async fn run(tracker: &str, wallet: &Path, args: &[&str]) -> Output {
    let child = command(tracker, wallet, args)
        .spawn()
        .expect("start the shop");
    finish(child, args).await
}

/// Waits for a shop started with [`command`].
pub async fn finish(child: tokio::process::Child, args: &[&str]) -> Output {
    tokio::time::timeout(2 * DEADLINE, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("monkey-shop {args:?} did not finish in time"))
        .expect("wait for the shop")
}

/// Checks a successful run's output: exit 0 and one JSON object on stdout, which it returns.
pub fn json_of(out: &Output, args: &[&str]) -> Value {
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "monkey-shop {args:?} failed: {:?}\nstdout: {stdout}\nstderr: {stderr}",
        out.status
    );
    assert_eq!(stdout.lines().count(), 1, "one JSON line: {stdout}");
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {stdout}"))
}

/// Runs `args` with `--json`; it must succeed. Returns the object printed.
pub async fn ok(tracker: &str, wallet: &Path, args: &[&str]) -> Value {
    let mut all = args.to_vec();
    all.push("--json");
    let out = run(tracker, wallet, &all).await;
    json_of(&out, &all)
}

/// Runs `args`; it must fail with exit 1, nothing on stdout and exactly one line on stderr,
/// `monkey-shop: error: ...`, that contains `needle`. Returns that line.
pub async fn refused(tracker: &str, wallet: &Path, args: &[&str], needle: &str) -> String {
    let out = run(tracker, wallet, args).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(
        out.status.code(),
        Some(1),
        "monkey-shop {args:?} should fail\nstdout: {stdout}\nstderr: {stderr}"
    );
    assert!(stdout.is_empty(), "{args:?} printed on stdout: {stdout}");
    assert_eq!(stderr.lines().count(), 1, "{args:?}: one line: {stderr}");
    assert!(
        stderr.starts_with("monkey-shop: error: "),
        "{args:?}: {stderr}"
    );
    assert!(
        stderr.contains(needle),
        "{args:?}: expected {needle:?} in {stderr}"
    );
    stderr.trim_end().to_string()
}

/// A JSON field as text (strings without quotes).
pub fn text(v: &Value, field: &str) -> String {
    match &v[field] {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// A JSON field as a number.
pub fn num(v: &Value, field: &str) -> u64 {
    v[field]
        .as_u64()
        .unwrap_or_else(|| panic!("{field} is not a number in {v}"))
}

/// The key files of a wallet with their bytes (not the outboxes, which the shop tidies as it
/// reads the chain), to check that nothing changed.
pub fn keys(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    files(dir)
        .into_iter()
        .filter(|(path, _)| !path.components().any(|c| c.as_os_str() == "outbox"))
        // The nodes the tracker last listed: a cache, not the wallet's state.
        .filter(|(path, _)| !path.ends_with("nodes.json"))
        .collect()
}

/// Every file of a folder (recursively) with its bytes, to check that nothing changed.
pub fn files(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(files(&path));
        } else if path
            .file_name()
            .is_some_and(|n| n == "nodes.json" || n == shop::cache::CACHE_FILE)
        {
            // The nodes the tracker last listed and the chain last verified: caches of the
            // network, not the shopper's state.
            continue;
        } else {
            let bytes = std::fs::read(&path).unwrap_or_default();
            out.push((path, bytes));
        }
    }
    out.sort();
    out
}
