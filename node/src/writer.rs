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

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, sync_channel};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use protocol::params::side_block_cost;
use protocol::{BlockHash, CheckedBlock, Record, RecordId};

use crate::store::{Changes, Checkpoint, Reader, Store};

/// Writes handed over and not yet done, at most: past it the chain thread waits for the disk,
/// so a disk slower than the traffic slows the node down rather than filling its memory.
pub const MAX_QUEUED_WRITES: usize = 64;

/// Most bytes (counted by [`Write::cost`]) handed to the writer and not yet committed. The chain
/// keeps in memory every block the store has not committed (see
/// [`protocol::Chain::trim_committed`]), and a count of writes alone bounds nothing: during a
/// sync each write holds up to [`crate::actor::MAX_BATCH`] commands of hundreds of blocks, and
/// a node that synced 100,000 blocks held nearly all of them at once, waiting for the disk.
/// Past this the chain thread waits for the writer: it stops taking commands, the connection
/// that brings the blocks stops reading, and TCP slows the peer down. 8 MiB is a few thousand
/// blocks, dozens of sync batches: enough to keep the disk busy while the next batch is checked.
/// A single write larger than this (a big ledger checkpoint) still goes, once the writer has
/// caught up with everything before it.
pub const MAX_UNWRITTEN_BYTES: usize = 8 * 1024 * 1024;

/// Longest a write of blocks alone stays unsynced.
pub const SYNC_WITHIN: Duration = Duration::from_millis(250);

/// How long after a failed write it is tried again, when nothing new to write comes sooner.
pub const RETRY_AFTER: Duration = Duration::from_secs(1);

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

impl Write {
    /// What this write holds in memory until it is committed, for [`MAX_UNWRITTEN_BYTES`]: each
    /// new block as the chain counts it ([`side_block_cost`]: records plus the block's overhead),
    /// the checkpoint's encoded ledger, and the pending records. Blocks that joined the best
    /// chain are counted once, with the write that brought them; pending records as a block's
    /// overhead each.
    pub fn cost(&self) -> usize {
        let blocks: usize = self
            .blocks
            .iter()
            .map(|b| side_block_cost(b.header.records_size))
            .sum();
        let checkpoint = self.checkpoint.as_ref().map_or(0, |c| c.ledger.len());
        // A pending record is a few hundred bytes: counted like a block's overhead.
        blocks + checkpoint + self.add.len() * side_block_cost(0)
    }

    fn is_empty(&self) -> bool {
        self.blocks.is_empty()
            && self.remove_blocks.is_empty()
            && self.connected.is_empty()
            && self.tip.is_none()
            && self.checkpoint.is_none()
            && self.add.is_empty()
            && self.forget.is_empty()
            && self.acks.is_empty()
    }
}

/// The bytes handed to the writer and not yet committed ([`MAX_UNWRITTEN_BYTES`]), shared by
/// the chain thread, which waits on it, and the writer thread, which releases it.
#[derive(Debug)]
struct Unwritten {
    /// The budget: [`MAX_UNWRITTEN_BYTES`], but in tests.
    max: usize,
    bytes: Mutex<usize>,
    released: Condvar,
    /// How many times a write had to wait for the writer (for tests and logs).
    waits: AtomicU64,
    /// Set when the writer thread ends, however it ends (a panic too): nothing will be
    /// released any more, so no write waits for room; it finds the queue closed instead.
    closed: AtomicBool,
}

impl Unwritten {
    fn new(max: usize) -> Unwritten {
        Unwritten {
            max,
            bytes: Mutex::new(0),
            released: Condvar::new(),
            waits: AtomicU64::new(0),
            closed: AtomicBool::new(false),
        }
    }

    fn full(&self, bytes: usize, cost: usize) -> bool {
        bytes > 0 && bytes + cost > self.max && !self.closed.load(Ordering::Acquire)
    }

    /// Whether `cost` more bytes fit the budget now.
    fn fits(&self, cost: usize) -> bool {
        !self.full(
            *self.bytes.lock().unwrap_or_else(PoisonError::into_inner),
            cost,
        )
    }

