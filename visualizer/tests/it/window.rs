//! The visualizer's bounded window: whatever the chain's length it keeps only the recent blocks
//! (and the state: balances, names, totals), a new browser's snapshot stays small, and older
//! blocks come on demand from a node, checked before they are believed.

use std::sync::Arc;

use futures::{SinkExt, StreamExt};
use protocol::codec::LineCodec;
use protocol::wire::{Blocks, Message};
use protocol::{Block, BlockHash, Params, genesis};
use testkit::{Client, DEADLINE, FLOOR, NodeProc, Tracker, buy, join, key, mine_block, mine_chain};
use tokio::net::TcpListener;
use tokio_util::codec::Framed;
use visualizer::history::{FetchError, Page, fetch_checked};
use visualizer::state::{
    Anchors, CHECKPOINT_SPACING, SNAPSHOT_BLOCKS, SNAPSHOT_SIDE_BLOCKS, State, WINDOW_BLOCKS,
};
use visualizer::view::{RecordSummary, ToBrowser};

use crate::http::{dechunk, http_get};
use crate::{Visualizer, now_ms};

/// A chain of `n` blocks at 4 bits whose first block joins "ada" and buys a monkey, so what
/// the visualizer must keep as state (her balance, cage and name) comes from a block that
/// leaves the window.
fn long_chain(n: usize) -> Vec<Block> {
    let ada = key(1);
    let first = mine_block(
        &genesis(),
        vec![join(&ada, "ada"), buy(&ada, 1, "capuchin")],
        4,
        1000,
    );
    let mut chain = vec![first];
    chain.extend(mine_chain(&chain[0], n - 1, 4, 1000));
    chain
}

/// The snapshot's JSON, as a browser gets it.
fn snapshot_json(state: &State) -> String {
    serde_json::to_string(&state.snapshot()).expect("a snapshot serialises")
}

#[test]
fn a_long_chain_keeps_a_bounded_window_and_the_state_and_a_small_snapshot() {
    const BLOCKS: usize = 3 * WINDOW_BLOCKS;
    let chain = long_chain(BLOCKS);
    let node = key(2).account();
    let mut state = State::new("tracker:1", Params::with_floor(4));
    let mut sizes = Vec::new();
    for (i, segment) in chain.chunks(500).enumerate() {
        state.insert(node, segment.to_vec(), None, now_ms());
        sizes.push((500 * (i + 1), snapshot_json(&state).len()));
    }
    assert_eq!(state.height(), BLOCKS as u64);
    assert!(
        state.summarised() <= WINDOW_BLOCKS + 1,
        "memory follows the window, not the chain: {} summaries for {BLOCKS} blocks",
        state.summarised()
    );
    let ToBrowser::Snapshot(snapshot) = state.snapshot() else {
        panic!("a snapshot");
    };
    assert_eq!(snapshot.blocks.len(), SNAPSHOT_BLOCKS);
    assert_eq!(
        snapshot.blocks.last().map(|b| b.hash),
        Some(chain[BLOCKS - 1].header.hash())
    );
    // The state outlives the blocks: ada's join and purchase left the window long ago.
    let ada = snapshot
        .ledger
        .shopper("ada")
        .expect("ada's row, from a block far below the window");
    assert_eq!(ada.cage.get("capuchin"), Some(&1));
    assert_eq!(snapshot.ledger.totals.blocks, BLOCKS as u64);
    assert_eq!(snapshot.ledger.totals.records, 2);
    assert_eq!(snapshot.ledger.totals.monkeys_sold, 1);
    // The snapshot's size stops growing once the chain is longer than it shows.
    let bound = 200 * SNAPSHOT_BLOCKS + 16 * 1024;
    eprintln!("snapshot bytes by chain length: {sizes:?}");
    for &(blocks, size) in &sizes {
        assert!(
            size < bound,
            "the snapshot at {blocks} blocks is {size} bytes, over {bound}"
        );
    }
    let (first_full, last) = (sizes[1].1, sizes[sizes.len() - 1].1);
    // (A longer chain's heights and times take a digit more here and there.)
    assert!(
        last <= first_full + first_full / 100,
        "a snapshot at {BLOCKS} blocks ({last} bytes) is about as large as at 1,000 ({first_full})"
    );
    // Names learnt from blocks gone from memory still describe new records.
    let next = mine_block(
        &chain[BLOCKS - 1],
        vec![buy(&key(1), 2, "capuchin")],
        4,
        1000,
    );
    let out = state.insert(node, vec![next], None, now_ms());
    let described = out.iter().find_map(|m| match m {
        ToBrowser::Blocks { blocks } => blocks[0].records.first().cloned(),
        _ => None,
    });
    assert!(
        matches!(described, Some(RecordSummary::Purchase { ref who, .. }) if who == "ada"),
        "{described:?}"
    );
}

