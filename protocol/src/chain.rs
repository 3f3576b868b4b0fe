//! The block tree and fork choice: every valid block is kept by hash, the best chain is the one
//! with the most cumulative work (2^bits summed), and on a tie the tip seen first stays.
//!
//! A block is checked on its own ([`Block::check`]) and against its parent (height, timestamps)
//! when it enters the tree. Its records are checked against the ledger when it is connected to
//! the best chain, as in Bitcoin: a side branch's records are checked if and when it gets the
//! most work, and a branch that fails then is cut off and remembered as invalid.
//!
//! What side branches hold is bounded in count ([`MAX_SIDE_BLOCKS`]) and in bytes
//! ([`MAX_SIDE_BYTES`]), and a block that forks more than [`MAX_REORG_DEPTH`] blocks below the
//! best tip is not kept: the node would never reorganise onto it. Blocks that leave the tree can
//! be listed for the store ([`Chain::take_removed`]).
//!
//! A node keeps only the recent part of the tree in memory ([`Chain::keep_recent`]): best-chain
//! blocks deeper than that below the tip leave memory ([`Chain::trim`]) once the store holds
//! them, and what is asked of them later (a locator, a peer's sync) is read through an
//! [`Archive`] the caller supplies. No reorg reaches them, so consensus never needs them, and a
//! chain resumed from a stored ledger ([`Chain::resume`]) starts with no history at all.

use std::collections::VecDeque;
use std::sync::Arc;

use crate::account::AccountId;
use crate::block::{Block, BlockError, CheckedBlock};
use crate::hash::{BlockHash, DigestMap, DigestSet};
use crate::ledger::{Ledger, Undo};
use crate::orphans::Orphans;
use crate::params::{
    MAX_LOCATOR, MAX_ORPHAN_BYTES, MAX_ORPHANS, MAX_REMEMBERED_INVALID, MAX_REORG_DEPTH,
    MAX_SIDE_BLOCKS, MAX_SIDE_BYTES, MAX_UNDO_DEPTH, MEDIAN_TIME_SPAN, Params, side_block_cost,
};

/// Where a chain that keeps only its recent blocks ([`Chain::keep_recent`]) finds the best
/// chain below them: the node's store. Asked only about best-chain blocks below
/// [`Chain::base_height`]; an answer it cannot give is `None`, never a panic.
pub trait Archive {
    /// The hash of the best-chain block at `height`.
    fn hash_at(&self, height: u64) -> Option<BlockHash>;
    /// The height of a best-chain block, by hash.
    fn height_of(&self, hash: &BlockHash) -> Option<u64>;
    /// The best-chain block at `height`.
    fn block_at(&self, height: u64) -> Option<Arc<CheckedBlock>>;
}

/// The archive of a chain that keeps every block: it holds nothing.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoArchive;

impl Archive for NoArchive {
    fn hash_at(&self, _: u64) -> Option<BlockHash> {
        None
    }
    fn height_of(&self, _: &BlockHash) -> Option<u64> {
        None
    }
    fn block_at(&self, _: u64) -> Option<Arc<CheckedBlock>> {
        None
    }
}

/// What inserting a block did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Imported {
    /// The best chain grew: `connected` are the new best blocks, oldest first.
    Extended {
        /// Blocks that joined the best chain, oldest first.
        connected: Vec<Arc<CheckedBlock>>,
        /// Every block that entered the tree (the block and any orphans it adopted).
        added: Vec<Arc<CheckedBlock>>,
    },
    /// The best chain switched branches.
    Reorganized {
        /// Blocks that left the best chain, the old tip first.
        disconnected: Vec<Arc<CheckedBlock>>,
        /// Blocks that joined it, oldest first.
        connected: Vec<Arc<CheckedBlock>>,
        /// Every block that entered the tree.
        added: Vec<Arc<CheckedBlock>>,
    },
    /// Stored on a branch with no more work than the best chain.
    SideBranch {
        /// Every block that entered the tree.
        added: Vec<Arc<CheckedBlock>>,
    },
    /// The parent is unknown: the block waits while the caller fetches the missing range.
    Orphan {
        /// The parent's hash.
        missing: BlockHash,
    },
    /// Already known (in the tree or among the orphans).
    Duplicate,
    /// Not kept: it forks (or, an orphan, sits) more than the deepest reorg the chain accepts
    /// below the best tip, so it could never join the best chain. Not proof of bad faith: a
    /// peer long cut off from the network may send it.
    TooDeep,
}

impl Imported {
    /// The blocks that entered the tree, for relaying and storing.
    pub fn added(&self) -> &[Arc<CheckedBlock>] {
        match self {
            Imported::Extended { added, .. }
            | Imported::Reorganized { added, .. }
            | Imported::SideBranch { added } => added,
            Imported::Orphan { .. } | Imported::Duplicate | Imported::TooDeep => &[],
        }
    }
}

#[derive(Debug)]
struct Entry {
    block: Arc<CheckedBlock>,
    /// Cumulative work from genesis through this block.
    work: u128,
    /// Arrival order, for the tie rule.
    seq: u64,
    children: Vec<BlockHash>,
    /// How to revert this block's ledger changes; present while it is on the best chain and at
    /// most `undo_depth` ([`MAX_UNDO_DEPTH`]) blocks below the tip. Boxed: most entries have none.
    undo: Option<Box<Undo>>,
}

