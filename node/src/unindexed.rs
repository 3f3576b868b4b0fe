//! The best chain's hash-keyed index entries the store has not written yet, kept in memory and
//! written [`INDEX_BATCH`] at a time.
//!
//! The store's `HEIGHTS` and `RECORDS` tables are keyed by hash, so each new entry lands on a
//! random leaf page, and a commit rewrites every leaf it touched. Written with the blocks, a
//! sync of a million blocks rewrote nearly every leaf of both tables on each of its commits
//! (a hundred or so, each a few thousand blocks), and the store's writer spent more CPU than
//! anything but the signature checks. Gathered here and written in one sorted batch, a leaf is
//! rewritten once per batch instead.
//!
//! Nothing is lost in a crash: the store records, in the same transaction as the blocks, the
//! lowest height whose entries may be missing from its tables, and an opened store reads them
//! back from the best chain's blocks above it (at most [`INDEX_BATCH`] entries' worth).
//! Readers look here as well as in the tables, so an entry is found from the moment its block
//! is committed.

use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock};

use protocol::{Block, CheckedBlock, Hash256, Record};

/// Entries gathered before they are written: about 30,000 blocks of a class's purchases (a
/// block's hash and each of its records are one entry each). Written together, they cost one
/// pass over each table's leaves; a reopened store reads at most this many entries' blocks back
/// (a tenth of a second); in memory, the entries since the last write and the ones written
/// with it (for readers that started before it) take a few megabytes.
pub const INDEX_BATCH: usize = 65_536;

/// The key of `hash` in the hash-keyed indexes: its last 8 bytes (the first ones of a block's
/// hash are the proof of work's zeros). Entries are checked against what they point at.
pub fn short_key(hash: &Hash256) -> u64 {
    let mut tail = [0; 8];
    tail.copy_from_slice(&hash.0[24..]);
    u64::from_le_bytes(tail)
}

/// Index entries of best-chain blocks: (short key, height) for the blocks' hashes and for their
/// records' ids.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Entries {
    /// Each block's hash.
    pub heights: Vec<(u64, u64)>,
    /// Each record's id, with the height of the block holding it.
    pub records: Vec<(u64, u64)>,
}

impl Entries {
    /// Adds `block`'s entries (its hash, its records' ids), as its check computed them.
    pub fn push(&mut self, block: &CheckedBlock) {
        let ids = block.ids().iter();
        self.push_keys(block.header.height, &block.hash(), ids.copied());
    }

    /// Adds the entries of a block read back from the store, unchecked.
    pub fn push_stored(&mut self, block: &Block) {
        let ids = block.records.iter().map(Record::id);
        self.push_keys(block.header.height, &block.header.hash(), ids);
    }

    fn push_keys(&mut self, height: u64, hash: &Hash256, ids: impl Iterator<Item = Hash256>) {
        self.heights.push((short_key(hash), height));
        self.records.extend(ids.map(|id| (short_key(&id), height)));
    }

    /// The lowest height among them: every block has an entry of its own.
    pub fn lowest(&self) -> Option<u64> {
        self.heights.iter().map(|(_, height)| *height).min()
    }

    /// How many entries.
    pub fn len(&self) -> usize {
        self.heights.len() + self.records.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// One generation of entries, by short key.
#[derive(Debug, Default)]
struct Maps {
    heights: HashMap<u64, u64>,
    records: HashMap<u64, u64>,
}

impl Maps {
    fn add(&mut self, entries: &Entries) {
        self.heights.extend(entries.heights.iter().copied());
        self.records.extend(entries.records.iter().copied());
    }

    fn len(&self) -> usize {
        self.heights.len() + self.records.len()
    }
}

#[derive(Debug, Default)]
struct Generations {
    /// Committed since the last batch was written to the tables.
    current: Maps,
    /// The last batch written: a reader whose view of the store began before that write finds
    /// them here.
    previous: Maps,
}

/// The entries not yet in the tables, shared by the store (which adds them once committed) and
/// its readers.
#[derive(Debug, Clone, Default)]
pub struct Unindexed(Arc<RwLock<Generations>>);

impl Unindexed {
    fn read(&self) -> std::sync::RwLockReadGuard<'_, Generations> {
        self.0.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Generations> {
        self.0.write().unwrap_or_else(PoisonError::into_inner)
    }

    /// Heights a block hash's short key may be at, the newest entry first.
    pub fn heights(&self, key: u64) -> Vec<u64> {
        self.find(key, |maps| &maps.heights)
    }

    /// Heights of the blocks a record id's short key may be in, the newest entry first.
    pub fn records(&self, key: u64) -> Vec<u64> {
        self.find(key, |maps| &maps.records)
    }

    /// `key`'s entries in one of the maps (`table`) of each generation, the newest first.
    fn find(&self, key: u64, table: impl Fn(&Maps) -> &HashMap<u64, u64>) -> Vec<u64> {
        let g = self.read();
        [&g.current, &g.previous]
            .into_iter()
            .filter_map(|maps| table(maps).get(&key).copied())
            .collect()
    }

    /// How many entries wait to be written.
    pub fn len(&self) -> usize {
        self.read().current.len()
    }

    /// Whether none do.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The entries waiting and `more`, sorted by key, to write in one batch.
    pub fn batch(&self, more: &Entries) -> Entries {
        let g = self.read();
        let sorted = |map: &HashMap<u64, u64>, more: &[(u64, u64)]| {
            let mut all: Vec<(u64, u64)> = map.iter().map(|(k, v)| (*k, *v)).collect();
            all.extend_from_slice(more);
            // The later entry for a key wins, as a table insert would have it.
            all.sort_by_key(|(key, _)| *key);
            all
        };
        Entries {
            heights: sorted(&g.current.heights, &more.heights),
            records: sorted(&g.current.records, &more.records),
        }
    }

    /// `entries` are committed (with their blocks), not yet in the tables.
    pub fn add(&self, entries: &Entries) {
        if !entries.is_empty() {
            self.write().current.add(entries);
        }
    }

    /// The waiting entries and `entries` are now in the tables: they become the previous
    /// generation, and the one before is forgotten.
    pub fn written(&self, entries: &Entries) {
        let mut g = self.write();
        let mut current = std::mem::take(&mut g.current);
        current.add(entries);
        g.previous = current;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(heights: &[(u64, u64)], records: &[(u64, u64)]) -> Entries {
        Entries {
            heights: heights.to_vec(),
            records: records.to_vec(),
        }
    }

    #[test]
    fn entries_are_found_while_waiting_and_one_batch_after_they_are_written() {
        let un = Unindexed::default();
        un.add(&entries(&[(1, 10)], &[(5, 10)]));
        assert_eq!(un.heights(1), vec![10]);
        assert_eq!(un.records(5), vec![10]);
        assert_eq!(un.len(), 2);

        // A reorg put another block under the same key: the newest first, then the older.
        let batch = un.batch(&entries(&[(2, 11), (1, 12)], &[]));
        assert_eq!(
            batch.heights,
            vec![(1, 10), (1, 12), (2, 11)],
            "sorted, later last"
        );
        un.written(&entries(&[(2, 11), (1, 12)], &[]));
        assert!(un.is_empty(), "nothing waits");
        assert_eq!(
            un.heights(2),
            vec![11],
            "a reader from before the write still finds it"
        );

        un.add(&entries(&[(1, 13)], &[]));
        assert_eq!(un.heights(1), vec![13, 12]);
        un.written(&Entries::default());
        un.written(&Entries::default());
        assert!(
            un.heights(1).is_empty() && un.heights(2).is_empty(),
            "two writes later"
        );
    }
}
