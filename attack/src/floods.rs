//! Floods: orphans, idle connections, duplicates, and locators that are too long or name
//! nothing.

use std::time::Duration;

use protocol::Keypair;
use protocol::hash::Hash256;
use protocol::wire::{GetBlocks, Message};
use protocol::{Block, BlockHash};

use crate::conn::{RawConn, outcome_of, send_and_probe, tip_of};
use crate::{ANSWER_TIMEOUT, Outcome, Target};

/// How long idle connections are held open.
const IDLE_HOLD: Duration = Duration::from_secs(3);

/// `target.count` valid blocks whose parents are random hashes nobody has. An orphan is not
/// proof of bad faith (the sender may just be ahead), so the node must keep them in its capped
/// buffer, ask for the gap, and not punish the sender.
pub async fn orphans(target: &Target) -> anyhow::Result<Outcome> {
    let key = Keypair::from_seed(rand::random());
    let mut conn = RawConn::open(target).await?;
    let mut sent = 0;
    for _ in 0..target.count {
        let mut parent = protocol::genesis();
        parent.header.height = rand::random::<u32>() as u64;
        parent.header.nonce = rand::random();
        let template = Block::template(&parent.header, Vec::new(), key.account(), target.floor, 0);
        let mut block = template;
        block.header.timestamp = protocol::genesis().header.timestamp + 1;
        let header = protocol::pow::mine(
            &block.header,
            1,
            &std::sync::atomic::AtomicBool::new(false),
            None,
        )
        .header;
        let Some(header) = header else { continue };
        block.header = header;
        if !conn.feed(&Message::Block(block)).await {
            break;
        }
        sent += 1;
    }
    conn.flush().await;
    Ok(outcome_of(sent, conn.probe().await))
}

/// `target.count` connections that say nothing, held for a few seconds. Reports how many the
/// node took and how many it turned away at once.
pub async fn idle_connections(target: &Target) -> anyhow::Result<Outcome> {
    let mut held = Vec::new();
    let mut refused = 0;
    for _ in 0..target.count {
        match RawConn::open(target).await {
            Ok(conn) => held.push(conn),
            Err(_) => refused += 1,
        }
    }
    // Past its share, an address loses its own oldest connections (`E evicted`); a banned one
    // is told `banned` at once.
    let mut turned_away = 0;
    for conn in &mut held {
        if let Ok(Some(_)) = tokio::time::timeout(Duration::from_millis(50), conn.next_raw()).await
        {
            turned_away += 1;
        }
    }
    tokio::time::sleep(IDLE_HOLD).await;
    let open = held.len() - turned_away;
    drop(held);
    Ok(Outcome {
        sent: target.count,
        note: format!(
            "{open} idle connections held open for {} s, {turned_away} turned away, {refused} not accepted",
            IDLE_HOLD.as_secs()
        ),
        ..Outcome::default()
    })
}

/// The node's own tip block and a record already in its chain, `target.count` times each, as
/// fast as the node reads them.
pub async fn duplicates(target: &Target) -> anyhow::Result<Outcome> {
    let chain = RawConn::open(target).await?.chain().await?;
    let tip = tip_of(&chain).clone();
    let record = chain
        .iter()
        .rev()
        .flat_map(|b| b.records.iter())
        .next()
        .cloned();
    let mut conn = RawConn::open(target).await?;
    let mut sent = 0;
    for i in 0..target.count {
        let message = match (&record, i % 2) {
            (Some(record), 1) => Message::Record(record.clone()),
            _ => Message::Block(tip.clone()),
        };
        if !conn.feed(&message).await {
            break;
        }
        sent += 1;
        if i % 256 == 255 && !conn.flush().await {
            break;
        }
    }
    conn.flush().await;
    // The node answers each replayed record (`K mined`, `B`); the probe reads past them.
    let probe = tokio::time::timeout(ANSWER_TIMEOUT * 6, conn.probe()).await;
    Ok(outcome_of(sent, probe.unwrap_or_default()))
}

/// A `D` whose locator is 10,000 hashes long (`huge`), or 64 hashes that name no block.
pub async fn locator(target: &Target, huge: bool) -> anyhow::Result<Outcome> {
    let count = if huge { 10_000 } else { 64 };
    let locator: Vec<BlockHash> = (0..count).map(|_| Hash256(rand::random())).collect();
    send_and_probe(
        target,
        &[Message::GetBlocks(GetBlocks::json_after(locator))],
    )
    .await
}
