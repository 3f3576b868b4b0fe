//! Orphan blocks: checked blocks whose parent is not known yet, held (bounded, oldest evicted
//! first) until the parent arrives.

use std::collections::{HashMap, VecDeque};

use crate::block::CheckedBlock;
use crate::hash::BlockHash;

/// A capped buffer of orphan blocks, indexed by their parent's hash.
#[derive(Debug)]
pub struct Orphans {
    by_hash: HashMap<BlockHash, CheckedBlock>,
    by_prev: HashMap<BlockHash, Vec<BlockHash>>,
    /// Arrival order, for eviction. May hold hashes already taken; those are skipped.
    order: VecDeque<BlockHash>,
    bytes: usize,
    max_count: usize,
    max_bytes: usize,
}

impl Orphans {
    /// An empty buffer holding at most `max_count` blocks and `max_bytes` of records.
    pub fn new(max_count: usize, max_bytes: usize) -> Orphans {
        Orphans {
            by_hash: HashMap::new(),
            by_prev: HashMap::new(),
            order: VecDeque::new(),
            bytes: 0,
            max_count: max_count.max(1),
            max_bytes,
        }
    }

    /// Whether `hash` is waiting here.
    pub fn contains(&self, hash: &BlockHash) -> bool {
        self.by_hash.contains_key(hash)
    }

    /// How many orphans are held.
    pub fn len(&self) -> usize {
        self.by_hash.len()
    }

    /// Whether none are held.
    pub fn is_empty(&self) -> bool {
        self.by_hash.is_empty()
    }

    /// Bytes of records held.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Adds an orphan, evicting the oldest ones to stay within the caps. A block alone bigger
    /// than the byte cap is not kept.
    pub fn insert(&mut self, block: CheckedBlock) {
        let hash = block.hash();
        let size = block.header.records_size as usize;
        if self.by_hash.contains_key(&hash) || size > self.max_bytes {
            return;
        }
        while self.by_hash.len() >= self.max_count || self.bytes + size > self.max_bytes {
            let Some(oldest) = self.order.pop_front() else {
                break;
            };
            self.remove(&oldest);
        }
        self.by_prev
            .entry(block.header.prev_hash)
            .or_default()
            .push(hash);
        self.bytes += size;
        self.by_hash.insert(hash, block);
        self.order.push_back(hash);
        if self.order.len() > 2 * self.max_count {
            let by_hash = &self.by_hash;
            self.order.retain(|h| by_hash.contains_key(h));
        }
    }

    /// Removes and returns the orphans whose parent is `prev`.
    pub fn take_children(&mut self, prev: &BlockHash) -> Vec<CheckedBlock> {
        let hashes = self.by_prev.remove(prev).unwrap_or_default();
        hashes.iter().filter_map(|h| self.take(h)).collect()
    }

    fn take(&mut self, hash: &BlockHash) -> Option<CheckedBlock> {
        let block = self.by_hash.remove(hash)?;
        self.bytes -= block.header.records_size as usize;
        Some(block)
    }

    fn remove(&mut self, hash: &BlockHash) {
        if let Some(block) = self.take(hash) {
            let prev = block.header.prev_hash;
            if let Some(siblings) = self.by_prev.get_mut(&prev) {
                siblings.retain(|h| h != hash);
                if siblings.is_empty() {
                    self.by_prev.remove(&prev);
                }
            }
        }
    }
}
