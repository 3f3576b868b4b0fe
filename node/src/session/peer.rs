//! What makes a connection a peer, and what a peer is sent. The handshake's steps are
//! [`crate::handshake::Shake`]'s (which wraps `protocol::handshake`); this adds what a
//! connection does with them: answer an `H` with our proof, close on a failed or out-of-turn
//! step, give the handshake [`HANDSHAKE_TIMEOUT`] from its first message, and once the other
//! end proved its id, ask whether the link is the one to keep. A peer is relayed every new
//! block and record, never back to the connection that sent it, nor a block it sent us itself
//! (a copy that crossed ours: relay floods every block over every link, and on a 2-core host of
//! 30 nodes the copies were most of the CPU a block cost).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use protocol::handshake::{Hello, Identity, Proof};
use protocol::wire::{ErrorCode, ErrorMessage, Message};
use protocol::{AccountId, BlockHash};

use super::{Action, Closing, LinkVerdict, Pending, Question, Role, Session};
use crate::actor::{ConnId, Event};
use crate::handshake::{HANDSHAKE_TIMEOUT, Shake, ShakeError};

/// Most hashes of blocks a connection sent us that it remembers ([`Peer`]'s `sent_us`): far
/// more than the blocks relayed while one is on its way (a block every few seconds; a sync
/// comes by `C`, which is not remembered), at 32 bytes each, per connection.
pub const MAX_SENT_US: usize = 32;

/// A connection's side of the handshake, and the peer it proved.
#[derive(Debug, Default)]
pub struct Peer {
    /// Where the handshake stands.
    shake: Shake,
    /// When the handshake under way must be over.
    deadline: Option<Instant>,
    /// The other end's id, once it proved it.
    id: Option<AccountId>,
    /// For a link the peer opened and we kept, its id as registered in
    /// [`crate::links::Links`], to be given back when the link closes.
    inbound: Option<AccountId>,
    /// The last [`MAX_SENT_US`] blocks this connection sent us in `B`: it has them, so they
    /// are not relayed back to it (the chain thread names only the first sender).
    sent_us: VecDeque<BlockHash>,
}

impl Session {
    /// A connection we opened to the node `expect` at `addr`: its session, and the `H` that asks
    /// that node to prove it is `expect` (we prove who we are in turn, then ask for its chain).
    pub fn dial(
        id: ConnId,
        me: Identity,
        idle_timeout: Duration,
        expect: AccountId,
        addr: &str,
        now: Instant,
    ) -> (Session, Vec<Action>) {
        let (shake, hello) = Shake::dial(&me, expect, addr);
        let mut session = Session::accept(id, me, idle_timeout, now);
        session.peer.shake = shake;
        session.peer.deadline = Some(now + HANDSHAKE_TIMEOUT);
        (session, vec![Action::Send(hello)])
    }

    /// The id the other end proved, if it did.
    pub fn peer_id(&self) -> Option<AccountId> {
        self.peer.id
    }

    /// The peer id this link holds in [`crate::links::Links`], if the peer opened it and it
    /// was kept: the loop gives it back when the connection ends.
    pub fn inbound_peer(&self) -> Option<AccountId> {
        self.peer.inbound
    }

    /// When the handshake under way must be over, if one is.
    pub(super) fn handshake_deadline(&self) -> Option<Instant> {
        self.peer.deadline
    }

    /// `H`: answered with our proof. A hello that claims an id waits for its proof; one that
    /// claims none (the tracker checking our address) is done.
    pub(super) fn on_hello(&mut self, hello: &Hello, now: Instant) -> Vec<Action> {
        match self.peer.shake.on_hello(&self.me, hello) {
            Ok(proof) => {
                self.peer.deadline = self.peer.shake.deadline().map(|_| now + HANDSHAKE_TIMEOUT);
                vec![Action::Send(proof)]
            }
            Err(error) => self.handshake_failed(error),
        }
    }

    /// `P`: the other end proved its id; whether the link is kept is asked next.
    pub(super) fn on_proof(&mut self, proof: &Proof) -> Vec<Action> {
        self.peer.deadline = None;
        let (id, ours) = match self.peer.shake.on_proof(proof) {
            Ok(proven) => proven,
            Err(error) => return self.handshake_failed(error),
        };
        tracing::debug!(conn = self.id, peer = %id.short(), addr = %proof.addr, "peer proven");
        self.peer.id = Some(id);
        let inbound = ours.is_none();
        self.ask(
            Pending::Link { peer: id, ours },
            Question::Link { peer: id, inbound },
        )
    }

    /// A proven peer's link: kept (a client becomes a peer; on a link we dialed we prove
    /// ourselves back and ask for its chain), or closed.
    pub(super) fn linked(
        &mut self,
        peer: AccountId,
        ours: Option<Message>,
        verdict: LinkVerdict,
        now: Instant,
    ) -> Vec<Action> {
        match verdict {
            LinkVerdict::Refused => return vec![Action::Close(Closing::RefusedPeer)],
            LinkVerdict::SecondLink => return vec![Action::Close(Closing::SecondLink)],
            LinkVerdict::Keep => {}
        }
        // A subscriber stays a subscriber: blocks and chain requests from it are answered,
        // never relayed to.
        if self.role == Role::Client {
            self.role = Role::Peer;
        }
        match ours {
            Some(ours) => {
                let mut actions = vec![Action::Send(ours)];
                actions.extend(self.ask_locator(now));
                actions
            }
            None => {
                self.peer.inbound = Some(peer);
                Vec::new()
            }
        }
    }

    /// Closes the connection over a handshake that failed, saying why.
    fn handshake_failed(&mut self, error: ShakeError) -> Vec<Action> {
        vec![
            Action::Send(Message::Error(ErrorMessage::new(
                ErrorCode::Handshake,
                &error,
            ))),
            Action::Close(Closing::Handshake(error)),
        ]
    }

    /// Notes a `B` this connection sent: it has that block.
    pub(super) fn sent_us(&mut self, hash: BlockHash) {
        let sent = &mut self.peer.sent_us;
        if sent.contains(&hash) {
            return;
        }
        if sent.len() == MAX_SENT_US {
            sent.pop_front();
        }
        sent.push_back(hash);
    }

    /// An event, for a peer: new blocks from `B` (and our own) and new records, except those
    /// it sent us. Sync batches are not relayed, only the tip they lead to
    /// ([`crate::actor::Announce`]): a peer that lacks it asks for what it is missing.
    pub(super) fn relay(&self, event: Event) -> Vec<Action> {
        match event {
            Event::Blocks {
                blocks,
                from,
                relay: true,
                ..
            } if from != self.id
                && !blocks
                    .iter()
                    .all(|b| self.peer.sent_us.contains(&b.block.hash())) =>
            {
                vec![Action::RelayBlocks(blocks)]
            }
            Event::Record { record, from } if from != self.id => {
                vec![Action::RelayRecord(record)]
            }
            Event::Tip {
                announce: Some(announce),
                ..
            } if announce.from != self.id => vec![Action::RelayBlocks(announce.tip)],
            _ => Vec::new(),
        }
    }
}
