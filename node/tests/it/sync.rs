//! Catching up: a node that starts late gets the whole chain, in segments of 500.

use protocol::wire::{Blocks, Message};
use protocol::{Block, genesis};

use testkit::*;

/// `n` valid blocks on genesis, each with one record (a vote in its own poll).
pub fn chain_of(n: usize) -> Vec<Block> {
    let k = key(42);
    let mut out: Vec<Block> = Vec::with_capacity(n);
    let mut parent = genesis();
    for i in 0..n {
        let record = voter_record(&k, i as u64);
        let template = Block::template(
            &parent.header,
            vec![record],
            k.account(),
            FLOOR,
            parent.header.timestamp + 1000,
        );
        let block = protocol::block::solve(template);
        parent = block.clone();
        out.push(block);
    }
    out
}

/// Hands `blocks` to the node at `addr` the way a peer would, 500 a line.
pub async fn hand_over(addr: &str, blocks: &[Block]) {
    let mut peer = Client::connect(addr).await;
    for segment in blocks.chunks(500) {
        peer.send(Message::Blocks(Blocks {
            blocks: segment.to_vec(),
            more: false,
        }))
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_started_after_1000_blocks_catches_up() {
    let blocks = chain_of(1000);
    let tracker = Tracker::start().await;
    let dir = tempfile::tempdir().unwrap();
    let a = NodeProc::start(&tracker.addr, &dir.path().join("a"));
    hand_over(&a.addr, &blocks).await;
    let want = blocks.last().unwrap().header.hash();
    wait_for("node a to hold 1000 blocks", DEADLINE, || async {
        let chain = fetch_chain(&a.addr).await?;
        (tip(&chain) == want).then_some(())
    })
    .await;

    let b = NodeProc::start(&tracker.addr, &dir.path().join("b"));
    wait_for("node b to catch up", DEADLINE, || async {
        let chain = fetch_chain(&b.addr).await?;
        (chain.len() == 1000 && tip(&chain) == want).then_some(())
    })
    .await;
}