/// The block tree, the best chain through it, and the ledger at its tip.
#[derive(Debug)]
pub struct Chain {
    params: Params,
    entries: DigestMap<Entry>,
    /// The best chain by height from `base`: `best[0]` is the block at height `base` (genesis
    /// unless the chain was resumed or trimmed). Every block in it is in `entries`.
    best: VecDeque<BlockHash>,
    /// The height of the lowest best-chain block held in memory; the ones below it are in the
    /// caller's [`Archive`].
    base: u64,
    /// How many best-chain blocks below the tip stay in memory ([`Chain::keep_recent`]); `None`:
    /// every block.
    keep: Option<usize>,
    /// Genesis's hash, which ends every locator.
    genesis: BlockHash,
    /// Blocks without children: the candidates for the best tip.
    leaves: DigestSet,
    ledger: Ledger,
    orphans: Orphans,
    invalid: DigestSet,
    invalid_order: VecDeque<BlockHash>,
    next_seq: u64,
    max_side_blocks: usize,
    max_side_bytes: usize,
    max_reorg_depth: usize,
    undo_depth: usize,
    /// [`side_block_cost`] summed over every block in the tree, and over the best chain alone:
    /// their difference is what side branches hold.
    tree_bytes: usize,
    best_bytes: usize,
    /// Blocks that left the tree (pruned, too deep, found invalid), height and hash, for
    /// [`Chain::take_removed`]; `None` unless [`Chain::log_removed`] asked for them.
    removed: Option<Vec<(u64, BlockHash)>>,
}

impl Chain {
    /// A chain holding only genesis.
    pub fn new(params: Params) -> Chain {
        Chain::resume(params, Arc::new(CheckedBlock::genesis()), 0, Ledger::new())
    }

    /// A chain whose best chain is known up to `base` (a block of it, trusted: the caller's own
    /// store), with `work` the cumulative work through it and `ledger` the ledger after it. Blocks
    /// after it are inserted as usual; nothing below it is in memory (see [`Archive`]), and no
    /// reorg forks below it. [`Chain::new`] is the same from genesis.
    pub fn resume(params: Params, base: Arc<CheckedBlock>, work: u128, ledger: Ledger) -> Chain {
        let hash = base.hash();
        let height = base.header.height;
        let cost = side_block_cost(base.header.records_size);
        let entry = Entry {
            block: base,
            work,
            seq: 0,
            children: Vec::new(),
            undo: Some(Box::default()),
        };
        Chain {
            params,
            entries: DigestMap::from_iter([(hash, entry)]),
            best: VecDeque::from([hash]),
            base: height,
            keep: None,
            genesis: CheckedBlock::genesis().hash(),
            leaves: DigestSet::from_iter([hash]),
            ledger,
            orphans: Orphans::new(MAX_ORPHANS, MAX_ORPHAN_BYTES),
            invalid: DigestSet::default(),
            invalid_order: VecDeque::new(),
            next_seq: 1,
            max_side_blocks: MAX_SIDE_BLOCKS,
            max_side_bytes: MAX_SIDE_BYTES,
            max_reorg_depth: MAX_REORG_DEPTH,
            undo_depth: MAX_UNDO_DEPTH,
            tree_bytes: cost,
            best_bytes: cost,
            removed: None,
        }
    }

    /// From now on, remembers every block that leaves the tree, for [`Chain::take_removed`]:
    /// a node deletes them from its store. Off by default, so a chain nobody drains (a
    /// visualizer's, a shop's) keeps no such list.
    pub fn log_removed(&mut self) {
        self.removed.get_or_insert_with(Vec::new);
    }

    /// The blocks (height, hash) that left the tree since the last call: side blocks pruned by
    /// the caps or left too deep below the tip, and branches found invalid.
    pub fn take_removed(&mut self) -> Vec<(u64, BlockHash)> {
        self.removed
            .as_mut()
            .map(std::mem::take)
            .unwrap_or_default()
    }

    /// The network parameters.
    pub fn params(&self) -> &Params {
        &self.params
    }

    /// The best tip.
    pub fn tip(&self) -> &Arc<CheckedBlock> {
        &self.entries[self.tip_hash()].block
    }

    fn tip_hash(&self) -> &BlockHash {
        // `best` always holds its base at least.
        &self.best[self.best.len() - 1]
    }

    /// The best tip's height.
    pub fn height(&self) -> u64 {
        self.best_end() - 1
    }

    /// One past the best tip's height.
    fn best_end(&self) -> u64 {
        self.base + self.best.len() as u64
    }

    /// The hash of the best-chain block at `height`, if it is in memory.
    fn best_at(&self, height: u64) -> Option<&BlockHash> {
        let index = usize::try_from(height.checked_sub(self.base)?).ok()?;
        self.best.get(index)
    }

    /// The height of the lowest best-chain block in memory (0 unless resumed or trimmed).
    pub fn base_height(&self) -> u64 {
        self.base
    }