#[test]
fn a_snapshot_carries_only_the_side_blocks_nearest_the_tip() {
    let best = mine_chain(&genesis(), 2, 6, 1000);
    let node = key(2).account();
    let mut state = State::new("tracker:1", Params::with_floor(4));
    state.insert(node, best.clone(), None, now_ms());
    // Many one-block forks off the first block, each lighter than the best chain.
    let mut forks = Vec::new();
    for i in 0..(SNAPSHOT_SIDE_BLOCKS + 50) as u64 {
        forks.push(mine_block(&best[0], Vec::new(), 4, 2000 + i));
    }
    state.insert(node, forks, None, now_ms());
    let ToBrowser::Snapshot(snapshot) = state.snapshot() else {
        panic!("a snapshot");
    };
    let side = snapshot
        .blocks
        .iter()
        .filter(|b| b.hash != best[1].header.hash() && b.height == 2)
        .count();
    assert_eq!(
        side, SNAPSHOT_SIDE_BLOCKS,
        "side blocks in a snapshot are capped"
    );
}

#[test]
fn a_node_far_behind_is_asked_only_for_what_follows_its_last_checkpoint() {
    let blocks = 2 * WINDOW_BLOCKS + 1000;
    let chain = mine_chain(&genesis(), blocks, 4, 1000);
    let mut state = State::new("tracker:1", Params::with_floor(4));
    for segment in chain.chunks(500) {
        state.insert(key(2).account(), segment.to_vec(), None, now_ms());
    }
    let locator = state.locator();
    assert!(locator.len() <= protocol::params::MAX_LOCATOR);
    // A node that holds only the first 1,700 blocks, all below the window.
    let behind = 1_700;
    let mut node = protocol::Chain::new(Params::with_floor(4));
    for block in &chain[..behind] {
        node.insert(block.clone(), now_ms()).expect("a valid block");
    }
    let (sent, _) = node.blocks_after(&locator, 500);
    let last_checkpoint = (behind as u64 / CHECKPOINT_SPACING) * CHECKPOINT_SPACING;
    assert_eq!(
        sent.first().map(|b| b.header.height),
        Some(last_checkpoint + 1),
        "the node sends what follows its last checkpoint, not its chain from genesis"
    );
}

/// The state's anchors for the stretch holding `height`, checked against the chain itself.
fn anchors_of(state: &State, chain: &[Block], height: u64) -> Anchors {
    let anchors = state.anchors(height).expect("anchors below the window");
    let hash_at = |h: u64| match h {
        0 => genesis().header.hash(),
        h => chain[h as usize - 1].header.hash(),
    };
    assert_eq!(anchors.from_hash, hash_at(anchors.from));
    assert_eq!(anchors.to_hash, hash_at(anchors.to));
    anchors
}

/// A fake node that answers every `D` with `answer`'s blocks and nothing else.
async fn fake_node(answer: Vec<Block>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("address").to_string();
    tokio::spawn(async move {
        let Ok((stream, _)) = listener.accept().await else {
            return;
        };
        let mut link = Framed::new(stream, LineCodec::<Message>::new());
        while let Some(Ok(message)) = link.next().await {
            if let Message::GetBlocks(_) = message {
                let blocks = Blocks {
                    blocks: answer.clone(),
                    more: false,
                    packed: false,
                };
                if link.send(Message::Blocks(blocks)).await.is_err() {
                    return;
                }
            }
        }
    });
    addr
}

#[tokio::test]
async fn old_blocks_from_a_node_must_link_to_the_chain_the_visualizer_checked() {
    let blocks = 2 * CHECKPOINT_SPACING as usize + WINDOW_BLOCKS;
    let chain = tokio::task::spawn_blocking(move || mine_chain(&genesis(), blocks, 4, 1000))
        .await
        .expect("mining");
    let params = Params::with_floor(4);
    let mut state = State::new("tracker:1", params.clone());
    for segment in chain.chunks(500) {
        state.insert(key(2).account(), segment.to_vec(), None, now_ms());
    }
    let anchors = anchors_of(&state, &chain, CHECKPOINT_SPACING + 1);
    let honest: Vec<Block> = chain[anchors.from as usize..anchors.to as usize].to_vec();

    // What a node answering `blocks` gets: how many blocks were taken, or why none was.
    let answer = |blocks: Vec<Block>| {
        let (anchors, params) = (anchors, params.clone());
        async move {
            let addr = fake_node(blocks).await;
            fetch_checked(&addr, &anchors, &params)
                .await
                .map(|taken| taken.len())
        }
    };
    let taken = answer(honest.clone()).await;
    assert_eq!(
        taken.ok(),
        Some(honest.len()),
        "the honest stretch is taken"
    );

    // Another branch from the same checkpoint, with valid proof of work, is not the chain.
    let start = &chain[anchors.from as usize - 1];
    let rival = mine_chain(start, honest.len(), 4, 1001);
    let refused = answer(rival).await;
    assert!(
        matches!(refused, Err(FetchError::Elsewhere(_))),
        "{refused:?}"
    );

    // The right headers with a record the header does not commit to.
    let mut forged = honest.clone();
    forged[3].records = vec![join(&key(9), "mallory")];
    let refused = answer(forged).await;
    assert!(
        matches!(refused, Err(FetchError::Invalid(..))),
        "{refused:?}"
    );

    // A stretch that skips a block.
    let mut gapped = honest;
    gapped.remove(10);
    let refused = answer(gapped).await;
    assert!(
        matches!(refused, Err(FetchError::Unlinked(..))),
        "{refused:?}"
    );
}

