//! Reading a node's chain and checking it: the only place the shop learns balances, cages,
//! names, sequence numbers and tallies.
//!
//! A read starts from a chain the shop verified before (the wallet's cache, [`crate::cache`],
//! or the best chain read earlier in the same command; genesis when there is none): a
//! [`ChainState`] is a checkpoint (a [`ChainTip`] and, implicitly, the ledger there) and the
//! tail of up to [`TAIL_BLOCKS`] blocks above it, with the ledger at the tip. The shop sends
//! one `D` whose locator starts at its tip's parent, so a node up to date answers with the tip
//! alone and a node ahead with the tip and what is new; the answer starts after a block the
//! shop holds (a reorg up to the tail's depth cuts back to it), and only the blocks after it
//! are checked, each as a node checks it ([`protocol::extend`]: proof of work at or above the
//! network's floor, links, timestamps, signatures, every record against the ledger). A node
//! whose chain does not hold the checkpoint (a reorg deeper than the tail, or another chain
//! altogether) answers from genesis; its chain is checked whole from genesis only when no
//! other node agrees with the checkpoint ([`OffBase`], `Network::read_chains`).
//!
//! The chain is fetched on a connection of its own, so that its `C` answers never mix with a
//! purchase's `K` and `B` (a `D` does not make a connection a peer: only a proven `H`/`P`
//! handshake does). A node is anyone with a key, so its word is worth nothing until its blocks
//! pass: a chain that does not link up or does not pass is the node's lie and is reported as
//! such, and chains are compared by their work, never their height.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use protocol::codec::LineCodec;
use protocol::extend::{ChainTip, ExtendError, extend};
use protocol::ledger::Undo;
use protocol::params::{MAX_LOCATOR, MAX_REORG_DEPTH};
use protocol::wire::{GetBlocks, Message};
use protocol::{AccountId, Block, BlockError, BlockHash, CheckedBlock, Ledger, Params, RecordId};
use serde::Serialize;
use tokio::net::TcpStream;
use tokio_util::codec::Framed;

/// At most this many `D` requests in one read: 500 blocks each, every reorg met on the way,
/// and the few a node's answer needs to show which block of the locator is its tip.
const MAX_REQUESTS: usize = 100_000;

/// Most blocks kept above the checkpoint: a node never reorganises deeper than
/// [`MAX_REORG_DEPTH`], so a fork within the tail is followed from the tail, and only a chain
/// that does not hold the checkpoint at all is read again from genesis.
pub const TAIL_BLOCKS: usize = MAX_REORG_DEPTH;

/// Most bytes of blocks (their binary form) the tail keeps, so that the cache file and the
/// memory stay small even when blocks are full (1,000 blocks of 512 KiB would be 512 MiB):
/// past it, the checkpoint moves up, and a reorg below it reads that node from genesis.
pub const MAX_TAIL_BYTES: usize = 16 * 1024 * 1024;

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
    /// The node's chain does not hold the checkpoint at this height that the read started
    /// from, and the read was told not to check it from genesis ([`OffBase::Stop`]).
    #[error("its chain does not hold the checkpoint at height {0}")]
    LacksCheckpoint(u64),
}

