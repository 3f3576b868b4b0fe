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
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, sync_channel};
use std::thread::JoinHandle;
use std::time::Duration;

use protocol::{BlockHash, CheckedBlock, Record, RecordId};

use crate::store::Store;

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
}

impl Writer {
    /// Starts the thread, which owns `store` from now on.
    pub fn spawn(store: Store) -> std::io::Result<Writer> {
        let (queue, writes) = sync_channel(MAX_QUEUED_WRITES);
        // What it logs belongs to the node that started it.
        let span = tracing::Span::current();
        let thread = std::thread::Builder::new()
            .name("store-writer".into())
            .spawn(move || span.in_scope(|| run(store, writes)))?;
        Ok(Writer {
            queue: Some(queue),
            thread: Some(thread),
        })
    }

    /// Queues a write; waits only when [`MAX_QUEUED_WRITES`] are queued already.
    pub fn write(&self, write: Write) {
        if write.blocks.is_empty()
            && write.remove_blocks.is_empty()
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

fn run(mut store: Store, writes: Receiver<Write>) {
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
        let durable = !write.acks.is_empty() || !write.add.is_empty();
        let blocks: Vec<_> = write.blocks.iter().map(|b| b.block()).collect();
        let add: Vec<&Record> = write.add.iter().collect();
        let written = store.write(&blocks, &write.remove_blocks, &add, &write.forget, durable);
        if let Err(e) = &written {
            tracing::error!(error = %e, "cannot write the store");
        }
        unsynced = !durable || (unsynced && written.is_err());
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
