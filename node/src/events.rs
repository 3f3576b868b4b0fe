//! The chain thread's events, bounded in bytes as well as in count.
//!
//! The chain thread broadcasts its events to every connection over a tokio broadcast channel,
//! which keeps an event until every receiver has taken it or [`crate::actor::EVENTS`] newer ones
//! push it out: a bound in count only. An event may hold a sync batch's blocks, megabytes, and
//! one connection that takes its events slowly (a subscriber reading its `U` lines at a trickle,
//! a peer whose writes crawl) kept thousands of them in memory, with blocks the chain itself had
//! long let go: during a sync, the whole chain.
//!
//! So every event goes out in a [`Posted`] box that the chain thread can empty, and a [`Budget`]
//! counts what the events that may still be in the channel hold. Past its bytes, it empties the
//! oldest. The connections that keep up took those long before; one that falls that far behind
//! opens an empty box and is behind, as if it had lagged by count (a peer syncs, a client catches
//! up, a subscriber is told to resubscribe). Nobody waits for the slowest connection, and the
//! slowest connection holds no more than the budget.
//!
//! What a connection took out of a box is its own until it has written it out: per connection,
//! one wake-up's events ([`crate::conn::EVENTS_PER_WAKE`], and past the first none beyond
//! [`crate::conn::WAKE_EVENT_BYTES`]), outside the budget.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError, Weak};

/// An event as the channel carries it: a box the [`Budget`] may empty once the connections that
/// keep up have taken it.
#[derive(Debug)]
pub struct Posted<T>(Arc<Slot<T>>);

/// What a [`Posted`] box holds: the event until the budget empties it, and what it counts for.
#[derive(Debug)]
struct Slot<T> {
    event: Mutex<Option<T>>,
    cost: usize,
}

impl<T> Clone for Posted<T> {
    fn clone(&self) -> Posted<T> {
        Posted(Arc::clone(&self.0))
    }
}

impl<T> Posted<T> {
    fn new(event: T, cost: usize) -> Posted<T> {
        Posted(Arc::new(Slot {
            event: Mutex::new(Some(event)),
            cost,
        }))
    }

    /// What the event counts for against the budget, as it was posted (0 when uncounted).
    pub fn cost(&self) -> usize {
        self.0.cost
    }
}

impl<T: Clone> Posted<T> {
    /// An event outside any budget: one that holds too little to count.
    pub fn uncounted(event: T) -> Posted<T> {
        Posted::new(event, 0)
    }

