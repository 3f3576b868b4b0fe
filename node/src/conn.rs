//! One connection, from a peer node or a client (a shop, `nc`, the visualizer), both directions:
//! the socket loop around a [`Session`], which makes every decision. The loop reads a line,
//! feeds it to the session with the time, and performs what the session returns (write,
//! ask the actor, check signatures off the chain thread, ban, close); the actor's answers, its
//! events and the session's timers are fed the same way. What a connection is sent, and why,
//! is in [`crate::session`].

use std::collections::VecDeque;
use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures::StreamExt;
use futures::stream::FuturesOrdered;
use protocol::codec::WireError;
use protocol::handshake::Identity;
use protocol::wire::Message;
use protocol::{AccountId, Block, BlockError, BlockHash, Params, RecordId};
use tokio::net::TcpStream;
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::actor::{
    ACTOR_TIMEOUT, Answered, BlocksOutcome, Command, ConnId, EVENTS, Event, Events, RecordOutcome,
};
use crate::archive;
use crate::events::Posted;
use crate::guard::{Guard, Slot};
use crate::links::Links;
use crate::session::{Action, Answer, Closing, LinkVerdict, Question, Session};
use crate::socket::Socket;
use crate::store::Reader;
use crate::turns::TurnTable;
use crate::verify::{self, SeenBlocks, Verified};

pub use crate::session::IDLE_TIMEOUT;

/// How long one write to a connection may take: a reader that does not read fills the socket
/// buffers, and is closed rather than allowed to park its task and hold its slot.
pub const SEND_TIMEOUT: Duration = Duration::from_secs(10);

/// Most events a connection takes from the channel per wake-up before it looks at its socket
/// and timers again: a burst (a sync's batches) is written out in a few writes, and the
/// connection still reads and answers in between.
pub const EVENTS_PER_WAKE: usize = 16;

/// Bytes of events (counted as [`crate::actor::event_cost`], when posted) past which a connection takes no more in one
/// wake-up: what it took and has not written out yet is outside the channel's byte budget
/// ([`crate::events`]), and a connection whose writes crawl holds it until they end. So a
/// wake-up holds at most this and one event more (the one that crossed it), not sixteen sync
/// batches.
pub const WAKE_EVENT_BYTES: usize = 1024 * 1024;

/// What every connection shares.
#[derive(Debug, Clone)]
pub struct Ctx {
    /// To the chain actor.
    pub commands: mpsc::Sender<Command>,
    /// From the chain actor.
    pub events: Events,
    /// Connection ids.
    pub next_conn: Arc<AtomicU64>,
    /// The network's parameters, for checking blocks.
    pub params: Params,
    /// Bans, per-address slots, refused peers.
    pub guard: Guard,
    /// Who this node is: the key and address it proves in handshakes.
    pub me: Identity,
    /// Records whose signatures this node verified.
    pub verified: Verified,
    /// Blocks that entered the tree lately.
    pub seen: SeenBlocks,
    /// The peers this node has links with.
    pub links: Links,
    /// Reads the blocks no longer in memory, for a deep `D`.
    pub reader: Reader,
    /// Turns to read them: [`archive::MAX_DEEP_READS`] at once, by address in rotation.
    pub deep_reads: TurnTable,
}

/// A record's outcome on its way back from the chain thread.
type PendingOutcome =
    Pin<Box<dyn Future<Output = (RecordId, Option<RecordOutcome>)> + Send + Sync>>;

