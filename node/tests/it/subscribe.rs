//! `S`: a subscriber gets the tip at once, then every block that enters the tree and every move
//! of the best tip, reorgs included.

use protocol::wire::{Blocks, Message, Update};
use protocol::{Block, BlockHash, genesis};
use testkit::*;

/// The next `U` block or tip, skipping anything else (the node's load and pool, which have tests
/// of their own); fails the test on the end of the stream.
async fn next_update(client: &mut Client) -> Update {
    loop {
        match client.next().await {
            Some(Message::Update(Update::Status { .. } | Update::Pool { .. })) => continue,
            Some(Message::Update(update)) => return update,
            Some(_) => continue,
            None => panic!("the node closed the subscription"),
        }
    }
}

/// A tip move as a subscriber hears it: the new tip, its height, and the best-chain blocks
/// that left and joined (oldest first for `connected`, the old tip first for `disconnected`).
struct TipMove {
    hash: BlockHash,
    height: u64,
    disconnected: Vec<BlockHash>,
    connected: Vec<BlockHash>,
}

/// The next update, which must be `block` entering the tree.
async fn expect_block(sub: &mut Client, block: &Block) {
    match next_update(sub).await {
        Update::Block { block: got, .. } => assert_eq!(&got, block),
        other => panic!("expected block {}, got {other:?}", block.header.hash()),
    }
}

