//! The chain actor: one thread owns the block tree, the pending pool and the miner; it hands
//! what each batch changed to the writer thread (`writer.rs`), which owns the store.
//! Connections send it commands and get answers; it broadcasts events (new blocks, new records,
//! blocks that joined the best chain) that connections forward. Keeping the CPU work (signature
//! checks, reorgs, replay) on this thread keeps it off the async workers.

use std::collections::VecDeque;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use protocol::clock::now_ms;

use protocol::codec::encode_line;
use protocol::difficulty::difficulty_for_load;
use protocol::hash::{DigestMap, DigestSet};
use protocol::params::{MAX_BLOCK_RECORDS, MAX_BLOCK_RECORDS_SIZE, SIDE_BLOCK_OVERHEAD};
use protocol::wire::{Message, Update};
use protocol::{
    AccountId, Admitted, Block, BlockError, BlockHash, Chain, CheckedBlock, Imported, LedgerError,
    Pool, PoolError, Record, RecordId,
};
use tokio::sync::{broadcast, mpsc, oneshot, watch};

use crate::archive::Deep;
use crate::events::{Budget, Posted};
use crate::load::Load;
use crate::miner::Miner;
use crate::pool_report::PoolReport;
use crate::store::{Checkpoint, LastCheckpoint};
use crate::verify::{SeenBlocks, Verified};
use crate::writer::{Ack, Write, Writer};

/// Identifies a connection; [`SELF`] is the node itself (its miner).
pub type ConnId = u64;
/// The node itself as the origin of an event.
pub const SELF: ConnId = 0;

/// What a connection asks of the chain.
#[derive(Debug)]
pub enum Command {
    /// A record from a shop or a peer.
    Record {
        /// The record, its signature verified by the connection ([`crate::verify::check_record`]).
        record: Record,
        /// Who sent it.
        from: ConnId,
        /// Where the outcome goes.
        reply: oneshot::Sender<RecordOutcome>,
    },
    /// Which of these block hashes the node does not know yet (neither in its tree, among its
    /// orphans, nor known invalid): only those are worth checking.
    Unknown {
        /// The hashes.
        hashes: Vec<BlockHash>,
        /// One flag per hash, true when unknown.
        reply: oneshot::Sender<Vec<bool>>,
    },
    /// Blocks from a `B` (relay) or `C` (sync) line, in order, already checked by the
    /// connection (proof of work, commitment, signatures).
    Blocks {
        /// The blocks.
        blocks: Vec<CheckedBlock>,
        /// Who sent them.
        from: ConnId,
        /// Whether accepted blocks are relayed: yes for `B`, no for sync batches.
        relay: bool,
        /// Where the outcome goes.
        reply: oneshot::Sender<BlocksOutcome>,
    },
    /// A `D`: the blocks after a locator.
    GetBlocks {
        /// The asker's locator.
        locator: Vec<BlockHash>,
        /// At most this many.
        max: usize,
        /// The blocks and whether more follow, or where the store must answer.
        reply: oneshot::Sender<Answered>,
    },
    /// Our own locator, for a `D` we send.
    Locator {
        /// The locator.
        reply: oneshot::Sender<Vec<BlockHash>>,
    },
    /// Which of these records are in a block of the best chain, and which block: for a client
    /// that fell behind on events and may have missed its `B`.
    Locate {
        /// The records.
        ids: Vec<RecordId>,
        /// The ones found, with their blocks.
        reply: oneshot::Sender<Vec<(RecordId, Arc<CheckedBlock>)>>,
    },
    /// The best tip, for a new subscriber.
    Tip {
        /// The tip.
        reply: oneshot::Sender<Arc<CheckedBlock>>,
    },
    /// The pool's whole listing (`U` `pool` with `full`), for a new subscriber.
    Pool {
        /// The update.
        reply: oneshot::Sender<Update>,
    },
    /// The miner found a block.
    Mined(Mined),
    /// Stop the actor.
    Shutdown,
}

/// The chain thread's answer to a `D`.
#[derive(Debug)]
pub enum Answered {
    /// From memory: the blocks and whether more follow.
    Blocks(Vec<Arc<CheckedBlock>>, bool),
    /// The answer starts below the blocks in memory: the connection reads it from the store
    /// ([`crate::archive::blocks_after`]), so the chain thread never waits for the disk on a
    /// request anyone may send. The best chain's range ([`Chain::best_range`]).
    Deep((u64, u64)),
}