/// Why a connection's loop ended.
#[derive(Debug, thiserror::Error)]
enum Ended {
    /// The session closed it.
    #[error(transparent)]
    Closed(#[from] Closing),
    /// A write failed.
    #[error("send failed: {0}")]
    Send(#[source] WireError),
    /// A write took longer than [`SEND_TIMEOUT`]: the other end does not read.
    #[error("not reading")]
    NotReading,
    /// The other end hung up.
    #[error("closed by the other end")]
    Hangup,
    /// The node is stopping (the token fired, or the actor is gone).
    #[error("the node is stopping")]
    Stopping,
    /// The peer is one this node refuses now.
    #[error("a refused peer")]
    Refused,
}

/// The socket, and what the session's actions need.
struct Conn {
    id: ConnId,
    ctx: Ctx,
    socket: Socket,
    session: Session,
    /// Outcomes of this connection's records, in the order the records came.
    outcomes: FuturesOrdered<PendingOutcome>,
    ip: Option<IpAddr>,
    label: String,
    /// An inbound connection's place among the node's slots; `None` for links we opened.
    slot: Option<Slot>,
    /// The outcome of the sync batch this connection handed the chain thread last, while it
    /// attaches it: the connection checks the next batch meanwhile (one batch in flight).
    attaching: Option<oneshot::Receiver<BlocksOutcome>>,
    /// The last block of the last sync batch this connection handed over.
    handed: Option<BlockHash>,
}

/// Serves one connection until it closes, fails, or `cancel` fires. `outbound` is the id and the
/// address of the peer node for a connection we opened to it: we ask it to prove it is that
/// node, prove who we are, then ask for its chain.
pub async fn serve(
    stream: TcpStream,
    outbound: Option<(AccountId, String)>,
    ctx: Ctx,
    cancel: CancellationToken,
) -> Served {
    serve_with(stream, outbound, ctx, cancel, None).await
}

/// Serves a connection someone opened to us, holding `slot` until it ends; it is closed when
/// the slot is taken for a newer connection (see [`daemon::slots`]).
pub async fn serve_inbound(stream: TcpStream, ctx: Ctx, cancel: CancellationToken, slot: Slot) {
    serve_with(stream, None, ctx, cancel, Some(slot)).await;
}

async fn serve_with(
    stream: TcpStream,
    outbound: Option<(AccountId, String)>,
    ctx: Ctx,
    cancel: CancellationToken,
    slot: Option<Slot>,
) -> Served {
    let id = ctx.next_conn.fetch_add(1, Ordering::Relaxed);
    let peer_addr = stream.peer_addr().ok();
    let label = peer_addr.map_or_else(|| "?".into(), |a| a.to_string());
    // Relays are small lines that must leave at once, not wait for more to coalesce.
    stream.set_nodelay(true).ok();
    let events = ctx.events.subscribe();
    let idle_timeout = ctx.guard.idle_timeout();
    let now = Instant::now();
    let (session, first) = match &outbound {
        Some((expect, addr)) => Session::dial(id, ctx.me.clone(), idle_timeout, *expect, addr, now),
        None => (
            Session::accept(id, ctx.me.clone(), idle_timeout, now),
            Vec::new(),
        ),
    };
    let share = ctx.guard.buffers(source(peer_addr.map(|a| a.ip())));
    let mut conn = Conn {
        id,
        ctx,
        socket: Socket::new(stream, share),
        session,
        outcomes: FuturesOrdered::new(),
        ip: peer_addr.map(|a| a.ip()),
        label,
        slot,
        attaching: None,
        handed: None,
    };
    tracing::debug!(conn = id, addr = %conn.label, outbound = outbound.is_some(), "connection open");
    let ended = match conn.perform(first).await {
        Ok(()) => conn.run(events, &cancel).await,
        Err(ended) => ended,
    };
    conn.settle_attach(&ended).await;
    match &ended {
        Ended::Closed(Closing::BadLine(_) | Closing::Handshake(_)) => {
            tracing::info!(conn = id, addr = %conn.label, reason = %ended, "closing")
        }
        _ => tracing::debug!(conn = id, addr = %conn.label, reason = %ended, "connection closed"),
    }
    if let Some(peer) = conn.session.inbound_peer() {
        conn.ctx.links.inbound_closed(&peer);
    }
    if conn.session.peer_id().is_some() {
        Served::Proven
    } else {
        Served::No
    }
}

/// What a connection did for the node, which [`crate::peers`] goes by when it picks peers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Served {
    /// The other end proved its id: a node was really there.
    Proven,
    /// It never did (a closed port, a timeout, a failed or missing proof).
    No,
}

impl Conn {
    /// Feeds the session until the connection ends: whichever comes first of the token, an
    /// eviction, a record's outcome, a timer, a line, an event.
    async fn run(
        &mut self,
        mut events: broadcast::Receiver<Posted<Event>>,
        cancel: &CancellationToken,
    ) -> Ended {
        loop {
            let deadline = tokio::time::Instant::from_std(self.session.next_deadline());
            let slot = self.slot.as_ref();
            let evicted = async move {
                match slot {
                    Some(slot) => slot.evicted().await,
                    None => std::future::pending().await,
                }
            };
            let reading = self.session.reading();
            let actions = tokio::select! {
                // Outcomes first: a record's `K` goes out before the `B` of the block holding it.
                biased;
                _ = cancel.cancelled() => return Ended::Stopping,
                _ = evicted => self.session.on_evicted(),
                Some((id, outcome)) = self.outcomes.next(), if !self.outcomes.is_empty() => {
                    self.session.on_outcome(id, outcome)
                }
                attached = attached(&mut self.attaching), if self.attaching.is_some() => {
                    self.attaching = None;
                    let Some(outcome) = attached else {
                        return Ended::Stopping;
                    };
                    self.delivered(&outcome);
                    self.session.on_attached(outcome, Instant::now())
                }
                _ = tokio::time::sleep_until(deadline) => self.session.on_timer(Instant::now()),
                // Events before the next frame: an event stays in the channel, with its blocks,
                // until every connection has taken it (or the byte budget empties it, for the
                // ones behind), and a peer that floods sync batches kept this very connection
                // reading frames while the events of every batch it brought piled up (the whole
                // chain, during a sync). What the node has to tell goes out before more work is
                // taken from the peer.
                event = events.recv() => {
                    if self.is_refused() {
                        return Ended::Refused;
                    }
                    match event {
                        Ok(event) => self.on_events(event, &mut events),
                        Err(broadcast::error::RecvError::Lagged(missed)) => {
                            self.session.on_lagged(missed, Instant::now())
                        }
                        Err(broadcast::error::RecvError::Closed) => return Ended::Stopping,
                    }
                }
                frame = self.socket.next(), if reading => match frame {
                    None => return Ended::Hangup,
                    Some(Err(e)) => self.session.on_bad_line(&e),
                    Some(Ok(message)) => {
                        if let Some(slot) = &self.slot {
                            slot.touch();
                        }
                        if self.is_refused() {
                            return Ended::Refused;
                        }
                        self.session.on_message(message, Instant::now())
                    }
                },
            };
            if let Err(ended) = self.perform(actions).await {
                return ended;
            }
            if self.is_refused() {
                return Ended::Refused;
            }
        }
    }