/// The next update, which must be a move of the best tip.
async fn expect_tip(sub: &mut Client) -> TipMove {
    match next_update(sub).await {
        Update::Tip {
            hash,
            height,
            disconnected,
            connected,
        } => TipMove {
            hash,
            height,
            disconnected,
            connected,
        },
        other => panic!("expected a tip move, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_sees_the_tip_new_blocks_and_a_reorg_as_such() {
    let net = OneNode::start().await;
    let mut sub = Client::connect(&net.node.addr).await;
    sub.send(Message::Subscribe).await;
    let first = expect_tip(&mut sub).await;
    assert_eq!((first.hash, first.height), (genesis().header.hash(), 0));

    // Two blocks at the floor from a peer: each arrives as a block, then a tip move.
    let light = mine_chain(&genesis(), 2, FLOOR, 1000);
    let mut peer = Client::connect(&net.node.addr).await;
    for block in &light {
        peer.send(Message::Block(block.clone())).await;
        expect_block(&mut sub, block).await;
        let moved = expect_tip(&mut sub).await;
        assert_eq!(moved.hash, block.header.hash());
        assert!(moved.disconnected.is_empty());
        assert_eq!(moved.connected, vec![block.header.hash()]);
    }

    // A heavier branch from genesis, sent as one sync segment: its blocks, then one reorg.
    let heavy = mine_chain(&genesis(), 2, FLOOR + 2, 2000);
    peer.send(Message::Blocks(Blocks {
        blocks: heavy.clone(),
        more: false,
        packed: false,
    }))
    .await;
    for block in &heavy {
        expect_block(&mut sub, block).await;
    }
    let reorg = expect_tip(&mut sub).await;
    assert_eq!((reorg.hash, reorg.height), (heavy[1].header.hash(), 2));
    let gone: Vec<_> = light.iter().rev().map(|b| b.header.hash()).collect();
    assert_eq!(reorg.disconnected, gone, "the old tip first");
    let joined: Vec<_> = heavy.iter().map(|b| b.header.hash()).collect();
    assert_eq!(reorg.connected, joined);
}

/// The next `U status` or `U pool` that `check` accepts, within [`DEADLINE`] and at most 200
/// lines; keep-alives are answered.
async fn next_notice<T>(client: &mut Client, what: &str, check: impl Fn(Update) -> Option<T>) -> T {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    for _ in 0..200 {
        let line = tokio::time::timeout_at(deadline, client.next())
            .await
            .unwrap_or_else(|_| panic!("no {what} in time"));
        match line {
            Some(Message::Update(update)) => {
                if let Some(found) = check(update) {
                    return found;
                }
            }
            Some(Message::KeepAlive) => client.send(Message::KeepAlive).await,
            Some(_) => {}
            None => panic!("the node closed the subscription"),
        }
    }
    panic!("no {what} in 200 lines");
}

/// Nodes a and b reporting every 200 ms, both active, and a subscriber to a; the tracker and
/// the data dirs are held by the caller.
async fn two_nodes_and_a_subscriber() -> (Tracker, tempfile::TempDir, NodeProc, NodeProc, Client) {
    let tracker = Tracker::start().await;
    let dir = tempfile::tempdir().unwrap();
    let fast = ["--report-interval-ms", "200"];
    let a = NodeProc::start_with(&tracker.addr, &dir.path().join("a"), &fast);
    let b = NodeProc::start_with(&tracker.addr, &dir.path().join("b"), &fast);
    tracker.wait_active(&[a.id.clone(), b.id.clone()]).await;
    let mut sub = Client::connect(&a.addr).await;
    sub.send(Message::Subscribe).await;
    (tracker, dir, a, b, sub)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_hears_the_load_and_peers_every_interval_and_records_enter_and_leave_the_pool()
{
    let (_tracker, _dir, a, b, mut sub) = two_nodes_and_a_subscriber().await;
    // Right after the tip: the whole pool, empty.
    let (full, added) = next_notice(&mut sub, "the pool listing", |u| match u {
        Update::Pool { full, added, .. } => Some((full, added.len())),
        _ => None,
    })
    .await;
    assert_eq!((full, added), (true, 0));

    // Status every 200 ms, naming the other node once they are linked, with nothing mined.
    let started = std::time::Instant::now();
    let mut stamps = Vec::new();
    while stamps.len() < 5 {
        let (at, peers, difficulty) = next_notice(&mut sub, "a status", |u| match u {
            Update::Status {
                at_ms,
                peers,
                difficulty,
                ..
            } => Some((at_ms, peers, difficulty)),
            _ => None,
        })
        .await;
        assert!(difficulty >= FLOOR, "mines at the floor or above");
        if peers.iter().any(|p| p.to_string() == b.id) {
            stamps.push(at);
        }
    }
    let gaps: Vec<u64> = stamps.windows(2).map(|w| w[1] - w[0]).collect();
    eprintln!("status every {gaps:?} ms, after {:?}", started.elapsed());
    assert!(
        gaps.iter().all(|g| (100..=2000).contains(g)),
        "about every 200 ms: {gaps:?}"
    );

    // A join enters the pool, then leaves it for the block that holds it.
    let record = join(&key(40), "pooled");
    let id = record.id();
    let mut shop = Client::connect(&a.addr).await;
    shop.send(Message::Record(record)).await;
    let waiting = next_notice(&mut sub, "the record entering the pool", |u| match u {
        Update::Pool { added, .. } => added
            .iter()
            .find(|p| p.record.id() == id)
            .map(|p| p.waiting),
        _ => None,
    })
    .await;
    assert!(!waiting, "a join is ready at once");
    let block = next_notice(&mut sub, "the record leaving the pool", |u| match u {
        Update::Pool { removed, .. } => removed.iter().find(|l| l.id == id).map(|l| l.block),
        _ => None,
    })
    .await
    .expect("it left for a block");
    let chain = fetch_chain(&a.addr).await.expect("the chain");
    let holder = chain
        .iter()
        .find(|b| b.records.iter().any(|r| r.id() == id))
        .expect("a block holds it");
    // Both nodes may mine the record at once (each mines what is pending, and the record was
    // relayed): the branch with more work wins, and the block the pool named may then leave
    // the best chain for the other's. Otherwise it is the block that holds it.
    let best: Vec<_> = chain.iter().map(|b| b.header.hash()).collect();
    assert!(
        holder.header.hash() == block || !best.contains(&block),
        "the pool named {block}, on the best chain, but {} holds the record",
        holder.header.hash()
    );
}

/// A node that takes a long chain in sync batches (which are not relayed) announces the tip
/// they led to, so its other peers catch up at once. Before, they stayed behind until a new
/// block was mined or their link's quiet-time `D` ([`node::session::timers::SYNC_INTERVAL`],
/// 30 s) asked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chain_taken_in_sync_batches_reaches_the_node_s_other_peers_at_once() {
    let (_tracker, _dir, a, b, mut sub) = two_nodes_and_a_subscriber().await;
    next_notice(&mut sub, "a status naming b", |u| match u {
        Update::Status { peers, .. } => peers.iter().any(|p| p.to_string() == b.id).then_some(()),
        _ => None,
    })
    .await;

    // A client (not a peer) hands node a the chain, as sync batches.
    let blocks = super::sync::chain_of(600);
    let want = tip(&blocks);
    let started = std::time::Instant::now();
    super::sync::hand_over(&a.addr, &blocks).await;
    // Well before the 30 s quiet-link `D` could have fetched it.
    wait_for(
        "node b to hold a's new chain",
        std::time::Duration::from_secs(15),
        || async {
            let chain = fetch_chain(&b.addr).await?;
            (tip(&chain) == want).then_some(())
        },
    )
    .await;
    eprintln!(
        "b caught up {:?} after the hand-over began",
        started.elapsed()
    );
}