/// A block the miner found, checked on the mining thread.
#[derive(Debug)]
pub struct Mined {
    /// The job it solves (see [`Miner::submit`]).
    pub job: u64,
    /// The block.
    pub block: CheckedBlock,
    /// Hashes tried.
    pub hashes: u64,
    /// Time spent.
    pub elapsed: Duration,
}

/// What became of a record.
#[derive(Debug)]
pub enum RecordOutcome {
    /// Newly admitted to the pool.
    Pending(Admitted),
    /// Already in the pool.
    AlreadyPending,
    /// Already in this block of the best chain.
    InBlock(Arc<CheckedBlock>),
    /// Refused.
    Refused(PoolError),
    /// Admitted, but the store could not write it, so it is not acknowledged.
    NotStored(String),
}

/// What became of a batch of blocks.
#[derive(Debug, Default)]
pub struct BlocksOutcome {
    /// Blocks that entered the tree.
    pub accepted: usize,
    /// Blocks already known.
    pub duplicates: usize,
    /// The missing parent of an orphan, if one arrived.
    pub orphan: Option<BlockHash>,
    /// The first invalid block's error; the rest of the batch was not looked at.
    pub invalid: Option<BlockError>,
}

impl BlocksOutcome {
    /// This outcome followed by `later`'s, of blocks handed over after: what both came to.
    pub fn then(self, later: BlocksOutcome) -> BlocksOutcome {
        BlocksOutcome {
            accepted: self.accepted + later.accepted,
            duplicates: self.duplicates + later.duplicates,
            orphan: later.orphan.or(self.orphan),
            invalid: self.invalid.or(later.invalid),
        }
    }
}

/// A line of the wire encoded once, by the first connection that sends it; every other
/// connection sends the same bytes. A block relayed to eight peers is turned into JSON once.
#[derive(Debug, Default)]
pub struct Line(OnceLock<Vec<u8>>);

impl Line {
    /// The line's bytes (`\n` included), encoding `message()` the first time.
    pub fn get(&self, message: impl FnOnce() -> Message) -> &[u8] {
        self.0.get_or_init(|| {
            encode_line(&message())
                .map(String::into_bytes)
                .unwrap_or_default()
        })
    }
}

/// A block that entered the tree, with its `B` line for peers. Subscribers encode their own `U`
/// lines: an event stays in the channel's ring until 4096 newer ones push it out, and a `U` line
/// cached in each of a 100,000-block sync's events held the whole chain's JSON in memory.
#[derive(Debug)]
pub struct NewBlock {
    /// The block.
    pub block: Arc<CheckedBlock>,
    /// `B`, for peers.
    pub relay: Line,
}

/// A record that entered the pool, with its `A` line for peers.
#[derive(Debug)]
pub struct NewRecord {
    /// The record.
    pub record: Record,
    /// `A`, for peers.
    pub relay: Line,
}

/// Something connections may want to forward.
#[derive(Debug, Clone)]
pub enum Event {
    /// New valid blocks entered the tree, parents first.
    Blocks {
        /// The blocks.
        blocks: Arc<[NewBlock]>,
        /// Who sent them (they are not relayed back to them).
        from: ConnId,
        /// Whether peers get them relayed: yes for `B` and our own, no for sync batches.
        relay: bool,
        /// When they entered the tree (node clock, milliseconds).
        received_ms: u64,
    },
    /// A new valid record entered the pool.
    Record {
        /// The record.
        record: Arc<NewRecord>,
        /// Who sent it.
        from: ConnId,
    },
    /// The best tip moved (clients waiting for a record and subscribers look here).
    Tip {
        /// The new tip.
        tip: Arc<CheckedBlock>,
        /// Blocks that left the best chain, the old tip first.
        disconnected: Arc<[Arc<CheckedBlock>]>,
        /// Blocks that joined it, oldest first.
        connected: Arc<[Arc<CheckedBlock>]>,
        /// The new tip, for peers other than `from`, when sync blocks moved it: peers are not
        /// relayed sync batches, so without this a node that took a long chain from one peer
        /// left its other peers behind until the next block was mined. A peer that lacks the
        /// tip's parents asks for them (an orphan); one that has it drops the copy.
        announce: Option<Announce>,
    },
    /// Something only subscribers are told: the node's load and peers, its pool's changes.
    Notice(Arc<Update>),
}

