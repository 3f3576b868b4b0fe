//! Keeps outbound connections to active nodes from the topology: up to `max_peers`, chosen at
//! random when there are more (a full mesh when fewer); peers marked removed, and peers this
//! node refuses (see [`crate::guard`]), are dropped. Two nodes keep one link between them
//! (see [`crate::links::Links`]).
//!
//! Newcomers cannot capture the choice: a link that works is never dropped for another, peers
//! that proved themselves before are dialed first, then ones never tried, and a peer that did
//! not answer (nothing listening, no proof in time) is tried again only after a backoff that
//! doubles with each failure (see [`choose`]).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use protocol::AccountId;
use protocol::tracker::Topology;
use rand::seq::SliceRandom;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use crate::conn::{Ctx, Served, serve};
use crate::links::LinksInner;

/// How long an outbound connection attempt may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// The pause before dialing again a peer that did not answer the first time; it doubles with
/// each failure in a row. Without it, unanswering ids would take the outbound slots again on
/// every topology tick.
const FIRST_BACKOFF: Duration = Duration::from_secs(2);
/// The longest pause before dialing an unanswering peer again: a node that comes back is
/// reached within this.
const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// What this node remembers of dialing one peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tried {
    /// Whether it ever proved its id on a link we opened.
    pub served: bool,
    /// Failed attempts in a row.
    pub failures: u32,
    /// Not dialed again before this.
    pub retry_at: Instant,
}

impl Tried {
    /// Notes how a link we opened ended.
    fn ended(entry: Option<Tried>, served: Served, now: Instant) -> Tried {
        match served {
            Served::Proven => Tried {
                served: true,
                failures: 0,
                retry_at: now,
            },
            Served::No => {
                let failures = entry.map_or(0, |e| e.failures).saturating_add(1);
                let backoff = FIRST_BACKOFF
                    .saturating_mul(1 << failures.saturating_sub(1).min(16))
                    .min(MAX_BACKOFF);
                Tried {
                    served: entry.is_some_and(|e| e.served),
                    failures,
                    retry_at: now + backoff,
                }
            }
        }
    }
}

/// Picks up to `slots` peers to dial among `candidates`: none waiting out a backoff; peers that
/// proved themselves before first, then peers never tried, then peers that failed before;
/// at random within each group.
pub fn choose(
    mut candidates: Vec<AccountId>,
    tried: &HashMap<AccountId, Tried>,
    now: Instant,
    slots: usize,
) -> Vec<AccountId> {
    candidates.retain(|id| tried.get(id).is_none_or(|t| t.retry_at <= now));
    candidates.shuffle(&mut rand::rng());
    // Stable: the order within a group stays random.
    candidates.sort_by_key(|id| match tried.get(id) {
        Some(t) if t.served && t.failures == 0 => 0,
        None => 1,
        Some(_) => 2,
    });
    candidates.truncate(slots);
    candidates
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
    let (ended_tx, mut ended) = mpsc::unbounded_channel::<(AccountId, Served)>();
    // Bounded by the topology: ids that leave it are forgotten below.
    let mut tried: HashMap<AccountId, Tried> = HashMap::new();
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            Some((id, served)) = ended.recv() => {
                links.lock().outbound.remove(&id);
                let entry = Tried::ended(tried.get(&id).copied(), served, Instant::now());
                tried.insert(id, entry);
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
        tried.retain(|id, _| active.contains_key(id));
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
        let candidates: Vec<AccountId> = active
            .keys()
            .filter(|id| !outbound.contains_key(*id) && !inbound.contains_key(*id))
            .copied()
            .collect();
        let slots = max_peers.saturating_sub(outbound.len());
        for id in choose(candidates, &tried, Instant::now(), slots) {
            let Some(addr) = active.get(&id) else {
                continue;
            };
            let token = cancel.child_token();
            outbound.insert(id, token.clone());
            let (addr, ctx, ended_tx) = (addr.clone(), ctx.clone(), ended_tx.clone());
            // Its logs belong to this node, as the task that starts it does.
            let connect = async move {
                let served = match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(&addr))
                    .await
                {
                    Ok(Ok(stream)) => {
                        tracing::debug!(peer = %id.short(), %addr, "connected to peer");
                        serve(stream, Some((id, addr)), ctx, token).await
                    }
                    Ok(Err(e)) => {
                        tracing::debug!(peer = %id.short(), %addr, error = %e, "cannot connect to peer");
                        Served::No
                    }
                    Err(_) => {
                        tracing::debug!(peer = %id.short(), %addr, "peer connection timed out");
                        Served::No
                    }
                };
                let _ = ended_tx.send((id, served));
            };
            tasks.spawn(connect.in_current_span());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u8) -> AccountId {
        AccountId([n; 32])
    }

    #[test]
    fn peers_that_served_come_first_and_unanswering_ones_wait() {
        let now = Instant::now();
        let mut tried = HashMap::new();
        // Node 1 served us; 2..=9 never answered (fakes); 10 and 11 are new.
        tried.insert(id(1), Tried::ended(None, Served::Proven, now));
        for n in 2..=9 {
            tried.insert(id(n), Tried::ended(None, Served::No, now));
        }
        let all: Vec<AccountId> = (1..=11).map(id).collect();
        for _ in 0..20 {
            let mut picked = choose(all.clone(), &tried, now, 8);
            assert_eq!(picked[0], id(1), "the peer that served first: {picked:?}");
            picked.sort();
            assert_eq!(picked, [id(1), id(10), id(11)]);
        }
        // After the backoff the failed ones are tried again, after the others.
        let later = now + FIRST_BACKOFF;
        let picked = choose(all.clone(), &tried, later, 3);
        assert_eq!(picked.len(), 3);
        assert!(
            picked.iter().all(|p| [id(1), id(10), id(11)].contains(p)),
            "{picked:?}"
        );
        assert_eq!(choose(all, &tried, later, 11).len(), 11);
    }

    #[test]
    fn the_backoff_doubles_and_is_capped() {
        let now = Instant::now();
        let mut entry = None;
        let mut waits = Vec::new();
        for _ in 0..10 {
            let next = Tried::ended(entry, Served::No, now);
            waits.push(next.retry_at - now);
            entry = Some(next);
        }
        assert_eq!(waits[0], FIRST_BACKOFF);
        assert_eq!(waits[1], FIRST_BACKOFF * 2);
        assert_eq!(*waits.last().unwrap(), MAX_BACKOFF);
        let back = Tried::ended(entry, Served::Proven, now);
        assert_eq!((back.failures, back.retry_at), (0, now));
    }
}
