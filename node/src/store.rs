//! The node's on-disk store: every accepted block and every pending record, the best chain's
//! index, and checkpoints of the ledger, in a redb database in the data dir. redb commits are
//! atomic and durable, so a `kill -9` at any moment leaves either the state before a write or
//! the state after it, never a store that fails to load. redb also locks the file, which is
//! what refuses a second node on the same data dir.
//!
//! Blocks are keyed by height and hash, so a block that leaves the node's tree (a side block
//! pruned by the caps, or found invalid) is deleted from the store by its key, and reading the
//! table in key order still gives every parent before its children. Beside them, written in the
//! same transaction as the blocks they describe: the best chain by height ([`BEST`]), each of
//! its blocks' height by hash ([`HEIGHTS`]), the block holding each of its records
//! ([`RECORDS`]; these two are written in batches of [`INDEX_BATCH`] entries, see
//! [`crate::unindexed`]), and every [`CHECKPOINT_EVERY`] blocks (more for a large ledger:
//! [`checkpoint_interval`]) the ledger at the tip ([`CHECKPOINTS`]). A restart resumes from a
//! checkpoint at least a reorg's depth below the tip and inserts only the blocks after it,
//! instead of replaying the whole chain; a node that keeps only its recent blocks in memory
//! reads older ones here ([`Reader`]).

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use protocol::params::MAX_REORG_DEPTH;
use protocol::{Block, BlockHash, CheckedBlock, Hash256, Ledger, Params, Record, RecordId};
use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};

use crate::unindexed::{Entries, INDEX_BATCH, Unindexed, short_key};

/// Blocks by height and hash (a parent always before its children), in their binary form
/// ([`Block::to_bytes`]).
const BLOCKS: TableDefinition<(u64, [u8; 32]), &[u8]> = TableDefinition::new("blocks_v3");
/// The table blocks were kept in before, by order of acceptance: its blocks could not be
/// deleted without an index, so pruned side blocks stayed on disk for ever. Moved into
/// [`BLOCKS`] once, the first time a store is opened.
const BLOCKS_V2: TableDefinition<u64, &[u8]> = TableDefinition::new("blocks_v2");
/// redb's page cache. Its default, a gibibyte, let a full read of the chain at start stay
/// resident (tens of megabytes at 100,000 blocks). 16 MiB holds the hash-keyed indexes' inner
/// pages and the leaves a sync's commits rewrite: with 2 MiB the writer read those back from
/// the OS on every commit, and a 100,000-block sync took about 10% longer. The cost is flat in
/// the chain's length (RSS after that sync: 27 MB with 2 MiB, 38 MB with 16).
const CACHE_BYTES: usize = 16 * 1024 * 1024;
/// Pending records in the order they were admitted, in their canonical encoding.
const PENDING: TableDefinition<u64, &[u8]> = TableDefinition::new("pending_v2");
/// The best chain: the hash of its block at each height, genesis included, none above the tip.
const BEST: TableDefinition<u64, [u8; 32]> = TableDefinition::new("best_v1");
/// The height of every block that was on the best chain, by its hash's [`short_key`]. An entry
/// is believed only when [`BEST`] holds the same hash at that height: a block that left the
/// best chain keeps a stale entry, which costs less than finding and deleting it, and two
/// best-chain hashes that share a short key (one chance in 2^64 for a pair) leave the older one
/// unfound, as if it were not stored. Short keys because the table is keyed by hash, so every
/// block lands on a random leaf: with whole hashes (format 4) a sync of a million blocks
/// rewrote a leaf per block and the writer spent a third of the node's CPU.
const HEIGHTS: TableDefinition<u64, u64> = TableDefinition::new("heights_v2");
/// The height of the best-chain block that holds each record, by the record id's
/// [`short_key`]; believed once that block is read and holds the record. How a record resent
/// long after it was mined is still answered "mined".
const RECORDS: TableDefinition<u64, u64> = TableDefinition::new("records_v2");
/// Format 4's index tables, keyed by whole hashes: dropped when a store is opened, and rebuilt
/// as [`HEIGHTS`] and [`RECORDS`] (the format changed, so the node rebuilds its index once).
const OLD_HEIGHTS: TableDefinition<[u8; 32], u64> = TableDefinition::new("heights_v1");
const OLD_RECORDS: TableDefinition<[u8; 32], (u64, [u8; 32])> = TableDefinition::new("records_v1");
/// Ledger checkpoints by height: the block's hash, the cumulative work through it, the ledger
/// after it ([`Ledger::to_bytes`]), then the SHA-256 of all that, so damaged bytes are found
/// before they are believed.
const CHECKPOINTS: TableDefinition<u64, &[u8]> = TableDefinition::new("checkpoints_v1");
/// The store's format, under [`FORMAT_KEY`]: present once the tables above describe every block
/// in [`BLOCKS`]. A store without it (written before them, or whose rebuild was cut short) is
/// rebuilt from its blocks once.
const META: TableDefinition<&str, u64> = TableDefinition::new("meta_v1");
/// The key of the format in [`META`].
const FORMAT_KEY: &str = "format";
/// The key, in [`META`], of the lowest best-chain height whose [`HEIGHTS`] and [`RECORDS`]
/// entries may be missing from the tables (held in memory: [`Unindexed`]); absent when none
/// are. Written in the same transaction as the blocks, so an opened store knows which blocks
/// to read its missing entries back from.
const UNINDEXED_KEY: &str = "unindexed_from";
/// The format this code writes: blocks, the best-chain index (short keys since 5) and ledger
/// checkpoints.
const FORMAT: u64 = 5;
/// A checkpoint of the ledger is written once the tip is at least this many blocks above the
/// last one (more for a large ledger: [`checkpoint_interval`]). A restart inserts the blocks
/// after the newest checkpoint a reorg cannot reach, at most the interval plus
/// [`MAX_REORG_DEPTH`] of them (a few tens of milliseconds); each checkpoint costs one encoding
/// of the whole ledger on the chain thread, so not more often.
pub const CHECKPOINT_EVERY: u64 = 2000;
/// Ledger bytes a checkpoint may cost per block since the last one: past [`CHECKPOINT_EVERY`]
/// blocks, the interval grows with the ledger ([`checkpoint_interval`]). A ledger of 100,000
/// polls is about 10 MB, and a checkpoint of it every 2,000 blocks made a 100,000-block sync
/// encode and write half a gigabyte (most of the writer's time, and a tenth of the chain
/// thread's). At 1 KiB a block, a checkpoint costs about as much as the blocks it follows, and
/// a restart replays at most about a thousandth of the ledger's size in blocks: 10,000 blocks
/// (a tenth of a second) for that 10 MB ledger.
pub const CHECKPOINT_BYTES_PER_BLOCK: u64 = 1024;
/// Checkpoints kept: the newest ones, so that one a reorg cannot reach is always among them
/// (a reorg that disconnects a checkpoint's block makes it useless, never wrong: it is checked
/// against [`BEST`]).
const MAX_CHECKPOINTS: usize = 4;
/// Best-chain blocks kept in memory below the tip ([`protocol::Chain::keep_recent`]): what the
/// deepest reorg and the median-time rule read. Older ones are read from the store when a peer
/// or a subscriber asks for them.
pub const RECENT_BLOCKS: usize = MAX_REORG_DEPTH + protocol::params::MEDIAN_TIME_SPAN;
/// Most blocks read from the store at a time while loading: the chain is never held twice.
pub const LOAD_CHUNK: usize = 1024;