    /// Waits until `cost` more bytes fit the budget (or nothing is held: one write larger than
    /// the budget still goes, alone), then counts them.
    fn reserve(&self, cost: usize) {
        let mut bytes = self.bytes.lock().unwrap_or_else(PoisonError::into_inner);
        if self.full(*bytes, cost) {
            self.waits.fetch_add(1, Ordering::Relaxed);
            while self.full(*bytes, cost) {
                bytes = self
                    .released
                    .wait(bytes)
                    .unwrap_or_else(PoisonError::into_inner);
            }
        }
        *bytes += cost;
    }

    /// The writer thread is gone: wakes any write waiting for room.
    fn close(&self) {
        let _bytes = self.bytes.lock().unwrap_or_else(PoisonError::into_inner);
        self.closed.store(true, Ordering::Release);
        self.released.notify_all();
    }

    /// The writer is done with `cost` bytes.
    fn release(&self, cost: usize) {
        let mut bytes = self.bytes.lock().unwrap_or_else(PoisonError::into_inner);
        *bytes = bytes.saturating_sub(cost);
        self.released.notify_all();
    }

    fn held(&self) -> usize {
        *self.bytes.lock().unwrap_or_else(PoisonError::into_inner)
    }
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
    queue: Option<SyncSender<(Write, usize)>>,
    thread: Option<JoinHandle<()>>,
    /// What the queue holds, in bytes.
    unwritten: Arc<Unwritten>,
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
        Writer::spawn_with(store, tip, MAX_UNWRITTEN_BYTES, Box::new(|| {}))
    }

    /// [`Writer::spawn`] with another budget, and `before` called on the writer thread before
    /// each write (a test holds the writer back with it).
    fn spawn_with(
        store: Store,
        tip: u64,
        max_unwritten: usize,
        before: Box<dyn FnMut() + Send>,
    ) -> std::io::Result<Writer> {
        let reader = store.reader();
        let (queue, writes) = sync_channel(MAX_QUEUED_WRITES);
        let committed = Arc::new(AtomicU64::new(tip));
        let unwritten = Arc::new(Unwritten::new(max_unwritten));
        let told = Arc::clone(&committed);
        let released = Arc::clone(&unwritten);
        // What it logs belongs to the node that started it.
        let span = tracing::Span::current();
        let thread = std::thread::Builder::new()
            .name("store-writer".into())
            .spawn(move || {
                let _closing = Closing(Arc::clone(&released));
                span.in_scope(|| run(store, writes, &told, &released, before))
            })?;
        Ok(Writer {
            queue: Some(queue),
            thread: Some(thread),
            unwritten,
            reader,
            committed,
        })
    }

    /// Queues a write; waits while [`MAX_UNWRITTEN_BYTES`] are handed over and not committed,
    /// or [`MAX_QUEUED_WRITES`] are queued already.
    pub fn write(&self, write: Write) {
        if write.is_empty() {
            return;
        }
        let Some(queue) = &self.queue else { return };
        let cost = write.cost();
        if !self.unwritten.fits(cost) {
            // No room: an empty write tells a lingering writer to commit now rather than wait
            // out its linger while this one waits for it (a full queue means it is not).
            let _ = queue.try_send((Write::default(), 0));
        }
        self.unwritten.reserve(cost);
        if let Err(failed) = queue.send((write, cost)) {
            // The thread is gone (it panicked): nothing more is durable.
            tracing::error!("the store writer stopped; records are not acknowledged");
            self.unwritten.release(cost);
            for ack in (failed.0).0.acks {
                ack(Err("the store writer stopped".into()));
            }
        }
    }

    /// Bytes handed over and not yet committed (at most [`MAX_UNWRITTEN_BYTES`], but for one
    /// larger write alone).
    pub fn unwritten(&self) -> usize {
        self.unwritten.held()
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

/// Closes [`Unwritten`] when the writer thread ends, by returning or by unwinding.
struct Closing(Arc<Unwritten>);

impl Drop for Closing {
    fn drop(&mut self) {
        self.0.close();
    }
}

/// How long a write that no one waits on (no record to acknowledge) may wait for more to
/// join its transaction. A commit rewrites every page its blocks touched (the newest leaves of
/// each table and the branches above them), and a relayed block committed alone paid that for
/// itself. A block is in memory and served meanwhile; only its place on disk waits.
pub const LINGER: Duration = Duration::from_millis(50);

/// How long a group holding a sync's batch ([`SYNC_BATCH_BLOCKS`] blocks in one write) waits
/// for more: fewer, larger commits. (It was first set when each commit also rewrote a
/// hash-keyed index leaf for nearly every block it held; those entries are now written in
/// batches of their own, [`crate::unindexed`].) Half a second of a sync is a few dozen
/// batches, still within [`LINGER_BYTES`].
pub const SYNC_LINGER: Duration = Duration::from_millis(500);

/// Blocks in one write that make it a sync's batch (a relayed or mined block comes alone; a
/// `C` answer holds up to 500).
pub const SYNC_BATCH_BLOCKS: usize = 100;

/// Bytes a lingering group may gather before it is committed anyway: half the budget. A write
/// that does not fit beside it (a large checkpoint) ends the linger: [`Writer::write`] sends an
/// empty write ahead of it.
pub const LINGER_BYTES: usize = MAX_UNWRITTEN_BYTES / 2;

/// Adds to `group` what arrives within [`LINGER`] ([`SYNC_LINGER`] once it holds a sync's
/// batch), while nothing in it is waited on (a record to acknowledge, or the empty write of a
/// write waiting for room) and it holds less than [`LINGER_BYTES`].
fn linger(group: &mut Vec<(Write, usize)>, writes: &Receiver<(Write, usize)>) {
    let started = std::time::Instant::now();
    loop {
        let waited_on = group
            .iter()
            .any(|(w, _)| !w.acks.is_empty() || w.is_empty());
        let bytes: usize = group.iter().map(|(_, cost)| cost).sum();
        if waited_on || bytes >= LINGER_BYTES {
            return;
        }
        let syncing = group
            .iter()
            .any(|(w, _)| w.blocks.len() >= SYNC_BATCH_BLOCKS);
        let limit = if syncing { SYNC_LINGER } else { LINGER };
        match writes.recv_timeout(limit.saturating_sub(started.elapsed())) {
            Ok(next) => group.push(next),
            Err(_) => return,
        }
    }
}

fn run(
    mut store: Store,
    writes: Receiver<(Write, usize)>,
    committed: &AtomicU64,
    unwritten: &Unwritten,
    mut before: Box<dyn FnMut() + Send>,
) {
    let mut unsynced = false;
    // The changes of writes that failed (a full or failing disk), without their
    // acknowledgements, which were told: written first, with whatever comes next, and their
    // bytes held until then. Nothing after them is committed before them, so the chain keeps
    // their blocks in memory (it lets go only of what is committed) and a disk that keeps
    // failing stops the node taking more, instead of leaving holes in the stored chain.
    let mut failed: Vec<(Write, usize)> = Vec::new();
    loop {
        let next = if !failed.is_empty() {
            writes.recv_timeout(RETRY_AFTER)
        } else if unsynced {
            writes.recv_timeout(SYNC_WITHIN)
        } else {
            writes.recv().map_err(|_| RecvTimeoutError::Disconnected)
        };
        let (write, cost) = match next {
            Ok(next) => next,
            // Nothing new: the failed writes are tried again alone.
            Err(RecvTimeoutError::Timeout) if !failed.is_empty() => (Write::default(), 0),
            Err(RecvTimeoutError::Timeout) => {
                sync(&mut store);
                unsynced = false;
                continue;
            }
            Err(RecvTimeoutError::Disconnected) => {
                if !failed.is_empty()
                    && let Err(e) = store.write_all(&changes(&failed), true)
                {
                    tracing::error!(error = %e, "cannot write the store; blocks are lost");
                }
                break;
            }
        };
        if write.is_empty() && failed.is_empty() {
            // A write waiting for room, and this writer was not lingering: nothing to do.
            continue;
        }
        before();
        // What queued up behind it goes in the same transaction: a writer that fell behind (a
        // sync) catches up with one commit instead of one per batch. At most what is queued:
        // [`MAX_QUEUED_WRITES`] writes, [`MAX_UNWRITTEN_BYTES`].
        let mut group = std::mem::take(&mut failed);
        group.push((write, cost));
        while let Ok(next) = writes.try_recv() {
            group.push(next);
        }
        linger(&mut group, &writes);
        // The empty writes that ended a linger have done their part.
        group.retain(|(w, _)| !w.is_empty());
        let durable = group
            .iter()
            .any(|(w, _)| !w.add.is_empty() || !w.acks.is_empty());
        let changes = changes(&group);
        let written = store.write_all(&changes, durable);
        let tip = group.iter().rev().find_map(|(w, _)| w.tip);
        match (&written, tip) {
            (Err(e), _) => tracing::error!(error = %e, "cannot write the store"),
            (Ok(_), Some(tip)) => committed.store(tip, Ordering::Release),
            (Ok(_), None) => {}
        }
        // A write of nothing (a flush: acks alone) leaves the sync owed as it was.
        let nothing = changes.iter().all(|c| c.only_pending())
            && group
                .iter()
                .all(|(w, _)| w.add.is_empty() && w.forget.is_empty());
        drop(changes);
        if !nothing {
            unsynced = !durable || (unsynced && written.is_err());
        }
        for (mut write, cost) in group {
            let acks = std::mem::take(&mut write.acks);
            if written.is_ok() {
                // Committed: the chain may let its blocks go, and hand over more.
                drop(write);
                unwritten.release(cost);
            } else {
                failed.push((write, cost));
            }
            for ack in acks {
                // Acknowledged only once durable: an acknowledged record survives a crash.
                ack(written.as_ref().map(|_| ()).map_err(|e| e.to_string()));
            }
        }
    }
    if unsynced {
        sync(&mut store);
    }
}

/// The store's changes of each write in `group`.
fn changes(group: &[(Write, usize)]) -> Vec<Changes<'_>> {
    group
        .iter()
        .map(|(write, _)| Changes {
            blocks: write.blocks.iter().map(|b| &**b).collect(),
            remove_blocks: &write.remove_blocks,
            connected: write.connected.iter().map(|b| &**b).collect(),
            tip: write.tip,
            checkpoint: write.checkpoint.as_ref(),
            add_pending: write.add.iter().collect(),
            forget: &write.forget,
            complete: false,
        })
        .collect()
}

