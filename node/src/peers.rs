//! Keeps outbound connections to active nodes from the topology: up to `max_peers`, chosen at
//! random when there are more (a full mesh when fewer); peers marked removed, and peers this
//! node refuses (see [`crate::guard`]), are dropped.

use std::collections::HashMap;
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

/// Follows the topology until `cancel`.
pub async fn run(
    me: AccountId,
    max_peers: usize,
    mut topology: watch::Receiver<Topology>,
    ctx: Ctx,
    tasks: TaskTracker,
    cancel: CancellationToken,
) {
    let mut peers: HashMap<AccountId, CancellationToken> = HashMap::new();
    let (ended_tx, mut ended) = mpsc::unbounded_channel::<AccountId>();
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            Some(id) = ended.recv() => {
                peers.remove(&id);
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
        peers.retain(|id, token| {
            let keep = active.contains_key(id);
            if !keep {
                tracing::info!(peer = %id.short(), "dropping a peer: removed by the tracker, or refused");
                token.cancel();
            }
            keep
        });
        let mut candidates: Vec<(&AccountId, &String)> = active
            .iter()
            .filter(|(id, _)| !peers.contains_key(*id))
            .collect();
        candidates.shuffle(&mut rand::rng());
        for (id, addr) in candidates
            .into_iter()
            .take(max_peers.saturating_sub(peers.len()))
        {
            let token = cancel.child_token();
            peers.insert(*id, token.clone());
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
