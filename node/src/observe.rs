//! What a node tells its subscribers besides blocks and tips (the visualizer draws them): every
//! report interval its CPU load, the difficulty it mines at and its live peers (`U` `status`,
//! from [`run`]), and the records entering and leaving its pending pool (`U` `pool`, from the
//! chain thread through a [`PoolReport`]). The same tick refreshes the load and difficulty in the
//! node's [`Status`], so its report to the tracker is never older than one interval: before,
//! they changed only with the chain, and a busy host went unseen until the next block.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use protocol::difficulty::difficulty_for_load;
use protocol::params::{MAX_REPORTED_PEERS, MAX_REPORTED_PENDING};
use protocol::wire::{LeftPool, PendingRecord, Update};
use protocol::{AccountId, BlockHash, Pool, RecordId};
use tokio::sync::{broadcast, watch};
use tokio_util::sync::CancellationToken;

use protocol::clock::now_ms;

use crate::actor::{Event, Status};
use crate::links::Links;
use crate::load::Load;

/// An event carrying `update` to every subscriber.
pub fn notice(update: Update) -> Event {
    Event::Notice(Arc::new(update))
}

/// The peers this node has a link with, by id, at most [`MAX_REPORTED_PEERS`] (the lowest ids).
pub fn peers(links: &Links) -> Vec<AccountId> {
    let inner = links.lock();
    let mut ids: Vec<AccountId> = inner
        .outbound
        .keys()
        .chain(inner.inbound.keys())
        .copied()
        .collect();
    drop(inner);
    ids.sort();
    ids.dedup();
    ids.truncate(MAX_REPORTED_PEERS);
    ids
}

/// Load as thousandths, for the wire.
fn permille(load: f32) -> u16 {
    (load.clamp(0.0, 1.0) * 1000.0).round() as u16
}

/// Every `interval` until `cancel`: refreshes the load and difficulty in `status` (which the
/// tracker reports read) and tells subscribers the load, difficulty and peers.
pub async fn run(
    interval: Duration,
    load: Load,
    floor: u32,
    links: Links,
    events: broadcast::Sender<Event>,
    status: watch::Sender<Status>,
    cancel: CancellationToken,
) {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = cancel.cancelled() => return,
            _ = ticker.tick() => {}
        }
        let now = load.get();
        let difficulty = difficulty_for_load(floor, now);
        status.send_modify(|s| {
            s.load = now;
            s.difficulty = difficulty;
        });
        let update = Update::Status {
            at_ms: now_ms(),
            load_permille: permille(now),
            difficulty,
            peers: peers(&links),
        };
        // No receiver is no error: nobody subscribes.
        let _ = events.send(notice(update));
    }
}

/// The pool as subscribers last heard of it: the ids listed, and whether each waited. Owned by
/// the chain thread; each diff costs [`MAX_REPORTED_PENDING`] steps, whatever the pool holds.
#[derive(Debug, Default)]
pub struct PoolReport {
    listed: HashMap<RecordId, bool>,
    counts: (u64, u64),
}

impl PoolReport {
    /// The whole listing, for a new subscriber.
    pub fn full(pool: &Pool) -> Update {
        let added = pool
            .listing(MAX_REPORTED_PENDING)
            .into_iter()
            .map(|(record, since_ms, waiting)| PendingRecord {
                record: record.clone(),
                since_ms,
                waiting,
            })
            .collect();
        Update::Pool {
            full: true,
            added,
            removed: Vec::new(),
            ready: pool.ready_len() as u64,
            waiting: pool.waiting_len() as u64,
        }
    }

