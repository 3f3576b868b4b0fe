//! A lying node registered with the tracker, next to an honest one, floods the visualizer with
//! blocks that carry no proof of work (issue 13): the visualizer refuses them at the first
//! message, drops the liar and shows it as misbehaving, and meanwhile serves new browsers and
//! honest blocks promptly in bounded memory.

use std::time::{Duration, Instant};

use attack::liar::Lie;
use protocol::genesis;
use testkit::*;
use visualizer::view::{Link, NodeView};

use crate::stream::feed;
use crate::*;

/// The flood of the issue: 2,000 blocks of bits 0, each with 1,000 signed records (about
/// 540 MB of JSON, were it all taken). Refused at the first line, it costs the test nothing.
const FLOOD_BLOCKS: usize = 2_000;
/// Records in each flood block: the most a block may hold.
const FLOOD_RECORDS: usize = 1_000;
/// Honest blocks the node has first: their work (2^FLOOR each) outweighs the whole flood's (1
/// per block), so the flood is a side branch, as on a real network, and never reaches the
/// ledger, which would have caught it for other reasons.
const HONEST_BLOCKS: usize = 10;
/// The visualizer's peak memory under the flood must stay below this.
const MAX_PEAK_KIB: u64 = 300 * 1024;
/// A new browser gets its snapshot within this under the flood.
const SNAPSHOT_WITHIN: Duration = Duration::from_secs(3);
/// An honest block reaches the page within this of being mined.
const BLOCK_WITHIN_MS: u64 = 3_000;

/// The liar's row, if it says the liar is dropped for sending blocks below the floor.
fn shown_misbehaving<'a>(nodes: &'a [NodeView], liar: &str) -> Option<&'a NodeView> {
    nodes.iter().find(|n| {
        n.id.to_string() == liar
            && n.link == Link::Dropped
            && n.misbehaviour
                .as_ref()
                .is_some_and(|m| m.why.contains("below the floor") && m.sent.contains("0 bits"))
    })
}

/// A visualizer on the tracker's network, and a browser connection past its snapshot.
async fn watch(tracker: &Tracker) -> (VisProc, Page) {
    let vis = VisProc::start(&tracker.addr, "127.0.0.1:0");
    let mut page = Page::connect(&vis.addr).await;
    page.snapshot().await;
    (vis, page)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_zero_work_flood_is_refused_and_its_node_shown_as_misbehaving() {
    let tracker = Tracker::start().await;
    let dir = tempfile::tempdir().unwrap();
    let node = NodeProc::start(&tracker.addr, &dir.path().join("honest"));
    feed(
        &node.addr,
        &mine_chain(&genesis(), HONEST_BLOCKS, FLOOR, 1000),
    )
    .await;
    let lie = Lie::ZeroWorkFlood {
        blocks: FLOOD_BLOCKS,
        records_per_block: FLOOD_RECORDS,
    };
    let liar = liar_beside(&tracker, &node, lie).await;
    let liar_id = liar.id.to_string();
    let (vis, mut page) = watch(&tracker).await;

    // An honest purchase's block, mined while the visualizer meets the liar.
    let mut shop = Client::connect(&node.addr).await;
    let mined = shop.submit_and_wait(join(&key(42), "honest")).await;
    let hash = mined.header.hash();
    let arrived = page
        .wait("the honest block", |m| {
            blocks_of(m).iter().any(|b| b.hash == hash).then(now_ms)
        })
        .await;
    // Mined at its timestamp, on this machine's clock; read from the socket only after the
    // shop's answer, so this overestimates if anything.
    let block_ms = arrived.saturating_sub(mined.header.timestamp);

    page.wait_nodes("the liar shown as misbehaving", |nodes| {
        shown_misbehaving(nodes, &liar_id).is_some()
    })
    .await;

    let asked = Instant::now();
    let snapshot = Page::connect(&vis.addr).await.snapshot().await;
    let snapshot_took = asked.elapsed();
    let row = shown_misbehaving(&snapshot.nodes, &liar_id)
        .expect("a new browser sees the liar as misbehaving too");
    let offence = row.misbehaviour.clone().expect("what it sent");
    assert!(
        snapshot
            .blocks
            .iter()
            .all(|b| b.height == 0 || b.bits >= FLOOR),
        "no block of the flood was kept"
    );
    assert!(snapshot.blocks.iter().any(|b| b.hash == hash));

    let (_, peak_kib) = vis.memory_kib().expect("the visualizer's memory");
    eprintln!(
        "under a flood of {FLOOD_BLOCKS} blocks x {FLOOD_RECORDS} records: honest block on the \
         page {block_ms} ms after it was mined, new snapshot in {} ms, visualizer peak {} MiB; \
         the liar: sent {}, refused: {}",
        snapshot_took.as_millis(),
        peak_kib / 1024,
        offence.sent,
        offence.why,
    );
    assert!(
        block_ms < BLOCK_WITHIN_MS,
        "the honest block took {block_ms} ms"
    );
    assert!(
        snapshot_took < SNAPSHOT_WITHIN,
        "the snapshot took {snapshot_took:?}"
    );
    assert!(
        peak_kib < MAX_PEAK_KIB,
        "the visualizer peaked at {peak_kib} KiB"
    );
    liar.stop().await;
}

/// A node that lists a made-up record in its pool (a purchase whose signature does not verify)
/// is dropped as misbehaving, and no browser is shown the record as pending: the page's pool
/// view is only what nodes could not have invented.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_listing_a_forged_pending_record_is_dropped_and_the_record_never_shown() {
    let tracker = Tracker::start().await;
    let dir = tempfile::tempdir().unwrap();
    let node = NodeProc::start(&tracker.addr, &dir.path().join("honest"));
    let liar = liar_beside(&tracker, &node, Lie::ForgedPending).await;
    let liar_id = liar.id.to_string();
    let (vis, mut page) = watch(&tracker).await;
    page.wait_nodes("the liar shown as misbehaving for its pool", |nodes| {
        nodes.iter().any(|n| {
            n.id.to_string() == liar_id
                && n.link == Link::Dropped
                && n.misbehaviour.as_ref().is_some_and(|m| {
                    m.sent.contains("pending record") && m.why.contains("bad signature")
                })
        })
    })
    .await;
    let snapshot = Page::connect(&vis.addr).await.snapshot().await;
    assert!(
        snapshot
            .nodes
            .iter()
            .filter(|n| n.id.to_string() != liar_id)
            .all(|n| n.misbehaviour.is_none()),
        "only the liar is blamed: {:?}",
        snapshot.nodes
    );
    assert!(
        snapshot.observed.iter().all(|o| o.pool.is_empty()),
        "no pending record shown: {:?}",
        snapshot.observed
    );
    liar.stop().await;
}