    /// `first` and the events queued behind it (at most [`EVENTS_PER_WAKE`] in all, none once
    /// they pass [`WAKE_EVENT_BYTES`]), fed to the session in order: their actions are
    /// performed together, so what they make goes out in one write. The chain thread sends a
    /// block's events back to back (the block, then the tip it moved): one wake-up and one
    /// write for both, not two, on every connection.
    ///
    /// An event the chain thread emptied for its bytes ([`crate::events`]) is one this
    /// connection fell behind on, as if it had lagged: it and the emptied ones behind it are one
    /// lag ([`skip_emptied`]), and nothing more is taken this wake-up.
    fn on_events(
        &mut self,
        first: Posted<Event>,
        events: &mut broadcast::Receiver<Posted<Event>>,
    ) -> Vec<Action> {
        let now = Instant::now();
        let mut taken = first.cost();
        let Some(first) = first.open() else {
            return self.session.on_lagged(skip_emptied(events), now);
        };
        let mut actions = self.session.on_event(first, now);
        for _ in 1..EVENTS_PER_WAKE {
            // What follows an `Ask` waits for its answer, and nothing follows a `Close`: the
            // next events are taken after them.
            if matches!(actions.last(), Some(Action::Ask(_) | Action::Close(_))) {
                break;
            }
            if taken >= WAKE_EVENT_BYTES {
                break;
            }
            match events
                .try_recv()
                .map(|posted| (posted.cost(), posted.open()))
            {
                Ok((cost, Some(event))) => {
                    taken += cost;
                    actions.extend(self.session.on_event(event, now));
                }
                Ok((_, None)) => {
                    actions.extend(self.session.on_lagged(skip_emptied(events), now));
                    break;
                }
                Err(broadcast::error::TryRecvError::Lagged(missed)) => {
                    actions.extend(self.session.on_lagged(missed, now));
                    break;
                }
                // Nothing more for now; a closed channel is seen by the next `recv`.
                Err(_) => break,
            }
        }
        actions
    }

