//! One connection, from a peer node or a client (a shop, `nc`, the visualizer), both directions.
//!
//! A connection's [`Role`] decides what it is sent besides answers. A *peer* (another node,
//! once it proved its id with the handshake of [`crate::handshake`], either way) gets every
//! new block and record relayed. A *subscriber* (one that sent `S`: the visualizer) gets a `U` for every block that
//! enters the tree and every move of the best tip. A *client* (a shop) gets only the answers
//! about its own records: `K` once pending, `B` once in a block of the best chain.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures::stream::FuturesOrdered;
use futures::{SinkExt, StreamExt};
use protocol::codec::{LineCodec, MAX_LINE, WireError, encode_line};
use protocol::handshake::{Hello, Identity, Proof};
use protocol::params::{MAX_BLOCKS_PER_MESSAGE, MAX_LOCATOR};
use protocol::wire::{Ack, AckStatus, Blocks, ErrorCode, ErrorMessage, GetBlocks, Message, Update};
use protocol::{
    AccountId, Admitted, Block, BlockError, BlockHash, CheckedBlock, LedgerError, Params,
    PoolError, RecordId,
};
use tokio::net::TcpStream;
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio::time::Instant;
use tokio_util::codec::Framed;
use tokio_util::sync::CancellationToken;

use crate::actor::{ACTOR_TIMEOUT, BlocksOutcome, Command, ConnId, Event, RecordOutcome};
use crate::guard::{
    Bucket, GETBLOCKS_BURST, GETBLOCKS_PER_SECOND, Guard, MESSAGE_BURST, MESSAGES_PER_SECOND, Slot,
};
use crate::handshake::{Shake, ShakeError};
use crate::links::Links;
use crate::verify::{self, SeenBlocks, Verified};

/// A client must say something this soon after connecting (or within the idle timeout, if
/// that is shorter).
pub const FIRST_MESSAGE_TIMEOUT: Duration = Duration::from_secs(10);
/// A client or subscriber that says nothing this long is closed (the node's default; tests
/// lower it with `--idle-timeout-ms`). A subscriber or a client waiting on a record may have
/// nothing to say for longer, so halfway through the node sends it a keep-alive `Z`, and any
/// line back keeps it open: a connection that holds a slot must show it is alive.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// How long one write to a connection may take: a reader that does not read fills the socket
/// buffers, and is closed rather than allowed to park its task and hold its slot.
pub const SEND_TIMEOUT: Duration = Duration::from_secs(10);
/// A peer link with no message either way for this long gets a `D`: it keeps the link alive
/// and catches up on anything a lost relay missed.
pub const SYNC_INTERVAL: Duration = Duration::from_secs(30);
/// A peer that has said nothing for this long is closed: an honest one asks every
/// [`SYNC_INTERVAL`].
pub const PEER_IDLE_TIMEOUT: Duration = Duration::from_secs(120);
/// How long an unanswered `D` holds back another: orphans arriving in a burst ask once.
pub const SYNC_RETRY: Duration = Duration::from_secs(5);
/// Most records of one connection waiting for the chain thread's answer; past it the
/// connection is not read until answers come back, so TCP slows the sender.
pub const MAX_RECORDS_IN_FLIGHT: usize = 512;
/// Most records one connection waits on for a `B`: bounds per-connection memory.
pub const MAX_AWAITING: usize = 4096;
/// Most bytes of block JSON in one `C` line: half of [`MAX_LINE`], so any answer fits.
pub const C_LINE_BUDGET: usize = MAX_LINE / 2;

/// What every connection shares.
#[derive(Debug, Clone)]
pub struct Ctx {
    /// To the chain actor.
    pub commands: mpsc::Sender<Command>,
    /// From the chain actor.
    pub events: broadcast::Sender<Event>,
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
}

/// What a connection is to this node, which decides what it is sent unasked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// A shop or a person: answers only.
    Client,
    /// Another node: relays both ways.
    Peer,
    /// The visualizer: `U` updates.
    Subscriber,
}

type Link = Framed<TcpStream, LineCodec<Message>>;

/// A record's answer on its way back from the chain thread.
type PendingAck = Pin<Box<dyn Future<Output = (RecordId, Option<RecordOutcome>)> + Send + Sync>>;

