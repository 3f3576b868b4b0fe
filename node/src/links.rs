//! The links a node has with other nodes, both ways, shared by the connections (which register
//! the links peers open) and the dialer in `peers.rs` (which opens links and must not open a
//! second one to a node already linked).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Instant;

use protocol::AccountId;
use tokio_util::sync::CancellationToken;

/// The links this node has with other nodes, both ways. Two nodes keep one link: relay floods
/// every block over every link, so a second link between the same pair doubled that traffic
/// (each node dialed its peers without looking at who had dialed it). A node does not dial a peer
/// that has a link to it; when two dial each other at once, the link opened by the node with the
/// lower id stays, which both ends decide alike.
#[derive(Debug, Clone, Default)]
pub struct Links(Arc<Mutex<LinksInner>>);

#[derive(Debug, Default)]
pub(crate) struct LinksInner {
    /// Links this node opened or is opening: what closes each, and what it delivered.
    pub(crate) outbound: HashMap<AccountId, Outbound>,
    /// Links peers opened to this node, by peer: how many are open.
    pub(crate) inbound: HashMap<AccountId, usize>,
}

/// A link this node opened.
#[derive(Debug, Clone)]
pub(crate) struct Outbound {
    /// Closes it.
    pub(crate) token: CancellationToken,
    /// When it was dialed.
    pub(crate) opened: Instant,
    /// When the peer last delivered a block the node took, if ever.
    pub(crate) delivered: Option<Instant>,
}

impl Outbound {
    /// A link dialed at `now` with `token`.
    pub(crate) fn new(token: CancellationToken, now: Instant) -> Outbound {
        Outbound {
            token,
            opened: now,
            delivered: None,
        }
    }
}

impl Links {
    pub(crate) fn lock(&self) -> MutexGuard<'_, LinksInner> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// An inbound link says it comes from `peer`: whether to keep it. When this node (`me`) has
    /// a link open to `peer` as well, the one the lower id opened stays and the other closes.
    pub fn inbound_opened(&self, me: &AccountId, peer: AccountId) -> bool {
        let mut inner = self.lock();
        if let Some(ours) = inner.outbound.get(&peer) {
            if *me < peer {
                return false;
            }
            ours.token.cancel();
        }
        *inner.inbound.entry(peer).or_default() += 1;
        true
    }

    /// `peer`, on a link this node opened, delivered something new (a block the node took):
    /// the link is worth its slot (see [`crate::peers::rotate`]).
    pub fn delivered(&self, peer: &AccountId, now: Instant) {
        if let Some(link) = self.lock().outbound.get_mut(peer) {
            link.delivered = Some(now);
        }
    }

    /// An inbound link kept by [`Links::inbound_opened`] closed.
    pub fn inbound_closed(&self, peer: &AccountId) {
        let mut inner = self.lock();
        if let Some(open) = inner.inbound.get_mut(peer) {
            *open -= 1;
            if *open == 0 {
                inner.inbound.remove(peer);
            }
        }
    }
}
