//! Long chains for the sync, restart, memory and shop scenarios: built once per machine and kept
//! in the disk cache ([`crate::chain_cache`]), then once per run in memory.
//!
//! Two kinds. [`Kind::Shoppers`], the sync, restart and memory scenarios' chain: 1,000 shoppers
//! join, then every block carries one signed purchase or transfer among them
//! ([`testkit::shopper_plan`]), valid under the ledger's rules for ever with a ledger of the
//! same size at any length. One record per block, like the chain it replaces (one shopper
//! voting in a new poll in every block, whose ledger grew a poll per block), so the sync and
//! restart figures of the two compare block for block. [`Kind::Empty`]: blocks without records,
//! the shop scenario's chain, as in the first measurement of the shop.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use protocol::block::GENESIS_TIMESTAMP;
use protocol::params::MAX_BLOCKS_PER_MESSAGE;
use protocol::wire::{Blocks, Message};
use protocol::{Block, Keypair, Record, genesis};
use testkit::{NodeProc, SHOPPERS, shopper_key, shopper_miner, shopper_record};

use crate::chain_cache;
use crate::net::Peer;
use crate::watch::Watch;

/// The floor the shoppers' chains are mined at.
pub const FLOOR: u32 = 8;
/// Milliseconds between two blocks' timestamps: a million blocks end 11.6 days after genesis,
/// long before today.
const SPACING_MS: u64 = 1000;

/// What a chain's blocks carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// 1,000 shoppers' joins, then one purchase or transfer among them per block.
    Shoppers,
    /// No records.
    Empty,
}

impl Kind {
    /// The name in the cache's file names; a change to what a kind builds gets a new one.
    fn name(self) -> &'static str {
        match self {
            Kind::Shoppers => "shoppers-v1",
            Kind::Empty => "empty-v1",
        }
    }
}

/// Chains built or loaded so far in this run.
#[derive(Default)]
pub struct Chains {
    built: HashMap<(Kind, u32, usize), Arc<Vec<Block>>>,
}

impl Chains {
    /// The shoppers' chain of `n` blocks at [`FLOOR`].
    pub fn get(&mut self, n: usize) -> Arc<Vec<Block>> {
        self.kind(Kind::Shoppers, FLOOR, n)
    }

    /// A valid chain of `kind` of `n` blocks on genesis at `floor`: from memory, else from the
    /// disk cache, else built (and then cached). A cache file that fails its checks is named,
    /// deleted and rebuilt.
    pub fn kind(&mut self, kind: Kind, floor: u32, n: usize) -> Arc<Vec<Block>> {
        let chain = self
            .built
            .entry((kind, floor, n))
            .or_insert_with(|| Arc::new(load_or_build(kind, floor, n)));
        Arc::clone(chain)
    }
}

fn load_or_build(kind: Kind, floor: u32, n: usize) -> Vec<Block> {
    let dir = chain_cache::dir();
    let name = format!("{} chain of {n} blocks at {floor} bits", kind.name());
    if let Some(file) = chain_cache::find(&dir, kind.name(), floor, n) {
        let started = Instant::now();
        match chain_cache::load(&file, floor, n) {
            Ok(chain) => {
                println!(
                    "  {name}: read from {} in {:.1} s",
                    file.display(),
                    started.elapsed().as_secs_f64()
                );
                return chain;
            }
            Err(e) => {
                println!(
                    "  {name}: {} is damaged ({e:#}); rebuilding",
                    file.display()
                );
                if let Err(e) = chain_cache::remove(&file) {
                    println!("  cannot delete {}: {e:#}", file.display());
                }
            }
        }
    }
    let started = Instant::now();
    let chain = build(kind, floor, n);
    let took = started.elapsed().as_secs_f64();
    let file = chain_cache::path(&dir, kind.name(), floor, n);
    match chain_cache::store(&file, &chain) {
        Ok(size) => println!(
            "  {name}: built in {took:.1} s, cached in {} ({:.0} MB)",
            file.display(),
            size as f64 / 1e6
        ),
        Err(e) => println!(
            "  {name}: built in {took:.1} s; not cached in {}: {e:#}",
            file.display()
        ),
    }
    chain
}