struct Conn {
    /// Answers to this connection's records, in the order the records came.
    acks: FuturesOrdered<PendingAck>,
    id: ConnId,
    ctx: Ctx,
    link: Link,
    role: Role,
    /// The peer's id, once it proved it (see [`crate::handshake`]).
    peer_id: Option<AccountId>,
    /// Where the handshake stands.
    shake: Shake,
    /// For a link a peer opened, the id it is registered under in [`Links`].
    inbound_peer: Option<AccountId>,
    ip: Option<IpAddr>,
    sent_locator: bool,
    /// When our last unanswered `D` went out.
    sync_pending: Option<Instant>,
    awaiting: HashSet<RecordId>,
    /// Records of this client not acknowledged yet: the store's writer acknowledges them once
    /// they are on disk, and the miner does not wait for that, so a block can come first.
    unacked: HashSet<RecordId>,
    /// Blocks holding an unacknowledged record, sent right after its acknowledgement: a client
    /// always gets a record's `K` before its `B`.
    held: HashMap<RecordId, Arc<CheckedBlock>>,
    label: String,
    messages: Bucket,
    getblocks: Bucket,
    /// An inbound connection's place among the node's slots; `None` for links we opened.
    slot: Option<Slot>,
}

enum Flow {
    Continue,
    Close,
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
    let mut events = ctx.events.subscribe();
    let link = Framed::new(stream, LineCodec::<Message>::new());
    let now = Instant::now();
    let mut conn = Conn {
        acks: FuturesOrdered::new(),
        id,
        ctx,
        link,
        // Even a link we opened is nobody's until the node at the other end proves its id.
        role: Role::Client,
        peer_id: None,
        shake: Shake::Idle,
        inbound_peer: None,
        ip: peer_addr.map(|a| a.ip()),
        sent_locator: false,
        sync_pending: None,
        awaiting: HashSet::new(),
        unacked: HashSet::new(),
        held: HashMap::new(),
        label,
        messages: Bucket::new(MESSAGES_PER_SECOND, MESSAGE_BURST, now.into_std()),
        getblocks: Bucket::new(GETBLOCKS_PER_SECOND, GETBLOCKS_BURST, now.into_std()),
        slot,
    };
    let idle_timeout = conn.ctx.guard.idle_timeout();
    tracing::debug!(conn = id, addr = %conn.label, outbound = outbound.is_some(), "connection open");
    if let Some((expect, addr)) = &outbound {
        let (shake, hello) = Shake::dial(&conn.ctx.me, *expect, addr);
        conn.shake = shake;
        if conn.send(hello).await.is_err() {
            return Served::No;
        }
    }
    let mut last_heard = Instant::now();
    let mut last_activity = Instant::now();
    let mut heard_anything = false;
    // Whether a keep-alive `Z` went out since we last heard from the connection.
    let mut pinged = false;
    loop {
        // Subscribers and clients waiting on a record may be quiet for long: they are asked.
        let (limit, keep_alive) = match (conn.role, !conn.awaiting.is_empty(), heard_anything) {
            (Role::Peer, _, _) => (PEER_IDLE_TIMEOUT, false),
            (Role::Subscriber, _, _) | (Role::Client, true, _) => (idle_timeout, true),
            (Role::Client, false, false) => (FIRST_MESSAGE_TIMEOUT.min(idle_timeout), false),
            (Role::Client, false, true) => (idle_timeout, false),
        };
        // A handshake under way must end by its own deadline, however chatty the connection.
        let deadline = match conn.shake.deadline() {
            Some(shake) => shake.min(last_heard + limit),
            None => last_heard + limit,
        };
        let idle = tokio::time::sleep_until(deadline);
        let ping_due = async {
            if keep_alive && !pinged {
                tokio::time::sleep_until(last_heard + limit / 2).await;
            } else {
                std::future::pending::<()>().await;
            }
        };
        let slot = conn.slot.as_ref();
        let evicted = async move {
            match slot {
                Some(slot) => slot.evicted().await,
                None => std::future::pending().await,
            }
        };
        let sync_due = async {
            if conn.role == Role::Peer {
                tokio::time::sleep_until(last_activity + SYNC_INTERVAL).await;
            } else {
                std::future::pending::<()>().await;
            }
        };
        let reading = conn.acks.len() < MAX_RECORDS_IN_FLIGHT;
        let flow = tokio::select! {
            // Answers first: a record's `K` goes out before the `B` of the block holding it.
            biased;
            _ = cancel.cancelled() => Flow::Close,
            _ = evicted => {
                tracing::debug!(conn = id, addr = %conn.label, "closed to make room for a new connection");
                let error = ErrorMessage::new(ErrorCode::Evicted, "closed to make room for a new connection");
                let _ = conn.send(Message::Error(error)).await;
                Flow::Close
            }
            Some((id, outcome)) = conn.acks.next(), if !conn.acks.is_empty() => {
                conn.on_ack(id, outcome).await.unwrap_or(Flow::Close)
            }
            _ = idle => {
                let error = ErrorMessage::new(ErrorCode::Timeout, "idle for too long");
                let _ = conn.send(Message::Error(error)).await;
                Flow::Close
            }
            _ = ping_due => {
                pinged = true;
                if conn.send(Message::KeepAlive).await.is_ok() { Flow::Continue } else { Flow::Close }
            }
            _ = sync_due => {
                last_activity = Instant::now();
                conn.sync_pending = None;
                if conn.send_locator(None).await.is_ok() { Flow::Continue } else { Flow::Close }
            }
            frame = conn.link.next(), if reading => match frame {
                None => Flow::Close,
                Some(Err(WireError::Io(e))) => {
                    tracing::debug!(conn = id, addr = %conn.label, error = %e, "connection lost");
                    Flow::Close
                }
                Some(Err(e)) => {
                    tracing::info!(conn = id, addr = %conn.label, error = %e, "bad line; closing");
                    let _ = conn.send(Message::Error(ErrorMessage::new(e.code(), &e))).await;
                    Flow::Close
                }
                Some(Ok(message)) => {
                    last_heard = Instant::now();
                    last_activity = last_heard;
                    heard_anything = true;
                    pinged = false;
                    if let Some(slot) = &conn.slot {
                        slot.touch();
                    }
                    conn.pace(&message).await;
                    conn.handle(message).await
                }
            },
            event = events.recv() => {
                let flow = conn.forward(event).await;
                last_activity = Instant::now();
                flow
            }
        };
        if matches!(flow, Flow::Close) || conn.is_refused() {
            break;
        }
    }
    if let Some(peer) = conn.inbound_peer {
        conn.ctx.links.inbound_closed(&peer);
    }
    tracing::debug!(conn = id, addr = %conn.label, "connection closed");
    if conn.peer_id.is_some() {
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
    /// Waits as long as this connection's buckets say: a flood is slowed to the allowed rate,
    /// and since nothing is read meanwhile, TCP pushes back on the sender.
    async fn pace(&mut self, message: &Message) {
        let now = std::time::Instant::now();
        let mut wait = self.messages.take(now);
        if matches!(message, Message::GetBlocks(_)) {
            wait = wait.max(self.getblocks.take(now));
        }
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }

    /// Whether the peer on this link is one this node refuses (the test-only split).
    fn is_refused(&self) -> bool {
        self.peer_id
            .is_some_and(|id| self.ctx.guard.is_refused(&id))
    }

    /// Bans this connection's address for sending provably invalid data; logged once per ban.
    fn ban(&self, reason: &dyn std::fmt::Display) {
        if let Some(ip) = self.ip
            && self.ctx.guard.ban(ip, std::time::Instant::now())
        {
            tracing::warn!(conn = self.id, addr = %self.label, %reason, "banned for sending invalid data");
        }
    }

    /// Sends one message, giving up after [`SEND_TIMEOUT`].
    async fn send(&mut self, message: Message) -> Result<(), ()> {
        let sent = tokio::time::timeout(SEND_TIMEOUT, self.link.send(message)).await;
        self.written(sent)
    }

    /// What a write bounded by [`SEND_TIMEOUT`] came to; a failure is logged.
    fn written(
        &self,
        sent: Result<Result<(), WireError>, tokio::time::error::Elapsed>,
    ) -> Result<(), ()> {
        match sent {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => {
                tracing::debug!(conn = self.id, error = %e, "send failed");
                Err(())
            }
            Err(_) => {
                tracing::debug!(conn = self.id, addr = %self.label, "not reading; closing");
                Err(())
            }
        }
    }

    /// Asks the actor something; `None` when it is gone (the node is stopping).
    async fn ask<T>(&self, make: impl FnOnce(oneshot::Sender<T>) -> Command) -> Option<T> {
        let (tx, rx) = oneshot::channel();
        self.ctx.commands.send(make(tx)).await.ok()?;
        tokio::time::timeout(ACTOR_TIMEOUT, rx).await.ok()?.ok()
    }

    /// A proven id makes a client a peer; a subscriber stays a subscriber. Blocks and chain
    /// requests from others are answered, not relayed to.
    fn become_peer(&mut self) {
        if self.role == Role::Client {
            self.role = Role::Peer;
        }
    }

    /// Closes the connection over a handshake that failed, saying why.
    async fn handshake_failed(&mut self, error: &ShakeError) -> Result<Flow, ()> {
        tracing::info!(conn = self.id, addr = %self.label, %error, "handshake failed; closing");
        let error = ErrorMessage::new(ErrorCode::Handshake, error);
        let _ = self.send(Message::Error(error)).await;
        Ok(Flow::Close)
    }

    /// `H`: answered with our proof. A hello that claims an id waits for its proof; one that
    /// claims none (the tracker checking our address) is done.
    async fn on_hello(&mut self, hello: &Hello) -> Result<Flow, ()> {
        match self.shake.on_hello(&self.ctx.me, hello) {
            Ok(proof) => self.send(proof).await.map(|()| Flow::Continue),
            Err(error) => self.handshake_failed(&error).await,
        }
    }

    /// `P`: the other end proved its id. On a link it opened, the proven id takes its place in
    /// [`Links`] (which may close this link or ours); on one we opened, we prove ourselves back
    /// and ask for its chain.
    async fn on_proof(&mut self, proof: &Proof) -> Result<Flow, ()> {
        let (id, ours) = match self.shake.on_proof(proof) {
            Ok(proven) => proven,
            Err(error) => return self.handshake_failed(&error).await,
        };
        tracing::debug!(conn = self.id, peer = %id.short(), addr = %proof.addr, "peer proven");
        self.peer_id = Some(id);
        if self.is_refused() {
            return Ok(Flow::Close);
        }
        self.become_peer();
        match ours {
            Some(ours) => {
                self.send(ours).await?;
                self.send_locator(None).await?;
            }
            None => {
                if !self
                    .ctx
                    .links
                    .inbound_opened(&self.ctx.me.key.account(), id)
                {
                    tracing::debug!(conn = self.id, peer = %id.short(), "a second link to a peer; closing");
                    return Ok(Flow::Close);
                }
                self.inbound_peer = Some(id);
            }
        }
        Ok(Flow::Continue)
    }

    /// Sends `D` with our locator; after a `C` with more to come, the last block received goes
    /// first, so the answer continues right after it whichever branch it was on.
    async fn send_locator(&mut self, after: Option<BlockHash>) -> Result<(), ()> {
        if after.is_none()
            && self
                .sync_pending
                .is_some_and(|sent| sent.elapsed() < SYNC_RETRY)
        {
            // The answer to the last one is on its way; it will say if more is needed.
            return Ok(());
        }
        self.sync_pending = Some(Instant::now());
        let mut locator = self
            .ask(|reply| Command::Locator { reply })
            .await
            .ok_or(())?;
        if let Some(hash) = after {
            locator.insert(0, hash);
            locator.truncate(MAX_LOCATOR);
        }
        self.sent_locator = true;
        self.send(Message::GetBlocks(GetBlocks { locator })).await
    }

    async fn handle(&mut self, message: Message) -> Flow {
        if self.is_refused() {
            return Flow::Close;
        }
        let result = match message {
            Message::Record(record) => self.on_record(record).await,
            Message::Block(block) => self.on_blocks(vec![block], true, None).await,
            Message::Blocks(Blocks { blocks, more }) => {
                // This answers our `D`: another may go out.
                self.sync_pending = None;
                let last = blocks.last().map(|b| b.header.hash());
                self.on_blocks(blocks, false, last.filter(|_| more)).await
            }
            Message::Identify(_) => {
                // An unproven claim: it must never take a real peer's place.
                let error = ErrorMessage::new(
                    ErrorCode::Unproven,
                    "I proves nothing: nodes prove who they are with H and P",
                );
                let _ = self.send(Message::Error(error)).await;
                Ok(Flow::Close)
            }
            Message::Hello(hello) => self.on_hello(&hello).await,
            Message::Proof(proof) => self.on_proof(&proof).await,
            Message::GetBlocks(GetBlocks { locator }) => self.on_get_blocks(locator).await,
            Message::Subscribe => self.on_subscribe().await,
            Message::Error(e) => {
                tracing::debug!(conn = self.id, code = %e.code, message = %e.message, "peer reported an error");
                Ok(Flow::Continue)
            }
            // A keep-alive's work is done by being heard; it is never answered.
            Message::Ack(_) | Message::KeepAlive => Ok(Flow::Continue),
            Message::Update(_) => {
                let error =
                    ErrorMessage::new(ErrorCode::Unexpected, "U is what a node sends, not takes");
                self.send(Message::Error(error))
                    .await
                    .map(|()| Flow::Continue)
            }
        };
        result.unwrap_or(Flow::Close)
    }

    /// `A`: hands the record to the chain thread and goes on reading; the answer comes back
    /// through [`Conn::acks`] once the record is stored (see [`Conn::on_ack`]), so a shop or a
    /// peer can have many records in flight and they share the store's writes.
    async fn on_record(&mut self, record: protocol::Record) -> Result<Flow, ()> {
        let id = record.id();
        // Signatures are checked here, not on the chain thread (see `verify::check_record`).
        if let Err(error) = verify::check_record(&record, &self.ctx.verified) {
            let outcome = RecordOutcome::Refused(error.into());
            self.acks
                .push_back(Box::pin(async move { (id, Some(outcome)) }));
            return Ok(Flow::Continue);
        }
        let (reply, answer) = oneshot::channel();
        let command = Command::Record {
            record,
            from: self.id,
            reply,
        };
        self.ctx.commands.send(command).await.map_err(|_| ())?;
        // Waiting for its block from now on: the block can only be mined after the record is
        // acknowledged, but the two may reach this task in either order.
        if self.role != Role::Peer && self.awaiting.len() < MAX_AWAITING {
            self.awaiting.insert(id);
            self.unacked.insert(id);
        }
        self.acks.push_back(Box::pin(async move {
            let outcome = tokio::time::timeout(ACTOR_TIMEOUT, answer).await;
            (id, outcome.ok().and_then(Result::ok))
        }));
        Ok(Flow::Continue)
    }

    /// The answer to an `A`, in the order the records came.
    async fn on_ack(&mut self, id: RecordId, outcome: Option<RecordOutcome>) -> Result<Flow, ()> {
        // No answer: the node is stopping.
        let outcome = outcome.ok_or(())?;
        self.unacked.remove(&id);
        let held = self.held.remove(&id);
        let peer = self.role == Role::Peer;
        let status = match outcome {
            RecordOutcome::Pending(Admitted::Ready) | RecordOutcome::AlreadyPending => {
                AckStatus::Pending
            }
            RecordOutcome::Pending(Admitted::Waiting) => AckStatus::Waiting,
            RecordOutcome::InBlock(block) => {
                if !peer {
                    self.awaiting.remove(&id);
                    self.send(Message::Ack(Ack {
                        id,
                        status: AckStatus::Mined,
                    }))
                    .await?;
                    self.send(Message::Block(block.block().clone())).await?;
                }
                return Ok(Flow::Continue);
            }
            RecordOutcome::NotStored(error) => {
                self.awaiting.remove(&id);
                let error =
                    ErrorMessage::new(ErrorCode::NotStored, format!("not acknowledged: {error}"));
                self.send(Message::Error(error)).await?;
                return Ok(Flow::Continue);
            }
            RecordOutcome::Refused(error) => {
                self.awaiting.remove(&id);
                // A relayed record we already have in a block, or saw replaced, is no one's fault.
                let stale = matches!(
                    error,
                    PoolError::Ledger(LedgerError::BadSequence { expected, got }) if got < expected
                );
                if !(peer && stale) {
                    tracing::debug!(conn = self.id, error = %error, "refused a record");
                    self.send(Message::Error(ErrorMessage::new(
                        ErrorCode::InvalidRecord,
                        &error,
                    )))
                    .await?;
                }
                // A forged or malformed record is no accident: the sender is banned. One that
                // the ledger refuses (too few coins, a name taken) may be an honest race.
                if matches!(error, PoolError::Format(_)) {
                    self.ban(&error);
                    return Ok(Flow::Close);
                }
                return Ok(Flow::Continue);
            }
        };
        if !peer {
            self.send(Message::Ack(Ack { id, status })).await?;
            if let Some(block) = held {
                self.awaiting.remove(&id);
                self.send(Message::Block(block.block().clone())).await?;
            }
        }
        Ok(Flow::Continue)
    }

    /// Blocks from `B` (`relay`) or `C`: the ones the node does not know are checked off the
    /// chain thread, then attached in order. `more_after` is the last block of a `C` that said
    /// more follow.
    async fn on_blocks(
        &mut self,
        blocks: Vec<Block>,
        relay: bool,
        more_after: Option<BlockHash>,
    ) -> Result<Flow, ()> {
        let hashes: Vec<BlockHash> = blocks.iter().map(|b| b.header.hash()).collect();
        // A relayed copy of a block already taken: dropped here, without the chain thread.
        if relay && hashes.iter().all(|h| self.ctx.seen.contains(h)) {
            return Ok(Flow::Continue);
        }
        // One relayed block not seen is almost surely new: checking it costs less than asking
        // the chain thread first (which answers a duplicate anyway).
        let unknown = if relay && hashes.len() == 1 {
            vec![true]
        } else {
            self.ask(|reply| Command::Unknown { hashes, reply })
                .await
                .ok_or(())?
        };
        let fresh: Vec<Block> = blocks
            .into_iter()
            .zip(unknown)
            .filter_map(|(block, unknown)| unknown.then_some(block))
            .collect();
        let (checked, mut invalid) =
            verify::check_blocks(fresh, self.ctx.params.clone(), self.ctx.verified.clone()).await;
        let outcome = if checked.is_empty() {
            BlocksOutcome::default()
        } else {
            self.ask(|reply| Command::Blocks {
                blocks: checked,
                from: self.id,
                relay,
                reply,
            })
            .await
            .ok_or(())?
        };
        invalid = invalid.or(outcome.invalid);
        if let Some(error) = invalid {
            self.send(Message::Error(ErrorMessage::new(
                ErrorCode::InvalidBlock,
                &error,
            )))
            .await?;
            // A block from the future may become valid; anything else is provably invalid.
            if !matches!(error, BlockError::FutureTimestamp { .. }) {
                self.ban(&error);
                return Ok(Flow::Close);
            }
            tracing::debug!(conn = self.id, error = %error, "block from the future");
        }
        if outcome.orphan.is_some() {
            self.send_locator(None).await?;
        } else if more_after.is_some() {
            self.send_locator(more_after).await?;
        }
        Ok(Flow::Continue)
    }

    async fn on_get_blocks(&mut self, locator: Vec<BlockHash>) -> Result<Flow, ()> {
        let (blocks, more) = self
            .ask(|reply| Command::GetBlocks {
                locator,
                max: MAX_BLOCKS_PER_MESSAGE,
                reply,
            })
            .await
            .ok_or(())?;
        let message = blocks_message(&blocks, more);
        self.send(message).await?;
        if self.role == Role::Peer && !self.sent_locator {
            // Each side of a new link asks for what it lacks.
            self.send_locator(None).await?;
        }
        Ok(Flow::Continue)
    }

    /// `S`: from now on this connection gets `U` updates, starting with the current tip.
    async fn on_subscribe(&mut self) -> Result<Flow, ()> {
        self.role = Role::Subscriber;
        let tip = self.ask(|reply| Command::Tip { reply }).await.ok_or(())?;
        let update = Update::Tip {
            hash: tip.hash(),
            height: tip.header.height,
            disconnected: Vec::new(),
            connected: Vec::new(),
        };
        self.send(Message::Update(update)).await?;
        Ok(Flow::Continue)
    }

    async fn forward(&mut self, event: Result<Event, broadcast::error::RecvError>) -> Flow {
        if self.is_refused() {
            return Flow::Close;
        }
        let sent = match event {
            Ok(event) => match self.role {
                Role::Peer => self.forward_to_peer(event).await,
                Role::Subscriber => self.forward_to_subscriber(event).await,
                Role::Client => self.forward_to_client(event).await,
            },
            Err(broadcast::error::RecvError::Lagged(missed)) => {
                tracing::debug!(conn = self.id, missed, "fell behind on events");
                match self.role {
                    // A peer catches up by asking for what it lacks.
                    Role::Peer => self.send_locator(None).await,
                    // A client may have missed the block of a record it waits for.
                    Role::Client if !self.awaiting.is_empty() => self.catch_up_awaiting().await,
                    // A subscriber cannot tell what it missed: it reconnects and resyncs.
                    Role::Subscriber => {
                        let error =
                            ErrorMessage::new(ErrorCode::Lagged, "missed updates; resubscribe");
                        let _ = self.send(Message::Error(error)).await;
                        Err(())
                    }
                    Role::Client => Ok(()),
                }
            }
            Err(broadcast::error::RecvError::Closed) => Err(()),
        };
        if sent.is_ok() {
            Flow::Continue
        } else {
            Flow::Close
        }
    }

    /// Writes lines already encoded, then flushes once, giving up after [`SEND_TIMEOUT`].
    async fn send_lines<'a>(&mut self, lines: impl Iterator<Item = &'a [u8]>) -> Result<(), ()> {
        for line in lines {
            self.link.write_buffer_mut().extend_from_slice(line);
        }
        let flush = SinkExt::<&Message>::flush(&mut self.link);
        let sent = tokio::time::timeout(SEND_TIMEOUT, flush).await;
        self.written(sent)
    }