/// Why the store could not be opened or written.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Another process has the database open.
    #[error("data dir {0} is in use by another node")]
    InUse(String),
    /// redb failed.
    #[error("store: {0}")]
    Db(#[from] redb::Error),
    /// The lock file could not be created.
    #[error("store: lock file: {0}")]
    Io(#[from] std::io::Error),
}

macro_rules! db_error {
    ($($ty:ty),*) => {$(
        impl From<$ty> for StoreError {
            fn from(e: $ty) -> StoreError {
                StoreError::Db(e.into())
            }
        }
    )*};
}
db_error!(
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError
);

/// What the store held at start, besides its blocks (read with [`Store::read_blocks`]).
#[derive(Debug, Default)]
pub struct Loaded {
    /// Pending records in admission order.
    pub pending: Vec<Record>,
    /// Pending entries that could not be parsed and were skipped.
    pub damaged: usize,
    /// Whether the best-chain index and checkpoints must be rebuilt from the blocks: a store
    /// written before them, or whose rebuild was cut short.
    pub rebuild: bool,
}

/// Where a restart resumes: a checkpoint's block, the work through it and the ledger after it.
#[derive(Debug)]
pub struct Resume {
    /// The checkpoint's block, read back and checked ([`Block::check_own`]).
    pub block: Arc<CheckedBlock>,
    /// Cumulative work from genesis through it.
    pub work: u128,
    /// The ledger after it.
    pub ledger: Ledger,
    /// The stored best tip's height: the blocks after the checkpoint to insert again.
    pub tip: u64,
}

/// How many blocks after a checkpoint of `last_bytes` the next one is due: [`CHECKPOINT_EVERY`],
/// or more for a large ledger ([`CHECKPOINT_BYTES_PER_BLOCK`]).
pub fn checkpoint_interval(last_bytes: usize) -> u64 {
    CHECKPOINT_EVERY.max(last_bytes as u64 / CHECKPOINT_BYTES_PER_BLOCK)
}

/// The newest checkpoint written, for [`Checkpoint::due`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LastCheckpoint {
    /// Its height.
    pub height: u64,
    /// Its ledger's size in bytes (0 when unknown: the interval is then [`CHECKPOINT_EVERY`]).
    pub bytes: usize,
}

/// A ledger checkpoint to write: the ledger after block `hash` at `height`.
#[derive(Debug, Clone)]
pub struct Checkpoint {
    /// The block's height.
    pub height: u64,
    /// The block's hash.
    pub hash: BlockHash,
    /// Cumulative work from genesis through it.
    pub work: u128,
    /// [`Ledger::to_bytes`] of the ledger after it.
    pub ledger: Vec<u8>,
}

impl Checkpoint {
    /// A checkpoint of `chain`'s ledger at its tip, when the tip is [`checkpoint_interval`]
    /// blocks above the `last` one (which it then becomes).
    pub fn due(chain: &protocol::Chain, last: &mut LastCheckpoint) -> Option<Checkpoint> {
        let height = chain.height();
        if height < last.height.saturating_add(checkpoint_interval(last.bytes)) {
            return None;
        }
        let ledger = chain.ledger().to_bytes();
        *last = LastCheckpoint {
            height,
            bytes: ledger.len(),
        };
        Some(Checkpoint {
            height,
            hash: chain.tip().hash(),
            work: chain.tip_work(),
            ledger,
        })
    }

    /// The stored form: hash, work, ledger, then the SHA-256 of those.
    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(32 + 16 + self.ledger.len() + 32);
        out.extend_from_slice(&self.hash.0);
        out.extend_from_slice(&self.work.to_le_bytes());
        out.extend_from_slice(&self.ledger);
        let sum = Hash256::digest(&out);
        out.extend_from_slice(&sum.0);
        out
    }

    /// Reads [`Checkpoint::encode`]'s form; `None` when the checksum or the length is wrong.
    fn decode(height: u64, bytes: &[u8]) -> Option<Checkpoint> {
        let body_len = bytes.len().checked_sub(32)?;
        let (body, sum) = bytes.split_at(body_len);
        if Hash256::digest(body).0 != sum {
            return None;
        }
        let hash = Hash256(body.get(..32)?.try_into().ok()?);
        let work = u128::from_le_bytes(body.get(32..48)?.try_into().ok()?);
        Some(Checkpoint {
            height,
            hash,
            work,
            ledger: body.get(48..)?.to_vec(),
        })
    }
}