    /// From now on keeps in memory only the best chain's last `blocks` blocks (at least the
    /// deepest reorg plus the median-time span: everything consensus at the tip reads) and the
    /// side branches; [`Chain::trim`] lets the older ones go. Their undo is kept as deep as a
    /// reorg may reach, since nothing below the base can be replayed.
    pub fn keep_recent(&mut self, blocks: usize) {
        self.keep = Some(blocks.max(self.max_reorg_depth + MEDIAN_TIME_SPAN));
        self.undo_depth = self.undo_depth.max(self.max_reorg_depth);
    }

    /// Lets the best-chain blocks older than [`Chain::keep_recent`] asks go from memory, with
    /// any side branch still hanging from them (listed for [`Chain::take_removed`]), and
    /// returns them, oldest first: from now on they are the [`Archive`]'s. The caller calls it
    /// once what it must do with the blocks (store them, compute what changed) is done.
    pub fn trim(&mut self) -> Vec<Arc<CheckedBlock>> {
        self.trim_committed(u64::MAX)
    }

    /// [`Chain::trim`], but only of blocks at or below height `committed`: the ones the store
    /// has committed. A block handed to a writer that has not written it yet stays in memory,
    /// so a read of the archive never has to wait for the writer to catch up.
    pub fn trim_committed(&mut self, committed: u64) -> Vec<Arc<CheckedBlock>> {
        let Some(keep) = self.keep else {
            return Vec::new();
        };
        let mut out = Vec::new();
        while self.best.len() > keep + 1 && self.base <= committed {
            let Some(hash) = self.best.pop_front() else {
                break;
            };
            self.base += 1;
            let Some(entry) = self.entries.remove(&hash) else {
                continue;
            };
            self.leaves.remove(&hash);
            let cost = side_block_cost(entry.block.header.records_size);
            self.tree_bytes -= cost;
            self.best_bytes -= cost;
            let next = self.best.front().copied();
            for child in entry.children {
                if Some(child) != next {
                    self.remove_subtree(child, false);
                }
            }
            out.push(entry.block);
        }
        out
    }

    /// Cumulative work of the best chain.
    pub fn tip_work(&self) -> u128 {
        self.entries[self.tip_hash()].work
    }

    /// Cumulative work from genesis through `hash`.
    pub fn work(&self, hash: &BlockHash) -> Option<u128> {
        self.entries.get(hash).map(|e| e.work)
    }

    /// The ledger at the best tip.
    pub fn ledger(&self) -> &Ledger {
        &self.ledger
    }

    /// A block in the tree.
    pub fn get(&self, hash: &BlockHash) -> Option<&Arc<CheckedBlock>> {
        self.entries.get(hash).map(|e| &e.block)
    }

    /// Whether the tree holds `hash`.
    pub fn contains(&self, hash: &BlockHash) -> bool {
        self.entries.contains_key(hash)
    }

    /// Blocks in the tree, genesis and side branches included.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Always false: the tree holds genesis.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Orphans waiting for their parent.
    pub fn orphan_count(&self) -> usize {
        self.orphans.len()
    }

    /// The best chain's block at `height`.
    /// `None` below [`Chain::base_height`]: the [`Archive`] holds those.
    pub fn at_height(&self, height: u64) -> Option<&Arc<CheckedBlock>> {
        self.get(self.best_at(height)?)
    }

    /// Whether `hash` is on the best chain.
    pub fn is_on_best(&self, hash: &BlockHash) -> bool {
        self.entries
            .get(hash)
            .and_then(|e| self.best_at(e.block.header.height))
            .is_some_and(|h| h == hash)
    }

    /// The earliest timestamp a child of `parent` may carry: the median of `parent` and its 10
    /// ancestors (0 for a block not in the tree).
    pub fn min_timestamp_after(&self, parent: &BlockHash) -> u64 {
        self.median_time(parent)
    }

    /// The tip this node should extend to end a tie, if it is the one to do it.
    ///
    /// The fork-choice rule keeps the tip seen first on a tie, so nodes that each mined their own
    /// block at the same height each keep their own, and with nothing left to mine they would
    /// stay split for ever. Every node that has seen the same tied tips (leaves with exactly the
    /// best tip's cumulative work) agrees on the one with the lowest hash; the nodes that hold
    /// it as their best tip, and the node that mined it (`me`), extend it. That next block
    /// outweighs every tied tip and the whole network moves onto it. The miner is included
    /// because it may have seen a rival block before its own and so not hold its own as best.
    /// `None` when there is no tie or another node is the one to break it.
    pub fn tie_break_parent(&self, me: &AccountId) -> Option<Arc<CheckedBlock>> {
        let tip = self.tip_hash();
        let work = self.tip_work();
        let lowest = self
            .leaves
            .iter()
            .filter(|leaf| self.entries[*leaf].work == work)
            .min()?;
        if lowest == tip
            && self
                .leaves
                .iter()
                .all(|l| l == tip || self.entries[l].work != work)
        {
            return None;
        }
        let block = &self.entries[lowest].block;
        (lowest == tip || block.header.miner == *me).then(|| Arc::clone(block))
    }

