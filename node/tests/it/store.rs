//! The store across restarts: a restart resumes from a ledger checkpoint instead of replaying
//! the chain, blocks no longer in memory are served from disk, a damaged checkpoint or a store
//! of the older format is rebuilt from the blocks, and a kill during a long write restarts
//! consistent.

use std::path::Path;

use node::store::CHECKPOINT_EVERY;
use protocol::Block;
use protocol::params::MAX_REORG_DEPTH;
use rand::RngExt;
use redb::{Database, ReadableTable, TableDefinition};

use super::sync::{chain_of, hand_over};
use testkit::*;

/// Most blocks a restart may insert again: those after the newest checkpoint a reorg cannot
/// reach (a checkpoint is taken at the end of the batch that reaches its interval: here one
/// line of 500 blocks at most).
const MOST_REPLAYED: u64 = MAX_REORG_DEPTH as u64 + CHECKPOINT_EVERY + 500;
/// Well past what a restart may replay, so a restart that replays everything fails the test.
const LONG: usize = MOST_REPLAYED as usize + 2500;

/// Waits until `node` serves exactly `blocks` through `D` (from disk, for the older ones).
async fn serves(node: &NodeProc, blocks: &[Block]) {
    wait_for(
        "the node to serve the whole chain",
        DEADLINE * 2,
        || async {
            let chain = fetch_chain(&node.addr).await?;
            (chain == blocks).then_some(())
        },
    )
    .await;
}

/// `text` without its terminal colour codes (`ESC [ ... m`).
fn plain(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut in_code = false;
    for c in text.chars() {
        match (in_code, c) {
            (false, '\x1b') => in_code = true,
            (false, c) => out.push(c),
            (true, 'm') => in_code = false,
            (true, _) => {}
        }
    }
    out
}

/// A field of the last "loaded the store" line of `log`.
pub fn loaded(log: &str, field: &str) -> u64 {
    let log = plain(log);
    let line = log
        .lines()
        .rev()
        .find(|l| l.contains("loaded the store"))
        .unwrap_or_else(|| panic!("no load in:\n{log}"));
    let value = line
        .split_whitespace()
        .find_map(|w| w.strip_prefix(&format!("{field}=")))
        .unwrap_or_else(|| panic!("no {field} in {line}"));
    value.parse().unwrap()
}

/// Restarts the node on `dir`, returning it and what it logged while starting.
fn restart(node: NodeProc, tracker: &Tracker) -> (NodeProc, String) {
    let dir = node.dir.clone();
    let before = node.log().len();
    assert!(node.terminate().success());
    let node = NodeProc::start(&tracker.addr, &dir);
    let log = node.log()[before..].to_string();
    (node, log)
}

