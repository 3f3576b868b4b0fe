//! Keeps outbound connections to active nodes from the topology: up to `max_peers`, chosen at
//! random when there are more (a full mesh when fewer); peers marked removed, and peers this
//! node refuses (see [`crate::guard`]), are dropped. Two nodes keep one link between them
//! (see [`crate::links::Links`]).
//!
//! Newcomers cannot capture the choice: a link that delivers blocks is never dropped for
//! another, peers that delivered blocks before are dialed first, then ones never tried, and a
//! peer that did not answer (nothing listening, no proof in time) is tried again only after a
//! backoff that doubles with each failure (see [`choose`]).
//!
//! Nor can peers that answer but deliver nothing hold the slots: ids are cheap, so a class can
//! list many nodes that prove their ids, answer every keep-alive and never relay a block. When
//! every slot is taken and another candidate waits, the link that delivered nothing new for the
//! longest (at least a rotation period) is closed, at most one per period, and its slot goes to
//! the candidate (see [`rotate`]). Honest nodes mine and relay, so their links deliver and stay;
//! links to useless peers turn over until honest nodes hold each other's slots.

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
use crate::links::{LinksInner, Outbound};

/// How long an outbound connection attempt may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// The pause before dialing again a peer that did not answer the first time; it doubles with
/// each failure in a row. Without it, unanswering ids would take the outbound slots again on
/// every topology tick.
const FIRST_BACKOFF: Duration = Duration::from_secs(2);
/// The longest pause before dialing an unanswering peer again: a node that comes back is
/// reached within this.
const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// How long a link this node opened may go without delivering a new block before its slot may
/// be given to another candidate, and the least time between two such rotations. The node's
/// `--peer-rotation-ms`; long enough that an honest peer (which relays every block, and mines)
/// delivers within it on a live network.
pub const PEER_ROTATION: Duration = Duration::from_secs(30);

/// What this node remembers of dialing one peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tried {
    /// Whether it ever proved its id on a link we opened.
    pub served: bool,
    /// Whether the last link we opened to it delivered a block the node took.
    pub delivered: bool,
    /// Failed attempts in a row.
    pub failures: u32,
    /// Not dialed again before this.
    pub retry_at: Instant,
}

impl Tried {
    /// A proven peer whose link was closed for delivering nothing: not dialed before `until`.
    fn rotated(until: Instant) -> Tried {
        Tried {
            served: true,
            delivered: false,
            failures: 0,
            retry_at: until,
        }
    }

    /// Notes how a link we opened ended, and whether it `delivered` a block. A pause set while
    /// it was open (a rotation's) outlasts its end.
    fn ended(entry: Option<Tried>, served: Served, delivered: bool, now: Instant) -> Tried {
        match served {
            Served::Proven => Tried {
                served: true,
                delivered,
                failures: 0,
                retry_at: entry.map_or(now, |e| e.retry_at.max(now)),
            },
            Served::No => {
                let failures = entry.map_or(0, |e| e.failures).saturating_add(1);
                let backoff = FIRST_BACKOFF
                    .saturating_mul(1 << failures.saturating_sub(1).min(16))
                    .min(MAX_BACKOFF);
                Tried {
                    served: entry.is_some_and(|e| e.served),
                    delivered: false,
                    failures,
                    retry_at: now + backoff,
                }
            }
        }
    }
}

/// Whether a peer may be dialed at `now`: never tried, or its pause is over.
fn dialable(tried: Option<&Tried>, now: Instant) -> bool {
    tried.is_none_or(|t| t.retry_at <= now)
}

/// Picks up to `slots` peers to dial among `candidates`: none waiting out a backoff; peers whose
/// last link delivered blocks first, then peers never tried, then the rest (failed, or proven
/// but useless); at random within each group.
pub fn choose(
    mut candidates: Vec<AccountId>,
    tried: &HashMap<AccountId, Tried>,
    now: Instant,
    slots: usize,
) -> Vec<AccountId> {
    candidates.retain(|id| dialable(tried.get(id), now));
    candidates.shuffle(&mut rand::rng());
    // Stable: the order within a group stays random.
    candidates.sort_by_key(|id| match tried.get(id) {
        Some(t) if t.delivered && t.failures == 0 => 0,
        None => 1,
        Some(_) => 2,
    });
    candidates.truncate(slots);
    candidates
}

/// The link to close so that its slot goes to a waiting candidate, if any: among the links
/// open at least `period`, one that delivered no block in the last `period`; the one that never
/// delivered, or delivered longest ago. The caller asks only when every slot is taken, a
/// candidate waits, and no rotation happened in the last `period`.
pub(crate) fn rotate(
    outbound: &HashMap<AccountId, Outbound>,
    now: Instant,
    period: Duration,
) -> Option<AccountId> {
    let stale = |at: Instant| at + period <= now;
    outbound
        .iter()
        .filter(|(_, link)| stale(link.opened) && link.delivered.is_none_or(stale))
        .min_by_key(|(_, link)| (link.delivered, link.opened))
        .map(|(id, _)| *id)
}

