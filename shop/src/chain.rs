//! Reading the chain from a node and replaying it: the only place the shop learns balances,
//! cages, names, sequence numbers and tallies. Nothing of it is kept between runs, so two shops
//! never disagree for long and a restarted shop sees everything.
//!
//! The chain is fetched with `D` on a connection of its own (a `D` makes a connection a peer,
//! and a peer is not answered `K` for its records): the first `D` names no locator, and every
//! next one carries a block locator built from what arrived, so the node sends the blocks after
//! the fork point even when its best chain moved in between (a reorg mid-read cuts the read back
//! to where the branches meet). Then every block is replayed with [`Ledger::apply_block`]; a
//! chain that does not link up or replay is the node's fault and is reported as such.

use std::collections::HashMap;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use protocol::codec::LineCodec;
use protocol::params::MAX_LOCATOR;
use protocol::wire::{GetBlocks, Message};
use protocol::{AccountId, Block, BlockHash, Ledger, RecordId};
use serde::Serialize;
use tokio::net::TcpStream;
use tokio_util::codec::Framed;

/// At most this many `D` requests in one read: 500 blocks each, and every reorg met on the way.
const MAX_REQUESTS: usize = 100_000;

/// Why the chain could not be read from a node.
#[derive(Debug, thiserror::Error)]
pub enum ChainError {
    /// The node could not be reached.
    #[error("cannot connect: {0}")]
    Connect(String),
    /// The node said nothing in time.
    #[error("no answer within {} s", .0.as_secs_f32())]
    Timeout(Duration),
    /// The node closed the connection or sent something unreadable.
    #[error("{0}")]
    Link(String),
    /// The node's chain is not a chain, or does not replay.
    #[error("it sent a chain that {0}")]
    Broken(String),
}

/// Where a record landed.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct BlockRef {
    /// The block's height.
    pub height: u64,
    /// The block's hash.
    pub hash: BlockHash,
    /// The node that mined it (its id in the topology).
    pub miner: AccountId,
}

impl BlockRef {
    /// Where `block` is.
    pub fn of(block: &Block) -> BlockRef {
        BlockRef {
            height: block.header.height,
            hash: block.header.hash(),
            miner: block.header.miner,
        }
    }
}

/// A node's best chain, replayed.
#[derive(Debug, Clone)]
pub struct ChainState {
    /// The node it was read from.
    pub source: String,
    /// The state at the tip.
    pub ledger: Ledger,
    /// The tip's height (0: only genesis).
    pub height: u64,
    /// The tip's hash.
    pub tip: BlockHash,
    mined: HashMap<RecordId, BlockRef>,
}

impl ChainState {
    /// Replays `blocks` (genesis excluded, oldest first) from genesis.
    pub fn from_blocks(source: String, blocks: Vec<Block>) -> Result<ChainState, ChainError> {
        let genesis = protocol::genesis();
        let mut ledger = Ledger::new();
        let mut mined = HashMap::new();
        let mut tip = genesis.header.hash();
        let mut height = genesis.header.height;
        for block in &blocks {
            if block.header.prev_hash != tip || block.header.height != height + 1 {
                return Err(ChainError::Broken(format!(
                    "does not link up at height {}",
                    block.header.height
                )));
            }
            ledger.apply_block(block).map_err(|(i, e)| {
                ChainError::Broken(format!(
                    "does not replay: block {} record {i}: {e}",
                    block.header.height
                ))
            })?;
            let here = BlockRef::of(block);
            for r in &block.records {
                mined.insert(r.id(), here.clone());
            }
            tip = here.hash;
            height = here.height;
        }
        Ok(ChainState {
            source,
            ledger,
            height,
            tip,
            mined,
        })
    }

    /// The block holding record `id`, if the chain has it.
    pub fn block_of(&self, id: &RecordId) -> Option<&BlockRef> {
        self.mined.get(id)
    }
}

/// Reads and replays the best chain of the node at `addr`; `timeout` bounds the connection and
/// each answer.
pub async fn read(addr: &str, timeout: Duration) -> Result<ChainState, ChainError> {
    let blocks = fetch(addr, timeout).await?;
    ChainState::from_blocks(addr.to_string(), blocks)
}