/// Rewrites every value of a table of the store of a stopped node.
fn tamper(dir: &Path, table: &str, change: impl Fn(&mut Vec<u8>)) -> usize {
    let db = Database::open(dir.join("chain.redb")).unwrap();
    let def: TableDefinition<u64, &[u8]> = TableDefinition::new(table);
    let txn = db.begin_write().unwrap();
    let mut count = 0;
    {
        let mut t = txn.open_table(def).unwrap();
        let entries: Vec<(u64, Vec<u8>)> = t
            .iter()
            .unwrap()
            .map(|e| {
                let (k, v) = e.unwrap();
                (k.value(), v.value().to_vec())
            })
            .collect();
        for (key, mut value) in entries {
            change(&mut value);
            t.insert(key, value.as_slice()).unwrap();
            count += 1;
        }
    }
    txn.commit().unwrap();
    count
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_resumes_from_a_checkpoint_and_a_damaged_one_is_rebuilt() {
    let blocks = chain_of(LONG);
    let tracker = Tracker::start().await;
    let dir = tempfile::tempdir().unwrap();
    let a = NodeProc::start(&tracker.addr, &dir.path().join("a"));
    hand_over(&a.addr, &blocks).await;
    serves(&a, &blocks).await;

    let (a, log) = restart(a, &tracker);
    assert_eq!(loaded(&log, "height"), LONG as u64);
    let replayed = loaded(&log, "replayed");
    assert!(
        replayed <= MOST_REPLAYED,
        "replayed {replayed} of {LONG}:\n{log}"
    );
    serves(&a, &blocks).await;

    // One byte of a balance changed in every checkpoint: it still decodes, but the checksum
    // finds it, and the node rebuilds the ledger from the blocks.
    let dir_a = a.dir.clone();
    let before = a.log().len();
    assert!(a.terminate().success());
    let damaged = tamper(&dir_a, "checkpoints_v1", |bytes| {
        let at = bytes.len() - 40;
        bytes[at] ^= 1;
    });
    assert!(damaged > 0, "no checkpoint was written");
    let a = NodeProc::start(&tracker.addr, &dir_a);
    let log = a.log()[before..].to_string();
    assert!(log.contains("damaged ledger checkpoint"), "{log}");
    assert_eq!(
        loaded(&log, "replayed"),
        LONG as u64,
        "rebuilt from genesis"
    );
    assert_eq!(loaded(&log, "height"), LONG as u64);
    serves(&a, &blocks).await;

    // The rebuild wrote sound checkpoints again.
    let (a, log) = restart(a, &tracker);
    assert!(loaded(&log, "replayed") <= MOST_REPLAYED, "{log}");
    assert!(!log.contains("damaged"), "{log}");
    serves(&a, &blocks).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_of_the_older_format_is_rebuilt_once_and_serves_every_block() {
    let blocks = chain_of(MAX_REORG_DEPTH + 500);
    let tracker = Tracker::start().await;
    let dir = tempfile::tempdir().unwrap();
    let a = NodeProc::start(&tracker.addr, &dir.path().join("a"));
    hand_over(&a.addr, &blocks).await;
    serves(&a, &blocks).await;
    let dir_a = a.dir.clone();
    let before = a.log().len();
    assert!(a.terminate().success());
    // What the store held before the best-chain index: blocks and pending records only.
    {
        let db = Database::open(dir_a.join("chain.redb")).unwrap();
        let txn = db.begin_write().unwrap();
        for table in [
            "best_v1",
            "heights_v2",
            "records_v2",
            "checkpoints_v1",
            "meta_v1",
        ] {
            let handle: TableDefinition<u64, u64> = TableDefinition::new(table);
            assert!(txn.delete_table(handle).unwrap(), "{table} was there");
        }
        txn.commit().unwrap();
    }
    let a = NodeProc::start(&tracker.addr, &dir_a);
    let log = a.log()[before..].to_string();
    assert!(
        log.contains("rebuilding them from its blocks, once"),
        "{log}"
    );
    assert!(
        log.contains("rebuilt the store's best-chain index"),
        "{log}"
    );
    serves(&a, &blocks).await;
    let (a, log) = restart(a, &tracker);
    assert!(!log.contains("rebuild"), "only once:\n{log}");
    serves(&a, &blocks).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_killed_during_a_long_sync_restarts_consistent_and_finishes_it() {
    let blocks = chain_of(LONG);
    let tracker = Tracker::start().await;
    let dir = tempfile::tempdir().unwrap();
    let dir_a = dir.path().join("a");
    let mut a = NodeProc::start(&tracker.addr, &dir_a);
    for round in 0..3 {
        let sending = {
            let addr = a.addr.clone();
            let blocks = blocks.clone();
            tokio::spawn(async move { hand_over(&addr, &blocks).await })
        };
        // A random moment of the sync: blocks, the index and checkpoints being written.
        let delay = rand::rng().random_range(0..600);
        tokio::time::sleep(std::time::Duration::from_millis(delay)).await;
        a.kill();
        let _ = sending.await;
        a = NodeProc::start(&tracker.addr, &dir_a);
        let log = a.log();
        let last_start = log.rsplit("loaded the store").next().unwrap_or_default();
        assert!(
            !log.contains("did not load") && !log.contains("damaged"),
            "round {round}:\n{last_start}"
        );
    }
    hand_over(&a.addr, &blocks).await;
    serves(&a, &blocks).await;
    let (a, log) = restart(a, &tracker);
    assert!(loaded(&log, "replayed") <= MOST_REPLAYED, "{log}");
    serves(&a, &blocks).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_restarted_more_often_than_the_checkpoint_interval_still_replays_little() {
    let step = CHECKPOINT_EVERY as usize - 100;
    let blocks = chain_of(MOST_REPLAYED as usize + 3 * step);
    let tracker = Tracker::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut a = NodeProc::start(&tracker.addr, &dir.path().join("a"));
    let mut end = MOST_REPLAYED as usize;
    hand_over(&a.addr, &blocks[..end]).await;
    serves(&a, &blocks[..end]).await;
    for _ in 0..3 {
        let log;
        (a, log) = restart(a, &tracker);
        let replayed = loaded(&log, "replayed");
        assert!(replayed <= MOST_REPLAYED, "replayed {replayed}:\n{log}");
        // Fewer blocks than a checkpoint interval before the next restart.
        hand_over(&a.addr, &blocks[end..end + step]).await;
        end += step;
        serves(&a, &blocks[..end]).await;
    }
}