    /// Whether the peer on this link is one this node refuses (the test-only split).
    fn is_refused(&self) -> bool {
        self.session
            .peer_id()
            .is_some_and(|id| self.ctx.guard.is_refused(&id))
    }

    /// Performs a step's actions in order, feeding the session the answers it asks for; writes
    /// are flushed before anything that waits and at the end.
    async fn perform(&mut self, actions: Vec<Action>) -> Result<(), Ended> {
        let mut queue = VecDeque::from(actions);
        while let Some(action) = queue.pop_front() {
            match action {
                Action::Send(message) => self.write(message).await?,
                Action::RelayBlocks(blocks) => {
                    for b in blocks.iter() {
                        let line = b.relay.get(|| Message::Block(b.block.block().clone()));
                        self.socket.write_buffer_mut().extend_from_slice(line);
                    }
                }
                Action::RelayRecord(record) => {
                    let line = record.relay.get(|| Message::Record(record.record.clone()));
                    self.socket.write_buffer_mut().extend_from_slice(line);
                }
                Action::Pause(wait) => {
                    self.flush().await?;
                    tokio::time::sleep(wait).await;
                }
                Action::Submit(record) => self.submit(record).await?,
                Action::Ask(question) => {
                    self.flush().await?;
                    let answer = self.answer(question).await.ok_or(Ended::Stopping)?;
                    let next = self.session.on_answer(answer, Instant::now());
                    for action in next.into_iter().rev() {
                        queue.push_front(action);
                    }
                }
                Action::Ban(reason) => self.ban(&reason),
                Action::Close(closing) => {
                    // The other end may not read: what it is told is best effort.
                    let _ = self.flush().await;
                    return Err(Ended::Closed(closing));
                }
            }
        }
        self.flush().await
    }

    /// Queues one message for writing (a full buffer is written out first), giving up after
    /// [`SEND_TIMEOUT`].
    async fn write(&mut self, message: Message) -> Result<(), Ended> {
        let fed = tokio::time::timeout(SEND_TIMEOUT, self.socket.feed(message)).await;
        written(fed)
    }

    /// Writes out what is queued, giving up after [`SEND_TIMEOUT`].
    async fn flush(&mut self) -> Result<(), Ended> {
        written(tokio::time::timeout(SEND_TIMEOUT, self.socket.flush()).await)
    }

    /// Bans this connection's address for sending provably invalid data; logged once per ban.
    fn ban(&self, reason: &str) {
        if let Some(ip) = self.ip
            && self.ctx.guard.ban(ip, Instant::now())
        {
            tracing::warn!(conn = self.id, addr = %self.label, %reason, "banned for sending invalid data");
        }
    }

    /// The outcome of the sync batch still attaching when the connection ended (the sender hung
    /// up, or stopped reading, right after sending it): what the chain thread found wrong in it
    /// still bans the sender. Not while the node stops.
    async fn settle_attach(&mut self, ended: &Ended) {
        let Some(attaching) = self.attaching.take() else {
            return;
        };
        if matches!(ended, Ended::Stopping) {
            return;
        }
        let Some(outcome) = settle(attaching).await else {
            return;
        };
        for action in self.session.on_attached(outcome, Instant::now()) {
            if let Action::Ban(reason) = action {
                self.ban(&reason);
            }
        }
    }

    /// A record: its signature is checked here, not on the chain thread (see
    /// `verify::check_record`), then it goes to the actor; its outcome joins the queue.
    async fn submit(&mut self, record: protocol::Record) -> Result<(), Ended> {
        let id = record.id();
        if let Err(error) = verify::check_record(&record, &self.ctx.verified) {
            let outcome = RecordOutcome::Refused(error.into());
            self.outcomes
                .push_back(Box::pin(async move { (id, Some(outcome)) }));
            return Ok(());
        }
        let (reply, answer) = oneshot::channel();
        let command = Command::Record {
            record,
            from: self.id,
            reply,
        };
        self.ctx
            .commands
            .send(command)
            .await
            .map_err(|_| Ended::Stopping)?;
        self.outcomes.push_back(Box::pin(async move {
            let outcome = tokio::time::timeout(ACTOR_TIMEOUT, answer).await;
            (id, outcome.ok().and_then(Result::ok))
        }));
        Ok(())
    }