/// What one write changes, all in one transaction.
#[derive(Debug, Default)]
pub struct Changes<'a> {
    /// Blocks that entered the tree, parents first.
    pub blocks: Vec<&'a CheckedBlock>,
    /// Blocks (height, hash) that left the tree.
    pub remove_blocks: &'a [(u64, BlockHash)],
    /// Blocks that joined the best chain, oldest first (their heights are overwritten).
    pub connected: Vec<&'a CheckedBlock>,
    /// The best tip's height after this write, when it may have moved: the best chain above it
    /// is cut off.
    pub tip: Option<u64>,
    /// A ledger checkpoint at a block of the best chain as written here.
    pub checkpoint: Option<&'a Checkpoint>,
    /// Records newly pending.
    pub add_pending: Vec<&'a Record>,
    /// Pending records to forget.
    pub forget: &'a [RecordId],
    /// Whether the store's format is complete after this write (the end of a rebuild).
    pub complete: bool,
}

impl Changes<'_> {
    /// Whether nothing but pending records changes (so nothing at all when the store already
    /// holds those).
    pub fn only_pending(&self) -> bool {
        self.blocks.is_empty()
            && self.remove_blocks.is_empty()
            && self.connected.is_empty()
            && self.tip.is_none()
            && self.checkpoint.is_none()
            && !self.complete
    }
}

/// The open store.
#[derive(Debug)]
pub struct Store {
    /// Held for the store's lifetime: the operating system drops the lock when the process dies,
    /// however it dies.
    _lock: std::fs::File,
    db: Arc<Database>,
    next_pending: u64,
    pending_keys: HashMap<RecordId, u64>,
    /// Index entries committed and not yet in their tables.
    unindexed: Unindexed,
    /// The lowest height among them, as [`UNINDEXED_KEY`] says on disk.
    unindexed_from: Option<u64>,
    /// How many entries are written at once: [`INDEX_BATCH`], but in tests.
    index_batch: usize,
    /// How many writes fail on purpose before one goes through (tests of a failing disk).
    #[cfg(test)]
    pub(crate) failing: usize,
}

impl Store {
    /// Opens (or creates) the store in `dir` and reads its pending records; blocks are read
    /// with [`Store::read_blocks`], from where [`Store::resume`] says.
    pub fn open(dir: &Path) -> Result<(Store, Loaded), StoreError> {
        std::fs::create_dir_all(dir)?;
        let lock = std::fs::File::create(dir.join("LOCK"))?;
        if lock.try_lock().is_err() {
            return Err(StoreError::InUse(dir.display().to_string()));
        }
        let path = dir.join("chain.redb");
        let db = redb::Builder::new()
            .set_cache_size(CACHE_BYTES)
            .create(&path)
            .map_err(|e| match e {
                redb::DatabaseError::DatabaseAlreadyOpen => {
                    StoreError::InUse(dir.display().to_string())
                }
                other => StoreError::Db(other.into()),
            })?;
        let txn = db.begin_write()?;
        txn.open_table(BLOCKS)?;
        txn.open_table(PENDING)?;
        txn.open_table(BEST)?;
        txn.open_table(HEIGHTS)?;
        txn.open_table(RECORDS)?;
        txn.open_table(CHECKPOINTS)?;
        txn.open_table(META)?;
        txn.delete_table(OLD_HEIGHTS)?;
        txn.delete_table(OLD_RECORDS)?;
        txn.commit()?;
        migrate(&db)?;
        let txn = db.begin_write()?;
        {
            let fresh = txn.open_table(BLOCKS)?.is_empty()?;
            let mut meta = txn.open_table(META)?;
            // A store with no blocks is complete as it stands: genesis is its best chain.
            if fresh && meta.get(FORMAT_KEY)?.is_none() {
                meta.insert(FORMAT_KEY, FORMAT)?;
                txn.open_table(BEST)?
                    .insert(0, CheckedBlock::genesis().hash().0)?;
            }
        }
        txn.commit()?;

        let mut loaded = Loaded::default();
        let mut store = Store {
            _lock: lock,
            db: Arc::new(db),
            next_pending: 0,
            pending_keys: HashMap::new(),
            unindexed: Unindexed::default(),
            unindexed_from: None,
            index_batch: INDEX_BATCH,
            #[cfg(test)]
            failing: 0,
        };
        let read = store.db.begin_read()?;
        let meta = read.open_table(META)?;
        loaded.rebuild = meta.get(FORMAT_KEY)?.map(|v| v.value()) != Some(FORMAT);
        // A rebuild enters every block again, entries included.
        if let Some(from) = meta.get(UNINDEXED_KEY)?.map(|v| v.value())
            && !loaded.rebuild
        {
            store.read_unindexed(&read, from)?;
        }
        for entry in read.open_table(PENDING)?.iter()? {
            let (key, value) = entry?;
            store.next_pending = key.value() + 1;
            match Record::decode(value.value()) {
                Ok(record) => {
                    store.pending_keys.insert(record.id(), key.value());
                    loaded.pending.push(record);
                }
                Err(_) => loaded.damaged += 1,
            }
        }
        Ok((store, loaded))
    }

    /// Reads back the index entries of the stored best chain from height `from` up, which the
    /// tables may lack ([`UNINDEXED_KEY`]).
    fn read_unindexed(
        &mut self,
        read: &redb::ReadTransaction,
        from: u64,
    ) -> Result<(), StoreError> {
        let blocks = read.open_table(BLOCKS)?;
        let mut entries = Entries::default();
        for entry in read.open_table(BEST)?.range(from..)? {
            let (height, hash) = entry?;
            let key = (height.value(), hash.value());
            // A damaged block is found by the load, which reads every block after the resume
            // point; its entries are only missing, as if it were not stored.
            if let Some(block) = blocks
                .get(key)?
                .and_then(|b| Block::from_bytes(b.value()).ok())
            {
                entries.push_stored(&block);
            }
        }
        tracing::debug!(
            from,
            entries = entries.len(),
            "read back the unwritten index entries"
        );
        self.unindexed.add(&entries);
        self.unindexed_from = Some(from);
        Ok(())
    }

