//! Big side blocks: many siblings of the node's lowest blocks, mined at the floor, each carrying
//! the same 1,000 signed records. A side branch's records are only checked against the ledger
//! if it gets the most work, so these cost the attacker proof of work at the floor and one set
//! of signatures; a node that capped side blocks by count only held gigabytes of them, in
//! memory and on disk. The node must bound what side branches hold in bytes, drop what it
//! prunes from its store, and go on mining honest records.

use std::sync::atomic::AtomicBool;

use protocol::params::MAX_BLOCK_RECORDS;
use protocol::pow::mine;
use protocol::wire::Message;
use protocol::{Action, Block, Keypair, Record};
use tokio::sync::mpsc;

use crate::conn::{RawConn, outcome_of};
use crate::{Outcome, Target};

/// Waves of siblings: of block 1, then of block 2, and so on. Each wave has more work than the
/// one before, so a node that keeps a bounded amount prunes the older wave for the newer:
/// whatever it prunes must leave its store too.
pub const WAVES: usize = 4;

/// Blocks mined ahead of the connection that sends them.
const MINED_AHEAD: usize = 4;

/// `target.count` siblings in [`WAVES`] waves, sent as `B` lines on one connection.
pub async fn big_side_blocks(target: &Target) -> anyhow::Result<Outcome> {
    let chain = RawConn::open(target).await?.chain().await?;
    // Parents: genesis, block 1, ...: never the tip, so none of this is a new best chain.
    let waves = WAVES.min(chain.len().saturating_sub(1)).max(1);
    let parents: Vec<Block> = chain[..waves].to_vec();
    let (count, floor) = (target.count, target.floor);
    let (blocks, mut mined) = mpsc::channel(MINED_AHEAD);
    // Signing and mining are CPU work: on a thread of their own, a few blocks ahead.
    let miner = std::thread::spawn(move || {
        let key = Keypair::from_seed(rand::random());
        let records: Vec<Record> = (1..=u64::from(MAX_BLOCK_RECORDS))
            .map(|seq| {
                let buy = Action::Purchase {
                    monkey: "marmoset".into(),
                };
                Record::sign(&key, seq, buy)
            })
            .collect();
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        for i in 0..count {
            let parent = &parents[i * waves / count.max(1)];
            // A distinct timestamp per sibling, so each is a distinct block.
            let timestamp = parent.header.timestamp + 1 + i as u64;
            let template = Block::template(
                &parent.header,
                records.clone(),
                key.account(),
                floor,
                timestamp,
            );
            let Some(header) =
                mine(&template.header, threads, &AtomicBool::new(false), None).header
            else {
                continue;
            };
            if blocks.blocking_send(Block { header, ..template }).is_err() {
                return;
            }
        }
    });
    let mut conn = RawConn::open(target).await?;
    let mut sent = 0;
    while let Some(block) = mined.recv().await {
        if !conn.send(&Message::Block(block)).await {
            break;
        }
        sent += 1;
    }
    drop(mined);
    let _ = tokio::task::spawn_blocking(move || miner.join()).await;
    Ok(outcome_of(sent, conn.probe().await))
}