    /// Inserts a block from anywhere (a peer, the store, our own miner). `now` is the local
    /// clock in milliseconds, for the future-timestamp rule.
    pub fn insert(&mut self, block: Block, now: u64) -> Result<Imported, BlockError> {
        if let Some(known) = self.known(&block.header.hash(), &block.header.prev_hash)? {
            return Ok(known);
        }
        let checked = block.check(&self.params)?;
        self.insert_checked(checked, now)
    }

    /// Whether a block with this hash is known (in the tree or among the orphans) or known to be
    /// invalid, so a caller can skip the expensive [`Block::check`] of what it would refuse or
    /// ignore anyway.
    pub fn is_known(&self, hash: &BlockHash) -> bool {
        self.entries.contains_key(hash)
            || self.orphans.contains(hash)
            || self.invalid.contains(hash)
    }

    /// The answer for a block already known: a duplicate, or an error when it or its parent is
    /// known to be invalid; `None` when the block is new.
    fn known(
        &mut self,
        hash: &BlockHash,
        prev: &BlockHash,
    ) -> Result<Option<Imported>, BlockError> {
        if self.entries.contains_key(hash) || self.orphans.contains(hash) {
            return Ok(Some(Imported::Duplicate));
        }
        if self.invalid.contains(hash) {
            return Err(BlockError::InvalidAncestor(*hash));
        }
        if self.invalid.contains(prev) {
            self.remember_invalid(*hash);
            return Err(BlockError::InvalidAncestor(*prev));
        }
        Ok(None)
    }

    /// Inserts a block already passed through [`Block::check`], for callers that check blocks
    /// in parallel before handing them to the chain. Its difficulty is checked against this
    /// chain's floor again, in case it was checked with other parameters.
    pub fn insert_checked(
        &mut self,
        checked: CheckedBlock,
        now: u64,
    ) -> Result<Imported, BlockError> {
        let hash = checked.hash();
        let prev = checked.header.prev_hash;
        if let Some(known) = self.known(&hash, &prev)? {
            return Ok(known);
        }
        let (bits, floor) = (checked.header.bits, self.params.difficulty_floor);
        if checked.header.height > 0 && bits < floor {
            return Err(BlockError::BelowFloor { bits, floor });
        }
        if !self.entries.contains_key(&prev) {
            // Its fork point is below its height: one this low could never join the best chain.
            if checked
                .header
                .height
                .saturating_add(self.max_reorg_depth as u64)
                < self.best_end()
            {
                return Ok(Imported::TooDeep);
            }
            self.orphans.insert(checked);
            return Ok(Imported::Orphan { missing: prev });
        }
        if self.forks_too_deep(&prev) {
            return Ok(Imported::TooDeep);
        }
        let first = self.attach(checked, now).inspect_err(|e| {
            if e.is_final() {
                self.remember_invalid(hash);
            }
        })?;
        let mut added = vec![first];
        let mut queue = vec![hash];
        while let Some(parent) = queue.pop() {
            for orphan in self.orphans.take_children(&parent) {
                let orphan_hash = orphan.hash();
                if self.forks_too_deep(&parent) {
                    continue;
                }
                match self.attach(orphan, now) {
                    Ok(block) => {
                        added.push(block);
                        queue.push(orphan_hash);
                    }
                    Err(BlockError::FutureTimestamp { .. }) => {}
                    Err(_) => self.remember_invalid(orphan_hash),
                }
            }
        }
        let (disconnected, connected, failure) = self.update_best();
        // The block itself (or an ancestor) failing the ledger is an error for whoever sent
        // it. The tip cannot have moved then: every candidate that could beat it was cut off.
        if !self.entries.contains_key(&hash) {
            return Err(match failure {
                Some((bad, error)) if bad == hash => error,
                Some((bad, _)) => BlockError::InvalidAncestor(bad),
                None => BlockError::InvalidAncestor(hash),
            });
        }
        let tip_moved = !connected.is_empty();
        if self.prune_side_branches() | (tip_moved && self.prune_too_deep()) {
            added.retain(|b| self.entries.contains_key(&b.hash()));
        }
        Ok(match (disconnected.is_empty(), connected.is_empty()) {
            (_, true) => Imported::SideBranch { added },
            (true, false) => Imported::Extended { connected, added },
            (false, false) => Imported::Reorganized {
                disconnected,
                connected,
                added,
            },
        })
    }

    /// Blocks held off the best chain (side branches).
    pub fn side_len(&self) -> usize {
        self.entries.len() - self.best.len()
    }

    /// What side branches hold, counted as [`side_block_cost`] (see [`MAX_SIDE_BYTES`]).
    pub fn side_bytes(&self) -> usize {
        self.tree_bytes - self.best_bytes
    }

    /// Sets the most blocks kept off the best chain (see [`MAX_SIDE_BLOCKS`]); for tests.
    pub fn set_max_side_blocks(&mut self, max: usize) {
        self.max_side_blocks = max;
        self.prune_side_branches();
    }

    /// Sets the most bytes kept off the best chain (see [`MAX_SIDE_BYTES`]); for tests.
    pub fn set_max_side_bytes(&mut self, max: usize) {
        self.max_side_bytes = max;
        self.prune_side_branches();
    }

