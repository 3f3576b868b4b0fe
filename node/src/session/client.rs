//! What a client (a shop) gets for its records: `K` once a record is stored (or `E` if it is
//! refused or could not be stored), then the `B` of the best-chain block that holds it, always
//! in that order. The store's writer acknowledges a record once it is on disk and the miner does
//! not wait for that, so the block can reach the connection first: it is then held until the
//! record's `K` has gone out.
//!
//! Any connection may send records; a peer's are answered only when refused (a relayed record
//! we already have in a block, or saw replaced, is no one's fault and not even that).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use protocol::wire::{Ack, AckStatus, ErrorCode, ErrorMessage, Message};
use protocol::{Admitted, CheckedBlock, LedgerError, PoolError, Record, RecordId};

use super::{Action, Closing, Pending, Question, Role, Session, error};
use crate::actor::{Event, RecordOutcome};

/// Most records of one connection waiting for the chain thread's answer; past it the
/// connection is not read until answers come back, so TCP slows the sender.
pub const MAX_RECORDS_IN_FLIGHT: usize = 512;
/// Most records one connection waits on for a `B`: bounds per-connection memory.
pub const MAX_AWAITING: usize = 4096;

/// A client's records between its `A` and its `B`.
#[derive(Debug, Default)]
pub struct Client {
    /// Records handed to the actor whose outcome has not come back yet.
    in_flight: usize,
    /// Records whose block the client waits for (at most [`MAX_AWAITING`]).
    awaiting: HashSet<RecordId>,
    /// Awaited records not acknowledged yet: their block, should it come first, is held.
    unacked: HashSet<RecordId>,
    /// Blocks holding an unacknowledged record, sent right after its acknowledgement: a client
    /// always gets a record's `K` before its `B`. A subset of `unacked`'s ids.
    held: HashMap<RecordId, Arc<CheckedBlock>>,
}

impl Session {
    /// Whether the socket may be read: not while [`MAX_RECORDS_IN_FLIGHT`] records wait for
    /// their outcome.
    pub fn reading(&self) -> bool {
        self.client.in_flight < MAX_RECORDS_IN_FLIGHT
    }

    /// Whether the client waits on a record's block (it may then be quiet for long).
    pub(super) fn awaiting(&self) -> bool {
        !self.client.awaiting.is_empty()
    }

    /// `A`: handed on (signature check, then the actor); the answer comes back through
    /// [`Session::on_outcome`], so a shop or a peer can have many records in flight.
    pub(super) fn on_record(&mut self, record: Record) -> Vec<Action> {
        let id = record.id();
        self.client.in_flight += 1;
        // Waiting for its block from now on: the block can only be mined after the record is
        // acknowledged, but the two may reach this connection in either order.
        if self.role != Role::Peer && self.client.awaiting.len() < MAX_AWAITING {
            self.client.awaiting.insert(id);
            self.client.unacked.insert(id);
        }
        vec![Action::Submit(record)]
    }

    /// The outcome of a record, in the order the records came; `None` when the actor gave none
    /// (the node is stopping).
    pub fn on_outcome(&mut self, id: RecordId, outcome: Option<RecordOutcome>) -> Vec<Action> {
        self.client.in_flight = self.client.in_flight.saturating_sub(1);
        let Some(outcome) = outcome else {
            return vec![Action::Close(Closing::Stopping)];
        };
        let client = &mut self.client;
        client.unacked.remove(&id);
        let held = client.held.remove(&id);
        let peer = self.role == Role::Peer;
        let status = match outcome {
            RecordOutcome::Pending(Admitted::Ready) | RecordOutcome::AlreadyPending => {
                AckStatus::Pending
            }
            RecordOutcome::Pending(Admitted::Waiting) => AckStatus::Waiting,
            RecordOutcome::InBlock(block) => {
                if peer {
                    return Vec::new();
                }
                client.awaiting.remove(&id);
                let ack = Ack {
                    id,
                    status: AckStatus::Mined,
                };
                return vec![
                    Action::Send(Message::Ack(ack)),
                    Action::Send(Message::Block(block.block().clone())),
                ];
            }
            RecordOutcome::NotStored(reason) => {
                client.awaiting.remove(&id);
                let message = format!("not acknowledged: {reason}");
                return vec![error(ErrorCode::NotStored, message)];
            }
            RecordOutcome::Refused(refusal) => {
                client.awaiting.remove(&id);
                return self.refused(refusal, peer);
            }
        };
        if peer {
            return Vec::new();
        }
        let mut actions = vec![Action::Send(Message::Ack(Ack { id, status }))];
        if let Some(block) = held {
            client.awaiting.remove(&id);
            actions.push(Action::Send(Message::Block(block.block().clone())));
        }
        actions
    }

    /// A refused record: `E invalid_record`, and a ban when it was forged or malformed.
    fn refused(&mut self, refusal: PoolError, peer: bool) -> Vec<Action> {
        // A relayed record we already have in a block, or saw replaced, is no one's fault.
        let stale = matches!(
            refusal,
            PoolError::Ledger(LedgerError::BadSequence { expected, got }) if got < expected
        );
        let mut actions = Vec::new();
        if !(peer && stale) {
            tracing::debug!(conn = self.id, error = %refusal, "refused a record");
            actions.push(Action::Send(Message::Error(ErrorMessage::new(
                ErrorCode::InvalidRecord,
                &refusal,
            ))));
        }
        // A forged or malformed record is no accident: the sender is banned. One that the
        // ledger refuses (too few coins, a name taken) may be an honest race.
        if matches!(refusal, PoolError::Format(_)) {
            actions.push(Action::Ban(refusal.to_string()));
            actions.push(Action::Close(Closing::InvalidRecord(refusal)));
        }
        actions
    }

    /// An event, for a client: the `B` of every block joining the best chain that holds a
    /// record it waits on (held back while that record's `K` has not gone out).
    pub(super) fn client_event(&mut self, event: &Event) -> Vec<Action> {
        let Event::Tip { connected, .. } = event else {
            return Vec::new();
        };
        let client = &mut self.client;
        let mut actions = Vec::new();
        if client.awaiting.is_empty() {
            return actions;
        }
        for block in connected.iter() {
            let mut hit = false;
            for r in &block.records {
                let id = r.id();
                if client.unacked.contains(&id) {
                    client.held.insert(id, Arc::clone(block));
                } else {
                    hit |= client.awaiting.remove(&id);
                }
            }
            if hit {
                actions.push(Action::Send(Message::Block(block.block().clone())));
            }
        }
        actions
    }

    /// A client that fell behind on events asks where its awaited records are by now.
    pub(super) fn catch_up(&mut self) -> Vec<Action> {
        if self.client.awaiting.is_empty() {
            return Vec::new();
        }
        let ids = self.client.awaiting.iter().copied().collect();
        self.ask(Pending::Locate, Question::Locate { ids })
    }

    /// The `B` of every awaited record found in the best chain, each block once.
    pub(super) fn located(&mut self, found: Vec<(RecordId, Arc<CheckedBlock>)>) -> Vec<Action> {
        let client = &mut self.client;
        let mut sent = HashSet::new();
        let mut actions = Vec::new();
        for (id, block) in found {
            if client.unacked.contains(&id) {
                client.held.insert(id, block);
                continue;
            }
            client.awaiting.remove(&id);
            if sent.insert(block.hash()) {
                actions.push(Action::Send(Message::Block(block.block().clone())));
            }
        }
        actions
    }
}
