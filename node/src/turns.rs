//! Turns at a scarce resource (the store's deep reads, [`crate::archive::MAX_DEEP_READS`] at
//! once), taken by source address in rotation rather than first come, first served.
//!
//! The rule: a few turns run at once; past them, askers wait in one queue per source address,
//! and a turn given back goes to the first waiter of the next address in rotation (an address
//! joins the rotation at its back when it starts waiting). So whatever one host asks for, over
//! however many connections, someone else waiting gets one of the next turns: one address
//! flooding deep `D`s over its 64 connections slows an honest peer's sync by a turn per read,
//! not by 64. An address is a host's unit here, as for its slots
//! ([`daemon::slots`]) and its buffered bytes ([`crate::buffers`]).
//!
//! [`Turns`] is the pure table, unit-tested on its own; [`TurnTable`] the shared handle whose
//! [`Turn`]s give their place back when dropped. Nothing here needs a bound of its own: each
//! connection waits for at most one turn at a time (it answers its `D`s in order), so the
//! queues hold at most one waiter per connection, and the node's slots bound those.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::sync::oneshot;

/// Who waits for a turn, by address, and whose turn is next.
#[derive(Debug)]
pub struct Turns<W> {
    /// Turns not taken.
    free: usize,
    /// Each waiting address's waiters, first come first.
    waiting: HashMap<IpAddr, VecDeque<W>>,
    /// The waiting addresses, the next to get a turn first: exactly those whose queue in
    /// `waiting` is not empty, each once. Turns are free only when nobody waits.
    rotation: VecDeque<IpAddr>,
}

impl<W> Turns<W> {
    /// A table of `turns` turns at once (at least one).
    pub fn new(turns: usize) -> Turns<W> {
        Turns {
            free: turns.max(1),
            waiting: HashMap::new(),
            rotation: VecDeque::new(),
        }
    }

    /// `waiter` from `source` asks for a turn: handed back when it has one now, else queued
    /// until [`Turns::give_back`] hands it out.
    pub fn ask(&mut self, source: IpAddr, waiter: W) -> Option<W> {
        if self.free > 0 {
            self.free -= 1;
            return Some(waiter);
        }
        let queue = self.waiting.entry(source).or_default();
        if queue.is_empty() {
            self.rotation.push_back(source);
        }
        queue.push_back(waiter);
        None
    }

    /// A turn was given back: the waiter it goes to (the first of the next address in
    /// rotation), or `None` when nobody waits and the turn is free again.
    pub fn give_back(&mut self) -> Option<W> {
        while let Some(source) = self.rotation.pop_front() {
            // The rotation names only addresses with a waiter (see its field); should that
            // ever not hold, the address is skipped, and the turn still goes on or is free.
            let Some(waiter) = self.waiting.get_mut(&source).and_then(VecDeque::pop_front) else {
                self.waiting.remove(&source);
                continue;
            };
            if self.waiting.get(&source).is_some_and(VecDeque::is_empty) {
                self.waiting.remove(&source);
            } else {
                self.rotation.push_back(source);
            }
            return Some(waiter);
        }
        self.free += 1;
        None
    }

    /// Waiters queued, all addresses together.
    #[cfg(test)]
    fn waiting(&self) -> usize {
        self.waiting.values().map(VecDeque::len).sum()
    }
}

/// The shared table of turns.
#[derive(Debug, Clone)]
pub struct TurnTable {
    inner: Arc<Mutex<Turns<oneshot::Sender<Turn>>>>,
}

/// A turn being taken; given back (to the next waiter) when dropped.
#[derive(Debug)]
pub struct Turn {
    table: TurnTable,
    /// False for a turn that never reached its waiter (it had gone): dropping it gives
    /// nothing back, since [`TurnTable::give_back`] goes on to the next one itself.
    live: bool,
}

