//! One connection, from a peer node or a client (a shop, `nc`, the visualizer), both directions.
//!
//! A connection becomes a *peer* when it is one we opened to another node, or when it asks for
//! the chain (`D`) or sends blocks: peers get new blocks and records relayed as they come. A
//! client that sent a record gets a `K` once it is pending and a `B` once it is in a block of
//! the best chain.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use protocol::codec::{LineCodec, MAX_LINE};
use protocol::params::{MAX_BLOCKS_PER_MESSAGE, MAX_LOCATOR};
use protocol::wire::{Ack, Blocks, ErrorMessage, GetBlocks, Message};
use protocol::{Admitted, BlockError, BlockHash, CheckedBlock, RecordId};
use tokio::net::TcpStream;
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio::time::Instant;
use tokio_util::codec::Framed;
use tokio_util::sync::CancellationToken;

use crate::actor::{ACTOR_TIMEOUT, BlocksOutcome, Command, ConnId, Event, RecordOutcome};

/// A client must say something this soon after connecting.
pub const FIRST_MESSAGE_TIMEOUT: Duration = Duration::from_secs(10);
/// A client (not a peer, and not waiting for a record) that says nothing this long is closed.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
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
}

type Link = Framed<TcpStream, LineCodec<Message>>;

struct Conn {
    id: ConnId,
    ctx: Ctx,
    link: Link,
    peer: bool,
    sent_locator: bool,
    awaiting: HashSet<RecordId>,
    label: String,
}

enum Flow {
    Continue,
    Close,
}

/// Serves one connection until it closes, fails, or `cancel` fires. `outbound` is true for a
/// connection we opened to a peer node.
pub async fn serve(stream: TcpStream, outbound: bool, ctx: Ctx, cancel: CancellationToken) {
    let id = ctx.next_conn.fetch_add(1, Ordering::Relaxed);
    let label = stream
        .peer_addr()
        .map_or_else(|_| "?".into(), |a| a.to_string());
    let mut events = ctx.events.subscribe();
    let link = Framed::new(stream, LineCodec::<Message>::new());
    let mut conn = Conn {
        id,
        ctx,
        link,
        peer: outbound,
        sent_locator: false,
        awaiting: HashSet::new(),
        label,
    };
    tracing::debug!(conn = id, addr = %conn.label, outbound, "connection open");
    if outbound && conn.send_locator(None).await.is_err() {
        return;
    }
    let mut last_heard = Instant::now();
    let mut heard_anything = false;
    loop {
        let limit = match (conn.peer || !conn.awaiting.is_empty(), heard_anything) {
            (true, _) => None,
            (false, false) => Some(FIRST_MESSAGE_TIMEOUT),
            (false, true) => Some(IDLE_TIMEOUT),
        };
        let idle = async {
            match limit {
                Some(limit) => tokio::time::sleep_until(last_heard + limit).await,
                None => std::future::pending().await,
            }
        };
        let flow = tokio::select! {
            _ = cancel.cancelled() => Flow::Close,
            _ = idle => {
                let _ = conn.send(Message::Error(ErrorMessage::new("timeout", "idle for too long"))).await;
                Flow::Close
            }
            frame = conn.link.next() => match frame {
                None => Flow::Close,
                Some(Err(protocol::codec::WireError::Io(e))) => {
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
                    heard_anything = true;
                    conn.handle(message).await
                }
            },
            event = events.recv() => conn.forward(event).await,
        };
        if matches!(flow, Flow::Close) {
            break;
        }
    }
    tracing::debug!(conn = id, addr = %conn.label, "connection closed");
}

impl Conn {
    async fn send(&mut self, message: Message) -> Result<(), ()> {
        self.link.send(message).await.map_err(|e| {
            tracing::debug!(conn = self.id, error = %e, "send failed");
        })
    }

    /// Asks the actor something; `None` when it is gone (the node is stopping).
    async fn ask<T>(&self, make: impl FnOnce(oneshot::Sender<T>) -> Command) -> Option<T> {
        let (tx, rx) = oneshot::channel();
        self.ctx.commands.send(make(tx)).await.ok()?;
        tokio::time::timeout(ACTOR_TIMEOUT, rx).await.ok()?.ok()
    }

