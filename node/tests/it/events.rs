//! A connection takes the node's events before its next line: an event keeps its blocks in the
//! node's channel until every connection has taken it, so a connection that always read its
//! next line first, while a peer flooded it with sync batches, held every batch's blocks there
//! (the whole chain, during a sync).

use protocol::codec::{encode_line, parse_line};
use protocol::wire::{Blocks, ErrorCode, Message, Update};
use testkit::*;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

use super::sync::chain_of;

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