impl TurnTable {
    /// A table of `turns` turns at once.
    pub fn new(turns: usize) -> TurnTable {
        TurnTable {
            inner: Arc::new(Mutex::new(Turns::new(turns))),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Turns<oneshot::Sender<Turn>>> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A turn taken from this table, given back when dropped.
    fn taken(&self) -> Turn {
        Turn {
            table: self.clone(),
            live: true,
        }
    }

    /// Waits for a turn for `source`. `None` cannot happen while the waiter borrows the table
    /// (only a dropped table drops a waiter's sender unsent); it is there for the type. A
    /// waiter whose task was dropped before its turn is skipped when its turn comes. (A
    /// connection whose peer hung up while it waits is not dropped: it takes its turn, reads,
    /// and fails to write; it waits behind at most one read per address.)
    pub async fn turn(&self, source: IpAddr) -> Option<Turn> {
        let (tx, rx) = oneshot::channel();
        let now = self.lock().ask(source, tx);
        if now.is_some() {
            return Some(self.taken());
        }
        rx.await.ok()
    }

    /// Hands a turn given back to the next waiter still there.
    fn give_back(&self) {
        loop {
            let Some(next) = self.lock().give_back() else {
                return;
            };
            match next.send(self.taken()) {
                Ok(()) => return,
                // Its connection closed meanwhile: the next one's turn.
                Err(mut unclaimed) => unclaimed.live = false,
            }
        }
    }

    /// Waiters queued now.
    #[cfg(test)]
    fn waiting(&self) -> usize {
        self.lock().waiting()
    }
}

impl Drop for Turn {
    fn drop(&mut self) {
        if self.live {
            self.table.give_back();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([127, 0, 0, last])
    }

    #[test]
    fn turns_go_by_address_in_rotation_not_by_arrival() {
        let mut turns = Turns::new(2);
        assert_eq!(turns.ask(ip(1), "a1"), Some("a1"));
        assert_eq!(turns.ask(ip(1), "a2"), Some("a2"));
        // The flooder queues many before anyone else asks.
        for waiter in ["a3", "a4", "a5", "a6"] {
            assert_eq!(turns.ask(ip(1), waiter), None);
        }
        assert_eq!(turns.ask(ip(2), "b1"), None);
        assert_eq!(turns.ask(ip(3), "c1"), None);
        assert_eq!(turns.waiting(), 6);
        // Address 1 was first in rotation, then 2 and 3 get the next turns, not a4 to a6.
        assert_eq!(turns.give_back(), Some("a3"));
        assert_eq!(turns.give_back(), Some("b1"));
        assert_eq!(turns.give_back(), Some("c1"));
        // Asking again, 2 waits behind address 1's next waiter only.
        assert_eq!(turns.ask(ip(2), "b2"), None);
        assert_eq!(turns.give_back(), Some("a4"));
        assert_eq!(turns.give_back(), Some("b2"));
        assert_eq!(turns.give_back(), Some("a5"));
        assert_eq!(turns.give_back(), Some("a6"));
        // Nobody waits: the turns are free again, both of them.
        assert_eq!(turns.give_back(), None);
        assert_eq!(turns.give_back(), None);
        assert_eq!(turns.waiting(), 0);
        assert_eq!(turns.ask(ip(4), "d1"), Some("d1"));
        assert_eq!(turns.ask(ip(4), "d2"), Some("d2"));
        assert_eq!(turns.ask(ip(4), "d3"), None);
    }

    #[tokio::test]
    async fn a_turn_given_back_skips_waiters_that_left_and_reaches_the_next() {
        let table = TurnTable::new(1);
        let first = table.turn(ip(1)).await.expect("a free turn");
        // A waiter whose task is dropped before its turn...
        let gone = tokio::spawn({
            let table = table.clone();
            async move { table.turn(ip(2)).await.map(|_| ()) }
        });
        let stays = tokio::spawn({
            let table = table.clone();
            async move { table.turn(ip(3)).await }
        });
        for _ in 0..1_000 {
            if table.waiting() == 2 {
                break;
            }
            tokio::task::yield_now().await;
        }
        assert_eq!(table.waiting(), 2);
        gone.abort();
        let _ = gone.await;
        drop(first);
        let second = stays.await.expect("the task").expect("the turn");
        assert_eq!(table.waiting(), 0);
        // ... and there is still one turn: the next asker waits until it is given back.
        let third = tokio::spawn({
            let table = table.clone();
            async move { table.turn(ip(4)).await.map(|_| ()) }
        });
        for _ in 0..1_000 {
            if table.waiting() == 1 {
                break;
            }
            tokio::task::yield_now().await;
        }
        assert_eq!(table.waiting(), 1);
        drop(second);
        assert_eq!(third.await.expect("the task"), Some(()));
    }

    /// Turns at once in the flooding tests.
    const TURNS: usize = 2;

    /// `per_address` connections from each of `flooding` keep the turns busy (each holds its
    /// turn a while, then asks again at once) while one connection of another address asks one
    /// turn after the other; returns the most of the flood's turns granted while it waited for
    /// one. On tokio's paused clock, so the order is the rule's alone.
    async fn worst_wait_beside(flooding: &[IpAddr], per_address: usize) -> usize {
        const ASKS: usize = 20;
        let hold = std::time::Duration::from_millis(5);
        let table = TurnTable::new(TURNS);
        let granted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let stop = tokio_util::sync::CancellationToken::new();
        let mut flood = Vec::new();
        for &source in flooding {
            for _ in 0..per_address {
                let (table, granted, stop) = (table.clone(), Arc::clone(&granted), stop.clone());
                flood.push(tokio::spawn(async move {
                    while !stop.is_cancelled() {
                        let Some(_turn) = table.turn(source).await else {
                            return;
                        };
                        granted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        tokio::time::sleep(hold).await;
                    }
                }));
            }
        }
        // Let the flood fill the queue first.
        tokio::time::sleep(hold * 3).await;
        assert!(table.waiting() >= flooding.len() * per_address - TURNS - 1);
        let mut worst = 0;
        for _ in 0..ASKS {
            let before = granted.load(std::sync::atomic::Ordering::SeqCst);
            let turn = table.turn(ip(200)).await.expect("a turn");
            let waited_behind = granted.load(std::sync::atomic::Ordering::SeqCst) - before;
            worst = worst.max(waited_behind);
            tokio::time::sleep(hold).await;
            drop(turn);
        }
        stop.cancel();
        for task in flood {
            task.await.expect("a flooder");
        }
        worst
    }

    /// Many connections of one address against one of another: the other waits behind at most
    /// the turns already running and one of the flood's, never behind the flood's whole queue.
    #[tokio::test(start_paused = true)]
    async fn one_address_flooding_delays_another_by_a_turn_not_by_its_queue() {
        let worst = worst_wait_beside(&[ip(1)], 48).await;
        // First come, first served, each ask would wait behind about 48 turns.
        assert!(
            worst <= TURNS + 1,
            "the other address waited behind {worst} of the flood's turns"
        );
    }

    /// The attacker's next step, the same 48 connections spread over 8 addresses: the other
    /// address waits behind one turn per flooding address (plus those running), not 48.
    #[tokio::test(start_paused = true)]
    async fn a_flood_spread_over_addresses_delays_another_by_a_turn_per_address() {
        let addresses: Vec<IpAddr> = (1..=8).map(ip).collect();
        let worst = worst_wait_beside(&addresses, 6).await;
        assert!(
            worst <= TURNS + addresses.len(),
            "the other address waited behind {worst} of the flood's turns"
        );
    }
}
