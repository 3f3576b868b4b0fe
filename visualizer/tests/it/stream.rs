//! The websocket stream: a snapshot first, then a delta per new block, a reorg as such, the
//! ledger's changes, a fresh snapshot for a browser that reconnects, and the 200 ms budget.

use protocol::wire::{Blocks, Message};
use protocol::{Action, Record, genesis};
use testkit::*;
use visualizer::view::{Link, RecordSummary, ToBrowser};

use crate::http::get_details;
use crate::*;

/// Sends `blocks` to the node at `addr` as one sync segment, as a peer would.
pub async fn feed(addr: &str, blocks: &[protocol::Block]) {
    let mut peer = Client::connect(addr).await;
    peer.send(Message::Blocks(Blocks {
        blocks: blocks.to_vec(),
        more: false,
        packed: false,
    }))
    .await;
    let want = blocks.last().map(|b| b.header.hash());
    wait_for("the node to take the blocks", DEADLINE, || async {
        let chain = fetch_chain(addr).await?;
        chain
            .iter()
            .any(|b| Some(b.header.hash()) == want)
            .then_some(())
    })
    .await;
}

/// Waits until the page's node table shows `node` following.
async fn wait_following(page: &mut Page, node: &str) {
    page.wait_nodes("the node to be followed", |nodes| {
        nodes
            .iter()
            .any(|n| n.id.to_string() == node && n.link == Link::Following)
    })
    .await;
}

