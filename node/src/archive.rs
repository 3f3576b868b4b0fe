//! The chain actor's view of the best-chain blocks it no longer keeps in memory: they are read
//! from the store ([`crate::store::Snapshot`]) when a peer's or a subscriber's `D`, a locator,
//! or a record resent long after it was mined asks for them. The chain itself stays free of
//! I/O: it asks through [`protocol::Archive`], which [`Deep`] implements.

use std::cell::OnceCell;
use std::sync::Arc;

use protocol::{Archive, BlockHash, CheckedBlock, Params, RecordId};

use crate::store::{Reader, Snapshot};
use crate::writer::Writer;

/// One look at the store for one command: the snapshot is taken on first use, after the writes
/// queued so far are committed (blocks leave memory once handed to the writer, maybe before
/// it wrote them), and not at all when the chain finds everything in memory.
pub struct Deep<'a> {
    reader: &'a Reader,
    writer: Option<&'a Writer>,
    params: &'a Params,
    snapshot: OnceCell<Option<Snapshot>>,
}

impl<'a> Deep<'a> {
    /// A view that first waits for the writes queued so far.
    pub fn flushed(reader: &'a Reader, writer: &'a Writer, params: &'a Params) -> Deep<'a> {
        Deep {
            reader,
            writer: Some(writer),
            params,
            snapshot: OnceCell::new(),
        }
    }

    /// A view of what is committed now, without waiting: for lookups anyone may trigger at
    /// will (a resent record), which must never make the chain thread wait for the disk.
    pub fn committed(reader: &'a Reader, params: &'a Params) -> Deep<'a> {
        Deep {
            reader,
            writer: None,
            params,
            snapshot: OnceCell::new(),
        }
    }

    fn snapshot(&self) -> Option<&Snapshot> {
        self.snapshot
            .get_or_init(|| {
                if let Some(writer) = self.writer {
                    writer.flush();
                }
                self.reader.snapshot()
            })
            .as_ref()
    }

    /// The best-chain block that holds record `id`, per the store.
    pub fn block_with(&self, id: &RecordId) -> Option<Arc<CheckedBlock>> {
        self.snapshot()?.block_with(id, self.params)
    }
}

impl Archive for Deep<'_> {
    fn hash_at(&self, height: u64) -> Option<BlockHash> {
        self.snapshot()?.hash_at(height)
    }

    fn height_of(&self, hash: &BlockHash) -> Option<u64> {
        self.snapshot()?.height_of(hash)
    }

    fn block_at(&self, height: u64) -> Option<Arc<CheckedBlock>> {
        self.snapshot()?.block_at(height, self.params)
    }
}