    /// Sets the deepest reorg accepted (see [`MAX_REORG_DEPTH`]); for tests.
    pub fn set_max_reorg_depth(&mut self, depth: usize) {
        self.max_reorg_depth = depth;
        if let Some(keep) = self.keep {
            self.keep_recent(keep);
        }
        self.prune_too_deep();
    }

    /// Whether a child of `parent` would fork from the best chain more than `max_reorg_depth`
    /// blocks below the tip. Walks back along the branch, at most to that depth.
    fn forks_too_deep(&self, parent: &BlockHash) -> bool {
        let lowest = self
            .best_end()
            .saturating_sub(1 + self.max_reorg_depth as u64);
        let mut cursor = self.entries.get(parent);
        while let Some(entry) = cursor {
            let header = &entry.block.header;
            if header.height < lowest {
                return true;
            }
            if self.is_on_best(&entry.block.hash()) {
                return false;
            }
            cursor = self.entries.get(&header.prev_hash);
        }
        true
    }

    /// Drops the side branches that now fork more than `max_reorg_depth` below the tip: the
    /// node would never switch to them. Returns whether any went.
    fn prune_too_deep(&mut self) -> bool {
        let deep: Vec<BlockHash> = self
            .leaves
            .iter()
            .filter(|h| !self.is_on_best(h))
            .filter(|h| {
                self.entries
                    .get(*h)
                    .is_some_and(|e| self.forks_too_deep(&e.block.header.prev_hash))
            })
            .copied()
            .collect();
        let pruned = !deep.is_empty();
        for leaf in deep {
            // The leaf, then its ancestors down to the fork point while no other branch uses them.
            let mut cursor = Some(leaf);
            while let Some(hash) = cursor.take() {
                let parent = self.remove_side_leaf(&hash);
                cursor = parent.filter(|p| self.leaves.contains(p) && !self.is_on_best(p));
            }
        }
        pruned
    }

    /// Removes a side-branch leaf from the tree; returns its parent's hash.
    fn remove_side_leaf(&mut self, victim: &BlockHash) -> Option<BlockHash> {
        let entry = self.entries.remove(victim)?;
        self.leaves.remove(victim);
        self.tree_bytes -= side_block_cost(entry.block.header.records_size);
        let prev = entry.block.header.prev_hash;
        if let Some(log) = &mut self.removed {
            log.push((entry.block.header.height, *victim));
        }
        if let Some(parent) = self.entries.get_mut(&prev) {
            parent.children.retain(|h| h != victim);
            if parent.children.is_empty() {
                self.leaves.insert(prev);
            }
        }
        Some(prev)
    }

    /// Sets how many blocks below the tip keep their undo (see [`MAX_UNDO_DEPTH`]); for tests.
    /// A chain that keeps only recent blocks keeps undo at least as deep as a reorg reaches.
    pub fn set_undo_depth(&mut self, depth: usize) {
        self.undo_depth = depth.max(1);
        if self.keep.is_some() {
            self.undo_depth = self.undo_depth.max(self.max_reorg_depth);
        }
    }

    /// Drops side-branch tips, least cumulative work first (the newest first among equals),
    /// until at most `max_side_blocks` blocks and `max_side_bytes` are off the best chain.
    /// Returns whether any went.
    ///
    /// A valid branch with less work than the best chain costs its sender only the proof of
    /// work at the floor; without this, a long one would grow the tree without end. The branch
    /// most likely to matter, the one with the most work, is the last to lose blocks, and a
    /// pruned block that is sent again is simply checked again. The limit of this without
    /// headers-first sync: while the cap is full of an easy branch, a heavier branch that is
    /// only starting to arrive has the least work and waits until it has more.
    fn prune_side_branches(&mut self) -> bool {
        let mut pruned = false;
        while self.side_len() > self.max_side_blocks || self.side_bytes() > self.max_side_bytes {
            let victim = self
                .leaves
                .iter()
                .filter(|h| !self.is_on_best(h))
                .map(|h| &self.entries[h])
                .min_by(|a, b| a.work.cmp(&b.work).then(b.seq.cmp(&a.seq)))
                .map(|e| e.block.hash());
            let Some(victim) = victim else { break };
            if self.remove_side_leaf(&victim).is_none() {
                break;
            }
            pruned = true;
        }
        pruned
    }

    /// Checks a block against its parent and adds it to the tree.
    fn attach(&mut self, block: CheckedBlock, now: u64) -> Result<Arc<CheckedBlock>, BlockError> {
        let header = &block.header;
        let parent = &self.entries[&header.prev_hash];
        let median = self.median_time(&header.prev_hash);
        crate::extend::check_child(parent.block.header.height, median, header, now)?;
        let work = parent.work + header.work();
        let hash = block.hash();
        let prev = header.prev_hash;
        let block = Arc::new(block);
        let seq = self.next_seq;
        self.next_seq += 1;
        self.tree_bytes += side_block_cost(block.header.records_size);
        self.entries.insert(
            hash,
            Entry {
                block: Arc::clone(&block),
                work,
                seq,
                children: Vec::new(),
                undo: None,
            },
        );
        if let Some(parent) = self.entries.get_mut(&prev) {
            // Exactly one more: most blocks have one child, and spare capacity in every entry adds up.
            parent.children.reserve_exact(1);
            parent.children.push(hash);
        }
        self.leaves.remove(&prev);
        self.leaves.insert(hash);
        Ok(block)
    }

