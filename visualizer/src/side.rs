//! The blocks the visualizer holds off the best chain, and how many bytes they take.
//!
//! A branch with less work than the best chain costs whoever sends it only the proof of work at
//! the floor, and each of its blocks may carry half a megabyte of records. The chain caps side
//! blocks by count ([`protocol::params::MAX_SIDE_BLOCKS`]); this keeps their bytes too, so the
//! state can ask the chain to prune when they pass [`MAX_SIDE_BYTES`]. Pure bookkeeping: no I/O,
//! no clock.

use std::collections::HashMap;

use protocol::header::HEADER_SIZE;
use protocol::{BlockHash, Chain, CheckedBlock, Imported};

/// Most bytes of blocks (header plus canonical records) the visualizer keeps off the best chain.
/// Honest forks are a block or two of a few records each; 32 MiB is room for dozens of full
/// blocks (more than 60 at 512 KiB), and in memory, with the records parsed, about three times
/// that, well inside the visualizer's budget of a few hundred megabytes.
pub const MAX_SIDE_BYTES: usize = 32 * 1024 * 1024;

/// The side blocks by hash, with their sizes, and their total.
#[derive(Debug)]
pub struct SideBranches {
    blocks: HashMap<BlockHash, usize>,
    bytes: usize,
    max: usize,
}

/// What a block counts for: its header and its records' canonical encodings.
fn size(block: &CheckedBlock) -> usize {
    HEADER_SIZE + block.header.records_size as usize
}

impl SideBranches {
    /// No side blocks yet, at most `max` bytes of them.
    pub fn new(max: usize) -> SideBranches {
        SideBranches {
            blocks: HashMap::new(),
            bytes: 0,
            max,
        }
    }

    /// Sets the most bytes (tests lower it).
    pub fn set_max(&mut self, max: usize) {
        self.max = max;
    }

    /// Bytes of the side blocks.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// How many side blocks there are.
    pub fn len(&self) -> usize {
        self.blocks.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.blocks.is_empty()
    }

    fn add(&mut self, block: &CheckedBlock) {
        let bytes = size(block);
        if self.blocks.insert(block.hash(), bytes).is_none() {
            self.bytes += bytes;
        }
    }

    fn remove(&mut self, hash: &BlockHash) {
        if let Some(bytes) = self.blocks.remove(hash) {
            self.bytes -= bytes;
        }
    }

    /// Takes in what one insert into `chain` did.
    pub fn imported(&mut self, chain: &Chain, imported: &Imported) {
        let (disconnected, connected, added) = match imported {
            Imported::Extended { connected, added } => (&[][..], &connected[..], &added[..]),
            Imported::Reorganized {
                disconnected,
                connected,
                added,
            } => (&disconnected[..], &connected[..], &added[..]),
            Imported::SideBranch { added } => (&[][..], &[][..], &added[..]),
            // Orphans, duplicates, and whatever else adds nothing to the tree.
            _ => return,
        };
        for block in connected {
            self.remove(&block.hash());
        }
        for block in disconnected.iter().chain(added) {
            let hash = block.hash();
            if chain.contains(&hash) && !chain.is_on_best(&hash) {
                self.add(block);
            }
        }
        // The chain may also have pruned side blocks by count, or cut off a branch it found
        // invalid: then the counts differ.
        if self.blocks.len() != chain.side_len() {
            self.resync(chain);
        }
    }

    /// Forgets blocks that left `chain` or joined its best chain: what the chain removes on its
    /// own (pruning by count, branches found invalid). Costs one look-up per side block.
    pub fn resync(&mut self, chain: &Chain) {
        let mut bytes = 0;
        self.blocks.retain(|hash, size| {
            let keep = chain.contains(hash) && !chain.is_on_best(hash);
            if keep {
                bytes += *size;
            }
            keep
        });
        self.bytes = bytes;
    }

    /// When the side blocks take more than the cap: about how many must go for them to fit (at
    /// least one), from their average size.
    pub fn excess_blocks(&self) -> Option<usize> {
        if self.bytes <= self.max || self.blocks.is_empty() {
            return None;
        }
        let average = (self.bytes / self.blocks.len()).max(1);
        Some((self.bytes - self.max).div_ceil(average).max(1))
    }
}
