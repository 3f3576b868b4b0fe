//! One connection's decisions, with no I/O: a [`Session`] takes what happened (a message read
//! from the socket, an answer from the chain actor, an event the actor broadcast, a timer that
//! fired) and returns the [`Action`]s to perform, in order (send this, ask the actor that, ban,
//! close with this reason). The clock is a parameter, as in `protocol` and the visualizer's
//! `state.rs`; the socket loop in [`crate::conn`] reads a line, feeds it here and performs what
//! comes back, so every answer of PROTOCOL.md's "How a node answers" is tested without a
//! process (`session/tests.rs`).
//!
//! A connection is one of three [`Role`]s, and each has its own file: what a *client* (a shop)
//! gets for its records is in [`client`], what makes a connection a *peer* and what a peer is
//! relayed in [`peer`], what a *subscriber* (the visualizer) is sent in [`subscriber`]. Anyone
//! may send `B`, `C` and `D`: [`sync`] answers them. [`timers`] says when a silent connection is
//! pinged, asked for its chain or closed.

pub mod client;
pub mod peer;
pub mod subscriber;
pub mod sync;
#[cfg(test)]
mod tests;
pub mod timers;

use std::sync::Arc;
use std::time::{Duration, Instant};

use protocol::handshake::Identity;
use protocol::params::MAX_BLOCKS_PER_MESSAGE;
use protocol::wire::{Blocks, ErrorCode, ErrorMessage, GetBlocks, Message, Update};
use protocol::{
    AccountId, Block, BlockError, BlockHash, CheckedBlock, PoolError, Record, RecordId,
};

use crate::actor::{BlocksOutcome, ConnId, Event, NewBlock, NewRecord};
use crate::guard::{
    Bucket, GETBLOCKS_BURST, GETBLOCKS_PER_SECOND, MESSAGE_BURST, MESSAGES_PER_SECOND,
};
use crate::handshake::ShakeError;

pub use client::{MAX_AWAITING, MAX_RECORDS_IN_FLIGHT};
pub use sync::C_LINE_BUDGET;
pub use timers::{
    FIRST_MESSAGE_TIMEOUT, IDLE_TIMEOUT, PEER_IDLE_TIMEOUT, SYNC_INTERVAL, SYNC_RETRY,
};

/// What a connection is to this node, which decides what it is sent besides answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// A shop or a person: answers only (every connection starts as one).
    Client,
    /// Another node, once it proved its id: relays both ways.
    Peer,
    /// The visualizer, once it sent `S`: `U` updates.
    Subscriber,
}

/// One thing for the socket loop to do. A step's actions are performed in order; an
/// [`Action::Ask`] is always the last of its step, since what follows depends on the answer.
#[derive(Debug)]
pub enum Action {
    /// Write this message.
    Send(Message),
    /// Write these blocks' `B` lines, encoded once for every peer (see [`crate::actor::Line`]).
    RelayBlocks(Arc<[NewBlock]>),
    /// Write this record's `A` line, encoded once for every peer.
    RelayRecord(Arc<NewRecord>),
    /// Read nothing more for this long: the connection sends faster than its buckets allow,
    /// and while it is not read TCP slows the sender.
    Pause(Duration),
    /// Check this record's signature and hand it to the actor; its outcome comes back through
    /// [`Session::on_outcome`], in the order the records came.
    Submit(Record),
    /// Find this out and hand the answer to [`Session::on_answer`] before anything else.
    Ask(Question),
    /// Ban the connection's address: it sent provably invalid data (the reason, for the log).
    Ban(String),
    /// Close the connection, after writing what came before.
    Close(Closing),
}