    async fn forward_to_peer(&mut self, event: Event) -> Result<(), ()> {
        match event {
            Event::Blocks {
                blocks,
                from,
                relay: true,
                ..
            } if from != self.id => {
                let lines = blocks
                    .iter()
                    .map(|b| b.relay.get(|| Message::Block(b.block.block().clone())));
                self.send_lines(lines).await
            }
            Event::Record { record, from } if from != self.id => {
                let line = record.relay.get(|| Message::Record(record.record.clone()));
                self.send_lines(std::iter::once(line)).await
            }
            _ => Ok(()),
        }
    }

    async fn forward_to_subscriber(&mut self, event: Event) -> Result<(), ()> {
        match event {
            Event::Blocks {
                blocks,
                received_ms,
                ..
            } => {
                let lines: Vec<Vec<u8>> = blocks
                    .iter()
                    .filter_map(|b| {
                        let block = b.block.block().clone();
                        encode_line(&Message::Update(Update::Block { block, received_ms })).ok()
                    })
                    .map(String::into_bytes)
                    .collect();
                self.send_lines(lines.iter().map(Vec::as_slice)).await
            }
            Event::Tip {
                tip,
                disconnected,
                connected,
            } => {
                let update = Update::Tip {
                    hash: tip.hash(),
                    height: tip.header.height,
                    disconnected: disconnected.iter().map(|b| b.hash()).collect(),
                    connected: connected.iter().map(|b| b.hash()).collect(),
                };
                self.send(Message::Update(update)).await
            }
            Event::Record { .. } => Ok(()),
        }
    }

