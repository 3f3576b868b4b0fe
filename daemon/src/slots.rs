//! Connection slots, shared by the three servers (node, tracker, visualizer): which connections
//! hold a place, how many each source address holds, and which one to close when a new
//! connection needs room.
//!
//! The rule: a server takes at most `capacity` connections, and one source address at most
//! `per_source` of them. A new connection is never refused for lack of room: when its address
//! already holds its share, that address's longest-idle connection is closed; when the server is
//! full, the longest-idle connection of the address holding the most slots is. So one host that
//! holds every slot it can with idle connections cannot keep anyone out, itself included; it only
//! loses its own oldest idle connections. "Idle" is the time since a connection was last heard
//! from ([`Slots::touch`]), so connections that talk are the last to go.
//!
//! [`Slots`] is the pure table (the clock is a parameter), unit-tested on its own. [`SlotTable`]
//! is the thin shared handle the servers use: each admitted connection holds a [`Slot`], which
//! it touches when it hears something, which tells it when it was evicted, and which gives its
//! place back when dropped.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Instant;

use tokio_util::sync::{CancellationToken, WaitForCancellationFuture};

/// One connection's place in a [`Slots`] table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SlotId(u64);

#[derive(Debug)]
struct Entry<V> {
    source: IpAddr,
    last_heard: Instant,
    value: V,
}

/// The table of connections holding a slot, each with a value of the server's (how to close it).
#[derive(Debug)]
pub struct Slots<V> {
    capacity: usize,
    per_source: usize,
    next: u64,
    entries: HashMap<SlotId, Entry<V>>,
    per_ip: HashMap<IpAddr, usize>,
}

impl<V> Slots<V> {
    /// A table of `capacity` slots, at most `per_source` of them for one address (both at least
    /// one; `per_source` at most `capacity`).
    pub fn new(capacity: usize, per_source: usize) -> Slots<V> {
        let capacity = capacity.max(1);
        Slots {
            capacity,
            per_source: per_source.clamp(1, capacity),
            next: 0,
            entries: HashMap::new(),
            per_ip: HashMap::new(),
        }
    }

    /// Gives a new connection from `source` a slot, heard from `now`. Returns its id and, when
    /// the table had to make room, the value of the connection evicted for it (its slot is
    /// already free: the caller only has to close it).
    pub fn admit(&mut self, source: IpAddr, now: Instant, value: V) -> (SlotId, Option<V>) {
        let evicted = self.victim(source).and_then(|id| self.release(id));
        let id = SlotId(self.next);
        self.next += 1;
        self.entries.insert(
            id,
            Entry {
                source,
                last_heard: now,
                value,
            },
        );
        *self.per_ip.entry(source).or_insert(0) += 1;
        (id, evicted)
    }

    /// Notes that connection `id` was heard from at `now`.
    pub fn touch(&mut self, id: SlotId, now: Instant) {
        if let Some(entry) = self.entries.get_mut(&id) {
            entry.last_heard = entry.last_heard.max(now);
        }
    }

    /// Frees `id`'s slot; returns its value if it still held one.
    pub fn release(&mut self, id: SlotId) -> Option<V> {
        let entry = self.entries.remove(&id)?;
        if let Some(count) = self.per_ip.get_mut(&entry.source) {
            *count -= 1;
            if *count == 0 {
                self.per_ip.remove(&entry.source);
            }
        }
        Some(entry.value)
    }

    /// How many connections hold a slot.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no connection holds a slot.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// How many slots `source` holds.
    pub fn held_by(&self, source: IpAddr) -> usize {
        self.per_ip.get(&source).copied().unwrap_or(0)
    }

    /// The connection to close so that one more from `source` fits, if one must go: the
    /// longest-idle of `source` when it holds its share, else, when the table is full, the
    /// longest-idle of the address holding the most slots (of those tied, the one whose
    /// connection has been idle longest). Ties in idleness go to the oldest connection.
    fn victim(&self, source: IpAddr) -> Option<SlotId> {
        let from: Box<dyn Fn(IpAddr) -> bool> = if self.held_by(source) >= self.per_source {
            Box::new(move |ip| ip == source)
        } else if self.entries.len() >= self.capacity {
            let most = self.per_ip.values().copied().max().unwrap_or(0);
            Box::new(move |ip| self.held_by(ip) == most)
        } else {
            return None;
        };
        self.entries
            .iter()
            .filter(|(_, e)| from(e.source))
            .min_by_key(|(id, e)| (e.last_heard, **id))
            .map(|(id, _)| *id)
    }
}

/// A [`Slots`] table shared by a server's accept loop and its connections; an evicted
/// connection is told through its [`Slot`].
#[derive(Debug, Clone)]
pub struct SlotTable {
    inner: Arc<Mutex<Slots<CancellationToken>>>,
}