/// What [`read`] does with a node whose chain does not hold the base's checkpoint (it answers
/// from genesis): a node on another chain, one still syncing, or one that lies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OffBase {
    /// Checks its chain whole, from genesis: every block's signatures, seconds on a long chain.
    FromGenesis,
    /// Stops at its first answer with [`ChainError::LacksCheckpoint`], having checked nothing.
    Stop,
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

    /// The error for `block` failing to extend the chain.
    fn extending(block_height: u64, error: ExtendError) -> ChainError {
        match error {
            ExtendError::Unlinked { height, .. } => {
                ChainError::Broken(format!("does not link up at height {height}"))
            }
            ExtendError::Invalid(error) => ChainError::Invalid {
                height: block_height,
                error,
            },
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

/// One block of the tail, with the tip it makes and what it takes to go back below it.
#[derive(Debug)]
pub(crate) struct Link {
    /// The block.
    pub(crate) block: Block,
    /// The tip once it is connected.
    pub(crate) tip: ChainTip,
    /// Reverts its records.
    undo: Undo,
    /// Its binary size, counted against [`MAX_TAIL_BYTES`].
    bytes: usize,
}

/// A node's best chain, checked: the ledger at its tip, and the tail of blocks above a
/// checkpoint that a later read starts from.
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
    /// How many blocks the node sent for this read (0 for a chain read from the cache).
    pub received: u64,
    /// The checkpoint: the tip below the tail.
    base: ChainTip,
    /// The blocks above the checkpoint, oldest first; shared between copies.
    links: VecDeque<Arc<Link>>,
    /// Their bytes.
    tail_bytes: usize,
    /// Records in the tail's blocks (a record deeper than the tail is known to be in the chain
    /// by its account's sequence number only).
    mined: HashMap<RecordId, BlockRef>,
}

impl ChainState {
    /// The chain of genesis alone.
    pub fn genesis(source: String) -> ChainState {
        ChainState::at_checkpoint(source, ChainTip::genesis(), Ledger::new())
    }

    /// A chain whose checkpoint is `base` with ledger `ledger` there, and no tail yet.
    pub(crate) fn at_checkpoint(source: String, base: ChainTip, ledger: Ledger) -> ChainState {
        ChainState {
            source,
            ledger,
            height: base.height,
            tip: base.hash,
            work: base.work,
            received: 0,
            base,
            links: VecDeque::new(),
            tail_bytes: 0,
            mined: HashMap::new(),
        }
    }

    /// Checks and replays `blocks` (genesis excluded, oldest first) from genesis, as a node
    /// would: every block must pass the checks at `params` (the network's floor) and extend
    /// the one before it. `now` is the local clock in milliseconds. CPU work (every
    /// signature): call it off the async threads.
    pub fn from_blocks(
        source: String,
        blocks: Vec<Block>,
        params: &Params,
        now: u64,
    ) -> Result<ChainState, ChainError> {
        let mut chain = ChainState::genesis(source);
        chain.extend_with(blocks, params, now)?;
        Ok(chain)
    }

    /// The block holding record `id`, if the chain's tail has it.
    pub fn block_of(&self, id: &RecordId) -> Option<&BlockRef> {
        self.mined.get(id)
    }

    /// The checkpoint below the tail.
    pub(crate) fn checkpoint(&self) -> &ChainTip {
        &self.base
    }

    /// The tail's blocks, oldest first.
    pub(crate) fn tail(&self) -> impl DoubleEndedIterator<Item = &Block> {
        self.links.iter().map(|l| &l.block)
    }

    /// The ledger at the checkpoint: the tip's, with the tail's blocks reverted.
    pub(crate) fn checkpoint_ledger(&self) -> Ledger {
        let mut ledger = self.ledger.clone();
        for link in self.links.iter().rev() {
            ledger.revert(link.undo.clone());
        }
        ledger
    }

    /// The tip as the next block sees it.
    fn chain_tip(&self) -> &ChainTip {
        self.links.back().map_or(&self.base, |l| &l.tip)
    }

    /// Checks `blocks` (oldest first) on top of the tip with [`Block::check`] at `params`,
    /// connecting each. On an error the blocks before the bad one stay connected.
    pub fn extend_with(
        &mut self,
        blocks: Vec<Block>,
        params: &Params,
        now: u64,
    ) -> Result<(), ChainError> {
        self.extend_by(blocks, now, |b| b.check(params))
    }

    /// [`ChainState::extend_with`] with `check` as each block's own check (the cache's blocks
    /// were verified when they came in: [`Block::check_own`]).
    pub(crate) fn extend_by(
        &mut self,
        blocks: Vec<Block>,
        now: u64,
        check: impl Fn(Block) -> Result<CheckedBlock, BlockError>,
    ) -> Result<(), ChainError> {
        for block in blocks {
            let height = block.header.height;
            let bytes = protocol::header::HEADER_SIZE + 4 + block.header.records_size as usize;
            let tip = self.chain_tip().clone();
            let ext = extend(&tip, &mut self.ledger, block, &check, now)
                .map_err(|e| ChainError::extending(height, e))?;
            let here = BlockRef::of(&ext.block);
            for record in &ext.block.records {
                self.mined.insert(record.id(), here.clone());
            }
            self.push(Link {
                block: ext.block.into_block(),
                tip: ext.tip,
                undo: ext.undo,
                bytes,
            });
        }
        self.settle();
        Ok(())
    }

    /// Adds a connected block to the tail, moving the checkpoint up past the caps.
    fn push(&mut self, link: Link) {
        self.tail_bytes += link.bytes;
        self.links.push_back(Arc::new(link));
        while self.links.len() > TAIL_BLOCKS
            || (self.tail_bytes > MAX_TAIL_BYTES && self.links.len() > 1)
        {
            let Some(old) = self.links.pop_front() else {
                break;
            };
            self.tail_bytes -= old.bytes;
            for record in &old.block.records {
                self.mined.remove(&record.id());
            }
            self.base = old.tip.clone();
        }
    }

    /// Takes the tip back to the block `keep` links above the checkpoint (0: the checkpoint).
    fn rewind(&mut self, keep: usize) {
        while self.links.len() > keep {
            let Some(link) = self.links.pop_back() else {
                break;
            };
            self.ledger.revert(link.undo.clone());
            self.tail_bytes -= link.bytes;
            for record in &link.block.records {
                self.mined.remove(&record.id());
            }
        }
        self.settle();
    }

    /// Updates the tip's fields after the tail changed.
    fn settle(&mut self) {
        let tip = self.chain_tip().clone();
        self.height = tip.height;
        self.tip = tip.hash;
        self.work = tip.work;
    }

    /// Where block `hash` is: `Some(n)` for the block `n` links above the checkpoint (0: the
    /// checkpoint itself).
    fn position(&self, hash: &BlockHash) -> Option<usize> {
        if *hash == self.base.hash {
            return Some(0);
        }
        self.links
            .iter()
            .rposition(|l| l.tip.hash == *hash)
            .map(|i| i + 1)
    }

    /// A block locator over what the shop holds: the tip, the 9 blocks below it, then blocks at
    /// doubling distances back through the tail, the checkpoint, and genesis.
    pub fn locator(&self) -> Vec<BlockHash> {
        let genesis = protocol::genesis().header.hash();
        let mut out = Vec::new();
        let mut index = self.links.len(); // links above the checkpoint up to the tip
        let mut step = 1;
        while index > 0 && out.len() < MAX_LOCATOR - 2 {
            out.push(self.links[index - 1].tip.hash);
            if out.len() >= 10 {
                step *= 2;
            }
            index = index.saturating_sub(step);
        }
        if self.base.hash != genesis {
            out.push(self.base.hash);
        }
        out.push(genesis);
        out
    }
}

/// Reads the best chain of the node at `addr` on top of `base` (a chain the shop verified:
/// the cache, or genesis) and checks what is new at `params`; `timeout` bounds the connection
/// and each answer; `off_base` says what to do if the node's chain does not hold `base`'s
/// checkpoint. The checks run off the async threads.
pub async fn read(
    addr: &str,
    timeout: Duration,
    params: &Params,
    base: &ChainState,
    off_base: OffBase,
) -> Result<ChainState, ChainError> {
    let stream = tokio::time::timeout(timeout, TcpStream::connect(addr))
        .await
        .map_err(|_| ChainError::Timeout(timeout))?
        .map_err(|e| ChainError::Connect(e.to_string()))?;
    stream.set_nodelay(true).ok();
    let mut link = Framed::new(stream, LineCodec::<Message>::new());
    let genesis = protocol::genesis().header.hash();
    let mut chain = base.clone();
    chain.source = addr.to_string();
    chain.received = 0;
    // Start at the tip's parent: a node that is up to date answers with the tip, so the shop
    // knows where its chain ends (an empty answer only says "one of the locator's blocks").
    let mut locator = chain.locator();
    if locator.len() > 1 {
        locator.remove(0);
    }
    for _ in 0..MAX_REQUESTS {
        // Packed: a fraction of the JSON's bytes to write, send and read.
        link.send(Message::GetBlocks(GetBlocks::packed_after(locator.clone())))
            .await
            .map_err(|e| ChainError::Link(format!("cannot ask for the chain: {e}")))?;
        let (blocks, more) = answer(&mut link, timeout).await?;
        chain.received += blocks.len() as u64;
        let Some(first) = blocks.first() else {
            if more {
                return Err(ChainError::Broken(
                    "sent no blocks but said more follow".into(),
                ));
            }
            // Its tip is one of the locator's blocks: ask again from below the first.
            if locator.len() <= 1 {
                // Only genesis was left: the node holds genesis alone.
                chain.rewind(0);
                if chain.base.hash != genesis {
                    chain = ChainState::genesis(addr.to_string());
                }
                return Ok(chain);
            }
            locator.remove(0);
            continue;
        };
        let prev = first.header.prev_hash;
        let keep = match chain.position(&prev) {
            Some(keep) => keep,
            None if prev == genesis && off_base == OffBase::Stop => {
                return Err(ChainError::LacksCheckpoint(chain.base.height));
            }
            None if prev == genesis => {
                tracing::info!(node = %addr, checkpoint = chain.base.height, "the node's chain does not hold the checkpoint; checking it from genesis");
                let received = chain.received;
                chain = ChainState::genesis(addr.to_string());
                chain.received = received;
                0
            }
            None => {
                return Err(ChainError::Broken(format!(
                    "does not link up at height {}",
                    first.header.height
                )));
            }
        };
        // Blocks the shop already holds at those heights (the tip, re-sent) are not checked
        // again.
        let same = blocks
            .iter()
            .zip(chain.links.iter().skip(keep))
            .take_while(|(b, l)| b.header.hash() == l.tip.hash)
            .count();
        chain.rewind(keep + same);
        let new: Vec<Block> = blocks.into_iter().skip(same).collect();
        if !new.is_empty() {
            let params = params.clone();
            let now = protocol::clock::now_ms();
            let (back, result) = tokio::task::spawn_blocking(move || {
                let result = chain.extend_with(new, &params, now);
                (chain, result)
            })
            .await
            .map_err(|e| ChainError::Link(format!("the check stopped: {e}")))?;
            chain = back;
            result?;
        }
        if !more {
            return Ok(chain);
        }
        locator = chain.locator();
    }
    Err(ChainError::Broken(format!(
        "did not end after {MAX_REQUESTS} requests"
    )))
}

/// The next `C` on `link` (anything else on the line, such as a keep-alive `Z`, is skipped).
async fn answer(
    link: &mut Framed<TcpStream, LineCodec<Message>>,
    timeout: Duration,
) -> Result<(Vec<Block>, bool), ChainError> {
    loop {
        let next = tokio::time::timeout(timeout, link.next())
            .await
            .map_err(|_| ChainError::Timeout(timeout))?;
        match next {
            Some(Ok(Message::Blocks(c))) => return Ok((c.blocks, c.more)),
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
    }
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
    fn locators_start_at_the_tip_and_end_at_the_checkpoint_and_genesis() {
        let genesis = protocol::genesis().header.hash();
        let blocks = empty_chain(TAIL_BLOCKS + 100);
        let chain = ChainState::from_blocks("n".into(), blocks.clone(), &params(), NOW).unwrap();
        let l = chain.locator();
        let top = blocks.len() - 1;
        assert_eq!(l[0], blocks[top].header.hash());
        assert_eq!(l[9], blocks[top - 9].header.hash());
        assert_eq!(l[10], blocks[top - 11].header.hash());
        // The checkpoint trails the tip by the tail, then genesis ends the locator.
        assert_eq!(chain.checkpoint().height, 100);
        assert_eq!(l[l.len() - 2], blocks[99].header.hash());
        assert_eq!(*l.last().unwrap(), genesis);
        assert!(l.len() <= MAX_LOCATOR);
        let short = ChainState::from_blocks("n".into(), blocks[..1].to_vec(), &params(), NOW);
        assert_eq!(short.unwrap().locator().len(), 2);
    }

    #[test]
    fn a_rewind_restores_the_ledger_and_forgets_the_records() {
        let key = protocol::Keypair::from_seed([8; 32]);
        let join = protocol::Record::sign(&key, 0, protocol::Action::Join { name: "al".into() });
        let id = join.id();
        let mut blocks = empty_chain(5);
        let g = protocol::genesis();
        let stamp = g.header.timestamp + 1;
        blocks[0] = Block::template(&g.header, vec![join], AccountId::default(), 0, stamp);
        for i in 1..blocks.len() {
            let parent = blocks[i - 1].header.clone();
            let stamp = parent.timestamp + 1;
            blocks[i] = Block::template(&parent, Vec::new(), AccountId::default(), 0, stamp);
        }
        let mut chain = ChainState::from_blocks("n".into(), blocks, &params(), NOW).unwrap();
        assert!(chain.block_of(&id).is_some());
        assert_eq!(chain.ledger.balance(&key.account()), 1000);
        chain.rewind(0);
        assert_eq!(chain.height, 0);
        assert_eq!(chain.ledger, Ledger::new());
        assert!(chain.block_of(&id).is_none());
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
