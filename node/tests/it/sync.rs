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

/// A connection whose two ends write at once is still read: the node reads on while its own
/// write waits. The client here asks for the chain again and again, then writes blocks back
/// without reading, on a socket with small buffers; before, the node stopped reading while its
/// answers waited, the client's writes stopped too, and the node closed the link after its send
/// timeout (two nodes relaying big blocks to each other did the same).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_writing_while_the_node_writes_to_it_is_still_read() {
    use futures::{SinkExt, StreamExt};
    use protocol::codec::LineCodec;
    use protocol::wire::GetBlocks;
    use tokio_util::codec::Framed;

    const ASKS: usize = 24;
    let blocks = chain_of(600);
    let tracker = Tracker::start().await;
    let dir = tempfile::tempdir().unwrap();
    let node = NodeProc::start(&tracker.addr, &dir.path().join("a"));
    hand_over(&node.addr, &blocks).await;
    let want = tip(&blocks);
    wait_for("the node to hold the chain", DEADLINE, || async {
        (tip(&fetch_chain(&node.addr).await?) == want).then_some(())
    })
    .await;

    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    socket.set_send_buffer_size(4096).unwrap();
    let stream = socket.connect(node.addr.parse().unwrap()).await.unwrap();
    let (mut sink, mut lines) = Framed::new(stream, LineCodec::<Message>::new()).split();
    // About 8 MB of answers (500 blocks each), more than the node's socket buffers hold...
    let ask = Message::GetBlocks(GetBlocks {
        locator: Vec::new(),
    });
    // ...and about 4 MB of blocks back (copies the node has), more than ours hold.
    let copies: Vec<Message> = (0..6000)
        .map(|i| Message::Block(blocks[i % blocks.len()].clone()))
        .collect();
    let writing = async {
        for _ in 0..ASKS {
            sink.feed(ask.clone()).await?;
        }
        for copy in copies {
            sink.feed(copy).await?;
        }
        sink.flush().await
    };
    let wrote = tokio::time::timeout(DEADLINE, writing).await;
    assert!(
        matches!(wrote, Ok(Ok(()))),
        "the node stopped reading while it wrote: {wrote:?}"
    );
    let mut answers = 0;
    while answers < ASKS {
        let line = tokio::time::timeout(DEADLINE, lines.next()).await;
        match line {
            Ok(Some(Ok(Message::Blocks(b)))) if b.blocks.len() == 500 => answers += 1,
            Ok(Some(Ok(Message::Error(e)))) => panic!("the node refused: {e:?}"),
            Ok(Some(Ok(_))) => {}
            other => panic!("after {answers} answers: {other:?}"),
        }
    }
}
