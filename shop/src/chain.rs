//! Reading the chain from a node and replaying it: the only place the shop learns balances,
//! cages, names, sequence numbers and tallies. Nothing of it is kept between runs, so two shops
//! never disagree for long and a restarted shop sees everything.
//!
//! The chain is fetched with `D` on a connection of its own, so that its `C` answers never mix
//! with a purchase's `K` and `B` (a `D` does not make a connection a peer: only a proven `H`/`P`
//! handshake does): the first `D` names no locator, and every
//! next one carries a block locator built from what arrived, so the node sends the blocks after
//! the fork point even when its best chain moved in between (a reorg mid-read cuts the read back
//! to where the branches meet). Then every block is checked as a node checks it, from genesis:
//! each goes into a [`protocol::Chain`] of the shop's own, which verifies proof of work at or
//! above the network's floor, links, timestamps, signatures and every record against the ledger.
//! A node is anyone with a key, so its word is worth nothing until its blocks pass: a chain that
//! does not link up or does not pass is the node's lie and is reported as such, and chains are
//! compared by their work, never their height.

use std::collections::HashMap;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use protocol::codec::LineCodec;
use protocol::params::MAX_LOCATOR;
use protocol::wire::{GetBlocks, Message};
use protocol::{
    AccountId, Block, BlockError, BlockHash, Chain, Imported, Ledger, Params, RecordId,
};
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
    /// A block of the node's chain fails the checks every node makes.
    #[error("it sent an invalid block at height {height}: {error}")]
    Invalid {
        /// The block's height.
        height: u64,
        /// Why it is invalid.
        error: BlockError,
    },
}

impl ChainError {
    /// Whether this shows the node lied (sent what no honest node sends), rather than failed.
    /// A block from the future is not counted: clocks may disagree.
    pub fn is_lie(&self) -> bool {
        match self {
            ChainError::Broken(_) => true,
            ChainError::Invalid { error, .. } => {
                !matches!(error, BlockError::FutureTimestamp { .. })
            }
            _ => false,
        }
    }
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
    /// The chain's cumulative work (2^bits summed): what makes one chain better than another.
    pub work: u128,
    mined: HashMap<RecordId, BlockRef>,
}

impl ChainState {
    /// Checks and replays `blocks` (genesis excluded, oldest first) from genesis, as a node
    /// would: every block must pass [`Chain::insert`] at `params` (the network's floor) and
    /// extend the one before it. `now` is the local clock in milliseconds. CPU work (every
    /// signature): call it off the async threads.
    pub fn from_blocks(
        source: String,
        blocks: Vec<Block>,
        params: &Params,
        now: u64,
    ) -> Result<ChainState, ChainError> {
        let mut chain = Chain::new(params.clone());
        let mut mined = HashMap::new();
        for block in blocks {
            let height = block.header.height;
            if block.header.prev_hash != chain.tip().hash() || height != chain.height() + 1 {
                return Err(ChainError::Broken(format!(
                    "does not link up at height {height}"
                )));
            }
            let here = BlockRef::of(&block);
            let ids: Vec<RecordId> = block.records.iter().map(|r| r.id()).collect();
            match chain.insert(block, now) {
                Ok(Imported::Extended { .. }) => {}
                Ok(other) => {
                    return Err(ChainError::Broken(format!(
                        "does not extend itself at height {height} ({})",
                        imported_name(&other)
                    )));
                }
                Err(error) => return Err(ChainError::Invalid { height, error }),
            }
            for id in ids {
                mined.insert(id, here.clone());
            }
        }
        Ok(ChainState {
            source,
            ledger: chain.ledger().clone(),
            height: chain.height(),
            tip: chain.tip().hash(),
            work: chain.tip_work(),
            mined,
        })
    }

    /// The block holding record `id`, if the chain has it.
    pub fn block_of(&self, id: &RecordId) -> Option<&BlockRef> {
        self.mined.get(id)
    }
}

/// What an import that did not extend the chain was, for messages.
fn imported_name(imported: &Imported) -> &'static str {
    match imported {
        Imported::Extended { .. } => "extended",
        Imported::Reorganized { .. } => "reorganised",
        Imported::SideBranch { .. } => "a side branch",
        Imported::Orphan { .. } => "an orphan",
        Imported::Duplicate => "a duplicate",
        Imported::TooDeep => "a fork deeper than the deepest reorg",
    }
}

/// Reads the best chain of the node at `addr` and checks it from genesis at `params`;
/// `timeout` bounds the connection and each answer. The checks run off the async threads.
pub async fn read(
    addr: &str,
    timeout: Duration,
    params: &Params,
) -> Result<ChainState, ChainError> {
    let blocks = fetch(addr, timeout).await?;
    let (source, params) = (addr.to_string(), params.clone());
    let now = protocol::clock::now_ms();
    tokio::task::spawn_blocking(move || ChainState::from_blocks(source, blocks, &params, now))
        .await
        .map_err(|e| ChainError::Link(format!("the check stopped: {e}")))?
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
        // Only a `C` (or an `E`) answers a `D`; anything else on the line, such as a
        // keep-alive `Z`, is skipped.
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

    /// A floor of 0: blocks of no work pass, so tests need not mine.
    fn params() -> Params {
        Params::with_floor(0)
    }

    /// Far enough ahead of genesis that no test block is in the future.
    const NOW: u64 = protocol::block::GENESIS_TIMESTAMP + 1_000_000_000;

    fn empty_chain(n: usize) -> Vec<Block> {
        let mut out: Vec<Block> = Vec::new();
        let genesis = protocol::genesis();
        for i in 0..n {
            let parent = out.last().map_or(&genesis.header, |b| &b.header);
            let stamp = genesis.header.timestamp + 1 + i as u64;
            let block = Block::template(parent, Vec::new(), AccountId::default(), 0, stamp);
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
            ChainState::from_blocks("n".into(), chain.clone(), &params(), NOW)
                .unwrap()
                .height,
            3
        );
        chain.remove(1);
        let err = ChainState::from_blocks("n".into(), chain, &params(), NOW).unwrap_err();
        assert!(err.to_string().contains("link"), "{err}");
        assert!(err.is_lie());
    }

    #[test]
    fn a_block_below_the_floor_is_a_lie_and_work_not_height_measures_a_chain() {
        let chain = empty_chain(3);
        let err = ChainState::from_blocks("n".into(), chain.clone(), &Params::with_floor(1), NOW)
            .unwrap_err();
        assert!(
            matches!(
                err,
                ChainError::Invalid {
                    height: 1,
                    error: BlockError::BelowFloor { .. }
                }
            ),
            "{err}"
        );
        assert!(err.is_lie());
        // Three blocks of no work weigh 3 (2^0 each); one block of 4 bits weighs 16.
        let low = ChainState::from_blocks("n".into(), chain, &params(), NOW).unwrap();
        let mut one = Block::template(
            &protocol::genesis().header,
            Vec::new(),
            AccountId::default(),
            4,
            protocol::genesis().header.timestamp + 1,
        );
        while one.header.hash().leading_zero_bits() < 4 {
            one.header.nonce += 1;
        }
        let high = ChainState::from_blocks("m".into(), vec![one], &params(), NOW).unwrap();
        assert!(low.height > high.height && high.work > low.work);
    }
}