    /// Sends the `B` of every awaited record that is in the best chain by now.
    async fn catch_up_awaiting(&mut self) -> Result<(), ()> {
        let ids: Vec<RecordId> = self.awaiting.iter().copied().collect();
        let found = self
            .ask(|reply| Command::Locate { ids, reply })
            .await
            .ok_or(())?;
        let mut sent = HashSet::new();
        for (id, block) in found {
            if self.unacked.contains(&id) {
                self.held.insert(id, block);
                continue;
            }
            self.awaiting.remove(&id);
            if sent.insert(block.hash()) {
                self.send(Message::Block(block.block().clone())).await?;
            }
        }
        Ok(())
    }

    async fn forward_to_client(&mut self, event: Event) -> Result<(), ()> {
        let Event::Tip { connected, .. } = event else {
            return Ok(());
        };
        if self.awaiting.is_empty() {
            return Ok(());
        }
        for block in connected.iter() {
            let mut hit = false;
            for r in &block.records {
                let id = r.id();
                if self.unacked.contains(&id) {
                    self.held.insert(id, Arc::clone(block));
                } else {
                    hit |= self.awaiting.remove(&id);
                }
            }
            if hit {
                self.send(Message::Block(block.block().clone())).await?;
            }
        }
        Ok(())
    }
}

/// A `C` message with as many of `blocks` as fit in [`C_LINE_BUDGET`]; `more` is set when any were
/// left out.
pub fn blocks_message(blocks: &[Arc<CheckedBlock>], more: bool) -> Message {
    let mut budget = C_LINE_BUDGET;
    let mut out = Vec::with_capacity(blocks.len());
    for block in blocks {
        let size = serde_json::to_vec(block.block()).map_or(usize::MAX, |v| v.len() + 1);
        if size > budget {
            break;
        }
        budget -= size;
        out.push(block.block().clone());
    }
    let more = more || out.len() < blocks.len();
    Message::Blocks(Blocks { blocks: out, more })
}