/// The channel's sending end: every event goes out boxed, so that the chain thread can empty the
/// ones a slow connection holds ([`crate::events`]).
pub type Events = broadcast::Sender<Posted<Event>>;

/// Most bytes the events that may still be in the channel hold (counted as [`event_cost`]):
/// past it, the oldest are emptied for the connections that have not taken them yet. A sync
/// batch of small blocks counts a megabyte or two and a relayed block of the biggest kind about
/// 3 MiB (its two events together), so a connection less than ten such blocks behind loses
/// nothing.
pub const MAX_EVENT_BYTES: usize = 32 * 1024 * 1024;

/// What an event holds, for [`MAX_EVENT_BYTES`]: each block as [`block_event_cost`], a pool
/// listing for its records. Records and the node's status are small, and the channel's count
/// bounds them. A block counts once per event that holds it: a sync batch's blocks count in its
/// `Blocks` event and again in the `Tip` event that follows, since either may outlive the other
/// in the channel, so the budget holds about half its bytes of such blocks.
pub fn event_cost(event: &Event) -> usize {
    let block = block_event_cost;
    match event {
        Event::Blocks { blocks, .. } => blocks.iter().map(|b| block(&b.block)).sum(),
        // The tip is the last of `connected` (a tip event is sent when blocks joined the best
        // chain), counted there.
        Event::Tip {
            disconnected,
            connected,
            announce,
            ..
        } => {
            let announced = announce.iter().flat_map(|a| a.tip.iter());
            disconnected
                .iter()
                .chain(connected.iter())
                .map(|b| block(b))
                .sum::<usize>()
                + announced.map(|b| block(&b.block)).sum::<usize>()
        }
        Event::Notice(update) => match &**update {
            Update::Pool { added, .. } => added.len() * POOL_ENTRY_COST,
            _ => 0,
        },
        Event::Record { .. } => 0,
    }
}

/// What a block counts for in an event: its records three times (the block, and the JSON of
/// its `B` line, which a relay makes once), plus its header and entries.
pub fn block_event_cost(block: &CheckedBlock) -> usize {
    3 * block.header.records_size as usize + SIDE_BLOCK_OVERHEAD
}

/// What one record of a pool listing counts for in [`event_cost`]: a record with the longest
/// names, its signature and its listing's fields, as JSON.
const POOL_ENTRY_COST: usize = 1024;

/// A tip to relay to every peer but the one whose sync batch made it ([`Event::Tip`]).
#[derive(Debug, Clone)]
pub struct Announce {
    /// The connection the batch came from.
    pub from: ConnId,
    /// The tip, with its `B` line.
    pub tip: Arc<[NewBlock]>,
}

impl Event {
    /// An event carrying `update` to every subscriber.
    pub fn notice(update: Update) -> Event {
        Event::Notice(Arc::new(update))
    }
}

/// The node's state as others see it (tracker reports, logs).
#[derive(Debug, Clone, PartialEq)]
pub struct Status {
    /// Best tip height.
    pub height: u64,
    /// Best tip hash.
    pub tip: BlockHash,
    /// Difficulty the node mines at now.
    pub difficulty: u32,
    /// Other processes' CPU load.
    pub load: f32,
}

/// Most commands handled before the store is written and records acknowledged: bounds how
/// long an acknowledgement waits behind a flood.
pub const MAX_BATCH: usize = 256;

/// What a batch of commands leaves to do once it is handled.
#[derive(Default)]
struct Batch {
    handled: usize,
    /// Blocks that entered the tree, to store.
    blocks: Vec<Arc<CheckedBlock>>,
    /// Blocks that left the tree (pruned side blocks, invalid branches), to delete.
    remove_blocks: Vec<(u64, BlockHash)>,
    /// Records newly pending, to store.
    add_pending: Vec<Record>,
    /// Pending records now in a best-chain block, to drop from the store.
    forget: DigestSet,
    /// Answers to records that wait for the write.
    acks: Vec<Ack>,
    /// Whether the tip or the pool changed, so the miner needs a new template.
    remine: bool,
    /// The best tip before the batch's first block, to write the net change of the best chain.
    start_tip: Option<BlockHash>,
}