    /// The median timestamp of `hash` and up to 10 of its ancestors.
    fn median_time(&self, hash: &BlockHash) -> u64 {
        let mut times = Vec::with_capacity(MEDIAN_TIME_SPAN);
        let mut cursor = self.entries.get(hash);
        while let Some(entry) = cursor {
            times.push(entry.block.header.timestamp);
            if times.len() == MEDIAN_TIME_SPAN || entry.block.header.height == 0 {
                break;
            }
            cursor = self.entries.get(&entry.block.header.prev_hash);
        }
        times.sort_unstable();
        times.get(times.len() / 2).copied().unwrap_or(0)
    }

    /// Moves the best chain to the leaf with the most work, if that beats the current tip.
    /// Returns what left and joined the best chain, and the last ledger failure met on the way.
    #[allow(clippy::type_complexity)]
    fn update_best(
        &mut self,
    ) -> (
        Vec<Arc<CheckedBlock>>,
        Vec<Arc<CheckedBlock>>,
        Option<(BlockHash, BlockError)>,
    ) {
        let mut failure = None;
        loop {
            let tip_work = self.tip_work();
            let candidate = self
                .leaves
                .iter()
                .map(|h| &self.entries[h])
                .filter(|e| e.work > tip_work)
                .max_by(|a, b| a.work.cmp(&b.work).then(b.seq.cmp(&a.seq)))
                .map(|e| e.block.hash());
            let Some(candidate) = candidate else {
                return (Vec::new(), Vec::new(), failure);
            };
            match self.switch_to(candidate) {
                Ok((disconnected, connected)) => return (disconnected, connected, failure),
                Err((bad, error)) => {
                    self.remove_subtree(bad, true);
                    failure = Some((bad, error));
                }
            }
        }
    }

    /// Reorganises the best chain onto `target`. When a block on the way fails the ledger, the
    /// old best chain is restored and the failing block is returned with its error.
    #[allow(clippy::type_complexity)]
    fn switch_to(
        &mut self,
        target: BlockHash,
    ) -> Result<(Vec<Arc<CheckedBlock>>, Vec<Arc<CheckedBlock>>), (BlockHash, BlockError)> {
        let mut path = Vec::new();
        let mut cursor = target;
        while !self.is_on_best(&cursor) {
            path.push(cursor);
            cursor = self.entries[&cursor].block.header.prev_hash;
        }
        let fork_height = self.entries[&cursor].block.header.height;
        let disconnected = self.rewind(fork_height);
        let mut connected = Vec::new();
        for hash in path.into_iter().rev() {
            if let Err((index, error)) = self.connect(hash) {
                self.rewind(fork_height);
                for block in disconnected.iter().rev() {
                    let restored = self.connect(block.hash());
                    debug_assert!(
                        restored.is_ok(),
                        "a block that was connected connects again"
                    );
                }
                return Err((hash, BlockError::Ledger { index, error }));
            }
            connected.push(Arc::clone(&self.entries[&hash].block));
        }
        Ok((disconnected, connected))
    }

    /// Takes the best chain back to `height`, returning the blocks that left it, tip first.
    /// Blocks within `undo_depth` of the tip are reverted with their undo; a deeper rewind
    /// replays the ledger from genesis instead, which is rare and costs one pass.
    /// The fork point is always in memory: a branch forking below the base is too deep.
    fn rewind(&mut self, height: u64) -> Vec<Arc<CheckedBlock>> {
        let keep = usize::try_from((height + 1).saturating_sub(self.base)).unwrap_or(usize::MAX);
        let gone = self.best.split_off(keep.min(self.best.len()));
        let undoable = gone
            .iter()
            .all(|h| self.entries.get(h).is_some_and(|e| e.undo.is_some()));
        let mut out = Vec::with_capacity(gone.len());
        for hash in gone.iter().rev() {
            let entry = self
                .entries
                .get_mut(hash)
                .expect("best chain blocks are in the tree");
            if let Some(undo) = entry.undo.take()
                && undoable
            {
                self.ledger.revert(*undo);
            }
            self.best_bytes -= side_block_cost(entry.block.header.records_size);
            out.push(Arc::clone(&entry.block));
        }
        if !undoable {
            self.replay();
        }
        out
    }

    /// Rebuilds the ledger from genesis along the best chain, keeping the undo of the last
    /// `undo_depth` blocks. Only a chain that keeps every block gets here: one that keeps only
    /// recent blocks keeps undo as deep as any reorg reaches.
    fn replay(&mut self) {
        debug_assert_eq!(self.base, 0, "a chain with an archive never replays");
        self.ledger = Ledger::new();
        let keep_from = self.best.len().saturating_sub(self.undo_depth);
        for (i, hash) in self.best.iter().enumerate().skip(1) {
            let entry = self
                .entries
                .get_mut(hash)
                .expect("best chain blocks are in the tree");
            let undo = self
                .ledger
                .apply_block(&entry.block)
                .expect("blocks on the best chain applied before");
            entry.undo = (i >= keep_from).then(|| Box::new(undo));
        }
    }