/// Follows the topology until `cancel`, rotating out a useless link at most every `rotation`.
pub async fn run(
    me: AccountId,
    max_peers: usize,
    rotation: Duration,
    mut topology: watch::Receiver<Topology>,
    ctx: Ctx,
    tasks: TaskTracker,
    cancel: CancellationToken,
) {
    let links = ctx.links.clone();
    let (ended_tx, mut ended) = mpsc::unbounded_channel::<(AccountId, Served)>();
    // Bounded by the topology: ids that leave it are forgotten below.
    let mut tried: HashMap<AccountId, Tried> = HashMap::new();
    let mut next_rotation = Instant::now() + rotation;
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            Some((id, served)) = ended.recv() => {
                let link = links.lock().outbound.remove(&id);
                let delivered = link.is_some_and(|l| l.delivered.is_some());
                let entry = Tried::ended(tried.get(&id).copied(), served, delivered, Instant::now());
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
        outbound.retain(|id, link| {
            let keep = active.contains_key(id);
            if !keep {
                tracing::info!(peer = %id.short(), "dropping a peer: removed by the tracker, or refused");
                link.token.cancel();
            }
            keep
        });
        let candidates: Vec<AccountId> = active
            .keys()
            .filter(|id| !outbound.contains_key(*id) && !inbound.contains_key(*id))
            .copied()
            .collect();
        let now = Instant::now();
        let slots = max_peers.saturating_sub(outbound.len());
        // Every slot taken and a candidate waiting: a useless link may give its slot up.
        let waiting = slots == 0 && candidates.iter().any(|id| dialable(tried.get(id), now));
        if waiting
            && now >= next_rotation
            && let Some(id) = rotate(outbound, now, rotation)
            && let Some(link) = outbound.get(&id)
        {
            tracing::info!(peer = %id.short(), "dropping a peer that delivered no block lately, for another candidate");
            link.token.cancel();
            // Not dialed again before a rotation period, and then after peers never tried.
            tried.insert(id, Tried::rotated(now + rotation));
            next_rotation = now + rotation;
        }
        for id in choose(candidates, &tried, now, slots) {
            let Some(addr) = active.get(&id) else {
                continue;
            };
            let token = cancel.child_token();
            outbound.insert(id, Outbound::new(token.clone(), now));
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
        // Node 1 delivered blocks; 2..=9 never answered (fakes); 10 and 11 are new.
        tried.insert(id(1), Tried::ended(None, Served::Proven, true, now));
        for n in 2..=9 {
            tried.insert(id(n), Tried::ended(None, Served::No, false, now));
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
            let next = Tried::ended(entry, Served::No, false, now);
            waits.push(next.retry_at - now);
            entry = Some(next);
        }
        assert_eq!(waits[0], FIRST_BACKOFF);
        assert_eq!(waits[1], FIRST_BACKOFF * 2);
        assert_eq!(*waits.last().unwrap(), MAX_BACKOFF);
        // Dialed again once the backoff is over, it proves its id.
        let later = now + MAX_BACKOFF;
        let back = Tried::ended(entry, Served::Proven, true, later);
        assert_eq!((back.failures, back.retry_at), (0, later));
    }

    #[test]
    fn a_peer_that_proved_its_id_but_delivered_nothing_comes_after_new_ones() {
        let now = Instant::now();
        let mut tried = HashMap::new();
        tried.insert(id(1), Tried::ended(None, Served::Proven, false, now));
        tried.insert(id(2), Tried::ended(None, Served::Proven, true, now));
        for _ in 0..20 {
            let picked = choose(vec![id(1), id(2), id(3)], &tried, now, 3);
            assert_eq!(picked[0], id(2), "the one that delivered first: {picked:?}");
            assert_eq!(picked[2], id(1), "the useless one last: {picked:?}");
        }
    }

    fn link(opened: Instant, delivered: Option<Instant>) -> Outbound {
        let mut link = Outbound::new(CancellationToken::new(), opened);
        link.delivered = delivered;
        link
    }

    #[test]
    fn the_link_rotated_out_is_one_that_delivered_nothing_for_a_period() {
        let period = Duration::from_secs(30);
        let start = Instant::now();
        let now = start + Duration::from_secs(100);
        let mut outbound = HashMap::new();
        // 1 delivers; 2 delivered long ago; 3 never did; 4 never did but is new.
        outbound.insert(id(1), link(start, Some(now - Duration::from_secs(5))));
        outbound.insert(id(2), link(start, Some(now - Duration::from_secs(60))));
        outbound.insert(id(3), link(start, None));
        outbound.insert(id(4), link(now - Duration::from_secs(10), None));
        assert_eq!(rotate(&outbound, now, period), Some(id(3)));
        outbound.remove(&id(3));
        assert_eq!(rotate(&outbound, now, period), Some(id(2)));
        outbound.remove(&id(2));
        assert_eq!(rotate(&outbound, now, period), None, "1 delivers, 4 is new");
        // A pause set by a rotation outlasts the link's end.
        let after = Tried::ended(
            Some(Tried::rotated(now + period)),
            Served::Proven,
            false,
            now,
        );
        assert_eq!(after.retry_at, now + period);
    }
}
