//! Long chains for the sync, restart and memory scenarios, built once per run: one shopper
//! joins, then votes in a new poll in every block, so every block carries a signed record.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use protocol::block::GENESIS_TIMESTAMP;
use protocol::params::MAX_BLOCKS_PER_MESSAGE;
use protocol::pow::{Midstate, state_meets};
use protocol::wire::{Blocks, Message};
use protocol::{Block, Keypair, Record, genesis};
use testkit::NodeProc;

use crate::net::Peer;
use crate::watch::Watch;

/// The floor these chains are mined at.
pub const FLOOR: u32 = 8;

/// Chains built so far, by length.
#[derive(Default)]
pub struct Chains {
    built: HashMap<usize, Arc<Vec<Block>>>,
}

impl Chains {
    /// A valid chain of `n` blocks on genesis.
    pub fn get(&mut self, n: usize) -> Arc<Vec<Block>> {
        Arc::clone(self.built.entry(n).or_insert_with(|| Arc::new(build(n))))
    }
}

/// Signs the records on every core, then mines the blocks in order.
fn build(n: usize) -> Vec<Block> {
    let key = Keypair::from_seed([42; 32]);
    let threads = std::thread::available_parallelism().map_or(1, |c| c.get());
    let per = n.div_ceil(threads).max(1);
    let records: Vec<Record> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let key = &key;
                s.spawn(move || {
                    (t * per..((t + 1) * per).min(n))
                        .map(|i| testkit::voter_record(key, i as u64))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap_or_default())
            .collect()
    });
    let mut out: Vec<Block> = Vec::with_capacity(n);
    let mut parent = genesis();
    for (i, record) in records.into_iter().enumerate() {
        let timestamp = GENESIS_TIMESTAMP + 1000 * (i as u64 + 1);
        let mut block = Block::template(
            &parent.header,
            vec![record],
            key.account(),
            FLOOR,
            timestamp,
        );
        let midstate = Midstate::new(&block.header);
        let nonce = (0u64..)
            .find(|nonce| state_meets(&midstate.state_for(*nonce), FLOOR))
            .unwrap_or_default();
        block.header.nonce = nonce;
        parent = block.clone();
        out.push(block);
    }
    out
}

/// Hands `chain` to `node` the way a syncing peer does, and waits until it holds it all.
pub async fn seed(node: &NodeProc, chain: &[Block]) -> anyhow::Result<()> {
    let watch = Watch::start(std::slice::from_ref(&node.addr)).await?;
    let mut peer = Peer::connect(&node.addr).await?;
    for segment in chain.chunks(MAX_BLOCKS_PER_MESSAGE) {
        peer.send(Message::Blocks(Blocks {
            blocks: segment.to_vec(),
            more: false,
        }))
        .await?;
    }
    let n = chain.len() as u64;
    let limit = Duration::from_secs(30) + Duration::from_millis(chain.len() as u64);
    anyhow::ensure!(
        watch.until(limit, |s| s.heights[0] >= n).await,
        "the node did not take the whole chain of {n} blocks"
    );
    Ok(())
}
