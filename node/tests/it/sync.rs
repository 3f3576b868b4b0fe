//! Catching up: a node that starts late gets the whole chain, in segments of 500.

use protocol::wire::{Blocks, ErrorCode, Message};
use protocol::{Block, genesis};

use testkit::*;

/// `n` valid blocks on genesis, each with one record (a vote in its own poll).
pub fn chain_of(n: usize) -> Vec<Block> {
    chain_with(n, 1)
}

/// `n` valid blocks on genesis of `per_block` records each, from one shopper, `voter`.
pub fn chain_with(n: usize, per_block: usize) -> Vec<Block> {
    let k = key(42);
    let mut out: Vec<Block> = Vec::with_capacity(n);
    let mut parent = genesis();
    for i in 0..n {
        let records = (0..per_block)
            .map(|j| voter_record(&k, (i * per_block + j) as u64))
            .collect();
        let template = Block::template(
            &parent.header,
            records,
            k.account(),
            FLOOR,
            parent.header.timestamp + 1000,
        );
        parent = protocol::block::solve(template);
        out.push(parent.clone());
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
            packed: false,
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

/// Answers asked for by [`ask_then_write_copies`]: 24 chains of 500 blocks, about 8 MB, more
/// than the node's socket buffers hold.
const ASKS: usize = 24;

/// A node holding `blocks`, with its tracker and data dir.
async fn node_holding(blocks: &[Block]) -> (Tracker, tempfile::TempDir, NodeProc) {
    let tracker = Tracker::start().await;
    let dir = tempfile::tempdir().unwrap();
    let node = NodeProc::start(&tracker.addr, &dir.path().join("a"));
    hand_over(&node.addr, blocks).await;
    let want = tip(blocks);
    wait_for("the node to hold the chain", DEADLINE, || async {
        (tip(&fetch_chain(&node.addr).await?) == want).then_some(())
    })
    .await;
    (tracker, dir, node)
}

type Lines = tokio_util::codec::Framed<tokio::net::TcpStream, protocol::codec::LineCodec<Message>>;

/// A client of `addr` on 4 KiB socket buffers that asks for the chain [`ASKS`] times, then
/// writes `copies` copies of `blocks` back without reading; what the writing came to, and the
/// connection.
async fn ask_then_write_copies(
    addr: &str,
    blocks: &[Block],
    copies: usize,
) -> (Result<(), protocol::codec::WireError>, Lines) {
    use futures::SinkExt;
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    socket.set_send_buffer_size(4096).unwrap();
    let stream = socket.connect(addr.parse().unwrap()).await.unwrap();
    let mut lines = Lines::new(stream, protocol::codec::LineCodec::new());
    let ask = Message::GetBlocks(protocol::wire::GetBlocks::default());
    let writing = async {
        for _ in 0..ASKS {
            lines.feed(ask.clone()).await?;
        }
        for i in 0..copies {
            lines
                .feed(Message::Block(blocks[i % blocks.len()].clone()))
                .await?;
        }
        SinkExt::<Message>::flush(&mut lines).await
    };
    let wrote = tokio::time::timeout(DEADLINE, writing)
        .await
        .expect("the writes neither went through nor failed in time");
    (wrote, lines)
}

/// A connection whose two ends write at once is still read: the node reads on while its own
/// write waits. The client here asks for the chain again and again, then writes blocks back
/// (about 4 MB, more than its buffers hold) without reading; before, the node stopped reading
/// while its answers waited, the client's writes stopped too, and the node closed the link
/// after its send timeout (two nodes relaying big blocks to each other did the same).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_writing_while_the_node_writes_to_it_is_still_read() {
    use futures::StreamExt;
    let blocks = chain_of(600);
    let (_tracker, _dir, node) = node_holding(&blocks).await;
    let (wrote, mut lines) = ask_then_write_copies(&node.addr, &blocks, 6000).await;
    assert!(
        wrote.is_ok(),
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

/// The next variant: a client that never reads at all, and writes far more than the node reads
/// ahead (about 17 MB), is still closed after the node's send timeout, rather than held open
/// by the reading ahead; the node serves others meanwhile and after.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_reads_is_closed_however_much_it_writes() {
    let blocks = chain_of(600);
    let (_tracker, _dir, node) = node_holding(&blocks).await;
    let (wrote, _lines) = ask_then_write_copies(&node.addr, &blocks, 24_000).await;
    assert!(wrote.is_err(), "the node read on past its read-ahead bound");
    let chain = fetch_chain(&node.addr)
        .await
        .expect("the node still serves");
    assert_eq!(tip(&chain), tip(&blocks));
}

/// Three blocks, then one that replays the voter's second record (valid alone, refused by the
/// ledger: only the chain thread finds it), then two more.
fn chain_with_a_replay() -> Vec<Block> {
    let mut blocks = chain_of(3);
    let k = key(42);
    let parent = blocks.last().unwrap().clone();
    let replay = Block::template(
        &parent.header,
        vec![voter_record(&k, 1)],
        k.account(),
        FLOOR,
        parent.header.timestamp + 1000,
    );
    blocks.push(protocol::block::solve(replay));
    let after = mine_chain(blocks.last().unwrap(), 2, FLOOR, 1);
    blocks.extend(after);
    blocks
}

fn c_line(blocks: Vec<Block>) -> Message {
    Message::Blocks(Blocks {
        blocks,
        more: false,
        packed: false,
    })
}

/// Whether a new connection from `from` is refused as banned.
async fn is_banned(addr: &str, from: [u8; 4]) -> bool {
    let mut probe = Client::connect_from(addr, from.into()).await;
    matches!(probe.next().await, Some(Message::Error(e)) if e.code == ErrorCode::Banned)
}

/// The connection does not wait for the chain thread to attach a sync batch (it checks the next
/// one meanwhile), so what the chain thread alone finds wrong comes back later: the sender is
/// still told, banned and closed, and nothing after the bad block is taken.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sync_batch_the_chain_thread_refuses_still_closes_and_bans_its_sender() {
    let tracker = Tracker::start().await;
    let dir = tempfile::tempdir().unwrap();
    let node = NodeProc::start(&tracker.addr, &dir.path().join("a"));
    // From an address of its own: the ban is the sender's address's.
    let mut sender = Client::connect_from(&node.addr, [127, 0, 0, 2].into()).await;
    sender.send(c_line(chain_with_a_replay())).await;
    let told = tokio::time::timeout(DEADLINE, async {
        let mut told = None;
        while let Some(message) = sender.next().await {
            if let Message::Error(e) = message {
                told = Some(e.code);
            }
        }
        told
    })
    .await
    .expect("the sender was neither told nor closed");
    assert_eq!(told, Some(ErrorCode::InvalidBlock));
    assert!(is_banned(&node.addr, [127, 0, 0, 2]).await, "not banned");
    let chain = fetch_chain(&node.addr).await.unwrap();
    assert_eq!(chain.len(), 3, "blocks after the refused one were taken");
}

/// A sender that hangs up as soon as its batch is out is banned all the same, once the chain
/// thread has attached what it could.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sender_that_hangs_up_after_a_refused_batch_is_banned_all_the_same() {
    let tracker = Tracker::start().await;
    let dir = tempfile::tempdir().unwrap();
    let node = NodeProc::start(&tracker.addr, &dir.path().join("a"));
    let mut sender = Client::connect_from(&node.addr, [127, 0, 0, 3].into()).await;
    sender.send(c_line(chain_with_a_replay())).await;
    drop(sender);
    wait_for("the sender's address to be banned", DEADLINE, || async {
        is_banned(&node.addr, [127, 0, 0, 3]).await.then_some(())
    })
    .await;
    let chain = fetch_chain(&node.addr).await.unwrap();
    assert_eq!(chain.len(), 3, "blocks after the refused one were taken");
}
