//! Keeps outbound connections to active nodes from the topology: up to `max_peers`, chosen at
//! random when there are more (a full mesh when fewer); peers marked removed, and peers this
//! node refuses (see [`crate::guard`]), are dropped. Two nodes keep one link between them
//! (see [`Links`]).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use protocol::AccountId;
use protocol::tracker::Topology;
use rand::seq::SliceRandom;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use crate::conn::{Ctx, serve};

/// How long an outbound connection attempt may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// The links this node has with other nodes, both ways. Two nodes keep one link: relay floods
/// every block over every link, so a second link between the same pair doubled that traffic
/// (each node dialed its peers without looking at who had dialed it). A node does not dial a peer
/// that has a link to it; when two dial each other at once, the link opened by the node with the
/// lower id stays, which both ends decide alike.
#[derive(Debug, Clone, Default)]
pub struct Links(Arc<Mutex<LinksInner>>);

#[derive(Debug, Default)]
struct LinksInner {
    /// Links this node opened or is opening, with what closes each.
    outbound: HashMap<AccountId, CancellationToken>,
    /// Links peers opened to this node, by peer: how many are open.
    inbound: HashMap<AccountId, usize>,
}

impl Links {
    fn lock(&self) -> MutexGuard<'_, LinksInner> {
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
            ours.cancel();
        }
        *inner.inbound.entry(peer).or_default() += 1;
        true
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

/// Follows the topology until `cancel`.
pub async fn run(
    me: AccountId,
    max_peers: usize,
    mut topology: watch::Receiver<Topology>,
    ctx: Ctx,
    tasks: TaskTracker,
    cancel: CancellationToken,
) {
    let links = ctx.links.clone();
    let (ended_tx, mut ended) = mpsc::unbounded_channel::<AccountId>();
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            Some(id) = ended.recv() => {
                links.lock().outbound.remove(&id);
                continue;
            }
            changed = topology.changed() => if changed.is_err() { return },
        }
        ctx.guard.reload_refused();
        let current = topology.borrow_and_update().clone();
        let active: HashMap<AccountId, String> = current
            .active()
            .filter(|n| n.id != me && !ctx.guard.is_refused(&n.id))
            .map(|n| (n.id, n.addr.clone()))
            .collect();
        let mut inner = links.lock();
        let LinksInner { outbound, inbound } = &mut *inner;
        outbound.retain(|id, token| {
            let keep = active.contains_key(id);
            if !keep {
                tracing::info!(peer = %id.short(), "dropping a peer: removed by the tracker, or refused");
                token.cancel();
            }
            keep
        });
        let mut candidates: Vec<(&AccountId, &String)> = active
            .iter()
            .filter(|(id, _)| !outbound.contains_key(*id) && !inbound.contains_key(*id))
            .collect();
        candidates.shuffle(&mut rand::rng());
        for (id, addr) in candidates
            .into_iter()
            .take(max_peers.saturating_sub(outbound.len()))
        {
            let token = cancel.child_token();
            outbound.insert(*id, token.clone());
            let (id, addr, ctx, ended_tx) = (*id, addr.clone(), ctx.clone(), ended_tx.clone());
            // Its logs belong to this node, as the task that starts it does.
            let connect = async move {
                match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(&addr)).await {
                    Ok(Ok(stream)) => {
                        tracing::debug!(peer = %id.short(), %addr, "connected to peer");
                        serve(stream, Some(id), ctx, token).await;
                    }
                    Ok(Err(e)) => {
                        tracing::debug!(peer = %id.short(), %addr, error = %e, "cannot connect to peer")
                    }
                    Err(_) => {
                        tracing::debug!(peer = %id.short(), %addr, "peer connection timed out")
                    }
                }
                let _ = ended_tx.send(id);
            };
            tasks.spawn(connect.in_current_span());
        }
    }
}