    /// Finds out what the session asked; `None` when the actor (or the table of turns at deep
    /// reads) is gone: the node is stopping.
    async fn answer(&mut self, question: Question) -> Option<Answer> {
        Some(match question {
            Question::Locator => {
                Answer::Locator(self.ask(|reply| Command::Locator { reply }).await?)
            }
            Question::GetBlocks { locator, max } => {
                let command = |reply| Command::GetBlocks {
                    locator: locator.clone(),
                    max,
                    reply,
                };
                let (blocks, more) = match self.ask(command).await? {
                    Answered::Blocks(blocks, more) => (blocks, more),
                    Answered::Deep(range) => {
                        let reader = self.ctx.reader.clone();
                        let params = self.ctx.params.clone();
                        let turn = self.ctx.deep_reads.turn(source(self.ip)).await?;
                        archive::blocks_after(reader, params, turn, locator, max, range).await
                    }
                };
                Answer::Blocks { blocks, more }
            }
            Question::Tip => Answer::Tip(self.ask(|reply| Command::Tip { reply }).await?),
            Question::Pool => Answer::Pool(self.ask(|reply| Command::Pool { reply }).await?),
            Question::Locate { ids } => {
                Answer::Located(self.ask(|reply| Command::Locate { ids, reply }).await?)
            }
            Question::Import { blocks, relay } => {
                let outcome = self.import(blocks, relay).await?;
                self.delivered(&outcome);
                Answer::Imported(outcome)
            }
            Question::Link { peer, inbound } => Answer::Link(self.link_verdict(peer, inbound)),
        })
    }

    /// Asks the actor something; `None` when it is gone (the node is stopping).
    async fn ask<T>(&self, make: impl FnOnce(oneshot::Sender<T>) -> Command) -> Option<T> {
        let (tx, rx) = oneshot::channel();
        self.ctx.commands.send(make(tx)).await.ok()?;
        settle(rx).await
    }

    /// Blocks from `B` (`relay`) or `C`: the ones the node does not know are checked off the
    /// chain thread, then attached in order by the actor.
    ///
    /// A sync batch is not waited for: the connection reads and checks the next one while the
    /// chain thread attaches it, so the two overlap instead of taking turns (a sync of a million
    /// blocks is 2,000 batches). Its outcome comes with the next batch's answer, or by itself
    /// when no batch follows ([`Session::on_attached`]): an invalid block found on attach still
    /// bans and closes, one batch later. A relay, and a batch the check found an invalid block
    /// in, are waited for.
    async fn import(&mut self, blocks: Vec<Block>, relay: bool) -> Option<BlocksOutcome> {
        let hashes: Vec<_> = blocks.iter().map(|b| b.header.hash()).collect();
        // A relayed copy of a block already taken: dropped here, without the chain thread.
        if relay && hashes.iter().all(|h| self.ctx.seen.contains(h)) {
            return Some(BlocksOutcome::default());
        }
        // One relayed block not seen is almost surely new: checking it costs less than asking
        // the chain thread first (which answers a duplicate anyway). So is a sync batch that
        // starts where the last one this link handed over ends, and asking would wait for the
        // chain thread to attach that one: a block another link brought meanwhile is checked
        // twice and found a duplicate.
        let continues = !relay
            && blocks
                .first()
                .is_some_and(|b| self.handed == Some(b.header.prev_hash));
        let unknown = if (relay && hashes.len() == 1) || continues {
            vec![true; hashes.len()]
        } else {
            self.ask(|reply| Command::Unknown { hashes, reply }).await?
        };
        let fresh: Vec<Block> = blocks
            .into_iter()
            .zip(unknown)
            .filter_map(|(block, unknown)| unknown.then_some(block))
            .collect();
        let (checked, invalid) =
            verify::check_blocks(fresh, self.ctx.params.clone(), self.ctx.verified.clone()).await;
        // The batch before comes first: nothing is attached after an invalid block (one from
        // the future only refuses that block, and the link goes on).
        let earlier = match self.attaching.take() {
            Some(attaching) => settle(attaching).await?,
            None => BlocksOutcome::default(),
        };
        if earlier.invalid.as_ref().is_some_and(BlockError::is_final) {
            return Some(earlier);
        }
        let Some(last) = checked.last().map(|b| b.hash()) else {
            return Some(earlier.then(BlocksOutcome {
                invalid,
                ..BlocksOutcome::default()
            }));
        };
        let (reply, attaching) = oneshot::channel();
        let command = Command::Blocks {
            blocks: checked,
            from: self.id,
            relay,
            reply,
        };
        self.ctx.commands.send(command).await.ok()?;
        if relay || invalid.is_some() {
            let mut attached = settle(attaching).await?;
            attached.invalid = invalid.or(attached.invalid);
            return Some(earlier.then(attached));
        }
        self.handed = Some(last);
        self.attaching = Some(attaching);
        Some(earlier)
    }

