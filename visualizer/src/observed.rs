//! What each node says of itself besides its blocks: its CPU load and difficulty over the last
//! minutes, its live peers and its pending records (`U` `status` and `U` `pool`, see
//! docs/PROTOCOL.md). Pure and bounded per node: at most [`MAX_SAMPLES`] samples, taken at most
//! every [`MIN_SAMPLE_GAP_MS`], at most [`MAX_REPORTED_PEERS`] peers and
//! [`MAX_REPORTED_PENDING`] pending records, whatever a node sends. None of it is checked (a
//! node's load or pool is its own word, as its tracker report is): it is shown, never used.

use std::collections::{BTreeMap, VecDeque};

use protocol::params::{MAX_REPORTED_PEERS, MAX_REPORTED_PENDING};
use protocol::{AccountId, RecordId};

use crate::view::{LoadSample, PendingView};

/// Samples of load and difficulty kept per node: three minutes at the nodes' default period of
/// a second, the span the page's charts show.
pub const MAX_SAMPLES: usize = 180;
/// The least time between two samples kept from one node, by the visualizer's clock: a node
/// sampling faster (or a liar flooding `U status`) is heard ten times a second at most, which
/// bounds what it costs the hub and every browser.
pub const MIN_SAMPLE_GAP_MS: u64 = 100;

/// One node's own word about itself.
#[derive(Debug, Clone, Default)]
pub struct Observed {
    /// Its load and difficulty, oldest first.
    pub samples: VecDeque<LoadSample>,
    /// The ids it says it has a link with, sorted.
    pub peers: Vec<AccountId>,
    /// Its pending records as it listed them.
    pub pool: BTreeMap<RecordId, PendingView>,
    /// Ready records in its whole pool.
    pub ready: u64,
    /// Waiting records in its whole pool.
    pub waiting: u64,
}

impl Observed {
    /// Keeps a sample taken at `sample.at_ms` (the visualizer's clock), unless the last one is
    /// less than [`MIN_SAMPLE_GAP_MS`] older; whether it was kept.
    pub fn sample(&mut self, sample: LoadSample) -> bool {
        if let Some(last) = self.samples.back()
            && sample.at_ms < last.at_ms.saturating_add(MIN_SAMPLE_GAP_MS)
        {
            return false;
        }
        self.samples.push_back(sample);
        while self.samples.len() > MAX_SAMPLES {
            self.samples.pop_front();
        }
        true
    }

    /// Takes the node's peers, at most [`MAX_REPORTED_PEERS`], sorted; whether they changed.
    pub fn set_peers(&mut self, mut peers: Vec<AccountId>) -> bool {
        peers.truncate(MAX_REPORTED_PEERS);
        peers.sort();
        peers.dedup();
        if peers == self.peers {
            return false;
        }
        self.peers = peers;
        true
    }

    /// Applies a pool update (already described); returns the records actually taken, so the
    /// browsers hear only of those. A record past [`MAX_REPORTED_PENDING`] is left out.
    pub fn pool(
        &mut self,
        full: bool,
        added: Vec<PendingView>,
        removed: &[RecordId],
        counts: (u64, u64),
    ) -> Vec<PendingView> {
        if full {
            self.pool.clear();
        }
        for id in removed {
            self.pool.remove(id);
        }
        let mut taken = Vec::new();
        for record in added {
            if self.pool.contains_key(&record.id) || self.pool.len() < MAX_REPORTED_PENDING {
                self.pool.insert(record.id, record.clone());
                taken.push(record);
            }
        }
        (self.ready, self.waiting) = counts;
        taken
    }
}

#[cfg(test)]
mod tests {
    use protocol::Hash256;

    use super::*;
    use crate::view::RecordSummary;

    fn sample(at_ms: u64) -> LoadSample {
        LoadSample {
            at_ms,
            load: 0.5,
            difficulty: 10,
        }
    }

    fn pending(n: u8) -> PendingView {
        PendingView {
            id: Hash256([n; 32]),
            seq: 0,
            record: RecordSummary::Join { who: "ann".into() },
            since_ms: 0,
            waiting: false,
        }
    }

    #[test]
    fn samples_are_bounded_in_count_and_rate() {
        let mut o = Observed::default();
        assert!(o.sample(sample(1000)));
        assert!(!o.sample(sample(1000 + MIN_SAMPLE_GAP_MS - 1)), "too soon");
        assert!(!o.sample(sample(10)), "older");
        for i in 0..(MAX_SAMPLES as u64 + 50) {
            o.sample(sample(2000 + i * MIN_SAMPLE_GAP_MS));
        }
        assert_eq!(o.samples.len(), MAX_SAMPLES);
        assert_eq!(
            o.samples.back().map(|s| s.at_ms),
            Some(2000 + (MAX_SAMPLES as u64 + 49) * MIN_SAMPLE_GAP_MS)
        );
    }

    #[test]
    fn peers_are_bounded_sorted_and_changes_told() {
        let mut o = Observed::default();
        let ids: Vec<AccountId> = (0..(MAX_REPORTED_PEERS + 10))
            .map(|i| protocol::Keypair::from_seed([i as u8; 32]).account())
            .collect();
        assert!(o.set_peers(ids.clone()));
        assert_eq!(o.peers.len(), MAX_REPORTED_PEERS);
        assert!(o.peers.windows(2).all(|w| w[0] < w[1]));
        assert!(!o.set_peers(ids), "the same peers again change nothing");
        assert!(o.set_peers(Vec::new()));
    }

    #[test]
    fn a_pool_is_bounded_and_records_come_and_go() {
        let mut o = Observed::default();
        let many: Vec<PendingView> = (0..(MAX_REPORTED_PENDING as u8 + 5)).map(pending).collect();
        let taken = o.pool(false, many, &[], (70, 0));
        assert_eq!(taken.len(), MAX_REPORTED_PENDING);
        assert_eq!(o.pool.len(), MAX_REPORTED_PENDING);
        assert_eq!(o.ready, 70);
        o.pool(false, Vec::new(), &[pending(0).id], (69, 0));
        assert_eq!(o.pool.len(), MAX_REPORTED_PENDING - 1);
        o.pool(true, vec![pending(200)], &[], (1, 0));
        assert_eq!(o.pool.len(), 1, "a full listing replaces the old one");
    }
}