    /// Where to resume: the newest checkpoint at least [`MAX_REORG_DEPTH`] below the stored tip
    /// whose block is on the stored best chain and whose bytes are sound, or genesis. Checkpoints
    /// that fail are logged, passed over and deleted (damaged bytes are never believed, and a
    /// later checkpoint takes their place); the caller inserts the blocks after the one chosen.
    pub fn resume(&mut self, params: &Params) -> Result<Resume, StoreError> {
        let mut damaged = Vec::new();
        let resume = self.find_resume(params, &mut damaged)?;
        if !damaged.is_empty() {
            let txn = self.db.begin_write()?;
            {
                let mut table = txn.open_table(CHECKPOINTS)?;
                for height in &damaged {
                    table.remove(height)?;
                }
            }
            txn.commit()?;
        }
        Ok(resume)
    }

    fn find_resume(&self, params: &Params, damaged: &mut Vec<u64>) -> Result<Resume, StoreError> {
        let read = self.db.begin_read()?;
        let best = read.open_table(BEST)?;
        let tip = best.last()?.map_or(0, |(k, _)| k.value());
        let limit = tip.saturating_sub(MAX_REORG_DEPTH as u64);
        let blocks = read.open_table(BLOCKS)?;
        for entry in read.open_table(CHECKPOINTS)?.range(..=limit)?.rev() {
            let (key, value) = entry?;
            let height = key.value();
            let Some(checkpoint) = Checkpoint::decode(height, value.value()) else {
                tracing::warn!(height, "a damaged ledger checkpoint is passed over");
                damaged.push(height);
                continue;
            };
            if best.get(height)?.map(|h| h.value()) != Some(checkpoint.hash.0) {
                continue;
            }
            let ledger = match Ledger::from_bytes(&checkpoint.ledger) {
                Ok(ledger) => ledger,
                Err(error) => {
                    tracing::warn!(height, %error, "a damaged ledger checkpoint is passed over");
                    damaged.push(height);
                    continue;
                }
            };
            let block = blocks
                .get((height, checkpoint.hash.0))?
                .and_then(|bytes| Block::from_bytes(bytes.value()).ok())
                .and_then(|block| block.check_own(params).ok())
                .filter(|block| block.hash() == checkpoint.hash);
            let Some(block) = block else {
                tracing::warn!(
                    height,
                    "the block of a ledger checkpoint is missing or damaged"
                );
                continue;
            };
            return Ok(Resume {
                block: Arc::new(block),
                work: checkpoint.work,
                ledger,
                tip,
            });
        }
        Ok(Resume {
            block: Arc::new(CheckedBlock::genesis()),
            work: 0,
            ledger: Ledger::new(),
            tip,
        })
    }

    /// Up to [`LOAD_CHUNK`] stored blocks from key `from` (height and hash, in key order:
    /// parents first), how many entries did not parse, and the key to read from next (`None`
    /// at the end).
    #[allow(clippy::type_complexity)]
    pub fn read_blocks(
        &self,
        from: (u64, BlockHash),
    ) -> Result<(Vec<Block>, usize, Option<(u64, BlockHash)>), StoreError> {
        let read = self.db.begin_read()?;
        let table = read.open_table(BLOCKS)?;
        let mut blocks = Vec::with_capacity(LOAD_CHUNK);
        let mut damaged = 0;
        for entry in table.range((from.0, from.1.0)..)? {
            let (key, value) = entry?;
            let (height, hash) = key.value();
            if blocks.len() + damaged == LOAD_CHUNK {
                return Ok((blocks, damaged, Some((height, Hash256(hash)))));
            }
            match Block::from_bytes(value.value()) {
                Ok(block) => blocks.push(block),
                Err(_) => damaged += 1,
            }
        }
        Ok((blocks, damaged, None))
    }

    /// How many blocks the store holds (side blocks included).
    pub fn block_count(&self) -> Result<u64, StoreError> {
        let read = self.db.begin_read()?;
        Ok(read.open_table(BLOCKS)?.len()?)
    }

    /// Writes a batch in one transaction (see [`Changes`]). `durable`: on disk when this returns
    /// (a sync); otherwise with the next durable write or [`Store::sync`], and a crash before
    /// that loses the batch but leaves the store as it was before it.
    pub fn write(&mut self, changes: &Changes<'_>, durable: bool) -> Result<(), StoreError> {
        self.write_all(std::slice::from_ref(changes), durable)
    }

