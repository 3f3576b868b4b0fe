//! The store's writer thread. The chain thread hands it what each batch changed and goes on: a
//! durable write waits for the disk (a sync), and while the chain thread waited, the next
//! relayed block waited with it, on every node and every hop. Records are still acknowledged
//! only once written, by this thread; writes happen in the order they were handed over, so a
//! block is always stored after its parent.
//!
//! A write with records in it is durable (synced) before their acknowledgements go out. A write
//! of blocks alone is not synced at once: it becomes durable with the next synced write, or
//! [`SYNC_WITHIN`] later. Every node synced every block it relayed, and with many nodes on one
//! machine (or one disk) those syncs queued up behind each other on every hop. A node that
//! crashes before the sync loses those blocks and takes them back from its peers as it does
//! any block it missed; a record it acknowledged is durable as pending until a synced write
//! holds the block that mined it, so no acknowledged record is lost either.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, sync_channel};
use std::thread::JoinHandle;
use std::time::Duration;

use protocol::{BlockHash, CheckedBlock, Record, RecordId};

use crate::store::{Changes, Checkpoint, Reader, Store};

/// Writes handed over and not yet done, at most: past it the chain thread waits for the disk,
/// so a disk slower than the traffic slows the node down rather than filling its memory.
pub const MAX_QUEUED_WRITES: usize = 64;

/// Longest a write of blocks alone stays unsynced.
pub const SYNC_WITHIN: Duration = Duration::from_millis(250);

/// Told once a write is done: `Ok` when it is durable, else the store's error. The writer
/// knows only "stored" or not; what that means on the wire (`K` or `E`) is the caller's.
pub type Ack = Box<dyn FnOnce(Result<(), String>) + Send>;

/// What one batch of the chain thread changed, and the answers that wait for it on disk.
#[derive(Default)]
pub struct Write {
    /// Blocks that entered the tree, parents first.
    pub blocks: Vec<Arc<CheckedBlock>>,
    /// Blocks (height, hash) that left the tree: pruned side blocks, branches found invalid.
    pub remove_blocks: Vec<(u64, BlockHash)>,
    /// Blocks that joined the best chain, oldest first.
    pub connected: Vec<Arc<CheckedBlock>>,
    /// The best tip's height, when it may have moved.
    pub tip: Option<u64>,
    /// A ledger checkpoint at the tip, when one is due.
    pub checkpoint: Option<Checkpoint>,
    /// Records newly pending.
    pub add: Vec<Record>,
    /// Pending records to drop (mined, or found invalid).
    pub forget: Vec<RecordId>,
    /// Called once written, in order.
    pub acks: Vec<Ack>,
}

impl std::fmt::Debug for Write {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Write")
            .field("blocks", &self.blocks.len())
            .field("remove_blocks", &self.remove_blocks.len())
            .field("connected", &self.connected.len())
            .field("tip", &self.tip)
            .field("checkpoint", &self.checkpoint.as_ref().map(|c| c.height))
            .field("add", &self.add.len())
            .field("forget", &self.forget.len())
            .field("acks", &self.acks.len())
            .finish()
    }
}

/// The handle the chain thread keeps; dropping it finishes the queued writes and stops the
/// thread.
#[derive(Debug)]
pub struct Writer {
    queue: Option<SyncSender<Write>>,
    thread: Option<JoinHandle<()>>,
    /// Reads what the thread committed.
    reader: Reader,
    /// The best tip's height as of the last write committed: best-chain blocks at or below it
    /// (and deeper than any reorg) are readable through [`Writer::reader`].
    committed: Arc<AtomicU64>,
}

impl Writer {
    /// Starts the thread, which owns `store` from now on; `tip` is the best tip's height the
    /// store holds already.
    pub fn spawn(store: Store, tip: u64) -> std::io::Result<Writer> {
        let reader = store.reader();
        let (queue, writes) = sync_channel(MAX_QUEUED_WRITES);
        let committed = Arc::new(AtomicU64::new(tip));
        let told = Arc::clone(&committed);
        // What it logs belongs to the node that started it.
        let span = tracing::Span::current();
        let thread = std::thread::Builder::new()
            .name("store-writer".into())
            .spawn(move || span.in_scope(|| run(store, writes, &told)))?;
        Ok(Writer {
            queue: Some(queue),
            thread: Some(thread),
            reader,
            committed,
        })
    }

    /// Queues a write; waits only when [`MAX_QUEUED_WRITES`] are queued already.
    pub fn write(&self, write: Write) {
        if write.blocks.is_empty()
            && write.remove_blocks.is_empty()
            && write.connected.is_empty()
            && write.tip.is_none()
            && write.checkpoint.is_none()
            && write.add.is_empty()
            && write.forget.is_empty()
            && write.acks.is_empty()
        {
            return;
        }
        let Some(queue) = &self.queue else { return };
        if let Err(failed) = queue.send(write) {
            // The thread is gone (it panicked): nothing more is durable.
            tracing::error!("the store writer stopped; records are not acknowledged");
            for ack in failed.0.acks {
                ack(Err("the store writer stopped".into()));
            }
        }
    }
}

impl Writer {
    /// The best tip's height as of the last write committed (see [`Chain::trim_committed`]:
    /// only blocks the store holds leave memory, so reading them never waits for this thread).
    ///
    /// [`Chain::trim_committed`]: protocol::Chain::trim_committed
    pub fn committed(&self) -> u64 {
        self.committed.load(Ordering::Acquire)
    }

    /// A reader of what this writer committed.
    pub fn reader(&self) -> &Reader {
        &self.reader
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        drop(self.queue.take());
        if let Some(thread) = self.thread.take()
            && thread.join().is_err()
        {
            tracing::error!("the store writer panicked");
        }
    }
}

fn run(mut store: Store, writes: Receiver<Write>, committed: &AtomicU64) {
    let mut unsynced = false;
    loop {
        let next = if unsynced {
            writes.recv_timeout(SYNC_WITHIN)
        } else {
            writes.recv().map_err(|_| RecvTimeoutError::Disconnected)
        };
        let write = match next {
            Ok(write) => write,
            Err(RecvTimeoutError::Timeout) => {
                sync(&mut store);
                unsynced = false;
                continue;
            }
            Err(RecvTimeoutError::Disconnected) => break,
        };
        let durable = !write.add.is_empty() || !write.acks.is_empty();
        let changes = Changes {
            blocks: write.blocks.iter().map(|b| b.block()).collect(),
            remove_blocks: &write.remove_blocks,
            connected: write.connected.iter().map(|b| b.block()).collect(),
            tip: write.tip,
            checkpoint: write.checkpoint.as_ref(),
            add_pending: write.add.iter().collect(),
            forget: &write.forget,
            complete: false,
        };
        let written = store.write(&changes, durable);
        match (&written, write.tip) {
            (Err(e), _) => tracing::error!(error = %e, "cannot write the store"),
            (Ok(_), Some(tip)) => committed.store(tip, Ordering::Release),
            (Ok(_), None) => {}
        }
        // A write of nothing (a flush: acks alone) leaves the sync owed as it was.
        let nothing = changes.only_pending() && write.add.is_empty() && write.forget.is_empty();
        if !nothing {
            unsynced = !durable || (unsynced && written.is_err());
        }
        for ack in write.acks {
            // Acknowledged only once durable: an acknowledged record survives a crash.
            ack(written.as_ref().map(|_| ()).map_err(|e| e.to_string()));
        }
    }
    if unsynced {
        sync(&mut store);
    }
}

fn sync(store: &mut Store) {
    if let Err(e) = store.sync() {
        tracing::error!(error = %e, "cannot sync the store");
    }
}