    /// What changed in the listing since the last call, if anything: records that entered it
    /// or changed, and those that left it, with the best-chain block that holds each one
    /// (`mined`) when it left for one.
    pub fn diff(&mut self, pool: &Pool, mined: &HashMap<RecordId, BlockHash>) -> Option<Update> {
        let counts = (pool.ready_len() as u64, pool.waiting_len() as u64);
        let listing = pool.listing(MAX_REPORTED_PENDING);
        let mut now: HashMap<RecordId, bool> = HashMap::with_capacity(listing.len());
        let mut added = Vec::new();
        for (record, since_ms, waiting) in listing {
            let id = record.id();
            if self.listed.get(&id) != Some(&waiting) {
                added.push(PendingRecord {
                    record: record.clone(),
                    since_ms,
                    waiting,
                });
            }
            now.insert(id, waiting);
        }
        let mut removed: Vec<LeftPool> = self
            .listed
            .keys()
            .filter(|id| !now.contains_key(*id))
            .map(|id| LeftPool {
                id: *id,
                block: mined.get(id).copied(),
            })
            .collect();
        if added.is_empty() && removed.is_empty() && counts == self.counts {
            return None;
        }
        removed.sort_by_key(|l| l.id);
        self.listed = now;
        self.counts = counts;
        Some(Update::Pool {
            full: false,
            added,
            removed,
            ready: counts.0,
            waiting: counts.1,
        })
    }
}

#[cfg(test)]
mod tests {
    use protocol::{Action, Keypair, Ledger, PoolLimits, Record};

    use super::*;

    /// Record `seq` of `key`: its join (as `name`) first, then purchases.
    fn record(key: &Keypair, seq: u64, name: &str) -> Record {
        let action = if seq == 0 {
            Action::Join { name: name.into() }
        } else {
            Action::Purchase {
                monkey: "marmoset".into(),
            }
        };
        Record::sign(key, seq, action)
    }

    #[test]
    fn the_pool_report_says_what_entered_changed_and_left_once() {
        let key = Keypair::from_seed([7; 32]);
        let ledger = Ledger::default();
        let mut pool = Pool::new(PoolLimits::default());
        let mut report = PoolReport::default();
        let mined = HashMap::new();
        assert_eq!(report.diff(&pool, &mined), None, "nothing to say");
        // The purchase waits for the join; then the join comes and both are ready.
        let purchase = record(&key, 1, "ann");
        pool.add(&ledger, purchase.clone()).unwrap();
        let Some(Update::Pool { added, .. }) = report.diff(&pool, &mined) else {
            panic!("a record entered");
        };
        assert_eq!((added.len(), added[0].waiting), (1, true));
        assert_eq!(report.diff(&pool, &mined), None, "said once");
        pool.add(&ledger, record(&key, 0, "ann")).unwrap();
        let Some(Update::Pool {
            added,
            ready,
            waiting,
            ..
        }) = report.diff(&pool, &mined)
        else {
            panic!("the join entered and the purchase is ready");
        };
        assert_eq!((ready, waiting), (2, 0));
        assert_eq!(
            added.len(),
            2,
            "the join, and the purchase no longer waiting"
        );
        assert!(added.iter().all(|p| !p.waiting));
        // Both leave, the purchase for a block.
        let block = protocol::genesis().header.hash();
        let mined = HashMap::from([(purchase.id(), block)]);
        let empty = Pool::new(PoolLimits::default());
        let Some(Update::Pool { removed, .. }) = report.diff(&empty, &mined) else {
            panic!("both left");
        };
        assert_eq!(removed.len(), 2);
        let left = removed.iter().find(|l| l.id == purchase.id()).unwrap();
        assert_eq!(left.block, Some(block));
        let Update::Pool { full, added, .. } = PoolReport::full(&pool) else {
            panic!("a pool update");
        };
        assert!(full);
        assert_eq!(added.len(), 2);
    }

    #[test]
    fn at_most_the_reported_cap_is_listed() {
        let ledger = Ledger::default();
        let mut pool = Pool::new(PoolLimits::default());
        for i in 0..(MAX_REPORTED_PENDING as u8 + 10) {
            let key = Keypair::from_seed([i; 32]);
            pool.add(&ledger, record(&key, 0, &format!("n{i}")))
                .unwrap();
        }
        let Some(Update::Pool { added, ready, .. }) =
            PoolReport::default().diff(&pool, &HashMap::new())
        else {
            panic!("records entered");
        };
        assert_eq!(added.len(), MAX_REPORTED_PENDING);
        assert_eq!(ready, MAX_REPORTED_PENDING as u64 + 10);
    }
}