/// `GET path` as JSON, with its status.
async fn get_json(addr: &str, path: &str) -> (u16, Option<serde_json::Value>) {
    let answer = http_get(addr, path).await.expect("an answer");
    let body = if answer.header("transfer-encoding") == Some("chunked") {
        dechunk(&answer.body)
    } else {
        answer.body
    };
    (answer.status, serde_json::from_slice(&body).ok())
}

/// The page below `before`, asked until the rate allows it.
async fn page(addr: &str, before: &BlockHash, count: u64) -> Page {
    let path = format!("/api/blocks?before={before}&count={count}");
    let value = testkit::wait_for("a page of old blocks", DEADLINE, || async {
        match get_json(addr, &path).await {
            (200, Some(value)) => Some(value),
            (429, _) => None,
            (status, value) => panic!("GET {path}: {status} {value:?}"),
        }
    })
    .await;
    serde_json::from_value(value).expect("a page")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_pages_back_below_the_window_through_a_node() {
    let blocks = 2 * WINDOW_BLOCKS;
    let tracker = Tracker::start().await;
    let dir = tempfile::tempdir().expect("a temporary directory");
    let node = NodeProc::start(&tracker.addr, &dir.path().join("a"));
    let chain = tokio::task::spawn_blocking(move || mine_chain(&genesis(), blocks, FLOOR, 1000))
        .await
        .expect("mining");
    let chain = Arc::new(chain);
    let mut peer = Client::connect(&node.addr).await;
    for segment in chain.chunks(protocol::params::MAX_BLOCKS_PER_MESSAGE) {
        peer.send(Message::Blocks(Blocks {
            blocks: segment.to_vec(),
            more: false,
            packed: false,
        }))
        .await;
    }
    let vis = Visualizer::start(&tracker.addr).await;
    let last = chain[blocks - 1].header.hash().to_string();
    testkit::wait_for("the visualizer at the chain's tip", DEADLINE * 2, || {
        crate::http::get_details(&vis.addr, &last)
    })
    .await;
    // A block far below the window is unknown until a page brings it.
    let old = chain[99].header.hash();
    let (status, _) = get_json(&vis.addr, &format!("/api/block/{old}")).await;
    assert_eq!(status, 404, "an old block not fetched yet");

    // Page back from the tip to genesis, 100 blocks at a time, checking each against the chain.
    let mut before = chain[blocks - 1].header.hash();
    let mut height = blocks as u64;
    let mut pages = 0;
    loop {
        let got = page(&vis.addr, &before, 100).await;
        pages += 1;
        assert!(pages <= blocks / 100 + 2, "paging ends at genesis");
        assert_eq!(got.blocks.len() as u64, height.min(100));
        for summary in &got.blocks {
            let expected = match summary.height {
                0 => genesis().header.hash(),
                h => chain[h as usize - 1].header.hash(),
            };
            assert_eq!(summary.hash, expected, "height {}", summary.height);
        }
        let Some(first) = got.blocks.first() else {
            break;
        };
        assert_eq!(got.more, first.height > 0);
        before = first.hash;
        height = first.height;
        if !got.more {
            break;
        }
    }
    assert_eq!(height, 0, "the pages reached genesis");
    // Once fetched, an old block's details are served too.
    let (status, details) = get_json(&vis.addr, &format!("/api/block/{old}")).await;
    assert_eq!(status, 200);
    assert_eq!(
        details.and_then(|d| d["header"]["height"].as_u64()),
        Some(100)
    );
    // A script asking as fast as it can is told to slow down.
    let path = format!("/api/blocks?before={last}&count=1");
    let mut limited = false;
    for _ in 0..40 {
        if get_json(&vis.addr, &path).await.0 == 429 {
            limited = true;
            break;
        }
    }
    assert!(limited, "pages are rate-limited per address");
    let (status, _) = get_json(&vis.addr, "/api/blocks?before=zz").await;
    assert!(status == 400 || status == 429, "{status}");
    vis.stop().await;
}
