//! The node's on-disk store: every accepted block and every pending record, in a redb database
//! in the data dir. redb commits are atomic and durable, so a `kill -9` at any moment leaves
//! either the state before a write or the state after it, never a store that fails to load.
//! redb also locks the file, which is what refuses a second node on the same data dir.
//!
//! Blocks are keyed by height and hash, so a block that leaves the node's tree (a side block
//! pruned by the caps, or found invalid) is deleted from the store by its key, and reading the
//! table in key order still gives every parent before its children.

use std::collections::HashMap;
use std::path::Path;

use protocol::{Block, BlockHash, Record, RecordId};
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};

/// Blocks by height and hash (a parent always before its children), in their binary form
/// ([`Block::to_bytes`]).
const BLOCKS: TableDefinition<(u64, [u8; 32]), &[u8]> = TableDefinition::new("blocks_v3");
/// The table blocks were kept in before, by order of acceptance: its blocks could not be
/// deleted without an index, so pruned side blocks stayed on disk for ever. Moved into
/// [`BLOCKS`] once, the first time a store is opened.
const BLOCKS_V2: TableDefinition<u64, &[u8]> = TableDefinition::new("blocks_v2");
/// redb's page cache. Its default, a gibibyte, let a full read of the chain at start stay
/// resident (tens of megabytes at 100,000 blocks); the store is appended to and read once at
/// start, so a small cache for the B-tree's inner pages costs nothing in speed.
const CACHE_BYTES: usize = 2 * 1024 * 1024;
/// Blocks handed over at a time while loading: the whole chain is never held twice.
const LOAD_CHUNK: usize = 4096;
/// Pending records in the order they were admitted, in their canonical encoding.
const PENDING: TableDefinition<u64, &[u8]> = TableDefinition::new("pending_v2");

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

/// What the store held at start.
#[derive(Debug, Default)]
pub struct Loaded {
    /// Blocks read (and handed over in acceptance order).
    pub blocks: usize,
    /// Pending records in admission order.
    pub pending: Vec<Record>,
    /// Entries that could not be parsed and were skipped.
    pub damaged: usize,
}

/// The open store.
#[derive(Debug)]
pub struct Store {
    /// Held for the store's lifetime: the operating system drops the lock when the process dies,
    /// however it dies.
    _lock: std::fs::File,
    db: Database,
    next_pending: u64,
    pending_keys: HashMap<RecordId, u64>,
}

impl Store {
    /// Opens (or creates) the store in `dir` and reads everything in it: the blocks go to
    /// `on_blocks` a chunk at a time, in acceptance order.
    pub fn open(
        dir: &Path,
        mut on_blocks: impl FnMut(Vec<Block>),
    ) -> Result<(Store, Loaded), StoreError> {
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
        txn.commit()?;
        migrate(&db)?;

        let mut loaded = Loaded::default();
        let mut store = Store {
            _lock: lock,
            db,
            next_pending: 0,
            pending_keys: HashMap::new(),
        };
        let read = store.db.begin_read()?;
        let mut chunk = Vec::with_capacity(LOAD_CHUNK);
        for entry in read.open_table(BLOCKS)?.iter()? {
            let (_, value) = entry?;
            match Block::from_bytes(value.value()) {
                Ok(block) => chunk.push(block),
                Err(_) => loaded.damaged += 1,
            }
            if chunk.len() == LOAD_CHUNK {
                loaded.blocks += chunk.len();
                on_blocks(std::mem::replace(
                    &mut chunk,
                    Vec::with_capacity(LOAD_CHUNK),
                ));
            }
        }
        loaded.blocks += chunk.len();
        on_blocks(chunk);
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

    /// Writes a batch in one transaction: new blocks, blocks to delete (height and hash: they
    /// left the node's tree), new pending records, and pending records to forget (mined, or no
    /// longer minable). `durable`: on disk when this returns (a sync); otherwise with the next
    /// durable write or [`Store::sync`], and a crash before that loses the batch but leaves the
    /// store as it was before it.
    pub fn write(
        &mut self,
        blocks: &[&Block],
        remove_blocks: &[(u64, BlockHash)],
        add_pending: &[&Record],
        forget: &[RecordId],
        durable: bool,
    ) -> Result<(), StoreError> {
        let forget: Vec<(RecordId, u64)> = forget
            .iter()
            .filter_map(|id| self.pending_keys.get(id).map(|k| (*id, *k)))
            .collect();
        let add: Vec<&&Record> = add_pending
            .iter()
            .filter(|r| !self.pending_keys.contains_key(&r.id()))
            .collect();
        if blocks.is_empty() && remove_blocks.is_empty() && add.is_empty() && forget.is_empty() {
            return Ok(());
        }
        let mut txn = self.db.begin_write()?;
        if !durable {
            txn.set_durability(redb::Durability::None)
                .map_err(|e| StoreError::Db(e.into()))?;
        }
        let mut next_pending = self.next_pending;
        let mut new_keys = Vec::new();
        {
            let mut table = txn.open_table(BLOCKS)?;
            for block in blocks {
                let key = (block.header.height, block.header.hash().0);
                table.insert(key, block.to_bytes().as_slice())?;
            }
            // After the inserts: a block added and pruned in one batch leaves nothing behind.
            for (height, hash) in remove_blocks {
                table.remove((*height, hash.0))?;
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
        txn.commit()?;
        self.next_pending = next_pending;
        self.pending_keys.extend(new_keys);
        for (id, _) in forget {
            self.pending_keys.remove(&id);
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

    fn load(dir: &Path) -> (Store, Vec<Block>) {
        let mut blocks = Vec::new();
        let (store, _) = Store::open(dir, |chunk| blocks.extend(chunk)).unwrap();
        (store, blocks)
    }

    #[test]
    fn a_store_of_the_old_layout_is_migrated_once() {
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
        let (store, blocks) = load(dir.path());
        assert_eq!(blocks, chain, "every block, parents first");
        let read = store.db.begin_read().unwrap();
        assert!(matches!(
            read.open_table(BLOCKS_V2),
            Err(redb::TableError::TableDoesNotExist(_))
        ));
        drop((read, store));
        let (_, again) = load(dir.path());
        assert_eq!(again, chain);
    }

    #[test]
    fn a_removed_block_leaves_the_store() {
        let dir = tempfile::tempdir().unwrap();
        let chain = testkit::mine_chain(&genesis(), 3, 1, 1000);
        let (mut store, _) = load(dir.path());
        let all: Vec<&Block> = chain.iter().collect();
        store.write(&all, &[], &[], &[], true).unwrap();
        let last = &chain[2];
        let gone = [(last.header.height, last.header.hash())];
        store.write(&[], &gone, &[], &[], true).unwrap();
        drop(store);
        let (_, blocks) = load(dir.path());
        assert_eq!(blocks, chain[..2]);
    }
}