/// What a session needs to know from outside before it can go on.
#[derive(Debug)]
pub enum Question {
    /// Our block locator, for a `D`.
    Locator,
    /// The best-chain blocks after `locator`, at most `max`, and whether more follow.
    GetBlocks {
        /// The asker's locator.
        locator: Vec<BlockHash>,
        /// At most this many.
        max: usize,
    },
    /// The best tip, for a new subscriber.
    Tip,
    /// The whole pool listing (`U pool`, `full`), for a new subscriber after its tip.
    Pool,
    /// Which of these records are in a best-chain block, and which.
    Locate {
        /// The records a client waits on.
        ids: Vec<RecordId>,
    },
    /// Take these blocks from `B` (`relay`) or `C`: the ones the node does not know are
    /// checked off the chain thread, then given to the actor in order.
    Import {
        /// The blocks, in the order they came.
        blocks: Vec<Block>,
        /// Whether they came in a `B` (relayed on) or a `C` (a sync batch).
        relay: bool,
    },
    /// A proven peer: whether this node refuses it and, for a link the peer opened, whether it
    /// is the one link to keep between the two (see [`crate::links::Links`]).
    Link {
        /// The proven id.
        peer: AccountId,
        /// Whether the peer opened this link.
        inbound: bool,
    },
}

/// The answer to a [`Question`], in the same order.
#[derive(Debug)]
pub enum Answer {
    /// Our locator.
    Locator(Vec<BlockHash>),
    /// Blocks after a locator, and whether more follow.
    Blocks {
        /// The blocks, oldest first.
        blocks: Vec<Arc<CheckedBlock>>,
        /// Whether more follow.
        more: bool,
    },
    /// The best tip.
    Tip(Arc<CheckedBlock>),
    /// The pool listing.
    Pool(Update),
    /// The records found in best-chain blocks, with their blocks.
    Located(Vec<(RecordId, Arc<CheckedBlock>)>),
    /// What became of imported blocks; `invalid` is the first invalid one's error, whether the
    /// check or the actor found it.
    Imported(BlocksOutcome),
    /// What to do with a proven peer.
    Link(LinkVerdict),
}

/// What becomes of a link whose peer proved its id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkVerdict {
    /// It is the peer's link.
    Keep,
    /// This node refuses that peer (the test-only split).
    Refused,
    /// The two nodes already have a link, and that one stays.
    SecondLink,
}

/// Why a session closes its connection.
#[derive(Debug, thiserror::Error)]
pub enum Closing {
    /// Silent past its idle timeout, or a handshake past its deadline.
    #[error("idle for too long")]
    Idle,
    /// Its slot was taken for a newer connection.
    #[error("closed to make room for a new connection")]
    Evicted,
    /// A line that does not parse.
    #[error("bad line: {0}")]
    BadLine(String),
    /// The socket failed while reading.
    #[error("connection lost: {0}")]
    Lost(String),
    /// An `H` or `P` out of turn, or a proof that fails.
    #[error("handshake failed: {0}")]
    Handshake(ShakeError),
    /// An `I`: a claim to be a node without a proof.
    #[error("an unproven claim to be a node")]
    Unproven,
    /// A provably invalid block.
    #[error("sent an invalid block: {0}")]
    InvalidBlock(BlockError),
    /// A forged or malformed record.
    #[error("sent a malformed record: {0}")]
    InvalidRecord(PoolError),
    /// A peer this node refuses.
    #[error("a refused peer")]
    RefusedPeer,
    /// A second link between two nodes that have one.
    #[error("a second link to a peer")]
    SecondLink,
    /// A subscriber fell too far behind on events.
    #[error("missed updates")]
    Lagged,
    /// The actor gave no answer: the node is stopping.
    #[error("the node is stopping")]
    Stopping,
}

/// What the session waits to hear from [`Session::on_answer`], and what it keeps meanwhile.
#[derive(Debug)]
enum Pending {
    /// Our locator, for a `D`.
    Locator,
    /// Blocks to answer a `D` with, packed or not as it asked.
    GetBlocks { packed: bool },
    /// The tip, for a new subscriber.
    Tip,
    /// The pool listing, for a new subscriber.
    Pool,
    /// Awaited records found in blocks, for a client that fell behind on events.
    Locate,
    /// What became of blocks.
    Import,
    /// A proven peer's fate; `ours` is our own proof, on a link we dialed.
    Link {
        peer: AccountId,
        ours: Option<Message>,
    },
}