/// Signs the records on every core, then mines the blocks in order.
fn build(kind: Kind, floor: u32, n: usize) -> Vec<Block> {
    let keys: Vec<Keypair> = match kind {
        Kind::Shoppers => (0..SHOPPERS).map(shopper_key).collect(),
        Kind::Empty => vec![testkit::key(7)],
    };
    let records: Vec<Option<Record>> = match kind {
        Kind::Shoppers => sign_all(&keys, n),
        Kind::Empty => vec![None; n],
    };
    let mut out: Vec<Block> = Vec::with_capacity(n);
    let mut parent = genesis().header;
    for (i, record) in records.into_iter().enumerate() {
        let height = i as u64 + 1;
        let miner = match kind {
            Kind::Shoppers => &keys[shopper_miner(height) as usize],
            Kind::Empty => &keys[0],
        };
        let timestamp = GENESIS_TIMESTAMP + SPACING_MS * height;
        let records = record.into_iter().collect();
        let template = Block::template(&parent, records, miner.account(), floor, timestamp);
        let block = testkit::solve_here(template);
        parent = block.header.clone();
        out.push(block);
    }
    out
}

/// The shoppers' records of blocks 1 to `n`, signed on every core.
fn sign_all(keys: &[Keypair], n: usize) -> Vec<Option<Record>> {
    let threads = std::thread::available_parallelism().map_or(1, |c| c.get());
    let per = n.div_ceil(threads).max(1);
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                s.spawn(move || {
                    (t * per..((t + 1) * per).min(n))
                        .map(|i| Some(shopper_record(keys, i as u64 + 1)))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap_or_default())
            .collect()
    })
}

/// Hands `chain` to `node` the way a syncing peer does, and waits until it holds it all.
pub async fn seed(node: &NodeProc, chain: &[Block]) -> anyhow::Result<()> {
    let watch = Watch::tips(std::slice::from_ref(&node.addr)).await?;
    let mut peer = Peer::connect(&node.addr).await?;
    for segment in chain.chunks(MAX_BLOCKS_PER_MESSAGE) {
        peer.send(Message::Blocks(Blocks {
            blocks: segment.to_vec(),
            more: false,
            packed: false,
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

/// How long a node that took a chain of `n` blocks may take to stop: it finishes its queue of
/// store writes first, which at a million blocks takes more than the tests' 10 s.
pub fn stop_limit(n: usize) -> Duration {
    Duration::from_secs(10) + Duration::from_micros(100 * n as u64)
}

/// Fails unless `node` (restarted on its store) holds all `n` blocks: a figure measured on a
/// node that lost part of the chain would measure less than it says.
pub async fn ensure_holds(node: &NodeProc, n: usize) -> anyhow::Result<()> {
    let watch = Watch::tips(std::slice::from_ref(&node.addr)).await?;
    let n = n as u64;
    anyhow::ensure!(
        watch
            .until(Duration::from_secs(30), |s| s.heights[0] >= n)
            .await,
        "the restarted node does not hold the whole chain of {n} blocks"
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use protocol::{Chain, Params};

    use super::*;

    /// The shoppers' chain as built (signed, mined) is taken whole by the chain the node runs,
    /// signatures and ledger rules included, past the joins and into the purchases and
    /// transfers.
    #[test]
    fn a_built_shoppers_chain_is_valid() {
        let n = SHOPPERS as usize + 200;
        let floor = 4;
        let chain = build(Kind::Shoppers, floor, n);
        let mut local = Chain::new(Params::with_floor(floor));
        for block in chain {
            let height = block.header.height;
            if let Err(e) = local.insert(block, u64::MAX / 2) {
                panic!("block {height}: {e}");
            }
        }
        assert_eq!(local.height(), n as u64);
    }
}
