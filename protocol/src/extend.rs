//! Checking blocks that extend a known tip without the block tree: what a light client (the
//! shop) does on top of a chain it verified earlier. The rules are those [`crate::Chain`]
//! applies to a block that extends its best tip: the block passes [`Block::check`] (floor,
//! proof of work, caps, commitment, signatures), its parent is the tip, its height is the
//! tip's plus one, its timestamp is not before the median of the tip and its 10 ancestors nor
//! more than [`MAX_FUTURE_MS`] ahead of the local clock, and its records apply to the ledger at
//! the tip. A [`ChainTip`] holds what those rules need of the chain below, so a checkpoint is a
//! `ChainTip` and the ledger at it, whatever the chain's length.

use crate::block::{Block, BlockError, CheckedBlock};
use crate::hash::{BlockHash, Hash256};
use crate::header::Header;
use crate::ledger::{Ledger, Undo};
use crate::params::{MAX_FUTURE_MS, MEDIAN_TIME_SPAN, Params};

/// The size of [`ChainTip::to_bytes`]: hash, height, work, a count and [`MEDIAN_TIME_SPAN`]
/// timestamps.
pub const CHAIN_TIP_SIZE: usize = 32 + 8 + 16 + 1 + 8 * MEDIAN_TIME_SPAN;

/// What the next block of a chain is checked against: the tip's hash, height and cumulative
/// work, and the timestamps of the tip and up to 10 of its ancestors (the median-time rule).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainTip {
    /// The tip's hash.
    pub hash: BlockHash,
    /// The tip's height.
    pub height: u64,
    /// The cumulative work from genesis through the tip (2^bits summed, genesis counting 0).
    pub work: u128,
    /// Timestamps of the tip and its ancestors, oldest first, at most [`MEDIAN_TIME_SPAN`].
    times: Vec<u64>,
}

/// Why a block does not extend a tip.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExtendError {
    /// Its parent is not the tip.
    #[error("block {block} at height {height} does not follow block {tip}")]
    Unlinked {
        /// The block's hash.
        block: BlockHash,
        /// Its height.
        height: u64,
        /// The tip it was meant to follow.
        tip: BlockHash,
    },
    /// It breaks a rule every node applies.
    #[error(transparent)]
    Invalid(#[from] BlockError),
}

/// Why bytes are not a [`ChainTip`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChainTipDecodeError {
    /// Not [`CHAIN_TIP_SIZE`] bytes.
    #[error("a chain tip is {CHAIN_TIP_SIZE} bytes, not {0}")]
    Size(usize),
    /// More timestamps than the median rule uses, or none.
    #[error("{0} timestamps, expected 1 to {MEDIAN_TIME_SPAN}")]
    Times(u8),
}

impl ChainTip {
    /// The tip of a chain holding only genesis.
    pub fn genesis() -> ChainTip {
        let genesis = crate::block::genesis();
        ChainTip {
            hash: genesis.header.hash(),
            height: 0,
            work: 0,
            times: vec![genesis.header.timestamp],
        }
    }

    /// The median of the tip's and its ancestors' timestamps: a next block may not be older.
    pub fn median_time(&self) -> u64 {
        median_time(&self.times)
    }

    /// Checks what `header` must have to follow this tip: the link, the height and the
    /// timestamps (`now` is the local clock in milliseconds).
    pub fn check_next(&self, header: &Header, now: u64) -> Result<(), ExtendError> {
        if header.prev_hash != self.hash {
            return Err(ExtendError::Unlinked {
                block: header.hash(),
                height: header.height,
                tip: self.hash,
            });
        }
        check_child(self.height, self.median_time(), header, now)?;
        Ok(())
    }

    /// The tip once `header` (checked with [`ChainTip::check_next`]) follows it.
    pub fn next(&self, header: &Header) -> ChainTip {
        let mut times = self.times.clone();
        times.push(header.timestamp);
        if times.len() > MEDIAN_TIME_SPAN {
            times.remove(0);
        }
        ChainTip {
            hash: header.hash(),
            height: header.height,
            work: self.work.saturating_add(header.work()),
            times,
        }
    }