/// One connection's state: its role, what each role keeps, its timers and its buckets.
#[derive(Debug)]
pub struct Session {
    /// This connection, as the actor's events name it.
    id: ConnId,
    /// Who this node is, for the handshake.
    me: Identity,
    role: Role,
    /// A client's records and their answers.
    client: client::Client,
    /// The handshake and the peer it proved.
    peer: peer::Peer,
    /// Our own chain requests.
    sync: sync::Requests,
    timers: timers::Timers,
    /// Paces all messages.
    messages: Bucket,
    /// Paces chain requests, the most expensive to answer.
    getblocks: Bucket,
    /// The question last asked, until it is answered.
    pending: Option<Pending>,
}

impl Session {
    /// A connection someone opened to us: a client until it proves a node id or subscribes.
    /// `idle_timeout` is how long a client or subscriber may stay silent.
    pub fn accept(id: ConnId, me: Identity, idle_timeout: Duration, now: Instant) -> Session {
        Session {
            id,
            me,
            // Even a link we opened is nobody's until the node at the other end proves its id.
            role: Role::Client,
            client: client::Client::default(),
            peer: peer::Peer::default(),
            sync: sync::Requests::default(),
            timers: timers::Timers::new(idle_timeout, now),
            messages: Bucket::new(MESSAGES_PER_SECOND, MESSAGE_BURST, now),
            getblocks: Bucket::new(GETBLOCKS_PER_SECOND, GETBLOCKS_BURST, now),
            pending: None,
        }
    }

    /// The connection's role now.
    pub fn role(&self) -> Role {
        self.role
    }

    /// A message read from the socket.
    pub fn on_message(&mut self, message: Message, now: Instant) -> Vec<Action> {
        self.timers.heard(now);
        let mut actions = Vec::new();
        let wait = self.pace(&message, now);
        if !wait.is_zero() {
            actions.push(Action::Pause(wait));
        }
        actions.extend(self.handle(message, now));
        actions
    }

    /// How long to wait before handling `message`: a flood is slowed to the allowed rate.
    fn pace(&mut self, message: &Message, now: Instant) -> Duration {
        let mut wait = self.messages.take(now);
        if matches!(message, Message::GetBlocks(_)) {
            wait = wait.max(self.getblocks.take(now));
        }
        wait
    }

    fn handle(&mut self, message: Message, now: Instant) -> Vec<Action> {
        match message {
            Message::Record(record) => self.on_record(record),
            Message::Block(block) => {
                self.sent_us(block.header.hash());
                self.on_blocks(vec![block], true)
            }
            Message::Blocks(Blocks { blocks, more, .. }) => self.on_chain(blocks, more, now),
            Message::GetBlocks(GetBlocks { locator, packed }) => self.ask(
                Pending::GetBlocks { packed },
                Question::GetBlocks {
                    locator,
                    max: MAX_BLOCKS_PER_MESSAGE,
                },
            ),
            Message::Identify(_) => vec![
                // An unproven claim: it must never take a real peer's place.
                error(
                    ErrorCode::Unproven,
                    "I proves nothing: nodes prove who they are with H and P",
                ),
                Action::Close(Closing::Unproven),
            ],
            Message::Hello(hello) => self.on_hello(&hello, now),
            Message::Proof(proof) => self.on_proof(&proof),
            Message::Subscribe => self.on_subscribe(),
            Message::Error(e) => {
                tracing::debug!(conn = self.id, code = %e.code, message = %e.message, "peer reported an error");
                Vec::new()
            }
            // A keep-alive's work is done by being heard; it is never answered.
            Message::Ack(_) | Message::KeepAlive => Vec::new(),
            Message::Update(_) => vec![error(
                ErrorCode::Unexpected,
                "U is what a node sends, not takes",
            )],
        }
    }