/// A tracker, a node, a visualizer, and a page that took its snapshot and sees the node
/// followed.
async fn watched() -> (OneNode, Visualizer, Page) {
    let net = OneNode::start().await;
    let vis = Visualizer::start(&net.tracker.addr).await;
    let mut page = Page::connect(&vis.addr).await;
    page.snapshot().await;
    wait_following(&mut page, &net.node.id).await;
    (net, vis, page)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_gets_a_snapshot_then_a_delta_per_block_and_a_reorg_as_such() {
    let net = OneNode::start().await;
    let node = &net.node;
    // Blocks the node has before the visualizer starts: it pages them in with `D`.
    let early = mine_chain(&genesis(), 2, FLOOR, 1000);
    feed(&node.addr, &early).await;

    let vis = Visualizer::start(&net.tracker.addr).await;
    let mut page = Page::connect(&vis.addr).await;
    let snapshot = page.snapshot().await;
    assert_eq!(snapshot.blocks[0].height, 0, "genesis comes first");
    let mut known: Vec<_> = snapshot.blocks.iter().map(|b| b.hash).collect();
    let mut tip = snapshot.tip;
    let early_tip = early[1].header.hash();
    while tip != early_tip {
        match page.next().await.expect("the stream goes on") {
            ToBrowser::Blocks { blocks } => known.extend(blocks.iter().map(|b| b.hash)),
            ToBrowser::Tip(t) => tip = t.hash,
            _ => {}
        }
    }
    assert!(hashes(&early).iter().all(|h| known.contains(h)));

    // Each new block: exactly one `blocks` delta carrying it, then the tip moving onto it.
    let light = mine_chain(&early[1], 3, FLOOR, 1000);
    let mut peer = Client::connect(&node.addr).await;
    for block in &light {
        let hash = block.header.hash();
        peer.send(Message::Block(block.clone())).await;
        let mut seen = 0;
        let tip = page
            .wait("the tip to move onto the new block", |m| {
                seen += blocks_of(m).iter().filter(|b| b.hash == hash).count();
                match m {
                    ToBrowser::Tip(t) if t.hash == hash => Some(t.clone()),
                    _ => None,
                }
            })
            .await;
        assert_eq!(
            seen, 1,
            "the block arrives once, before the tip moves onto it"
        );
        assert!(tip.disconnected.is_empty());
        assert_eq!(tip.connected, vec![hash]);
        assert_eq!(tip.height, block.header.height);
    }

    // A heavier branch from early[1]: the three light blocks leave the best chain at once.
    let heavy = mine_chain(&early[1], 2, FLOOR + 3, 2000);
    feed(&node.addr, &heavy).await;
    let mut reorg = None;
    let mut at_tip = false;
    // The tip delta comes first, then the ledger delta of the same move.
    let totals = page
        .wait("the heavy branch's tip and its totals", |m| match m {
            ToBrowser::Tip(t) => {
                if !t.disconnected.is_empty() {
                    reorg = Some(t.clone());
                }
                at_tip = t.hash == heavy[1].header.hash();
                None
            }
            ToBrowser::Ledger(l) if at_tip => Some(l.totals),
            _ => None,
        })
        .await;
    let reorg = reorg.expect("a tip delta with disconnected blocks");
    let gone: Vec<_> = hashes(&light).into_iter().rev().collect();
    assert_eq!(reorg.disconnected, gone, "depth 3, the old tip first");
    assert_eq!(reorg.connected[0], heavy[0].header.hash());
    assert_eq!((totals.blocks, totals.side_blocks), (4, 3));
    vis.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reconnecting_browser_gets_a_fresh_snapshot_with_what_it_missed() {
    let net = OneNode::start().await;
    let node = &net.node;
    let vis = Visualizer::start(&net.tracker.addr).await;
    let mut first = Page::connect(&vis.addr).await;
    let before = first.snapshot().await;
    wait_following(&mut first, &node.id).await;
    drop(first);

    let missed = mine_chain(&genesis(), 2, FLOOR, 1000);
    feed(&node.addr, &missed).await;
    let last = missed[1].header.hash();
    wait_for(
        "the visualizer to hold the new blocks",
        DEADLINE,
        || async { get_details(&vis.addr, &last.to_string()).await },
    )
    .await;

    let mut again = Page::connect(&vis.addr).await;
    let snapshot = again.snapshot().await;
    assert_eq!(before.height, 0);
    assert_eq!((snapshot.tip, snapshot.height), (last, 2));
    let held: Vec<_> = snapshot.blocks.iter().map(|b| b.hash).collect();
    assert!(hashes(&missed).iter().all(|h| held.contains(h)));
    assert_eq!(snapshot.ledger.totals.blocks, 2);
    vis.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_show_up_in_summaries_the_ledger_and_the_tally() {
    let (net, vis, mut page) = watched().await;
    let node = &net.node;

    let (alice, bob) = (key(1), key(2));
    let mut shop = Client::connect(&node.addr).await;
    shop.submit_and_wait(join(&alice, "alice")).await;
    shop.submit_and_wait(join(&bob, "bob")).await;
    let bought = shop.submit_and_wait(buy(&alice, 1, "capuchin")).await;
    let sent = Record::sign(
        &alice,
        2,
        Action::Transfer {
            to: bob.account(),
            amount: 100,
        },
    );
    shop.submit_and_wait(sent).await;
    let vote = Record::sign(
        &bob,
        1,
        Action::Vote {
            poll: "best monkey".into(),
            choice: "capuchin".into(),
        },
    );
    let last = shop.submit_and_wait(vote).await;

    let mut summaries = Vec::new();
    let mut at_tip = false;
    let ledger = page
        .wait(
            "the vote's block on the best chain, and its ledger delta",
            |m| {
                summaries.extend(blocks_of(m).iter().cloned());
                match m {
                    ToBrowser::Tip(t) => {
                        at_tip = t.connected.contains(&last.header.hash());
                        None
                    }
                    ToBrowser::Ledger(l) if at_tip => Some(l.clone()),
                    _ => None,
                }
            },
        )
        .await;
    let described: Vec<RecordSummary> = summaries.iter().flat_map(|b| b.records.clone()).collect();
    assert!(described.contains(&RecordSummary::Join {
        who: "alice".into()
    }));
    assert!(described.contains(&RecordSummary::Purchase {
        who: "alice".into(),
        monkey: "capuchin".into(),
        price: 200,
    }));
    assert!(described.contains(&RecordSummary::Transfer {
        who: "alice".into(),
        to: "bob".into(),
        amount: 100,
    }));
    assert!(described.contains(&RecordSummary::Vote {
        who: "bob".into(),
        poll: "best monkey".into(),
        choice: "capuchin".into(),
    }));
    let bought_summary = summaries
        .iter()
        .find(|b| b.hash == bought.header.hash())
        .expect("the purchase's block was summarised");
    assert_eq!(bought_summary.nonce, bought.header.nonce.to_string());

    // The vote's ledger delta carries the poll it changed; a fresh snapshot carries everything.
    assert_eq!(ledger.polls[0].poll, "best monkey");
    assert_eq!(ledger.polls[0].tally[0].votes, 1);
    let snapshot = Page::connect(&vis.addr).await.snapshot().await;
    let totals = snapshot.ledger.totals;
    assert_eq!(
        (totals.shoppers, totals.monkeys_sold, totals.records),
        (2, 1, 5)
    );
    let alice_row = snapshot.ledger.shopper("alice").expect("alice's row");
    assert_eq!(alice_row.balance, 1000 - 200 - 100);
    assert_eq!(alice_row.cage.get("capuchin"), Some(&1));
    let bob_row = snapshot.ledger.shopper("bob");
    assert_eq!(bob_row.map(|r| r.balance), Some(1100));
    vis.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_block_reaches_the_browser_within_200_ms_of_reaching_the_node() {
    let (net, vis, mut page) = watched().await;
    let node = &net.node;

    let blocks = mine_chain(&genesis(), 5, FLOOR, 1000);
    let mut peer = Client::connect(&node.addr).await;
    let mut latencies = Vec::new();
    for block in &blocks {
        let hash = block.header.hash();
        peer.send(Message::Block(block.clone())).await;
        let arrived = page
            .wait("the block", |m| {
                blocks_of(m).iter().any(|b| b.hash == hash).then(now_ms)
            })
            .await;
        let details = get_details(&vis.addr, &hash.to_string())
            .await
            .expect("the block's details");
        let at_node = details
            .seen
            .first()
            .expect("the node's arrival")
            .received_ms;
        latencies.push(arrived.saturating_sub(at_node));
    }
    latencies.sort_unstable();
    eprintln!("node to browser, ms: {latencies:?}");
    // The median, so one hiccup of a loaded machine does not decide; typically a few ms.
    assert!(
        latencies[2] < 200,
        "median {} ms: {latencies:?}",
        latencies[2]
    );
    vis.stop().await;
}