    /// Writes several batches, in order, in one transaction ([`Store::write`] of each, but one
    /// commit): a writer that fell behind catches up with one commit instead of one per batch.
    /// The hash-keyed index entries of the blocks wait in memory ([`Unindexed`]) until
    /// [`INDEX_BATCH`] of them are written together. All or nothing: on an error, nothing of
    /// any of them is written.
    pub fn write_all(&mut self, all: &[Changes<'_>], durable: bool) -> Result<(), StoreError> {
        let nothing = all.iter().all(|changes| {
            changes.only_pending()
                && changes
                    .add_pending
                    .iter()
                    .all(|r| self.pending_keys.contains_key(&r.id()))
                && !changes
                    .forget
                    .iter()
                    .any(|id| self.pending_keys.contains_key(id))
        });
        if nothing {
            return Ok(());
        }
        #[cfg(test)]
        if self.failing > 0 {
            self.failing -= 1;
            return Err(std::io::Error::other("a failing disk (a test)").into());
        }
        // What the pending keys were before each change, undone should the transaction fail.
        let next_pending = self.next_pending;
        let mut undo = Vec::new();
        let written = self.write_in_one(all, durable, &mut undo);
        if written.is_err() {
            self.next_pending = next_pending;
            for (id, key) in undo.into_iter().rev() {
                match key {
                    Some(key) => self.pending_keys.insert(id, key),
                    None => self.pending_keys.remove(&id),
                };
            }
        }
        written
    }

    fn write_in_one(
        &mut self,
        all: &[Changes<'_>],
        durable: bool,
        undo: &mut Vec<(RecordId, Option<u64>)>,
    ) -> Result<(), StoreError> {
        let mut txn = self.db.begin_write()?;
        if !durable {
            txn.set_durability(redb::Durability::None)
                .map_err(|e| StoreError::Db(e.into()))?;
        }
        let mut entries = Entries::default();
        for changes in all {
            self.apply(&txn, changes, undo, &mut entries)?;
        }
        let batch = self.unindexed.len() + entries.len() >= self.index_batch;
        let from = match (batch, entries.lowest()) {
            (true, _) => None,
            (false, Some(low)) => Some(self.unindexed_from.map_or(low, |from| from.min(low))),
            (false, None) => self.unindexed_from,
        };
        {
            let mut meta = txn.open_table(META)?;
            if batch {
                let all = self.unindexed.batch(&entries);
                let mut heights = txn.open_table(HEIGHTS)?;
                for (key, height) in all.heights {
                    heights.insert(key, height)?;
                }
                let mut records = txn.open_table(RECORDS)?;
                for (key, height) in all.records {
                    records.insert(key, height)?;
                }
                meta.remove(UNINDEXED_KEY)?;
            } else if from != self.unindexed_from
                && let Some(from) = from
            {
                meta.insert(UNINDEXED_KEY, from)?;
            }
        }
        txn.commit()?;
        // Readers see the entries once their blocks are committed, not before.
        if batch {
            self.unindexed.written(&entries);
        } else {
            self.unindexed.add(&entries);
        }
        self.unindexed_from = from;
        Ok(())
    }

    /// One batch's changes, in `txn`; the pending keys follow, each key's value before it
    /// changed going to `undo` (the caller restores them if the transaction fails).
    /// The index entries of the blocks that joined the best chain go to `entries`, for the
    /// caller to keep or write ([`Unindexed`]).
    fn apply(
        &mut self,
        txn: &redb::WriteTransaction,
        changes: &Changes<'_>,
        undo: &mut Vec<(RecordId, Option<u64>)>,
        entries: &mut Entries,
    ) -> Result<(), StoreError> {
        let forget: Vec<(RecordId, u64)> = changes
            .forget
            .iter()
            .filter_map(|id| self.pending_keys.get(id).map(|k| (*id, *k)))
            .collect();
        let add: Vec<&&Record> = changes
            .add_pending
            .iter()
            .filter(|r| !self.pending_keys.contains_key(&r.id()))
            .collect();
        let mut next_pending = self.next_pending;
        let mut new_keys = Vec::new();
        {
            let mut table = txn.open_table(BLOCKS)?;
            for block in &changes.blocks {
                let key = (block.header.height, block.hash().0);
                table.insert(key, block.to_bytes().as_slice())?;
            }
            // After the inserts: a block added and pruned in one batch leaves nothing behind.
            for (height, hash) in changes.remove_blocks {
                table.remove((*height, hash.0))?;
            }
            let mut best = txn.open_table(BEST)?;
            for block in &changes.connected {
                best.insert(block.header.height, block.hash().0)?;
                entries.push(block);
            }
            if let Some(tip) = changes.tip {
                best.retain_in(tip + 1.., |_, _| false)?;
            }
            if let Some(checkpoint) = changes.checkpoint {
                let mut table = txn.open_table(CHECKPOINTS)?;
                table.insert(checkpoint.height, checkpoint.encode().as_slice())?;
                let old: Vec<u64> = table
                    .iter()?
                    .rev()
                    .skip(MAX_CHECKPOINTS)
                    .filter_map(|e| e.ok().map(|(k, _)| k.value()))
                    .collect();
                for height in old {
                    table.remove(height)?;
                }
            }
            if changes.complete {
                txn.open_table(META)?.insert(FORMAT_KEY, FORMAT)?;
            }
            let mut table = txn.open_table(PENDING)?;
            for record in add {
                table.insert(next_pending, record.encode().as_slice())?;
                new_keys.push((record.id(), next_pending));
                next_pending += 1;
            }
            for (_, key) in &forget {
                table.remove(key)?;
            }
        }
        self.next_pending = next_pending;
        for (id, key) in new_keys {
            undo.push((id, self.pending_keys.insert(id, key)));
        }
        for (id, key) in forget {
            self.pending_keys.remove(&id);
            undo.push((id, Some(key)));
        }
        Ok(())
    }

    /// Makes every write so far durable.
    pub fn sync(&mut self) -> Result<(), StoreError> {
        self.db.begin_write()?.commit()?;
        Ok(())
    }

    /// Pending records currently stored.
    pub fn pending_ids(&self) -> impl Iterator<Item = &RecordId> {
        self.pending_keys.keys()
    }

    /// A handle that reads the best chain's older blocks while the writer thread owns the store.
    pub fn reader(&self) -> Reader {
        Reader {
            db: Arc::clone(&self.db),
            unindexed: self.unindexed.clone(),
        }
    }
}

/// Reads the stored best chain from any thread (redb lets readers run beside the writer): the
/// blocks a node no longer keeps in memory, for a peer's sync, a locator, or a record resent
/// long after it was mined. What it reads is what the writer committed; a read that fails is
/// `None`, as if the block were not there.
#[derive(Debug, Clone)]
pub struct Reader {
    db: Arc<Database>,
    unindexed: Unindexed,
}

impl Reader {
    /// A consistent view to read from.
    pub fn snapshot(&self) -> Option<Snapshot> {
        Some(Snapshot {
            txn: self.db.begin_read().ok()?,
            unindexed: self.unindexed.clone(),
        })
    }
}

/// One consistent view of the store (a redb read transaction).
pub struct Snapshot {
    txn: redb::ReadTransaction,
    unindexed: Unindexed,
}

impl Snapshot {
    /// The hash of the best-chain block at `height`.
    pub fn hash_at(&self, height: u64) -> Option<BlockHash> {
        let best = self.txn.open_table(BEST).ok()?;
        let hash = best.get(height).ok()??.value();
        Some(Hash256(hash))
    }

    /// The height of `hash` if it is on the stored best chain.
    pub fn height_of(&self, hash: &BlockHash) -> Option<u64> {
        let key = short_key(hash);
        self.candidates(HEIGHTS, key, self.unindexed.heights(key))
            .into_iter()
            .find(|&height| self.hash_at(height) == Some(*hash))
    }

    /// The heights `key` has in `table`, then in `waiting` (its entries not yet written).
    fn candidates(
        &self,
        table: TableDefinition<u64, u64>,
        key: u64,
        waiting: Vec<u64>,
    ) -> Vec<u64> {
        let stored = self
            .txn
            .open_table(table)
            .ok()
            .and_then(|t| t.get(key).ok().flatten().map(|v| v.value()));
        stored.into_iter().chain(waiting).collect()
    }

    /// The best-chain block at `height`, read back and checked ([`Block::check_own`]: a
    /// damaged entry is `None`).
    pub fn block_at(&self, height: u64, params: &Params) -> Option<Arc<CheckedBlock>> {
        let hash = self.hash_at(height)?;
        let bytes = self
            .txn
            .open_table(BLOCKS)
            .ok()?
            .get((height, hash.0))
            .ok()??;
        let block = Block::from_bytes(bytes.value()).ok()?;
        let checked = block.check_own(params).ok()?;
        (checked.hash() == hash).then(|| Arc::new(checked))
    }

    /// The height of the newest ledger checkpoint (0 when there is none).
    pub fn newest_checkpoint(&self) -> Option<u64> {
        let table = self.txn.open_table(CHECKPOINTS).ok()?;
        Some(table.last().ok()?.map_or(0, |(k, _)| k.value()))
    }

    /// The best-chain block that holds record `id`.
    pub fn block_with(&self, id: &RecordId, params: &Params) -> Option<Arc<CheckedBlock>> {
        let key = short_key(id);
        self.candidates(RECORDS, key, self.unindexed.records(key))
            .into_iter()
            .filter_map(|height| self.block_at(height, params))
            .find(|block| block.records.iter().any(|r| r.id() == *id))
    }
}

/// Moves the blocks of a store written before blocks were keyed by height and hash into
/// [`BLOCKS`], once, and drops the old table.
fn migrate(db: &Database) -> Result<(), StoreError> {
    // A write transaction would create the table it opens: look first.
    match db.begin_read()?.open_table(BLOCKS_V2) {
        Ok(_) => {}
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(()),
        Err(e) => return Err(e.into()),
    }
    let txn = db.begin_write()?;
    let mut moved = 0usize;
    {
        let old = txn.open_table(BLOCKS_V2)?;
        let mut new = txn.open_table(BLOCKS)?;
        for entry in old.iter()? {
            let (_, value) = entry?;
            // A damaged entry would be skipped at load anyway.
            if let Ok(block) = Block::from_bytes(value.value()) {
                let key = (block.header.height, block.header.hash().0);
                new.insert(key, value.value())?;
                moved += 1;
            }
        }
    }
    txn.delete_table(BLOCKS_V2)?;
    txn.commit()?;
    tracing::info!(
        blocks = moved,
        "migrated the store: blocks are now kept by height and hash, so pruned side blocks leave it"
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use protocol::genesis;

    use super::*;

    fn load(dir: &Path) -> (Store, Loaded, Vec<Block>) {
        let (store, loaded) = Store::open(dir).unwrap();
        let mut blocks = Vec::new();
        let mut next = Some((0, Hash256::ZERO));
        while let Some(from) = next {
            let (chunk, damaged, rest) = store.read_blocks(from).unwrap();
            assert_eq!(damaged, 0);
            blocks.extend(chunk);
            next = rest;
        }
        (store, loaded, blocks)
    }

    fn write_blocks(store: &mut Store, blocks: &[Block], checkpoint: Option<&Checkpoint>) {
        let params = Params::with_floor(0);
        let checked: Vec<CheckedBlock> = blocks
            .iter()
            .map(|b| b.clone().check_own(&params).unwrap())
            .collect();
        let changes = Changes {
            blocks: checked.iter().collect(),
            connected: checked.iter().collect(),
            tip: blocks.last().map(|b| b.header.height),
            checkpoint,
            ..Changes::default()
        };
        store.write(&changes, true).unwrap();
    }

    /// Whether `store` holds `table`.
    fn has_table<K: redb::Key + 'static, V: redb::Value + 'static>(
        store: &Store,
        table: TableDefinition<K, V>,
    ) -> bool {
        let read = store.db.begin_read().unwrap();
        !matches!(
            read.open_table(table),
            Err(redb::TableError::TableDoesNotExist(_))
        )
    }

    /// What the node does once it rebuilt `store`'s index: says the format is complete. Opened
    /// again, the store needs no rebuild; its blocks are returned.
    fn rebuilt(mut store: Store, dir: &Path) -> Vec<Block> {
        let complete = Changes {
            complete: true,
            ..Changes::default()
        };
        store.write(&complete, true).unwrap();
        drop(store);
        let (_, loaded, blocks) = load(dir);
        assert!(!loaded.rebuild, "rebuilt once");
        blocks
    }

    #[test]
    fn a_store_of_the_old_layout_is_migrated_once_and_its_index_rebuilt() {
        let dir = tempfile::tempdir().unwrap();
        let chain = testkit::mine_chain(&genesis(), 3, 1, 1000);
        {
            let db = Database::create(dir.path().join("chain.redb")).unwrap();
            let txn = db.begin_write().unwrap();
            {
                let mut old = txn.open_table(BLOCKS_V2).unwrap();
                for (i, block) in chain.iter().enumerate() {
                    old.insert(i as u64, block.to_bytes().as_slice()).unwrap();
                }
            }
            txn.commit().unwrap();
        }
        let (store, loaded, blocks) = load(dir.path());
        assert_eq!(blocks, chain, "every block, parents first");
        assert!(loaded.rebuild, "no best-chain index yet");
        assert!(!has_table(&store, BLOCKS_V2), "moved and dropped");
        let again = rebuilt(store, dir.path());
        assert_eq!(again, chain);
    }

    #[test]
    fn a_format_4_store_drops_its_whole_hash_indexes_and_is_rebuilt_once() {
        let dir = tempfile::tempdir().unwrap();
        let chain = testkit::mine_chain(&genesis(), 3, 1, 1000);
        {
            let (mut store, _, _) = load(dir.path());
            write_blocks(&mut store, &chain, None);
            let txn = store.db.begin_write().unwrap();
            txn.open_table(META).unwrap().insert(FORMAT_KEY, 4).unwrap();
            txn.open_table(OLD_HEIGHTS)
                .unwrap()
                .insert(chain[0].header.hash().0, 1)
                .unwrap();
            txn.commit().unwrap();
        }
        let (store, loaded, blocks) = load(dir.path());
        assert_eq!(blocks, chain);
        assert!(loaded.rebuild, "format 4's index is not format 5's");
        assert!(!has_table(&store, OLD_HEIGHTS), "dropped");
        assert_eq!(rebuilt(store, dir.path()), chain);
    }

    #[test]
    fn the_short_key_indexes_find_best_chain_blocks_and_records_and_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        let key = protocol::Keypair::from_seed([7; 32]);
        let join = Record::sign(&key, 0, protocol::Action::Join { name: "al".into() });
        let miner = protocol::Keypair::from_seed([1; 32]).account();
        let t = Block::template(
            &genesis().header,
            vec![join.clone()],
            miner,
            1,
            genesis().header.timestamp + 1,
        );
        let mined = protocol::pow::mine(
            &t.header,
            1,
            &std::sync::atomic::AtomicBool::new(false),
            None,
        );
        let block = Block {
            header: mined.header.unwrap(),
            ..t
        };
        let (mut store, _, _) = load(dir.path());
        write_blocks(&mut store, std::slice::from_ref(&block), None);
        let params = Params::with_floor(1);
        let view = store.reader().snapshot().unwrap();
        assert_eq!(view.height_of(&block.header.hash()), Some(1));
        assert_eq!(view.height_of(&Hash256([9; 32])), None, "an unknown hash");
        let found = view
            .block_with(&join.id(), &params)
            .expect("the block holding it");
        assert_eq!(found.hash(), block.header.hash());
        // Another id with the same short key: the entry points at a block that does not hold it.
        let mut alias = join.id();
        alias.0[0] ^= 1;
        assert!(view.block_with(&alias, &params).is_none());
    }

    #[test]
    fn a_store_without_its_format_is_rebuilt_and_a_fresh_one_is_not() {
        let dir = tempfile::tempdir().unwrap();
        let (mut store, loaded, _) = load(dir.path());
        assert!(!loaded.rebuild, "an empty store is complete");
        write_blocks(
            &mut store,
            &testkit::mine_chain(&genesis(), 2, 1, 1000),
            None,
        );
        let txn = store.db.begin_write().unwrap();
        txn.open_table(META).unwrap().remove(FORMAT_KEY).unwrap();
        txn.commit().unwrap();
        drop(store);
        let (_, loaded, _) = load(dir.path());
        assert!(loaded.rebuild, "blocks without a complete index");
    }

    #[test]
    fn a_large_ledger_is_checkpointed_less_often_and_a_small_one_every_interval() {
        assert_eq!(checkpoint_interval(0), CHECKPOINT_EVERY);
        // The 1,000 accounts of a class: a few hundred kilobytes.
        assert_eq!(checkpoint_interval(300_000), CHECKPOINT_EVERY);
        // 100,000 polls: about ten megabytes, checkpointed every ~10,000 blocks, not 2,000.
        let polls = 10 * 1024 * 1024;
        assert_eq!(checkpoint_interval(polls), 10_240);
        // The restart after it replays a tenth of a second's worth, not the chain.
        assert!(checkpoint_interval(polls) + (MAX_REORG_DEPTH as u64) < 20_000);
    }

    #[test]
    fn a_removed_block_leaves_the_store() {
        let dir = tempfile::tempdir().unwrap();
        let chain = testkit::mine_chain(&genesis(), 3, 1, 1000);
        let (mut store, _, _) = load(dir.path());
        write_blocks(&mut store, &chain, None);
        let last = &chain[2];
        let gone = [(last.header.height, last.header.hash())];
        let changes = Changes {
            remove_blocks: &gone,
            ..Changes::default()
        };
        store.write(&changes, true).unwrap();
        drop(store);
        let (_, _, blocks) = load(dir.path());
        assert_eq!(blocks, chain[..2]);
    }

    /// A checkpoint of `ledger` after `block`.
    fn checkpoint(block: &Block, ledger: &Ledger) -> Checkpoint {
        Checkpoint {
            height: block.header.height,
            hash: block.header.hash(),
            work: 7,
            ledger: ledger.to_bytes(),
        }
    }

    #[test]
    fn a_restart_resumes_from_the_newest_sound_checkpoint_a_reorg_cannot_reach() {
        let params = Params::with_floor(1);
        let dir = tempfile::tempdir().unwrap();
        let chain = testkit::mine_chain(&genesis(), MAX_REORG_DEPTH + 3, 1, 1000);
        let mut ledger = Ledger::new();
        ledger.apply_block(&chain[0]).unwrap();
        let (mut store, _, _) = load(dir.path());
        // At height 1 (deep enough), at height 3 (deep enough) and at the tip (too shallow).
        write_blocks(
            &mut store,
            &chain[..1],
            Some(&checkpoint(&chain[0], &ledger)),
        );
        write_blocks(
            &mut store,
            &chain[1..3],
            Some(&checkpoint(&chain[2], &ledger)),
        );
        let tip = chain.last().unwrap();
        write_blocks(&mut store, &chain[3..], Some(&checkpoint(tip, &ledger)));
        let resume = store.resume(&params).unwrap();
        assert_eq!(resume.block.hash(), chain[2].header.hash());
        assert_eq!((resume.work, resume.tip), (7, tip.header.height));
        assert_eq!(resume.ledger, ledger);

        // Damaged bytes are caught by the checksum: the next older one serves.
        let txn = store.db.begin_write().unwrap();
        {
            let mut table = txn.open_table(CHECKPOINTS).unwrap();
            let mut bytes = table.get(3).unwrap().unwrap().value().to_vec();
            bytes[40] ^= 1;
            table.insert(3, bytes.as_slice()).unwrap();
        }
        txn.commit().unwrap();
        assert_eq!(
            store.resume(&params).unwrap().block.hash(),
            chain[0].header.hash()
        );

        // A checkpoint whose block left the best chain is passed over too.
        let other = testkit::mine_chain(&genesis(), 1, 2, 999);
        write_blocks(&mut store, &other, None);
        let resume = store.resume(&params).unwrap();
        assert_eq!(resume.block.hash(), genesis().header.hash(), "from genesis");
        assert_eq!(resume.ledger, Ledger::new());
    }

    #[test]
    fn old_checkpoints_go_and_the_stored_tip_can_move_down() {
        let dir = tempfile::tempdir().unwrap();
        let chain = testkit::mine_chain(&genesis(), MAX_CHECKPOINTS + 2, 1, 1000);
        let (mut store, _, _) = load(dir.path());
        for block in &chain {
            let cp = checkpoint(block, &Ledger::new());
            write_blocks(&mut store, std::slice::from_ref(block), Some(&cp));
        }
        let read = store.db.begin_read().unwrap();
        let kept: Vec<u64> = read
            .open_table(CHECKPOINTS)
            .unwrap()
            .iter()
            .unwrap()
            .map(|e| e.unwrap().0.value())
            .collect();
        assert_eq!(kept, (3..=MAX_CHECKPOINTS as u64 + 2).collect::<Vec<_>>());
        drop(read);
        let cut = Changes {
            tip: Some(2),
            ..Changes::default()
        };
        store.write(&cut, true).unwrap();
        let snapshot = store.reader().snapshot().unwrap();
        assert_eq!(snapshot.hash_at(2), Some(chain[1].header.hash()));
        assert_eq!(snapshot.hash_at(3), None);
        assert_eq!(snapshot.height_of(&chain[1].header.hash()), Some(2));
        assert_eq!(
            snapshot.height_of(&chain[2].header.hash()),
            None,
            "no longer best"
        );
    }

    /// The entries of `key` in `table` (the tables alone, not what waits in memory).
    fn stored(store: &Store, table: TableDefinition<u64, u64>, key: u64) -> Option<u64> {
        let read = store.db.begin_read().unwrap();
        let table = read.open_table(table).unwrap();
        table.get(key).unwrap().map(|v| v.value())
    }

    #[test]
    fn index_entries_are_found_while_they_wait_after_a_crash_and_once_written() {
        let dir = tempfile::tempdir().unwrap();
        let params = Params::with_floor(1);
        let join = Record::sign(
            &protocol::Keypair::from_seed([7; 32]),
            0,
            protocol::Action::Join { name: "al".into() },
        );
        let first = testkit::mine_block(&genesis(), vec![join.clone()], 1, 1000);
        let mut chain = vec![first.clone()];
        chain.extend(testkit::mine_chain(&first, 3, 1, 1000));
        let hash = |i: usize| chain[i].header.hash();
        let (mut store, _, _) = load(dir.path());
        store.index_batch = 4;
        // Three entries (two blocks and a record): they wait in memory.
        write_blocks(&mut store, &chain[..2], None);
        assert_eq!(stored(&store, HEIGHTS, short_key(&hash(0))), None);
        let view = store.reader().snapshot().unwrap();
        assert_eq!(view.height_of(&hash(1)), Some(2));
        assert_eq!(
            view.block_with(&join.id(), &params).map(|b| b.hash()),
            Some(hash(0))
        );

        // Gone with a crash (nothing is written on drop), read back from the blocks on opening.
        drop((view, store));
        let (mut store, _, _) = load(dir.path());
        store.index_batch = 4;
        assert_eq!(store.unindexed_from, Some(1));
        let before = store.reader().snapshot().unwrap();
        assert_eq!(before.height_of(&hash(0)), Some(1));
        assert_eq!(
            before.block_with(&join.id(), &params).map(|b| b.hash()),
            Some(hash(0))
        );

        // The fourth entry writes the batch; a view from before it still finds every entry.
        write_blocks(&mut store, &chain[2..3], None);
        assert_eq!(stored(&store, HEIGHTS, short_key(&hash(1))), Some(2));
        assert_eq!(stored(&store, RECORDS, short_key(&join.id())), Some(1));
        assert_eq!(store.unindexed_from, None);
        assert!(store.unindexed.is_empty());
        assert_eq!(before.height_of(&hash(1)), Some(2));
        let after = store.reader().snapshot().unwrap();
        assert_eq!(after.height_of(&hash(2)), Some(3));

        // A reorg below the waiting entries' lowest height: its blocks are read back too.
        write_blocks(&mut store, &chain[3..4], None);
        let other = testkit::mine_chain(&chain[1], 2, 1, 2000);
        write_blocks(&mut store, &other, None);
        drop((before, after, store));
        let (store, _, _) = load(dir.path());
        assert_eq!(store.unindexed_from, Some(3));
        let view = store.reader().snapshot().unwrap();
        assert_eq!(view.height_of(&other[1].header.hash()), Some(4));
        assert_eq!(view.height_of(&hash(3)), None, "no longer best");
        assert_eq!(view.height_of(&hash(1)), Some(2), "written before");
    }
}