    fn connect(&mut self, hash: BlockHash) -> Result<(), (usize, crate::ledger::LedgerError)> {
        let entry = self
            .entries
            .get_mut(&hash)
            .expect("connected blocks are in the tree");
        let undo = self.ledger.apply_block(&entry.block)?;
        entry.undo = Some(Box::new(undo));
        self.best_bytes += side_block_cost(entry.block.header.records_size);
        self.best.push_back(hash);
        // Undo deeper than `undo_depth` goes: kept for every block it would cost memory in
        // proportion to the chain, and a reorg that deep replays instead.
        if let Some(old) = self.best.len().checked_sub(self.undo_depth + 1)
            && let Some(entry) = self.entries.get_mut(&self.best[old])
        {
            entry.undo = None;
        }
        Ok(())
    }

    /// Drops a block and everything built on it: found invalid (remembered as such), or a side
    /// branch left hanging below the base by [`Chain::trim`].
    fn remove_subtree(&mut self, root: BlockHash, invalid: bool) {
        let parent_hash = self.entries.get(&root).map(|e| e.block.header.prev_hash);
        if let Some(parent_hash) = parent_hash
            && let Some(parent) = self.entries.get_mut(&parent_hash)
        {
            parent.children.retain(|h| *h != root);
            if parent.children.is_empty() {
                self.leaves.insert(parent_hash);
            }
        }
        let mut stack = vec![root];
        while let Some(hash) = stack.pop() {
            if let Some(entry) = self.entries.remove(&hash) {
                self.tree_bytes -= side_block_cost(entry.block.header.records_size);
                if let Some(log) = &mut self.removed {
                    log.push((entry.block.header.height, hash));
                }
                stack.extend(entry.children);
            }
            self.leaves.remove(&hash);
            if invalid {
                self.remember_invalid(hash);
            }
        }
    }

    fn remember_invalid(&mut self, hash: BlockHash) {
        if self.invalid.insert(hash) {
            self.invalid_order.push_back(hash);
            if self.invalid_order.len() > MAX_REMEMBERED_INVALID
                && let Some(old) = self.invalid_order.pop_front()
            {
                self.invalid.remove(&old);
            }
        }
    }

    /// How the best chain changed since its tip was `old_tip`: the blocks that left it (from
    /// `old_tip` back to the fork point, `old_tip` first) and the blocks that joined it (after
    /// the fork point, oldest first). `None` when `old_tip` is not in the tree.
    ///
    /// A batch of inserts can connect a block, disconnect it and connect it again; comparing the
    /// two tips gives the net change once.
    #[allow(clippy::type_complexity)]
    pub fn changes_since(
        &self,
        old_tip: &BlockHash,
    ) -> Option<(Vec<Arc<CheckedBlock>>, Vec<Arc<CheckedBlock>>)> {
        let mut disconnected = Vec::new();
        let mut cursor = self.entries.get(old_tip)?;
        while !self.is_on_best(&cursor.block.hash()) {
            disconnected.push(Arc::clone(&cursor.block));
            cursor = self.entries.get(&cursor.block.header.prev_hash)?;
        }
        let from = usize::try_from(cursor.block.header.height + 1 - self.base).ok()?;
        let connected = self
            .best
            .iter()
            .skip(from)
            .map(|h| Arc::clone(&self.entries[h].block))
            .collect();
        Some((disconnected, connected))
    }

    /// A block locator for the best chain: the tip, the 9 blocks below it, then hashes at
    /// doubling distances back, always ending with genesis; at most [`MAX_LOCATOR`] hashes.
    /// For a chain that keeps every block; see [`Chain::locator_in`].
    pub fn locator(&self) -> Vec<BlockHash> {
        self.locator_in(&NoArchive)
    }

    /// [`Chain::locator`], reading the hashes below the base from `archive` (one it lacks is
    /// left out).
    pub fn locator_in(&self, archive: &impl Archive) -> Vec<BlockHash> {
        let mut out = Vec::new();
        let mut height = self.height();
        let mut step = 1;
        while height > 0 && out.len() < MAX_LOCATOR - 1 {
            let hash = match self.best_at(height) {
                Some(hash) => Some(*hash),
                None => archive.hash_at(height),
            };
            out.extend(hash);
            if out.len() >= 10 {
                step *= 2;
            }
            height = height.saturating_sub(step);
        }
        out.push(self.genesis);
        out
    }

    /// The best-chain blocks after the first locator hash on our best chain (after genesis when
    /// none is), at most `max`, and whether more follow. Only the first [`MAX_LOCATOR`] hashes
    /// of a locator are looked at. For a chain that keeps every block; see
    /// [`Chain::blocks_after_in`].
    pub fn blocks_after(
        &self,
        locator: &[BlockHash],
        max: usize,
    ) -> (Vec<Arc<CheckedBlock>>, bool) {
        self.blocks_after_in(locator, max, &NoArchive)
    }

