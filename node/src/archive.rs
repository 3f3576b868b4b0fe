//! The best-chain blocks the node no longer keeps in memory: they are read from the store
//! ([`crate::store::Snapshot`]) when a peer's or a subscriber's `D` ([`blocks_after`], on the
//! connection's task), our own locator, or a record resent long after it was mined asks for
//! them. The chain itself stays free of I/O: it asks through [`protocol::Archive`], which
//! [`Deep`] implements.

use std::cell::OnceCell;
use std::sync::Arc;

use protocol::{Archive, BlockHash, CheckedBlock, Params, RecordId, blocks_after_archived};

use crate::store::{Reader, Snapshot};
use crate::turns::Turn;

/// Most deep `D`s read from the store at once, node-wide: each holds a blocking thread and a
/// read transaction while it reads and checks up to 500 blocks, and anyone may send them; past
/// it they wait their turn, on their own connections' tasks, never on the chain thread, and
/// by address in rotation ([`crate::turns`]), so one host's flood delays others by a read.
pub const MAX_DEEP_READS: usize = 2;

/// One look at the store: the snapshot is taken on first use (not at all when the chain finds
/// everything in memory). It sees what the writer committed, without waiting for what is
/// queued: the chain lets only committed blocks leave memory ([`Chain::trim_committed`]).
///
/// [`Chain::trim_committed`]: protocol::Chain::trim_committed
pub struct Deep<'a> {
    reader: &'a Reader,
    params: &'a Params,
    snapshot: OnceCell<Option<Snapshot>>,
}

impl<'a> Deep<'a> {
    /// A view of what is committed now.
    pub fn committed(reader: &'a Reader, params: &'a Params) -> Deep<'a> {
        Deep {
            reader,
            params,
            snapshot: OnceCell::new(),
        }
    }

    fn snapshot(&self) -> Option<&Snapshot> {
        self.snapshot
            .get_or_init(|| self.reader.snapshot())
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

/// Answers a `D` the chain thread left to the store ([`protocol::Chain::blocks_after_in_memory`]
/// said `None`; `range` is its [`protocol::Chain::best_range`]) from the connection's task: the
/// read runs on a blocking thread, in a `turn` (at most [`MAX_DEEP_READS`] at once), so a flood
/// of old locators costs the disk and those threads, not the chain thread honest records wait
/// for. The turn is given back when the read ends, before the answer is written.
pub async fn blocks_after(
    reader: Reader,
    params: Params,
    turn: Turn,
    locator: Vec<BlockHash>,
    max: usize,
    range: (u64, u64),
) -> (Vec<Arc<CheckedBlock>>, bool) {
    tokio::task::spawn_blocking(move || {
        let _turn = turn;
        let deep = Deep::committed(&reader, &params);
        blocks_after_archived(&locator, max, &deep, range)
    })
    .await
    .unwrap_or((Vec::new(), true))
}