fn sync(store: &mut Store) {
    if let Err(e) = store.sync() {
        tracing::error!(error = %e, "cannot sync the store");
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;
    use std::time::Instant;

    use protocol::{Params, genesis};

    use super::*;

    /// A store in `dir`, 20 checked blocks to write, and what one block's write costs.
    fn twenty_blocks(dir: &std::path::Path) -> (Store, Vec<Arc<CheckedBlock>>, usize) {
        let (store, _) = Store::open(dir).unwrap();
        let params = Params::with_floor(1);
        let blocks: Vec<Arc<CheckedBlock>> = testkit::mine_chain(&genesis(), 20, 1, 1000)
            .into_iter()
            .map(|b| Arc::new(b.check_own(&params).unwrap()))
            .collect();
        let one = Write {
            blocks: vec![Arc::clone(&blocks[0])],
            ..Write::default()
        }
        .cost();
        (store, blocks, one)
    }

    /// `block` entering the tree and the best chain, as the chain thread hands it over.
    fn block_write(block: &Arc<CheckedBlock>) -> Write {
        Write {
            blocks: vec![Arc::clone(block)],
            connected: vec![Arc::clone(block)],
            tip: Some(block.header.height),
            ..Write::default()
        }
    }

    #[test]
    fn no_write_waits_for_room_once_the_writer_thread_is_gone() {
        let dir = tempfile::tempdir().unwrap();
        let (store, blocks, one) = twenty_blocks(dir.path());
        // A writer whose disk fails at the first write: its thread panics, holding that
        // write's bytes, and never releases any more.
        let writer = Writer::spawn_with(
            store,
            0,
            3 * one,
            Box::new(|| panic!("the disk failed (a test)")),
        )
        .unwrap();
        let (done, finished) = std::sync::mpsc::channel();
        // Not a scoped thread: should a write hang, the test fails instead of hanging too.
        std::thread::spawn(move || {
            for block in &blocks {
                writer.write(block_write(block));
            }
            let _ = done.send(());
        });
        assert!(
            finished.recv_timeout(Duration::from_secs(30)).is_ok(),
            "a write waited for room a dead writer will never release"
        );
    }

    #[test]
    fn the_chain_thread_waits_for_a_slow_writer_past_the_byte_budget() {
        let dir = tempfile::tempdir().unwrap();
        let (store, blocks, one) = twenty_blocks(dir.path());
        let budget = 3 * one;
        // The writer thread waits for the test before each write: a disk as slow as we like.
        let (open, gate) = std::sync::mpsc::channel::<()>();
        let writer = Writer::spawn_with(
            store,
            0,
            budget,
            Box::new(move || {
                let _ = gate.recv();
            }),
        )
        .unwrap();
        // Declared after the writer, so dropped first: a failed assertion lets the writer go
        // (its gate closes) instead of joining a thread that waits for it.
        let open = open;
        let sent = AtomicUsize::new(0);
        std::thread::scope(|scope| {
            scope.spawn(|| {
                for block in &blocks {
                    writer.write(block_write(block));
                    sent.fetch_add(1, Ordering::SeqCst);
                }
            });
            // The chain thread hands over what fits, then waits (or, without the budget, hands
            // over everything).
            let deadline = Instant::now() + Duration::from_secs(30);
            while writer.unwritten.waits.load(Ordering::SeqCst) == 0
                && sent.load(Ordering::SeqCst) < blocks.len()
            {
                assert!(Instant::now() < deadline, "the writer never waited");
                std::thread::sleep(Duration::from_millis(1));
            }
            assert!(
                writer.unwritten() <= budget,
                "{} bytes held past a budget of {budget}",
                writer.unwritten()
            );
            assert_eq!(sent.load(Ordering::SeqCst), 3, "three blocks fit");
            // The writer goes on, one write at a time: never more than the budget held.
            for _ in 0..blocks.len() {
                open.send(()).unwrap();
                assert!(writer.unwritten() <= budget);
            }
        });
        let reader = writer.reader().clone();
        drop(writer);
        // Everything was written, in order.
        let snapshot = reader.snapshot().unwrap();
        for block in &blocks {
            assert_eq!(snapshot.hash_at(block.header.height), Some(block.hash()));
        }
    }

    #[test]
    fn a_failed_write_is_written_before_anything_after_it() {
        let dir = tempfile::tempdir().unwrap();
        let (mut store, blocks, _) = twenty_blocks(dir.path());
        store.failing = 1;
        let writer = Writer::spawn(store, 0).unwrap();
        let (told, answers) = std::sync::mpsc::channel();
        let mut first = block_write(&blocks[0]);
        first.acks.push(Box::new(move |result: Result<(), String>| {
            let _ = told.send(result.is_ok());
        }));
        writer.write(first);
        let answer = answers.recv_timeout(Duration::from_secs(30));
        assert_eq!(answer, Ok(false), "its record is told the write failed");
        assert_eq!(writer.committed(), 0, "the chain keeps the block in memory");
        for block in &blocks[1..] {
            writer.write(block_write(block));
        }
        let reader = writer.reader().clone();
        drop(writer);
        // No hole where the failed write was.
        let snapshot = reader.snapshot().unwrap();
        for block in &blocks {
            assert_eq!(snapshot.hash_at(block.header.height), Some(block.hash()));
        }
    }
}