    /// [`Chain::blocks_after`], reading what is below the base from `archive`. The answer stops
    /// at the first block the archive lacks (with "more follow").
    pub fn blocks_after_in(
        &self,
        locator: &[BlockHash],
        max: usize,
        archive: &impl Archive,
    ) -> (Vec<Arc<CheckedBlock>>, bool) {
        let start = locator
            .iter()
            .take(MAX_LOCATOR)
            .find_map(|h| self.height_on_best(h, archive))
            .map_or(1, |h| h + 1);
        let end = self.best_end().min(start.saturating_add(max as u64));
        let mut blocks = Vec::new();
        for height in start..end {
            let block = match self.best_at(height) {
                Some(hash) => Some(Arc::clone(&self.entries[hash].block)),
                None => archive.block_at(height),
            };
            let Some(block) = block else { break };
            blocks.push(block);
        }
        let more = start + (blocks.len() as u64) < self.best_end();
        (blocks, more)
    }

    /// [`Chain::blocks_after`] when memory alone can answer: from the first locator hash on the
    /// best chain in memory (hashes memory does not know are skipped, so a locator listed newest
    /// first, as every honest one is, gets the answer [`Chain::blocks_after_in`] gives), or
    /// from genesis when none is and genesis is in memory. `None` when the answer starts below
    /// the base: [`blocks_after_archived`] gives it, on whatever thread may wait for the disk.
    pub fn blocks_after_in_memory(
        &self,
        locator: &[BlockHash],
        max: usize,
    ) -> Option<(Vec<Arc<CheckedBlock>>, bool)> {
        // The base's parent is where an answer read from the archive stopped: memory goes on.
        let below_base = self
            .best
            .front()
            .and_then(|h| self.entries.get(h))
            .filter(|e| e.block.header.height > 0)
            .map(|e| e.block.header.prev_hash);
        let found = locator.iter().take(MAX_LOCATOR).find_map(|h| {
            if Some(*h) == below_base {
                return Some(self.base - 1);
            }
            self.is_on_best(h)
                .then(|| self.entries.get(h).map(|e| e.block.header.height))
                .flatten()
        });
        let start = match found {
            Some(height) => height + 1,
            None if self.base == 0 => 1,
            None => return None,
        };
        let end = self.best_end().min(start.saturating_add(max as u64));
        let blocks: Vec<_> = (start..end)
            .filter_map(|height| self.best_at(height))
            .map(|hash| Arc::clone(&self.entries[hash].block))
            .collect();
        let more = start + (blocks.len() as u64) < self.best_end();
        Some((blocks, more))
    }

    /// The best chain's first height in memory and the height past its tip: what
    /// [`blocks_after_archived`] needs to answer a locator memory could not.
    pub fn best_range(&self) -> (u64, u64) {
        (self.base, self.best_end())
    }

    /// The height of `hash` if it is on the best chain, in memory or in the archive.
    fn height_on_best(&self, hash: &BlockHash, archive: &impl Archive) -> Option<u64> {
        if self.is_on_best(hash) {
            return self.entries.get(hash).map(|e| e.block.header.height);
        }
        if *hash == self.genesis {
            return Some(0);
        }
        archive.height_of(hash).filter(|h| *h < self.base)
    }

    /// Every block in the tree, in no particular order (for the visualizer's snapshot).
    pub fn blocks(&self) -> impl Iterator<Item = &Arc<CheckedBlock>> {
        self.entries.values().map(|e| &e.block)
    }

    /// The ledger replayed from genesis along the best chain: what [`Chain::ledger`] must equal.
    /// For a chain that keeps every block (one with a base above genesis has not the blocks).
    pub fn replay_ledger(&self) -> Result<Ledger, BlockError> {
        let mut ledger = Ledger::new();
        for hash in self.best.iter().skip(1) {
            ledger
                .apply_block(&self.entries[hash].block)
                .map_err(|(index, error)| BlockError::Ledger { index, error })?;
        }
        Ok(ledger)
    }
}

/// The answer to a locator that [`Chain::blocks_after_in_memory`] left to the archive: the
/// best-chain blocks after the first locator hash the archive holds below `base` (after genesis
/// when none is), at most `max`, stopping at `base` or at the first block the archive lacks;
/// and whether more follow before `end` (the best chain's end, [`Chain::best_range`]). The
/// asker's next `D` starts where this one stopped, and memory serves the rest.
pub fn blocks_after_archived(
    locator: &[BlockHash],
    max: usize,
    archive: &impl Archive,
    (base, end): (u64, u64),
) -> (Vec<Arc<CheckedBlock>>, bool) {
    let genesis = crate::genesis().header.hash();
    let start = locator
        .iter()
        .take(MAX_LOCATOR)
        .find_map(|h| {
            if *h == genesis {
                return Some(0);
            }
            archive.height_of(h).filter(|height| *height < base)
        })
        .map_or(1, |h| h + 1);
    let stop = base.min(start.saturating_add(max as u64));
    let mut blocks = Vec::new();
    for height in start..stop {
        let Some(block) = archive.block_at(height) else {
            break;
        };
        blocks.push(block);
    }
    let more = start + (blocks.len() as u64) < end;
    (blocks, more)
}