impl SlotTable {
    /// A table of `capacity` slots, at most `per_source` for one address.
    pub fn new(capacity: usize, per_source: usize) -> SlotTable {
        SlotTable {
            inner: Arc::new(Mutex::new(Slots::new(capacity, per_source))),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Slots<CancellationToken>> {
        // The table is consistent after every call, so a panic elsewhere cannot spoil it.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Admits a new connection from `source`, evicting another if there is no room (see the
    /// module documentation). Never refuses.
    pub fn admit(&self, source: IpAddr) -> Slot {
        let evicted = CancellationToken::new();
        let (id, victim) = self.lock().admit(source, Instant::now(), evicted.clone());
        if let Some(victim) = victim {
            tracing::debug!(%source, "no room: closed the longest-idle connection");
            victim.cancel();
        }
        Slot {
            table: self.clone(),
            id,
            evicted,
        }
    }

    /// How many connections hold a slot.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether no connection holds a slot.
    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }

    /// How many slots `source` holds.
    pub fn held_by(&self, source: IpAddr) -> usize {
        self.lock().held_by(source)
    }
}

/// A connection's place in a [`SlotTable`]; given back when dropped.
#[derive(Debug)]
pub struct Slot {
    table: SlotTable,
    id: SlotId,
    evicted: CancellationToken,
}

impl Slot {
    /// Notes that the connection was heard from just now: it is not idle.
    pub fn touch(&self) {
        self.table.lock().touch(self.id, Instant::now());
    }

    /// Completes once the connection was evicted to make room for another: the server closes it.
    pub fn evicted(&self) -> WaitForCancellationFuture<'_> {
        self.evicted.cancelled()
    }

    /// Whether the connection was evicted.
    pub fn is_evicted(&self) -> bool {
        self.evicted.is_cancelled()
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.table.lock().release(self.id);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([127, 0, 0, last])
    }

    fn at(t0: Instant, secs: u64) -> Instant {
        t0 + Duration::from_secs(secs)
    }

    #[test]
    fn room_is_taken_without_eviction() {
        let t0 = Instant::now();
        let mut slots = Slots::new(3, 2);
        assert_eq!(slots.admit(ip(1), t0, 'a').1, None);
        assert_eq!(slots.admit(ip(1), t0, 'b').1, None);
        assert_eq!(slots.admit(ip(2), t0, 'c').1, None);
        assert_eq!((slots.len(), slots.held_by(ip(1))), (3, 2));
    }

    #[test]
    fn an_address_at_its_share_loses_its_own_longest_idle() {
        let t0 = Instant::now();
        let mut slots = Slots::new(10, 2);
        let (a, _) = slots.admit(ip(1), at(t0, 0), 'a');
        slots.admit(ip(1), at(t0, 1), 'b');
        slots.admit(ip(2), at(t0, 0), 'x');
        // `a` is the older, but it spoke last: `b` is the longest idle.
        slots.touch(a, at(t0, 5));
        assert_eq!(slots.admit(ip(1), at(t0, 6), 'c').1, Some('b'));
        assert_eq!(slots.held_by(ip(1)), 2);
        assert_eq!(slots.held_by(ip(2)), 1, "other addresses are left alone");
    }

    #[test]
    fn a_full_table_loses_the_longest_idle_of_the_biggest_holder() {
        let t0 = Instant::now();
        let mut slots = Slots::new(5, 3);
        slots.admit(ip(9), at(t0, 0), "honest, idle longest");
        slots.admit(ip(2), at(t0, 1), "attacker 1");
        slots.admit(ip(2), at(t0, 2), "attacker 2");
        slots.admit(ip(2), at(t0, 3), "attacker 3");
        slots.admit(ip(3), at(t0, 4), "other");
        // A newcomer, and the attacker itself, each get in at the attacker's expense.
        assert_eq!(slots.admit(ip(7), at(t0, 5), "new").1, Some("attacker 1"));
        assert_eq!(slots.admit(ip(2), at(t0, 6), "again").1, Some("attacker 2"));
        assert_eq!(slots.len(), 5);
        assert_eq!(slots.held_by(ip(9)), 1, "the honest connection stays");
    }

    #[test]
    fn ties_between_biggest_holders_go_to_the_longest_idle() {
        let t0 = Instant::now();
        let mut slots = Slots::new(4, 4);
        slots.admit(ip(2), at(t0, 3), 'a');
        slots.admit(ip(2), at(t0, 4), 'b');
        slots.admit(ip(3), at(t0, 1), 'c');
        slots.admit(ip(3), at(t0, 5), 'd');
        assert_eq!(slots.admit(ip(4), at(t0, 6), 'e').1, Some('c'));
    }

    #[test]
    fn released_slots_come_back_and_unknown_ids_are_ignored() {
        let t0 = Instant::now();
        let mut slots = Slots::new(1, 1);
        let (a, _) = slots.admit(ip(1), t0, 'a');
        assert_eq!(slots.release(a), Some('a'));
        assert_eq!(slots.release(a), None);
        slots.touch(a, t0);
        assert!(slots.is_empty());
        assert_eq!(slots.held_by(ip(1)), 0);
        assert_eq!(slots.admit(ip(1), t0, 'b').1, None);
    }

    #[test]
    fn a_shared_table_tells_the_evicted_connection() {
        let table = SlotTable::new(2, 2);
        let first = table.admit(ip(2));
        let second = table.admit(ip(2));
        second.touch();
        let third = table.admit(ip(3));
        assert!(first.is_evicted() && !second.is_evicted() && !third.is_evicted());
        assert_eq!(table.len(), 2);
        drop(first);
        assert_eq!(table.len(), 2, "an evicted slot was freed already");
        drop((second, third));
        assert!(table.is_empty());
    }
}