    /// The event, or `None` when the budget emptied the box: the receiver fell behind.
    pub fn open(&self) -> Option<T> {
        self.0
            .event
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

/// What the events that may still be in the channel hold.
#[derive(Debug)]
pub struct Budget<T> {
    /// Most bytes they may hold.
    max: usize,
    /// Every counted event posted that may still be in the channel, with its cost, oldest first.
    posted: VecDeque<(Weak<Slot<T>>, usize)>,
    /// The sum of their costs.
    bytes: usize,
}

impl<T> Budget<T> {
    /// A budget of `max` bytes.
    pub fn new(max: usize) -> Budget<T> {
        Budget {
            max,
            posted: VecDeque::new(),
            bytes: 0,
        }
    }

    /// Boxes `event`, which holds `cost` bytes, to be sent: first forgets the oldest events
    /// every receiver has taken (receivers take events in order, so those are the oldest), then
    /// empties the oldest ones left until it fits.
    pub fn post(&mut self, event: T, cost: usize) -> Posted<T> {
        let posted = Posted::new(event, cost);
        if cost == 0 {
            return posted;
        }
        while let Some((oldest, oldest_cost)) = self.posted.front() {
            // A box nobody holds has left the channel: taken by every receiver, or pushed out.
            let gone = oldest.strong_count() == 0;
            if !gone && self.bytes + cost <= self.max {
                break;
            }
            if let Some(oldest) = oldest.upgrade() {
                let emptied = oldest
                    .event
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .take();
                drop(emptied);
            }
            self.bytes -= oldest_cost;
            self.posted.pop_front();
        }
        self.posted.push_back((Arc::downgrade(&posted.0), cost));
        self.bytes += cost;
        posted
    }

    /// The bytes the events that may still be in the channel hold.
    pub fn bytes(&self) -> usize {
        self.bytes
    }
}

#[cfg(test)]
mod tests {
    use tokio::sync::broadcast;

    use super::*;

    /// An event whose payload the test can watch: alive while the `Arc` has other owners.
    type Payload = Arc<[u8; 16]>;

    fn alive(payloads: &[Payload]) -> Vec<bool> {
        payloads.iter().map(|p| Arc::strong_count(p) > 1).collect()
    }

    #[test]
    fn a_receiver_that_does_not_read_holds_no_more_than_the_budget() {
        let (tx, mut slow) = broadcast::channel::<Posted<Payload>>(64);
        let mut budget = Budget::new(100);
        let payloads: Vec<Payload> = (0..10).map(|_| Arc::new([0; 16])).collect();
        for payload in &payloads {
            tx.send(budget.post(Arc::clone(payload), 30)).unwrap();
        }
        assert!(budget.bytes() <= 100);
        // The newest three fit in 100 bytes; the seven before were emptied.
        let mut expected = vec![false; 7];
        expected.extend([true; 3]);
        assert_eq!(alive(&payloads), expected);
        // The slow receiver still gets a box for each, and finds the old ones empty.
        let opened: Vec<bool> = (0..10)
            .map(|_| slow.try_recv().unwrap().open().is_some())
            .collect();
        assert_eq!(opened, expected);
    }

    #[test]
    fn events_every_receiver_took_no_longer_count() {
        let (tx, mut fast) = broadcast::channel::<Posted<Payload>>(64);
        let mut budget = Budget::new(100);
        let payloads: Vec<Payload> = (0..10).map(|_| Arc::new([0; 16])).collect();
        for payload in &payloads {
            tx.send(budget.post(Arc::clone(payload), 30)).unwrap();
            let event = fast.try_recv().unwrap().open();
            assert!(
                event.is_some(),
                "nothing is emptied while the receivers keep up"
            );
        }
        // Only the newest still counts: the budget looks again at the next post.
        assert_eq!(budget.bytes(), 30);
        assert_eq!(alive(&payloads), vec![false; 10]);
    }

    #[test]
    fn events_pushed_out_of_the_channel_by_count_no_longer_count() {
        let (tx, _slow) = broadcast::channel::<Posted<Payload>>(2);
        let mut budget = Budget::new(1000);
        for _ in 0..10 {
            tx.send(budget.post(Arc::new([0; 16]), 30)).unwrap();
        }
        // The channel keeps two; the budget, once it looks, counts no more than those.
        budget.post(Arc::new([0; 16]), 30);
        assert!(budget.bytes() <= 3 * 30, "{}", budget.bytes());
    }

    #[test]
    fn uncounted_events_are_never_emptied() {
        let (tx, mut slow) = broadcast::channel::<Posted<Payload>>(64);
        let mut budget = Budget::new(10);
        tx.send(Posted::uncounted(Arc::new([1; 16]))).unwrap();
        tx.send(budget.post(Arc::new([2; 16]), 0)).unwrap();
        for _ in 0..5 {
            tx.send(budget.post(Arc::new([3; 16]), 10)).unwrap();
        }
        assert_eq!(slow.try_recv().unwrap().open().map(|p| p[0]), Some(1));
        assert_eq!(slow.try_recv().unwrap().open().map(|p| p[0]), Some(2));
        let counted: Vec<bool> = (0..5)
            .map(|_| slow.try_recv().unwrap().open().is_some())
            .collect();
        assert_eq!(counted, vec![false, false, false, false, true]);
    }

    #[test]
    fn an_event_bigger_than_the_budget_still_goes_out() {
        let mut budget = Budget::new(10);
        let first = budget.post(1u8, 5);
        let big = budget.post(2u8, 50);
        assert_eq!(first.open(), None);
        assert_eq!(big.open(), Some(2));
        assert_eq!(budget.bytes(), 50);
    }
}
