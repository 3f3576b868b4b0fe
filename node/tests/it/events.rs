//! A connection takes the node's events before its next line: an event keeps its blocks in the
//! node's channel until every connection has taken it, so a connection that always read its
//! next line first, while a peer flooded it with sync batches, held every batch's blocks there
//! (the whole chain, during a sync).

use protocol::codec::{encode_line, parse_line};
use protocol::wire::{Blocks, ErrorCode, Message, Update};
use testkit::*;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

use super::sync::{chain_of, chain_with, hand_over};

/// More blocks than the channel holds events (two per block sent alone: the block, the tip).
const FLOOD: usize = node::actor::EVENTS / 2 + 200;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_flooding_blocks_takes_its_events_between_them_and_never_lags() {
    let blocks = chain_of(FLOOD);
    let tracker = Tracker::start().await;
    let dir = tempfile::tempdir().unwrap();
    let node = NodeProc::start(&tracker.addr, &dir.path().join("a"));
    let stream = tokio::net::TcpStream::connect(&node.addr).await.unwrap();
    let (read, mut write) = stream.into_split();
    // Every line in one write: the node always has its next line at hand.
    let mut flood = encode_line(&Message::Subscribe).unwrap();
    for block in &blocks {
        let line = Message::Blocks(Blocks {
            blocks: vec![block.clone()],
            more: false,
            packed: false,
        });
        flood.push_str(&encode_line(&line).unwrap());
    }
    let sending = tokio::spawn(async move {
        write.write_all(flood.as_bytes()).await.unwrap();
        write
    });
    let mut lines = BufReader::new(read).lines();
    let want = FLOOD as u64;
    let outcome = tokio::time::timeout(DEADLINE * 2, async {
        while let Some(line) = lines.next_line().await.unwrap() {
            match parse_line::<Message>(line.as_bytes()) {
                Ok(Message::Update(Update::Tip { height, .. })) if height == want => {
                    return Ok(());
                }
                Ok(Message::Error(e)) if e.code == ErrorCode::Lagged => return Err("lagged"),
                _ => {}
            }
        }
        Err("closed")
    })
    .await;
    let _write = sending.await.unwrap();
    assert_eq!(
        outcome,
        Ok(Ok(())),
        "the subscriber that brought the blocks fell behind on its own events"
    );
}

/// The node's events are bounded in bytes too, in this test far below their count: a
/// subscriber that stops reading is dropped for falling behind once the events it has not taken
/// hold more, and the node serves on.
const BYTE_BUDGET: usize = 256 * 1024;
/// Blocks of [`RECORDS_PER_BLOCK`] records: their `U` lines (megabytes) fill the silent
/// subscriber's socket buffers, and their events pass [`BYTE_BUDGET`] many times over, while
/// their count stays well under the channel's.
const WIDE_BLOCKS: usize = 600;
const RECORDS_PER_BLOCK: usize = 40;
const _: () = assert!(
    2 * WIDE_BLOCKS < node::actor::EVENTS,
    "the count alone would drop the subscriber"
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_that_stops_reading_falls_behind_by_bytes_and_the_node_serves_on() {
    let blocks = chain_with(WIDE_BLOCKS, RECORDS_PER_BLOCK);
    let tracker = Tracker::start().await;
    let dir = tempfile::tempdir().unwrap();
    let budget = BYTE_BUDGET.to_string();
    let node = NodeProc::start_with(
        &tracker.addr,
        &dir.path().join("a"),
        &["--max-event-bytes", &budget, "--report-interval-ms", "100"],
    );
    // The silent subscriber: a small receive buffer, and nothing read until the end.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut silent = socket.connect(node.addr.parse().unwrap()).await.unwrap();
    silent
        .write_all(encode_line(&Message::Subscribe).unwrap().as_bytes())
        .await
        .unwrap();
    hand_over(&node.addr, &blocks).await;
    let want = WIDE_BLOCKS as u64;
    // Its report to the tracker says when: asking the node for its chain would add megabytes of
    // work while the silent subscriber's write waits, bounded by the node's send timeout.
    wait_for("the node to take every block", DEADLINE, || async {
        let topology = tracker.topology().await?;
        let me = topology.nodes.iter().find(|n| n.addr == node.addr)?;
        (me.tip_height == want).then_some(())
    })
    .await;

    let mut lines = BufReader::new(silent).lines();
    let heard = tokio::time::timeout(DEADLINE, async {
        let mut highest = 0;
        while let Ok(Some(line)) = lines.next_line().await {
            match parse_line::<Message>(line.as_bytes()) {
                Ok(Message::Update(Update::Tip { height, .. })) => highest = height,
                Ok(Message::Error(e)) => return (highest, Some(e.code)),
                _ => {}
            }
            if highest == want {
                break;
            }
        }
        (highest, None)
    })
    .await
    .expect("the silent subscriber was neither closed nor told all");
    assert_eq!(
        heard,
        (heard.0, Some(ErrorCode::Lagged)),
        "the silent subscriber was not told it fell behind"
    );
    assert!(heard.0 < want, "the silent subscriber heard every block");
    let chain = fetch_chain(&node.addr).await.expect("the node serves on");
    assert_eq!(chain.len() as u64, want);
}