/// What the chain thread shares with the rest of the node: where it tells what happened, what
/// sets its difficulty, and the caches connections consult so that they need not ask it.
#[derive(Debug, Clone)]
pub struct Shared {
    /// Every change of the chain and the pool, for connections and subscribers.
    pub events: Events,
    /// The tip, load and difficulty, for tracker reports and logs.
    pub status: watch::Sender<Status>,
    /// The host's CPU load, which sets the difficulty mined at.
    pub load: Load,
    /// Records whose signatures this node verified (the pool verifies what it admits).
    pub verified: Verified,
    /// Blocks that entered the tree lately, so connections drop relayed copies themselves.
    pub seen: SeenBlocks,
    /// Most bytes the events in the channel hold: [`MAX_EVENT_BYTES`], but in tests.
    pub max_event_bytes: usize,
}

/// The actor's state.
pub struct Actor {
    chain: Chain,
    pool: Pool,
    /// Writes the store on its own thread.
    writer: Writer,
    /// Record id to the best-chain block holding it, for the blocks in memory (the store
    /// indexes the others).
    mined: DigestMap<BlockHash>,
    /// The newest ledger checkpoint written (see [`Checkpoint::due`]).
    last_checkpoint: LastCheckpoint,
    events: Events,
    /// What the events still in the channel hold.
    event_budget: Budget<Event>,
    status: watch::Sender<Status>,
    miner: Miner,
    account: AccountId,
    load: Load,
    /// Records whose signatures this node verified (the pool verifies what it admits).
    verified: Verified,
    /// Blocks that entered the tree lately, so connections drop relayed copies themselves.
    seen: SeenBlocks,
    /// What the events still in the channel hold of side blocks.
    side_budget: SideBudget,
    /// The pool as subscribers last heard of it.
    pool_report: PoolReport,
}

/// How many events the channel to the connections keeps: a connection that falls further
/// behind gets the oldest ones no more (a subscriber is told it lagged, a peer syncs).
pub const EVENTS: usize = 4096;

/// Most bytes of side blocks (counted as [`block_event_cost`]) that the events still in the
/// channel may announce: a quarter of [`MAX_EVENT_BYTES`]. A flood of big side blocks, each
/// cheap at the floor and soon pruned, would otherwise fill that budget, and so push the best
/// chain's events out for every connection a little behind, and be relayed on to every peer. A
/// side block past this is kept, stored and served like any other, just not announced: honest
/// side blocks are few and small, and a peer that needs one finds it as it syncs.
pub const MAX_ANNOUNCED_SIDE_BYTES: usize = MAX_EVENT_BYTES / 4;

/// The side blocks announced by the events that may still be in the channel.
#[derive(Debug)]
struct SideBudget {
    /// [`MAX_ANNOUNCED_SIDE_BYTES`], but in tests.
    max: usize,
    /// Events sent so far.
    sent: u64,
    /// (index of the event, cost) of each side block announced, oldest first.
    announced: VecDeque<(u64, usize)>,
    bytes: usize,
}

impl Default for SideBudget {
    fn default() -> SideBudget {
        SideBudget {
            max: MAX_ANNOUNCED_SIDE_BYTES,
            sent: 0,
            announced: VecDeque::new(),
            bytes: 0,
        }
    }
}

impl SideBudget {
    /// Whether `block`, a side block, may be announced by the next event; counts it if so.
    fn admit(&mut self, block: &CheckedBlock) -> bool {
        // Events older than the channel's capacity are gone from it, and their blocks with them.
        while let Some(&(index, cost)) = self.announced.front() {
            if index + EVENTS as u64 > self.sent {
                break;
            }
            self.announced.pop_front();
            self.bytes -= cost;
        }
        let cost = block_event_cost(block);
        if self.bytes + cost > self.max {
            return false;
        }
        self.announced.push_back((self.sent, cost));
        self.bytes += cost;
        true
    }
}