    /// Tells the links that the peer on this connection brought new blocks.
    fn delivered(&self, outcome: &BlocksOutcome) {
        if let Some(peer) = self.session.peer_id().filter(|_| outcome.accepted > 0) {
            self.ctx.links.delivered(&peer, Instant::now());
        }
    }

    /// Whether a proven peer keeps this link: not if this node refuses it, nor, for a link it
    /// opened, if the two nodes already have the link to keep.
    fn link_verdict(&self, peer: AccountId, inbound: bool) -> LinkVerdict {
        if self.ctx.guard.is_refused(&peer) {
            LinkVerdict::Refused
        } else if inbound
            && !self
                .ctx
                .links
                .inbound_opened(&self.ctx.me.key.account(), peer)
        {
            LinkVerdict::SecondLink
        } else {
            LinkVerdict::Keep
        }
    }
}

/// After an event the budget emptied ([`crate::events`]): skips the emptied ones behind it, and
/// the first one not emptied too (the catch-up that follows a lag covers it); how many events
/// the connection missed in all. The budget empties the oldest first, so a connection that fell
/// behind finds a run of them, which it counts as one lag, not one per event.
fn skip_emptied(events: &mut broadcast::Receiver<Posted<Event>>) -> u64 {
    let mut missed = 1;
    for _ in 0..EVENTS {
        match events.try_recv() {
            Ok(posted) => {
                missed += 1;
                if posted.open().is_some() {
                    break;
                }
            }
            Err(broadcast::error::TryRecvError::Lagged(more)) => missed += more,
            // Nothing more for now; a closed channel is seen by the next `recv`.
            Err(_) => break,
        }
    }
    missed
}

/// The actor's answer (a sync batch's outcome, once attached), within [`ACTOR_TIMEOUT`]; `None`
/// when the actor is gone (the node is stopping).
async fn settle<T>(answer: oneshot::Receiver<T>) -> Option<T> {
    tokio::time::timeout(ACTOR_TIMEOUT, answer).await.ok()?.ok()
}

/// The outcome of the sync batch still attaching, when it comes; never, when there is none.
async fn attached(
    attaching: &mut Option<oneshot::Receiver<BlocksOutcome>>,
) -> Option<BlocksOutcome> {
    match attaching {
        Some(attaching) => attaching.await.ok(),
        None => std::future::pending().await,
    }
}

/// What a write bounded by [`SEND_TIMEOUT`] came to.
fn written(sent: Result<Result<(), WireError>, tokio::time::error::Elapsed>) -> Result<(), Ended> {
    match sent {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(Ended::Send(e)),
        Err(_) => Err(Ended::NotReading),
    }
}

/// The address a connection's shares (buffered bytes, turns at deep reads) count against: a
/// connection whose address is unknown (it closed already) counts as the unspecified one.
fn source(ip: Option<IpAddr>) -> IpAddr {
    ip.unwrap_or(IpAddr::from([0, 0, 0, 0]))
}