    /// The fixed-size binary form: hash, height, work, the number of timestamps, then
    /// [`MEDIAN_TIME_SPAN`] timestamps (unused ones zero), little-endian.
    pub fn to_bytes(&self) -> [u8; CHAIN_TIP_SIZE] {
        let mut out = [0u8; CHAIN_TIP_SIZE];
        out[..32].copy_from_slice(&self.hash.0);
        out[32..40].copy_from_slice(&self.height.to_le_bytes());
        out[40..56].copy_from_slice(&self.work.to_le_bytes());
        out[56] = self.times.len() as u8;
        for (i, t) in self.times.iter().enumerate() {
            out[57 + 8 * i..65 + 8 * i].copy_from_slice(&t.to_le_bytes());
        }
        out
    }

    /// Reads [`ChainTip::to_bytes`]. Only the form is checked: the bytes are as good as
    /// whatever vouches for them (a checksum, a chain that links to the hash).
    pub fn from_bytes(bytes: &[u8]) -> Result<ChainTip, ChainTipDecodeError> {
        if bytes.len() != CHAIN_TIP_SIZE {
            return Err(ChainTipDecodeError::Size(bytes.len()));
        }
        let word = |at: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&bytes[at..at + 8]);
            u64::from_le_bytes(b)
        };
        let mut hash = [0u8; 32];
        hash.copy_from_slice(&bytes[..32]);
        let mut work = [0u8; 16];
        work.copy_from_slice(&bytes[40..56]);
        let count = bytes[56];
        if count == 0 || count as usize > MEDIAN_TIME_SPAN {
            return Err(ChainTipDecodeError::Times(count));
        }
        Ok(ChainTip {
            hash: Hash256(hash),
            height: word(32),
            work: u128::from_le_bytes(work),
            times: (0..count as usize).map(|i| word(57 + 8 * i)).collect(),
        })
    }
}

/// The median of `times` (0 for none): the timestamp a next block may not be older than.
pub fn median_time(times: &[u64]) -> u64 {
    let mut sorted = times.to_vec();
    sorted.sort_unstable();
    sorted.get(sorted.len() / 2).copied().unwrap_or(0)
}

/// The rules a block's header must meet against its parent, given the parent's height and
/// the median of the timestamps of the parent and up to 10 of its ancestors: height, not too
/// far in the future (`now` is the local clock in milliseconds), not before that median. The
/// block tree ([`crate::Chain`]) and the light client ([`extend`]) both apply it.
pub fn check_child(
    parent_height: u64,
    median: u64,
    header: &Header,
    now: u64,
) -> Result<(), BlockError> {
    let expected = parent_height + 1;
    if header.height != expected {
        return Err(BlockError::BadHeight {
            expected,
            got: header.height,
        });
    }
    if header.timestamp > now.saturating_add(MAX_FUTURE_MS) {
        return Err(BlockError::FutureTimestamp {
            timestamp: header.timestamp,
            now,
        });
    }
    if header.timestamp < median {
        return Err(BlockError::TimestampBeforeMedian {
            timestamp: header.timestamp,
            median,
        });
    }
    Ok(())
}

/// A block that extended a tip, with what it takes to go back.
#[derive(Debug, Clone)]
pub struct Extended {
    /// The block, checked.
    pub block: CheckedBlock,
    /// The tip it makes.
    pub tip: ChainTip,
    /// What [`Ledger::revert`] needs to undo its records.
    pub undo: Undo,
}

/// Checks `block` as the next block after `tip`, whose ledger is `ledger`, and applies its
/// records to `ledger` (left unchanged on any error). `check` is the block's own check:
/// [`Block::check`] for blocks from others, [`Block::check_own`] for blocks verified before and
/// kept. `now` is the local clock in milliseconds.
pub fn extend(
    tip: &ChainTip,
    ledger: &mut Ledger,
    block: Block,
    check: impl FnOnce(Block) -> Result<CheckedBlock, BlockError>,
    now: u64,
) -> Result<Extended, ExtendError> {
    tip.check_next(&block.header, now)?;
    let block = check(block)?;
    let undo = ledger
        .apply_block(&block)
        .map_err(|(index, error)| BlockError::Ledger { index, error })?;
    let next = tip.next(&block.header);
    Ok(Extended {
        block,
        tip: next,
        undo,
    })
}