impl Actor {
    /// Builds the actor from a loaded chain and pool, mining for `account`.
    pub fn new(
        chain: Chain,
        pool: Pool,
        writer: Writer,
        miner: Miner,
        account: AccountId,
        shared: Shared,
    ) -> Actor {
        let Shared {
            events,
            status,
            load,
            verified,
            seen,
            max_event_bytes,
        } = shared;
        let mut mined = DigestMap::default();
        for height in chain.base_height().max(1)..=chain.height() {
            if let Some(block) = chain.at_height(height) {
                for id in block.ids() {
                    mined.insert(*id, block.hash());
                }
            }
        }
        // Counted from the newest stored checkpoint, not from the tip: a node restarted more
        // often than every interval would otherwise never write one, and replay ever more. Its
        // size is not read back (that would read the whole ledger): the next one is due after
        // the shortest interval, and spaced by its own size from then on.
        let last_checkpoint = LastCheckpoint {
            height: writer
                .reader()
                .snapshot()
                .and_then(|s| s.newest_checkpoint())
                .unwrap_or(0),
            bytes: 0,
        };
        let mut actor = Actor {
            chain,
            pool,
            writer,
            mined,
            last_checkpoint,
            events,
            event_budget: Budget::new(max_event_bytes),
            status,
            miner,
            account,
            load,
            verified,
            seen,
            side_budget: SideBudget::default(),
            pool_report: PoolReport::default(),
        };
        actor.publish_status();
        actor.remine();
        actor
    }

    /// Serves commands until [`Command::Shutdown`] or every sender is gone.
    ///
    /// Commands are taken in batches of whatever is waiting (up to [`MAX_BATCH`]): each is
    /// handled and its relays go out at once, then everything the batch changed on disk goes to
    /// the writer thread as one transaction (one sync), which acknowledges the batch's records
    /// once it is durable, and the miner is pointed at the new tip and pool once. Under load that
    /// is one sync and one new block template per batch instead of per record, and the chain
    /// thread never waits for the disk unless [`crate::writer::MAX_QUEUED_WRITES`] are queued.
    pub fn run(mut self, mut commands: mpsc::Receiver<Command>) {
        let mut stopping = false;
        while !stopping {
            let Some(first) = commands.blocking_recv() else {
                break;
            };
            let mut batch = Batch::default();
            // Records that waited too long for their account's earlier ones go.
            self.pool.expire(now_ms());
            let mut next = Some(first);
            while let Some(command) = next.take() {
                if matches!(command, Command::Shutdown) {
                    stopping = true;
                    break;
                }
                self.handle(command, &mut batch);
                if batch.handled < MAX_BATCH {
                    next = commands.try_recv().ok();
                }
            }
            self.finish(batch);
        }
        self.miner.stop();
    }

    /// Handles one command; what must wait for the batch's write goes into `batch`.
    fn handle(&mut self, command: Command, batch: &mut Batch) {
        batch.handled += 1;
        match command {
            Command::Record {
                record,
                from,
                reply,
            } => {
                let outcome = self.record(record, from, batch);
                if matches!(outcome, RecordOutcome::Pending(_)) {
                    // Acknowledged once stored; a store error becomes `NotStored`.
                    batch.acks.push(Box::new(move |stored: Result<(), String>| {
                        let _ = reply.send(match stored {
                            Ok(()) => outcome,
                            Err(error) => RecordOutcome::NotStored(error),
                        });
                    }));
                } else {
                    let _ = reply.send(outcome);
                }
            }
            Command::Blocks {
                blocks,
                from,
                relay,
                reply,
            } => {
                let _ = reply.send(self.blocks(blocks, from, relay, batch));
            }
            Command::GetBlocks {
                locator,
                max,
                reply,
            } => {
                let served = match self.chain.blocks_after_in_memory(&locator, max) {
                    Some((blocks, more)) => Answered::Blocks(blocks, more),
                    None => Answered::Deep(self.chain.best_range()),
                };
                let _ = reply.send(served);
            }
            Command::Locator { reply } => {
                // A few hashes below the base, committed (see `Chain::trim_committed`).
                let deep = Deep::committed(self.writer.reader(), self.chain.params());
                let _ = reply.send(self.chain.locator_in(&deep));
            }
            Command::Unknown { hashes, reply } => {
                let unknown = hashes.iter().map(|h| !self.chain.is_known(h)).collect();
                let _ = reply.send(unknown);
            }
            Command::Tip { reply } => {
                let _ = reply.send(Arc::clone(self.chain.tip()));
            }
            Command::Pool { reply } => {
                let _ = reply.send(PoolReport::full(&self.pool));
            }
            Command::Locate { ids, reply } => {
                let deep = Deep::committed(self.writer.reader(), self.chain.params());
                let found = ids
                    .into_iter()
                    .filter_map(|id| {
                        let block = match self.mined.get(&id).and_then(|h| self.chain.get(h)) {
                            Some(block) => Arc::clone(block),
                            None => deep.block_with(&id)?,
                        };
                        Some((id, block))
                    })
                    .collect();
                let _ = reply.send(found);
            }
            Command::Mined(solved) => {
                self.miner.solved(solved.job);
                let hash = solved.block.hash();
                let height = solved.block.header.height;
                let records = solved.block.records.len();
                let outcome = self.blocks(vec![solved.block], SELF, true, batch);
                if outcome.accepted > 0 {
                    tracing::info!(
                        height, tip = self.chain.height(), hash = %hash.short(), records,
                        hashes = solved.hashes, ms = solved.elapsed.as_millis() as u64,
                        "mined a block"
                    );
                }
            }
            // Taken care of by `run`.
            Command::Shutdown => {}
        }
    }

