//! Logging to files, never to the terminal: the shop's prompts own it. Each daemon's library
//! has its file (picked by the event's target, i.e. the crate that logs it); every node writes
//! to `nodes.log` inside a `node{n=1}` span, so its lines say which node they come from.

use std::fs::{File, OpenOptions};
use std::path::Path;
use std::sync::Mutex;

use anyhow::Context;
use tracing_subscriber::filter::{EnvFilter, FilterExt, filter_fn};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{Layer, Registry};

/// Each file and the crates whose events go to it. Anything else goes to `demo.log`.
const FILES: &[(&str, &[&str])] = &[
    ("tracker.log", &["tracker"]),
    ("nodes.log", &["node", "redb"]),
    (
        "visualizer.log",
        &[
            "visualizer",
            "warp",
            "hyper",
            "hyper_util",
            "tungstenite",
            "tokio_tungstenite",
        ],
    ),
    ("shop.log", &["shop", "inquire"]),
];

/// Whether an event's `target` (a module path) belongs to one of `crates`.
fn belongs(target: &str, crates: &[&str]) -> bool {
    crates.iter().any(|c| {
        target
            .strip_prefix(c)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with("::"))
    })
}

/// The level: `RUST_LOG` when set, `info` otherwise. Built once per file, since a filter
/// belongs to one layer.
fn level() -> EnvFilter {
    EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"))
}

fn open(dir: &Path, name: &str) -> anyhow::Result<Mutex<File>> {
    let path = dir.join(name);
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .with_context(|| format!("cannot open the log file {}", path.display()))?;
    Ok(Mutex::new(file))
}

/// Sends every event to its file in `dir` (created when missing), appending: a resumed demo
/// adds to the logs of the earlier runs.
pub fn init(dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create the log folder {}", dir.display()))?;
    let mut layers: Vec<Box<dyn Layer<Registry> + Send + Sync>> = Vec::new();
    for &(name, crates) in FILES {
        // Every span passes: a node's span is made by the demo, its events by the node library,
        // and a layer prints only the spans it was allowed to see.
        let mine = filter_fn(move |meta| meta.is_span() || belongs(meta.target(), crates));
        layers.push(
            tracing_subscriber::fmt::layer()
                .with_ansi(false)
                .with_writer(open(dir, name)?)
                .with_filter(level().and(mine))
                .boxed(),
        );
    }
    let rest =
        filter_fn(|meta| meta.is_span() || !FILES.iter().any(|(_, c)| belongs(meta.target(), c)));
    layers.push(
        tracing_subscriber::fmt::layer()
            .with_ansi(false)
            .with_writer(open(dir, "demo.log")?)
            .with_filter(level().and(rest))
            .boxed(),
    );
    tracing_subscriber::registry()
        .with(layers)
        .try_init()
        .context("cannot set up logging")
}

#[cfg(test)]
mod tests {
    use super::belongs;

    #[test]
    fn a_target_belongs_to_its_crate_only() {
        assert!(belongs("node", &["node"]));
        assert!(belongs("node::actor", &["node"]));
        assert!(!belongs("nodes", &["node"]));
        assert!(!belongs("hyper_util::client", &["hyper"]));
        assert!(belongs("hyper_util::client", &["hyper", "hyper_util"]));
    }
}
