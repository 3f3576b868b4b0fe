//! What subscribers last heard of the pending pool, and what changed since: the chain thread
//! keeps one [`PoolReport`] and, after each batch, sends subscribers the difference as a `U`
//! `pool` (records that entered or changed, and those that left, with the block that took
//! each). Pure: a pool in, an update out.

use std::collections::HashMap;

use protocol::hash::DigestMap;
use protocol::params::MAX_REPORTED_PENDING;
use protocol::wire::{LeftPool, PendingRecord, Update};
use protocol::{BlockHash, Pool, RecordId};

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
    pub fn diff(&mut self, pool: &Pool, mined: &DigestMap<BlockHash>) -> Option<Update> {
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
    use protocol::{Keypair, Ledger, PoolLimits, Record};

    use super::*;

    /// Record `seq` of `key`: its join (as `name`) first, then purchases.
    fn record(key: &Keypair, seq: u64, name: &str) -> Record {
        if seq == 0 {
            Record::join(key, name)
        } else {
            Record::purchase(key, seq, "marmoset")
        }
    }

    #[test]
    fn the_pool_report_says_what_entered_changed_and_left_once() {
        let key = Keypair::from_seed([7; 32]);
        let ledger = Ledger::default();
        let mut pool = Pool::new(PoolLimits::default());
        let mut report = PoolReport::default();
        let mined = DigestMap::default();
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
        let mined = DigestMap::from_iter([(purchase.id(), block)]);
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
            PoolReport::default().diff(&pool, &DigestMap::default())
        else {
            panic!("records entered");
        };
        assert_eq!(added.len(), MAX_REPORTED_PENDING);
        assert_eq!(ready, MAX_REPORTED_PENDING as u64 + 10);
    }
}