    /// Hands what the batch changed to the writer (which acknowledges its records once they are
    /// on disk), and re-aims the miner. The best chain's net change and, when due, a checkpoint
    /// of the ledger go in the same write as the blocks; then the blocks older than the chain
    /// keeps in memory go, if the writer has committed them (else a later batch lets them go).
    fn finish(&mut self, batch: Batch) {
        let Batch {
            blocks,
            mut remove_blocks,
            add_pending,
            forget,
            acks,
            remine,
            start_tip,
            ..
        } = batch;
        let (connected, tip) = match start_tip {
            Some(start) if start != self.chain.tip().hash() => {
                let connected = match self.chain.changes_since(&start) {
                    Some((_, connected)) => connected,
                    // The old tip left the tree within the batch: everything in memory.
                    None => self.recent_best(),
                };
                (connected, Some(self.chain.height()))
            }
            _ => (Vec::new(), None),
        };
        let checkpoint = Checkpoint::due(&self.chain, &mut self.last_checkpoint);
        for block in self.chain.trim_committed(self.writer.committed()) {
            for id in block.ids() {
                self.mined.remove(id);
            }
        }
        remove_blocks.extend(self.chain.take_removed());
        let add = add_pending
            .into_iter()
            .filter(|r| !forget.contains(&r.id()))
            .collect();
        self.writer.write(Write {
            blocks,
            remove_blocks,
            connected,
            tip,
            checkpoint,
            add,
            forget: forget.into_iter().collect(),
            acks,
        });
        // Subscribers hear what entered and left the pool, once per batch.
        if let Some(update) = self.pool_report.diff(&self.pool, &self.mined) {
            self.emit(Event::notice(update));
        }
        // An idle miner may have work (a record, or a tie to break) even if nothing changed.
        if remine || !self.miner.is_busy() {
            self.remine();
        }
    }

    /// The best chain's blocks in memory, from the base up.
    fn recent_best(&self) -> Vec<Arc<CheckedBlock>> {
        let Some(base) = self.chain.at_height(self.chain.base_height()) else {
            return Vec::new();
        };
        let mut out = vec![Arc::clone(base)];
        out.extend(self.chain.changes_since(&base.hash()).unwrap_or_default().1);
        out
    }

