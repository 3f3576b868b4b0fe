//! The hub: one thread owns the [`State`] and the browsers' queues. Node followers, the tracker
//! watcher, websocket connections and HTTP handlers send it [`Command`]s through a [`Hub`]
//! handle; it applies them in order and pushes each resulting delta to every browser at once.
//!
//! Blocks come in already checked on their own (proof of work, records, signatures: the
//! followers check them on blocking threads, [`crate::verify`]), so the hub only attaches them
//! to the tree and, through a reorg, replays the ledger: CPU work, so it runs here and never on
//! an async worker. A block the chain refuses is answered to its follower as an [`Offence`], and
//! the follower drops the node. Each delta is serialised
//! once and shared by every browser. A browser's queue is bounded ([`BROWSER_QUEUE`]): one that
//! falls that far behind is dropped (its socket closes, and the page reconnects and takes a fresh
//! snapshot), so a slow browser never slows the others or grows memory.

use std::sync::Arc;
use std::thread::JoinHandle;

use protocol::clock::now_ms;
use protocol::tracker::Topology;
use protocol::wire::{LeftPool, PendingRecord};
use protocol::{AccountId, BlockHash, CheckedBlock, Params};
use tokio::sync::{mpsc, oneshot};

use crate::state::State;
use crate::verify::{Checker, Offence};
use crate::view::{BlockDetails, Link, ToBrowser};

/// Messages a browser may have queued before it is dropped as too slow.
pub const BROWSER_QUEUE: usize = 1024;
/// Commands waiting for the hub before senders wait in turn.
const COMMAND_QUEUE: usize = 4096;

/// One serialised message for browsers: a websocket text frame.
pub type Frame = Arc<str>;

/// What the hub is asked to do.
#[derive(Debug)]
pub enum Command {
    /// Blocks a node sent, oldest first, checked on their own; `received_ms` when they came as
    /// a `U` update.
    Blocks {
        /// The node.
        node: AccountId,
        /// The blocks.
        blocks: Vec<CheckedBlock>,
        /// The node's clock when they entered its tree.
        received_ms: Option<u64>,
        /// Told the offence if the chain refused one of them (the node is then misbehaving).
        verdict: oneshot::Sender<Option<Offence>>,
    },
    /// A node sent something invalid that its follower caught.
    Misbehaved {
        /// The node.
        node: AccountId,
        /// What it sent, and why it was refused.
        offence: Offence,
    },
    /// A node said its load, difficulty and peers (`U status`).
    Status {
        /// The node.
        node: AccountId,
        /// Its load, in thousandths.
        load_permille: u16,
        /// Its difficulty.
        difficulty: u32,
        /// Its peers.
        peers: Vec<AccountId>,
    },
    /// A node's pool changed (`U pool`).
    Pool {
        /// The node.
        node: AccountId,
        /// Whether `added` is the whole listing.
        full: bool,
        /// Records that entered it or changed.
        added: Vec<PendingRecord>,
        /// Records that left it.
        removed: Vec<LeftPool>,
        /// Ready and waiting records in its whole pool.
        counts: (u64, u64),
    },
    /// A node's best tip moved.
    Tip {
        /// The node.
        node: AccountId,
        /// Its new tip.
        hash: BlockHash,
        /// Its height.
        height: u64,
    },
    /// A follower's connection to a node changed.
    Link {
        /// The node.
        node: AccountId,
        /// Its address.
        addr: String,
        /// The follower's session number: reports from older sessions are ignored.
        session: u64,
        /// The connection's state.
        link: Link,
    },
    /// The tracker's answer, or `None` when it did not answer.
    Topology(Option<Topology>),
    /// A block locator for the best chain.
    Locator(oneshot::Sender<Vec<BlockHash>>),
    /// Whether the tree holds a block.
    Contains(BlockHash, oneshot::Sender<bool>),
    /// A new browser: its queue, with the snapshot already in it.
    Subscribe(oneshot::Sender<mpsc::Receiver<Frame>>),
    /// One block's details.
    Details(BlockHash, oneshot::Sender<Option<BlockDetails>>),
    /// Reads something from the state (for old blocks' pages, [`crate::history`]): the
    /// function runs on the hub's thread and sends its answer itself.
    Read(Reader),
}

/// A function that reads the state on the hub's thread, for [`Command::Read`].
pub struct Reader(Box<dyn FnOnce(&State) + Send>);

impl std::fmt::Debug for Reader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Reader")
    }
}

/// A handle to the hub; cheap to clone. The hub stops when every handle is dropped.
#[derive(Debug, Clone)]
pub struct Hub {
    commands: mpsc::Sender<Command>,
    checker: Checker,
}