/// The node's whole best chain (genesis excluded), oldest first.
pub async fn fetch(addr: &str, timeout: Duration) -> Result<Vec<Block>, ChainError> {
    let stream = tokio::time::timeout(timeout, TcpStream::connect(addr))
        .await
        .map_err(|_| ChainError::Timeout(timeout))?
        .map_err(|e| ChainError::Connect(e.to_string()))?;
    stream.set_nodelay(true).ok();
    let mut link = Framed::new(stream, LineCodec::<Message>::new());
    let genesis = protocol::genesis().header.hash();
    let mut chain: Vec<Block> = Vec::new();
    for _ in 0..MAX_REQUESTS {
        let first_request = chain.is_empty();
        let locator = if first_request {
            Vec::new()
        } else {
            locator(&chain, genesis)
        };
        link.send(Message::GetBlocks(GetBlocks { locator }))
            .await
            .map_err(|e| ChainError::Link(format!("cannot ask for the chain: {e}")))?;
        // A `D` makes us a peer: the node may ask for our chain and relay blocks and records
        // too. Only the `C` answers us.
        let (blocks, more) = loop {
            let next = tokio::time::timeout(timeout, link.next())
                .await
                .map_err(|_| ChainError::Timeout(timeout))?;
            match next {
                Some(Ok(Message::Blocks(c))) => break (c.blocks, c.more),
                Some(Ok(Message::Error(e))) => {
                    return Err(ChainError::Link(format!(
                        "it answered with an error: {}: {}",
                        e.code, e.message
                    )));
                }
                Some(Ok(_)) => continue,
                Some(Err(e)) => return Err(ChainError::Link(format!("bad answer: {e}"))),
                None => return Err(ChainError::Link("it closed the connection".into())),
            }
        };
        if let Some(first) = blocks.first() {
            // The answer starts after the fork point: keep what is below it.
            let keep = if first.header.prev_hash == genesis {
                Some(0)
            } else {
                chain
                    .iter()
                    .rposition(|b| b.header.hash() == first.header.prev_hash)
                    .map(|i| i + 1)
            };
            match keep {
                Some(n) => chain.truncate(n),
                None => {
                    return Err(ChainError::Broken(format!(
                        "does not link up at height {}",
                        first.header.height
                    )));
                }
            }
        }
        chain.extend(blocks);
        if !more {
            return Ok(chain);
        }
    }
    Err(ChainError::Broken(format!(
        "did not end after {MAX_REQUESTS} requests"
    )))
}

/// The tip's hash, the 9 below it, then hashes at doubling distances back, ending with genesis.
fn locator(chain: &[Block], genesis: BlockHash) -> Vec<BlockHash> {
    let mut out = Vec::new();
    let mut index = chain.len() as u64; // 1-based height of the tip
    let mut step = 1u64;
    while index > 0 && out.len() < MAX_LOCATOR - 1 {
        out.push(chain[(index - 1) as usize].header.hash());
        if out.len() >= 10 {
            step *= 2;
        }
        index = index.saturating_sub(step);
    }
    out.push(genesis);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn empty_chain(n: usize) -> Vec<Block> {
        let mut out: Vec<Block> = Vec::new();
        let genesis = protocol::genesis();
        for i in 0..n {
            let parent = out.last().map_or(&genesis.header, |b| &b.header);
            let block = Block::template(parent, Vec::new(), AccountId::default(), 0, i as u64);
            out.push(block);
        }
        out
    }

    #[test]
    fn locators_start_at_the_tip_and_end_at_genesis() {
        let genesis = protocol::genesis().header.hash();
        let chain = empty_chain(100);
        let l = locator(&chain, genesis);
        assert_eq!(l[0], chain[99].header.hash());
        assert_eq!(l[9], chain[90].header.hash());
        assert_eq!(l[10], chain[88].header.hash());
        assert_eq!(*l.last().unwrap(), genesis);
        assert!(l.len() <= MAX_LOCATOR);
        assert_eq!(locator(&chain[..1], genesis).len(), 2);
    }

    #[test]
    fn a_chain_that_does_not_link_is_broken() {
        let mut chain = empty_chain(3);
        assert_eq!(
            ChainState::from_blocks("n".into(), chain.clone())
                .unwrap()
                .height,
            3
        );
        chain.remove(1);
        let err = ChainState::from_blocks("n".into(), chain).unwrap_err();
        assert!(err.to_string().contains("link"), "{err}");
    }
}
