//! `S`: a subscriber gets the tip at once, then every block that enters the tree and every move
//! of the best tip, reorgs included.

use protocol::genesis;
use protocol::wire::{Blocks, Message, Update};
use testkit::*;

/// The next `U`, skipping anything else; fails the test on the end of the stream.
async fn next_update(client: &mut Client) -> Update {
    loop {
        match client.next().await {
            Some(Message::Update(update)) => return update,
            Some(_) => continue,
            None => panic!("the node closed the subscription"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_sees_the_tip_new_blocks_and_a_reorg_as_such() {
    let tracker = Tracker::start().await;
    let dir = tempfile::tempdir().unwrap();
    let node = NodeProc::start(&tracker.addr, &dir.path().join("a"));
    let mut sub = Client::connect(&node.addr).await;
    sub.send(Message::Subscribe).await;
    match next_update(&mut sub).await {
        Update::Tip { hash, height, .. } => {
            assert_eq!((hash, height), (genesis().header.hash(), 0));
        }
        other => panic!("expected the tip first, got {other:?}"),
    }

    // Two blocks at the floor from a peer: each arrives as a block, then a tip move.
    let light = mine_chain(&genesis(), 2, FLOOR, 1000);
    let mut peer = Client::connect(&node.addr).await;
    for block in &light {
        peer.send(Message::Block(block.clone())).await;
        match next_update(&mut sub).await {
            Update::Block { block: got, .. } => assert_eq!(&got, block),
            other => panic!("expected the block, got {other:?}"),
        }
        match next_update(&mut sub).await {
            Update::Tip {
                hash,
                disconnected,
                connected,
                ..
            } => {
                assert_eq!(hash, block.header.hash());
                assert!(disconnected.is_empty());
                assert_eq!(connected, vec![block.header.hash()]);
            }
            other => panic!("expected a tip move, got {other:?}"),
        }
    }

    // A heavier branch from genesis, sent as one sync segment: its blocks, then one reorg.
    let heavy = mine_chain(&genesis(), 2, FLOOR + 2, 2000);
    peer.send(Message::Blocks(Blocks {
        blocks: heavy.clone(),
        more: false,
    }))
    .await;
    for block in &heavy {
        match next_update(&mut sub).await {
            Update::Block { block: got, .. } => assert_eq!(&got, block),
            other => panic!("expected a block of the heavy branch, got {other:?}"),
        }
    }
    match next_update(&mut sub).await {
        Update::Tip {
            hash,
            height,
            disconnected,
            connected,
        } => {
            assert_eq!((hash, height), (heavy[1].header.hash(), 2));
            let gone: Vec<_> = light.iter().rev().map(|b| b.header.hash()).collect();
            assert_eq!(disconnected, gone, "the old tip first");
            let joined: Vec<_> = heavy.iter().map(|b| b.header.hash()).collect();
            assert_eq!(connected, joined);
        }
        other => panic!("expected the reorg, got {other:?}"),
    }
}