impl Hub {
    /// Starts the hub's thread for a tracker at `tracker_addr`, on a network with `params`.
    pub fn spawn(tracker_addr: &str, params: Params) -> std::io::Result<(Hub, JoinHandle<()>)> {
        let (commands, rx) = mpsc::channel(COMMAND_QUEUE);
        let checker = Checker::new(params.clone());
        let state = State::new(tracker_addr, params);
        let thread = std::thread::Builder::new()
            .name("visualizer-hub".into())
            .spawn(move || serve(state, rx))?;
        Ok((Hub { commands, checker }, thread))
    }

    /// What followers check blocks with before sending them here.
    pub fn checker(&self) -> &Checker {
        &self.checker
    }

    /// Sends a command; false if the hub has stopped.
    pub async fn send(&self, command: Command) -> bool {
        self.commands.send(command).await.is_ok()
    }

    async fn ask<T>(&self, make: impl FnOnce(oneshot::Sender<T>) -> Command) -> Option<T> {
        let (reply, answer) = oneshot::channel();
        self.commands.send(make(reply)).await.ok()?;
        answer.await.ok()
    }

    /// A block locator for the best chain.
    pub async fn locator(&self) -> Option<Vec<BlockHash>> {
        self.ask(Command::Locator).await
    }

    /// Whether the tree holds `hash`.
    pub async fn contains(&self, hash: BlockHash) -> Option<bool> {
        self.ask(|reply| Command::Contains(hash, reply)).await
    }

    /// Registers a browser: its queue starts with the snapshot, then every delta.
    pub async fn subscribe(&self) -> Option<mpsc::Receiver<Frame>> {
        self.ask(Command::Subscribe).await
    }

    /// `read` applied to the state on the hub's thread: keep it quick, every browser waits.
    pub async fn read<T: Send + 'static>(
        &self,
        read: impl FnOnce(&State) -> T + Send + 'static,
    ) -> Option<T> {
        self.ask(|reply: oneshot::Sender<T>| {
            Command::Read(Reader(Box::new(move |state| {
                let _ = reply.send(read(state));
            })))
        })
        .await
    }

    /// One block's details; `None` inside when the tree does not hold it.
    pub async fn details(&self, hash: BlockHash) -> Option<Option<BlockDetails>> {
        self.ask(|reply| Command::Details(hash, reply)).await
    }
}

/// Serialises a message for the browsers. The view types always serialise; an error would be a
/// bug, logged and skipped rather than taking the hub down.
fn frame(message: &ToBrowser) -> Option<Frame> {
    match serde_json::to_string(message) {
        Ok(text) => Some(text.into()),
        Err(error) => {
            tracing::error!(%error, "cannot serialise a browser message");
            None
        }
    }
}

/// The hub's loop: applies commands in order until every handle is gone.
fn serve(mut state: State, mut commands: mpsc::Receiver<Command>) {
    let mut browsers: Vec<mpsc::Sender<Frame>> = Vec::new();
    while let Some(command) = commands.blocking_recv() {
        let deltas = match command {
            Command::Blocks {
                node,
                blocks,
                received_ms,
                verdict,
            } => {
                let (deltas, refused) = state.insert_checked(node, blocks, received_ms, now_ms());
                let _ = verdict.send(refused);
                deltas
            }
            Command::Misbehaved { node, offence } => state.misbehaved(node, offence, now_ms()),
            Command::Tip { node, hash, height } => state.node_tip(node, hash, height),
            Command::Status {
                node,
                load_permille,
                difficulty,
                peers,
            } => state.status(node, now_ms(), load_permille, difficulty, peers),
            Command::Pool {
                node,
                full,
                added,
                removed,
                counts,
            } => state.pool(node, full, added, removed, counts),
            Command::Link {
                node,
                addr,
                session,
                link,
            } => state.link(node, &addr, session, link),
            Command::Topology(topology) => state.topology(topology.as_ref()),
            Command::Locator(reply) => {
                let _ = reply.send(state.locator());
                continue;
            }
            Command::Contains(hash, reply) => {
                let _ = reply.send(state.contains(&hash));
                continue;
            }
            Command::Subscribe(reply) => {
                let (tx, rx) = mpsc::channel(BROWSER_QUEUE);
                if let Some(snapshot) = frame(&state.snapshot())
                    && tx.try_send(snapshot).is_ok()
                    && reply.send(rx).is_ok()
                {
                    browsers.push(tx);
                    tracing::debug!(browsers = browsers.len(), "browser subscribed");
                }
                continue;
            }
            Command::Details(hash, reply) => {
                let _ = reply.send(state.details(&hash));
                continue;
            }
            Command::Read(Reader(read)) => {
                read(&state);
                continue;
            }
        };
        for delta in &deltas {
            let Some(text) = frame(delta) else { continue };
            browsers.retain(|tx| match tx.try_send(Arc::clone(&text)) {
                Ok(()) => true,
                Err(mpsc::error::TrySendError::Full(_)) => {
                    tracing::info!("dropping a browser that fell {BROWSER_QUEUE} messages behind");
                    false
                }
                Err(mpsc::error::TrySendError::Closed(_)) => false,
            });
        }
    }
    tracing::debug!("hub stopped");
}
