//! Item: side blocks capped by count, not by bytes. Many siblings of the lowest blocks, mined at
//! the floor, each carrying 1,000 signed records: what side branches hold must stay bounded in
//! bytes in memory and on disk (pruned blocks leave the store), while honest purchases are
//! mined as usual.

use std::path::Path;
use std::time::Duration;

use attack::Attack;
use protocol::params::{MAX_SIDE_BYTES, side_block_cost};
use testkit::*;

use crate::support::{MAX_PEAK_KIB, PURCHASE_LIMIT, attack_while_buying, network};

/// Siblings sent. At about 120 KiB of records each, several times [`MAX_SIDE_BYTES`] in every
/// wave, and tens of times in all; far under the old cap of 10,000 side blocks.
const SIBLINGS: usize = 600;

/// The bytes of records a sibling carries, at least: 1,000 purchases of about 120 bytes.
const SIBLING_RECORDS_SIZE: u32 = 100_000;

/// Most the attacked node's store may grow by, in bytes.
const MAX_STORE_GROWTH: u64 = 256 * 1024 * 1024;

fn store_bytes(dir: &Path) -> u64 {
    std::fs::metadata(dir.join("chain.redb")).map_or(0, |m| m.len())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn big_side_blocks_stay_bounded_in_memory_and_on_disk() {
    let mut net = network().await;
    let before = store_bytes(&net.a.dir);
    let (outcome, during, overlapped) =
        attack_while_buying(&mut net, Attack::BigSideBlocks, SIBLINGS).await;
    assert_eq!(outcome.sent, SIBLINGS);
    assert!(outcome.still_served && !outcome.banned, "{outcome:?}");
    let after = net.shopper.buy(&net.a, &net.b).await;

    assert!(net.a.is_running() && net.b.is_running());
    let (_, peak) = net.a.memory_kib().expect("read /proc");
    let (_, peer_peak) = net.b.memory_kib().expect("read /proc");
    // Let the last unsynced write reach the disk before the store is measured.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let grown = store_bytes(&net.a.dir).saturating_sub(before);
    println!(
        "honest purchase: at most {during:?} during the flood ({overlapped} purchases), \
         {after:?} after it; peak memory {} MiB \
         (its peer {} MiB); store grew by {} MiB",
        peak / 1024,
        peer_peak / 1024,
        grown / (1024 * 1024)
    );
    assert!(
        during < PURCHASE_LIMIT,
        "a purchase during the flood took {during:?}"
    );
    assert!(
        after < PURCHASE_LIMIT,
        "a purchase after the flood took {after:?}"
    );
    assert!(peak < MAX_PEAK_KIB, "peak memory {peak} KiB");
    assert!(
        peer_peak < MAX_PEAK_KIB,
        "the peer's peak memory {peer_peak} KiB"
    );
    assert!(grown < MAX_STORE_GROWTH, "the store grew by {grown} bytes");
    // And what the store holds: the best chain and about what the cap lets side branches
    // hold, not every wave. Read with the node stopped (the store is locked while it runs).
    let height = fetch_chain(&net.a.addr).await.expect("the chain").len();
    let dir = net.a.dir.clone();
    assert!(net.a.terminate().success());
    let (store, _) = node::store::Store::open(&dir).expect("open the store");
    let stored = store.block_count().expect("count the blocks") as usize;
    let side_at_most = MAX_SIDE_BYTES / side_block_cost(SIBLING_RECORDS_SIZE) + 1;
    println!("store: {stored} blocks, {height} on the best chain");
    assert!(
        stored <= height + side_at_most,
        "the store holds {stored} blocks: pruned side blocks stayed"
    );
}