/// [`extend`] with [`Block::check`] at `params`: for blocks from others.
pub fn extend_checked(
    tip: &ChainTip,
    ledger: &mut Ledger,
    block: Block,
    params: &Params,
    now: u64,
) -> Result<Extended, ExtendError> {
    extend(tip, ledger, block, |b| b.check(params), now)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::account::{AccountId, Keypair};
    use crate::block::{GENESIS_TIMESTAMP, genesis};
    use crate::record::{Action, Record};
    use crate::{Chain, Imported};

    const NOW: u64 = GENESIS_TIMESTAMP + 1_000_000_000;

    fn solved(parent: &Header, records: Vec<Record>, bits: u32, stamp: u64) -> Block {
        crate::block::solve(Block::template(
            parent,
            records,
            AccountId::default(),
            bits,
            stamp,
        ))
    }

    /// Blocks that `Chain` takes as extensions pass, and the tip and ledger agree with it.
    #[test]
    fn extending_agrees_with_the_chain() {
        let params = Params::with_floor(2);
        let key = Keypair::from_seed([3; 32]);
        let mut chain = Chain::new(params.clone());
        let (mut tip, mut ledger) = (ChainTip::genesis(), Ledger::new());
        let mut parent = genesis().header;
        for i in 0..15u64 {
            let records = match i {
                0 => vec![Record::sign(&key, 0, Action::Join { name: "a".into() })],
                _ => Vec::new(),
            };
            let block = solved(&parent, records, 2 + (i % 3) as u32, parent.timestamp + 7);
            parent = block.header.clone();
            let ext = extend_checked(&tip, &mut ledger, block.clone(), &params, NOW).unwrap();
            assert!(matches!(
                chain.insert(block, NOW),
                Ok(Imported::Extended { .. })
            ));
            tip = ext.tip;
        }
        assert_eq!(tip.hash, chain.tip().hash());
        assert_eq!(tip.work, chain.tip_work());
        assert_eq!(tip.height, chain.height());
        assert_eq!(&ledger, chain.ledger());
        assert_eq!(ChainTip::from_bytes(&tip.to_bytes()), Ok(tip));
    }

    #[test]
    fn a_block_that_breaks_a_rule_changes_nothing() {
        let params = Params::with_floor(1);
        let tip = ChainTip::genesis();
        let g = genesis().header;
        let mut ledger = Ledger::new();
        let other = solved(&g, Vec::new(), 1, g.timestamp + 1);
        let stray = solved(&other.header, Vec::new(), 1, g.timestamp + 2);
        assert!(matches!(
            extend_checked(&tip, &mut ledger, stray, &params, NOW),
            Err(ExtendError::Unlinked { .. })
        ));
        let early = solved(&g, Vec::new(), 1, g.timestamp - 1);
        assert!(matches!(
            extend_checked(&tip, &mut ledger, early, &params, NOW),
            Err(ExtendError::Invalid(
                BlockError::TimestampBeforeMedian { .. }
            ))
        ));
        let weak = solved(&g, Vec::new(), 0, g.timestamp + 1);
        assert!(matches!(
            extend_checked(&tip, &mut ledger, weak, &params, NOW),
            Err(ExtendError::Invalid(BlockError::BelowFloor { .. }))
        ));
        let key = Keypair::from_seed([4; 32]);
        let unjoined = Record::sign(
            &key,
            0,
            Action::Purchase {
                monkey: "capuchin".into(),
            },
        );
        let broke = solved(&g, vec![unjoined], 1, g.timestamp + 1);
        assert!(matches!(
            extend_checked(&tip, &mut ledger, broke, &params, NOW),
            Err(ExtendError::Invalid(BlockError::Ledger { .. }))
        ));
        assert_eq!(ledger, Ledger::new());
        assert_eq!(
            ChainTip::from_bytes(&[0; 3]),
            Err(ChainTipDecodeError::Size(3))
        );
        assert_eq!(
            ChainTip::from_bytes(&[0; CHAIN_TIP_SIZE]),
            Err(ChainTipDecodeError::Times(0))
        );
    }
}