    /// Sends `D` with our locator; after a `C` with more to come, the last block received goes
    /// first, so the answer continues right after it whichever branch it was on.
    async fn send_locator(&mut self, after: Option<BlockHash>) -> Result<(), ()> {
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
        let result = match message {
            Message::Record(record) => self.on_record(record).await,
            Message::Block(block) => {
                self.peer = true;
                let outcome = self
                    .ask(|reply| Command::Blocks {
                        blocks: vec![block],
                        from: self.id,
                        relay: true,
                        reply,
                    })
                    .await;
                self.on_blocks(outcome, None).await
            }
            Message::Blocks(Blocks { blocks, more }) => {
                self.peer = true;
                let last = blocks.last().map(|b| b.header.hash());
                let outcome = self
                    .ask(|reply| Command::Blocks {
                        blocks,
                        from: self.id,
                        relay: false,
                        reply,
                    })
                    .await;
                self.on_blocks(outcome, last.filter(|_| more)).await
            }
            Message::GetBlocks(GetBlocks { locator }) => {
                self.peer = true;
                self.on_get_blocks(locator).await
            }
            Message::Error(e) => {
                tracing::debug!(conn = self.id, code = %e.code, message = %e.message, "peer reported an error");
                Ok(Flow::Continue)
            }
            Message::Ack(_) => Ok(Flow::Continue),
        };
        result.unwrap_or(Flow::Close)
    }

    async fn on_record(&mut self, record: protocol::Record) -> Result<Flow, ()> {
        let id = record.id();
        let Some(outcome) = self
            .ask(|reply| Command::Record {
                record,
                from: self.id,
                reply,
            })
            .await
        else {
            return Err(());
        };
        let status = match outcome {
            RecordOutcome::Pending(Admitted::Ready) | RecordOutcome::AlreadyPending => "pending",
            RecordOutcome::Pending(Admitted::Waiting) => "waiting",
            RecordOutcome::InBlock(block) => {
                if !self.peer {
                    self.send(Message::Ack(Ack {
                        id,
                        status: "mined".into(),
                    }))
                    .await?;
                    self.send(Message::Block(block.block().clone())).await?;
                }
                return Ok(Flow::Continue);
            }
            RecordOutcome::Refused(error) => {
                // A relayed record we already have in a block, or saw replaced, is no one's fault.
                let stale = matches!(error, protocol::PoolError::Ledger(protocol::LedgerError::BadSequence { expected, got }) if got < expected);
                if !(self.peer && stale) {
                    tracing::debug!(conn = self.id, error = %error, "refused a record");
                    self.send(Message::Error(ErrorMessage::new("invalid_record", &error)))
                        .await?;
                }
                return Ok(Flow::Continue);
            }
        };
        if !self.peer {
            if self.awaiting.len() < MAX_AWAITING {
                self.awaiting.insert(id);
            }
            self.send(Message::Ack(Ack {
                id,
                status: status.into(),
            }))
            .await?;
        }
        Ok(Flow::Continue)
    }

    async fn on_blocks(
        &mut self,
        outcome: Option<BlocksOutcome>,
        more_after: Option<BlockHash>,
    ) -> Result<Flow, ()> {
        let outcome = outcome.ok_or(())?;
        if let Some(error) = outcome.invalid {
            tracing::warn!(conn = self.id, addr = %self.label, error = %error, "invalid block");
            self.send(Message::Error(ErrorMessage::new("invalid_block", &error)))
                .await?;
            // A block from the future may become valid; anything else is provably invalid.
            if !matches!(error, BlockError::FutureTimestamp { .. }) {
                return Ok(Flow::Close);
            }
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
        if !self.sent_locator {
            // Each side of a new link asks for what it lacks.
            self.send_locator(None).await?;
        }
        Ok(Flow::Continue)
    }

    async fn forward(&mut self, event: Result<Event, broadcast::error::RecvError>) -> Flow {
        let sent = match event {
            Ok(Event::Block { block, from }) if self.peer && from != self.id => {
                self.send(Message::Block(block.block().clone())).await
            }
            Ok(Event::Record { record, from }) if self.peer && from != self.id => {
                self.send(Message::Record(record)).await
            }
            Ok(Event::Connected(blocks)) if !self.awaiting.is_empty() => {
                let mut result = Ok(());
                for block in blocks {
                    let mut hit = false;
                    for r in &block.records {
                        hit |= self.awaiting.remove(&r.id());
                    }
                    if hit {
                        result = self.send(Message::Block(block.block().clone())).await;
                    }
                }
                result
            }
            Ok(_) => Ok(()),
            Err(broadcast::error::RecvError::Lagged(missed)) => {
                tracing::debug!(conn = self.id, missed, "fell behind on events");
                if self.peer {
                    self.send_locator(None).await
                } else {
                    Ok(())
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