    fn record(&mut self, record: Record, from: ConnId, batch: &mut Batch) -> RecordOutcome {
        let id = record.id();
        if let Some(block) = self.mined.get(&id).and_then(|h| self.chain.get(h)) {
            return RecordOutcome::InBlock(Arc::clone(block));
        }
        // The connection verified the signature (`verify::check_record`).
        let added = self.pool.add_verified(self.chain.ledger(), record.clone());
        let outcome = match added {
            Ok(Admitted::Ready) => {
                self.verified.insert([id]);
                self.admit_ready(record, from, batch);
                RecordOutcome::Pending(Admitted::Ready)
            }
            // Not minable yet: neither stored nor relayed (see `protocol::pool`), so a flood of
            // them costs this node a small buffer and its peers nothing.
            Ok(Admitted::Waiting) => {
                self.verified.insert([id]);
                RecordOutcome::Pending(Admitted::Waiting)
            }
            Err(PoolError::AlreadyPending) => RecordOutcome::AlreadyPending,
            // A sequence number already used: maybe this very record, in a block older than the
            // ones in memory. The store says (without waiting for queued writes).
            Err(e @ PoolError::Ledger(LedgerError::BadSequence { expected, got }))
                if got < expected =>
            {
                let deep = Deep::committed(self.writer.reader(), self.chain.params());
                match deep.block_with(&id) {
                    Some(block) => RecordOutcome::InBlock(block),
                    None => RecordOutcome::Refused(e),
                }
            }
            Err(e) => RecordOutcome::Refused(e),
        };
        self.pool_changes(batch);
        outcome
    }

    /// A record that is minable now: stored with the batch, relayed, mined.
    fn admit_ready(&mut self, record: Record, from: ConnId, batch: &mut Batch) {
        batch.forget.remove(&record.id());
        batch.add_pending.push(record.clone());
        batch.remine = true;
        let record = Arc::new(NewRecord {
            record,
            relay: Line::default(),
        });
        self.emit(Event::Record { record, from });
    }

    /// Acts on what else the pool changed: records that stopped waiting are stored and relayed
    /// now; ready records that left it (evicted, or no longer minable) leave the store.
    fn pool_changes(&mut self, batch: &mut Batch) {
        let changes = self.pool.take_changes();
        for id in changes.dropped {
            batch.forget.insert(id);
        }
        for record in changes.ready {
            self.admit_ready(record, SELF, batch);
        }
    }

    fn blocks(
        &mut self,
        blocks: Vec<CheckedBlock>,
        from: ConnId,
        relay: bool,
        batch: &mut Batch,
    ) -> BlocksOutcome {
        let mut outcome = BlocksOutcome::default();
        let mut added: Vec<Arc<CheckedBlock>> = Vec::new();
        let old_tip = self.chain.tip().hash();
        batch.start_tip.get_or_insert(old_tip);
        for block in blocks {
            match self.chain.insert_checked(block, now_ms()) {
                Ok(Imported::Duplicate) => outcome.duplicates += 1,
                // Forks below the deepest reorg this node accepts: dropped, nobody's fault.
                Ok(Imported::TooDeep) => {}
                Ok(Imported::Orphan { missing }) => outcome.orphan = Some(missing),
                Ok(imported) => {
                    outcome.accepted += 1;
                    added.extend(imported.added().iter().cloned());
                }
                Err(e) => {
                    outcome.invalid = Some(e);
                    break;
                }
            }
        }
        batch.remove_blocks.extend(self.chain.take_removed());
        // A later block of the same batch may have pushed an earlier one out of the caps.
        added.retain(|b| self.chain.contains(&b.hash()));
        if added.is_empty() {
            return outcome;
        }
        self.seen.insert(added.iter().map(|b| b.hash()));
        // Relayed first: peers need not wait for our disk. The block is written with the rest
        // of the batch; should we crash before, our peers have it and we sync it back.
        let blocks: Arc<[NewBlock]> = added
            .iter()
            .filter(|block| self.chain.is_on_best(&block.hash()) || self.side_budget.admit(block))
            .map(|block| NewBlock {
                block: Arc::clone(block),
                relay: Line::default(),
            })
            .collect();
        if !blocks.is_empty() {
            self.emit(Event::Blocks {
                blocks,
                from,
                relay,
                received_ms: now_ms(),
            });
        }
        batch.blocks.extend(added);
        // The old tip stays in the tree: blocks on the best chain are never removed.
        let (disconnected, connected) = self.chain.changes_since(&old_tip).unwrap_or_default();
        if connected.is_empty() {
            // A side branch can start a tie this node has to break.
            return outcome;
        }
        if !disconnected.is_empty() {
            tracing::info!(
                depth = disconnected.len(),
                height = self.chain.height(),
                "reorganised"
            );
        }
        for block in &disconnected {
            for id in block.ids() {
                self.mined.remove(id);
            }
        }
        for block in &connected {
            for id in block.ids() {
                self.mined.insert(*id, block.hash());
                batch.forget.insert(*id);
            }
        }
        self.pool
            .on_tip_change(self.chain.ledger(), &disconnected, &connected);
        // Records of blocks that left the best chain are pending again, on disk too (if they
        // are minable: waiting records are not stored).
        for (record, id) in disconnected.iter().flat_map(|b| b.records_with_ids()) {
            if self.pool.is_ready(&id) {
                batch.forget.remove(&id);
                batch.add_pending.push(record.clone());
            }
        }
        self.pool_changes(batch);
        let tip = self.chain.tip();
        let announce = (!relay).then(|| Announce {
            from,
            tip: Arc::new([NewBlock {
                block: Arc::clone(tip),
                relay: Line::default(),
            }]),
        });
        self.emit(Event::Tip {
            tip: Arc::clone(tip),
            disconnected: disconnected.into(),
            connected: connected.into(),
            announce,
        });
        self.publish_status();
        batch.remine = true;
        outcome
    }