    /// A line that did not decode: the codec's code, then close. A failed read just closes.
    pub fn on_bad_line(&mut self, error: &protocol::codec::WireError) -> Vec<Action> {
        match error {
            protocol::codec::WireError::Io(e) => vec![Action::Close(Closing::Lost(e.to_string()))],
            e => vec![
                Action::Send(Message::Error(ErrorMessage::new(e.code(), e))),
                Action::Close(Closing::BadLine(e.to_string())),
            ],
        }
    }

    /// The connection's slot was taken for a newer one.
    pub fn on_evicted(&mut self) -> Vec<Action> {
        vec![
            error(
                ErrorCode::Evicted,
                "closed to make room for a new connection",
            ),
            Action::Close(Closing::Evicted),
        ]
    }

    /// An event the actor broadcast.
    pub fn on_event(&mut self, event: Event, now: Instant) -> Vec<Action> {
        let actions = match self.role {
            Role::Peer => self.relay(event),
            Role::Subscriber => subscriber::updates(&event)
                .into_iter()
                .map(|update| Action::Send(Message::Update(update)))
                .collect(),
            Role::Client => self.client_event(&event),
        };
        self.timers.active(now);
        actions
    }

    /// The connection fell `missed` events behind the actor's channel.
    pub fn on_lagged(&mut self, missed: u64, now: Instant) -> Vec<Action> {
        tracing::debug!(conn = self.id, missed, "fell behind on events");
        let actions = match self.role {
            // A peer catches up by asking for what it lacks.
            Role::Peer => self.ask_locator(now),
            // A client may have missed the block of a record it waits for.
            Role::Client => self.catch_up(),
            // A subscriber cannot tell what it missed: it reconnects and resyncs.
            Role::Subscriber => vec![
                error(ErrorCode::Lagged, "missed updates; resubscribe"),
                Action::Close(Closing::Lagged),
            ],
        };
        self.timers.active(now);
        actions
    }

    /// The answer to the [`Action::Ask`] the session returned last.
    pub fn on_answer(&mut self, answer: Answer, now: Instant) -> Vec<Action> {
        let Some(pending) = self.pending.take() else {
            tracing::debug!(conn = self.id, "an answer to no question");
            return Vec::new();
        };
        match (pending, answer) {
            (Pending::Locator, Answer::Locator(locator)) => self.locator_answered(locator),
            (Pending::GetBlocks { packed }, Answer::Blocks { blocks, more }) => {
                self.chain_answered(&blocks, more, packed, now)
            }
            (Pending::Tip, Answer::Tip(tip)) => {
                let mut out = vec![Action::Send(Message::Update(subscriber::tip(&tip)))];
                // Then the pending records, whole: later `U pool` lines say what changed.
                out.extend(self.ask(Pending::Pool, Question::Pool));
                out
            }
            (Pending::Pool, Answer::Pool(listing)) => vec![Action::Send(Message::Update(listing))],
            (Pending::Locate, Answer::Located(found)) => self.located(found),
            (Pending::Import, Answer::Imported(outcome)) => self.imported(outcome, now),
            (Pending::Link { peer, ours }, Answer::Link(verdict)) => {
                self.linked(peer, ours, verdict, now)
            }
            (pending, answer) => {
                tracing::debug!(
                    conn = self.id,
                    ?pending,
                    ?answer,
                    "an answer to another question"
                );
                Vec::new()
            }
        }
    }

    /// Asks `question`, remembering what the answer is for.
    fn ask(&mut self, pending: Pending, question: Question) -> Vec<Action> {
        self.pending = Some(pending);
        vec![Action::Ask(question)]
    }
}

/// An `E` to send.
fn error(code: ErrorCode, message: impl ToString) -> Action {
    Action::Send(Message::Error(ErrorMessage::new(code, message)))
}
