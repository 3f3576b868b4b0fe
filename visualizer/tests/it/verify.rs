//! Signatures are verified off the hub thread: while the visualizer catches up on a chain full
//! of distinct signed records, new browsers still get their snapshots at once.

use std::time::{Duration, Instant};

use protocol::{Action, Block, Record, genesis};
use testkit::*;

use crate::stream::feed;
use crate::*;

/// Blocks in the chain the visualizer catches up on.
const BLOCKS: usize = 40;
/// Records in each: 40,000 signatures to verify, a second or two of CPU, and a few hundred
/// milliseconds for each line of blocks the node sends.
const RECORDS: usize = 1_000;
/// Blocks fed to the node at once (a line of well under its 8 MiB limit).
const FEED: usize = 10;
/// The longest a new browser may wait for its snapshot during the catch-up. The hub builds one
/// in a few milliseconds; a hub that verified signatures itself would keep it waiting for a
/// whole line's worth of them.
const SNAPSHOT_WITHIN: Duration = Duration::from_millis(400);

/// A chain of [`BLOCKS`] blocks at the floor, each holding [`RECORDS`] signed records: alice
/// and bob join, then pass one coin back and forth. Every record is signed anew (its sequence
/// number differs), while the ledger, and so every snapshot, stays two rows small.
fn signed_chain() -> Vec<Block> {
    let (alice, bob) = (key(21), key(22));
    let mut seqs = [0u64; 2];
    let mut out: Vec<Block> = Vec::new();
    for b in 0..BLOCKS {
        let parent = out.last().cloned().unwrap_or_else(genesis);
        let records: Vec<Record> = (0..RECORDS)
            .map(|i| match (b, i) {
                (0, 0) => join(&alice, "alice"),
                (0, 1) => join(&bob, "bob"),
                _ => {
                    let (from, to, n) = if i % 2 == 0 {
                        (&alice, &bob, 0)
                    } else {
                        (&bob, &alice, 1)
                    };
                    seqs[n] += 1;
                    let action = Action::Transfer {
                        to: to.account(),
                        amount: 1,
                    };
                    Record::sign(from, seqs[n], action)
                }
            })
            .collect();
        out.push(mine_block(&parent, records, FLOOR, 1000));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshots_are_served_while_signatures_are_verified() {
    let tracker = Tracker::start().await;
    let dir = tempfile::tempdir().unwrap();
    let node = NodeProc::start(&tracker.addr, &dir.path().join("a"));
    let chain = tokio::task::spawn_blocking(signed_chain)
        .await
        .expect("the chain");
    for part in chain.chunks(FEED) {
        feed(&node.addr, part).await;
    }
    let tip = BLOCKS as u64;

    let vis = Visualizer::start(&tracker.addr).await;
    let started = Instant::now();
    let mut during = Vec::new();
    loop {
        assert!(started.elapsed() < DEADLINE, "the catch-up took too long");
        let asked = Instant::now();
        let snapshot = Page::connect(&vis.addr).await.snapshot().await;
        let took = asked.elapsed();
        if snapshot.height == tip {
            break;
        }
        if snapshot.height > 0 || snapshot.nodes.iter().any(|n| n.tip_height == tip) {
            during.push(took);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let caught_up = started.elapsed();
    let slowest = during.iter().max().copied().unwrap_or_default();
    eprintln!(
        "caught up on {} signatures in {} ms; {} snapshots meanwhile, the slowest {} ms",
        BLOCKS * RECORDS,
        caught_up.as_millis(),
        during.len(),
        slowest.as_millis()
    );
    assert!(
        during.len() >= 3,
        "too few snapshots during the catch-up to tell: {during:?}"
    );
    assert!(
        slowest < SNAPSHOT_WITHIN,
        "a snapshot took {slowest:?} during the catch-up"
    );
    vis.stop().await;
}