    /// Points the miner at the current tip and pool, or stops it when there is nothing to mine.
    /// With nothing pending, the node may still have a tie to break: it then mines an empty
    /// block on the tied tip [`Chain::tie_break_parent`] names.
    fn remine(&mut self) {
        let records = self
            .pool
            .template(MAX_BLOCK_RECORDS as usize, MAX_BLOCK_RECORDS_SIZE as usize);
        let parent = if records.is_empty() {
            match self.chain.tie_break_parent(&self.account) {
                Some(parent) => parent,
                None => {
                    self.miner.stop();
                    return;
                }
            }
        } else {
            Arc::clone(self.chain.tip())
        };
        let bits = self.difficulty();
        let timestamp = now_ms().max(self.chain.min_timestamp_after(&parent.hash()));
        let template = Block::template(&parent.header, records, self.account, bits, timestamp);
        self.miner.submit(template);
    }

    /// Sends an event to every connection, counting it for the [`SideBudget`] and the bytes of
    /// the events in the channel.
    fn emit(&mut self, event: Event) {
        let cost = event_cost(&event);
        let _ = self.events.send(self.event_budget.post(event, cost));
        self.side_budget.sent += 1;
    }

    fn difficulty(&self) -> u32 {
        difficulty_for_load(self.chain.params().difficulty_floor, self.load.get())
    }

    fn publish_status(&self) {
        let tip = self.chain.tip();
        self.status.send_replace(Status {
            height: tip.header.height,
            tip: tip.hash(),
            difficulty: self.difficulty(),
            load: self.load.get(),
        });
    }
}

/// How long a connection waits for the actor before giving up (it is never this slow unless the
/// process is stopping).
pub const ACTOR_TIMEOUT: Duration = Duration::from_secs(30);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_outcome_then_a_later_one_adds_up_and_keeps_the_first_invalid_and_the_last_orphan() {
        let hash = |n: u8| BlockHash::digest(&[n]);
        let first = BlocksOutcome {
            accepted: 3,
            duplicates: 1,
            orphan: Some(hash(1)),
            invalid: Some(BlockError::BadCommitment),
        };
        let later = BlocksOutcome {
            accepted: 2,
            duplicates: 0,
            orphan: Some(hash(2)),
            invalid: Some(BlockError::WrongGenesis),
        };
        let both = first.then(later);
        assert_eq!((both.accepted, both.duplicates), (5, 1));
        assert_eq!(both.orphan, Some(hash(2)));
        assert_eq!(both.invalid, Some(BlockError::BadCommitment));
        let none = BlocksOutcome::default().then(BlocksOutcome::default());
        assert_eq!((none.accepted, none.orphan, none.invalid), (0, None, None));
    }

    #[test]
    fn side_blocks_are_announced_within_the_budget_of_the_events_in_the_channel() {
        let block = CheckedBlock::genesis();
        let cost = block_event_cost(&block);
        let mut budget = SideBudget {
            max: 3 * cost,
            ..SideBudget::default()
        };
        for _ in 0..3 {
            assert!(budget.admit(&block));
            budget.sent += 1;
        }
        assert!(!budget.admit(&block), "past the budget");
        // Once the event announcing the first has left the channel, there is room again.
        budget.sent = EVENTS as u64;
        assert!(budget.admit(&block));
        assert!(!budget.admit(&block));
    }
}
