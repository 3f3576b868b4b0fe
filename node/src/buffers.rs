//! The bytes a node holds for the other ends of its connections: a budget per source address and
//! one in all, so that no host can make the node hold more than its share by asking.
//!
//! Every connection buffers what it reads until a line ends (up to [`protocol::codec::MAX_LINE`],
//! 8 MiB), the lines it reads ahead while a write waits ([`crate::socket`]), and what it writes
//! until the other end takes it. Each up to [`FREE_BYTES`] is free; past that, a connection's
//! bytes are counted against its address, which may hold at most [`MAX_BUFFERED_PER_IP`], and
//! against the node's [`MAX_BUFFERED`]. Before, 64 connections from one address could each hold
//! a partial line and a read-ahead of 8 MiB: about 1 GiB for one host, and 4 GiB for the 256
//! inbound connections.
//!
//! The rule, like the connection slots' ([`daemon::slots`]): a connection that would take its
//! address past its share is refused more, and closed (it only hurts its own address); one
//! that would take the node past its total takes the bytes of the biggest connection of the
//! address holding the most, which drops its buffers and is closed at its next read or write.
//! Nothing waits for bytes, so connections that each need a little more to finish a line cannot
//! wait on each other for ever.
//!
//! [`Buffers`] is the pure table, unit-tested on its own; [`BufferTable`] is the shared handle,
//! and each connection holds a [`Share`] of it.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio_util::sync::{CancellationToken, WaitForCancellationFuture};

/// Bytes each connection may buffer without counting them: every honest line but a sync's
/// batches and big blocks fits, so most connections never touch the budget.
pub const FREE_BYTES: usize = 64 * 1024;
/// Most counted bytes the connections from one address may hold: eight lines of the largest
/// size. A node syncing from this one holds at most three (the line it reads, the lines read
/// ahead, the answer it is sent), and thirty honest nodes on one machine that each relay a block
/// of up to 1 MiB of JSON at once hold about half of it (a line is held in a buffer of up to
/// twice its size). Bigger blocks (up to 2 MiB of JSON) from 29 peers on one machine at once
/// could reach it: connections refused then are closed, and their nodes link and sync again.
pub const MAX_BUFFERED_PER_IP: usize = 64 * 1024 * 1024;
/// Most counted bytes all connections may hold: eight addresses at their share.
pub const MAX_BUFFERED: usize = 8 * MAX_BUFFERED_PER_IP;

/// One connection's share in a [`Buffers`] table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ShareId(u64);

/// Why a connection may not hold more.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    /// Its address holds its share already.
    #[error("this address holds its share of the node's buffers")]
    Address,
    /// It was closed to make room for another address's connection (or never had a share).
    #[error("closed to make room in the node's buffers")]
    Evicted,
}

#[derive(Debug)]
struct Entry<V> {
    source: IpAddr,
    bytes: usize,
    value: V,
}

/// Who holds how many counted bytes.
#[derive(Debug)]
pub struct Buffers<V> {
    capacity: usize,
    per_source: usize,
    next: u64,
    total: usize,
    entries: HashMap<ShareId, Entry<V>>,
    per_ip: HashMap<IpAddr, usize>,
}

impl<V> Buffers<V> {
    /// A table of `capacity` bytes, at most `per_source` of them for one address.
    pub fn new(capacity: usize, per_source: usize) -> Buffers<V> {
        Buffers {
            capacity,
            per_source: per_source.min(capacity),
            next: 0,
            total: 0,
            entries: HashMap::new(),
            per_ip: HashMap::new(),
        }
    }

    /// A new connection from `source`, holding nothing yet.
    pub fn open(&mut self, source: IpAddr, value: V) -> ShareId {
        let id = ShareId(self.next);
        self.next += 1;
        self.entries.insert(
            id,
            Entry {
                source,
                bytes: 0,
                value,
            },
        );
        id
    }

    /// Sets what `id` holds to `bytes`. Less is always taken. More is refused when it would
    /// take the address past its share; when it would take the table past its capacity, the
    /// biggest shares of the address holding the most are taken away (`id` itself never) and
    /// their values returned, for the caller to close them.
    pub fn hold(&mut self, id: ShareId, bytes: usize) -> Result<Vec<V>, Refused> {
        let (source, old) = match self.entries.get(&id) {
            Some(entry) => (entry.source, entry.bytes),
            // A closed share holds nothing, and may go on holding nothing (its last words).
            None if bytes == 0 => return Ok(Vec::new()),
            None => return Err(Refused::Evicted),
        };
        if bytes > old && self.held_by(source) - old + bytes > self.per_source {
            return Err(Refused::Address);
        }
        let mut evicted = Vec::new();
        while bytes > old && self.total - old + bytes > self.capacity {
            let Some(victim) = self.victim(id) else { break };
            evicted.extend(self.close(victim));
        }
        self.set(id, source, old, bytes);
        Ok(evicted)
    }

    /// Ends `id`'s share; returns its value if it still had one.
    pub fn close(&mut self, id: ShareId) -> Option<V> {
        let entry = self.entries.get(&id)?;
        let (source, bytes) = (entry.source, entry.bytes);
        self.set(id, source, bytes, 0);
        self.entries.remove(&id).map(|e| e.value)
    }

    /// Counted bytes `source` holds.
    pub fn held_by(&self, source: IpAddr) -> usize {
        self.per_ip.get(&source).copied().unwrap_or(0)
    }

    /// Counted bytes held in all.
    pub fn total(&self) -> usize {
        self.total
    }

    fn set(&mut self, id: ShareId, source: IpAddr, old: usize, bytes: usize) {
        if let Some(entry) = self.entries.get_mut(&id) {
            entry.bytes = bytes;
        }
        self.total = self.total - old + bytes;
        let held = self.per_ip.entry(source).or_insert(0);
        *held = *held - old + bytes;
        if *held == 0 {
            self.per_ip.remove(&source);
        }
    }

    /// The biggest share (other than `except`) of the address holding the most; ties go to the
    /// oldest share.
    fn victim(&self, except: ShareId) -> Option<ShareId> {
        let candidates = || {
            self.entries
                .iter()
                .filter(move |(id, e)| **id != except && e.bytes > 0)
        };
        let most = candidates().map(|(_, e)| self.held_by(e.source)).max()?;
        candidates()
            .filter(|(_, e)| self.held_by(e.source) == most)
            .max_by_key(|(id, e)| (e.bytes, std::cmp::Reverse(**id)))
            .map(|(id, _)| *id)
    }
}

/// A [`Buffers`] table shared by a node's connections; a connection whose bytes were taken is
/// told through its [`Share`].
#[derive(Debug, Clone)]
pub struct BufferTable {
    inner: Arc<Mutex<Buffers<CancellationToken>>>,
}

impl BufferTable {
    /// A table of `capacity` counted bytes, at most `per_source` for one address.
    pub fn new(capacity: usize, per_source: usize) -> BufferTable {
        BufferTable {
            inner: Arc::new(Mutex::new(Buffers::new(capacity, per_source))),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Buffers<CancellationToken>> {
        // The table is consistent after every call, so a panic elsewhere cannot spoil it.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A share for a new connection from `source`.
    pub fn open(&self, source: IpAddr) -> Share {
        let evicted = CancellationToken::new();
        let id = self.lock().open(source, evicted.clone());
        Share {
            table: self.clone(),
            id,
            evicted,
            held: AtomicUsize::new(0),
        }
    }

    /// Counted bytes `source` holds.
    pub fn held_by(&self, source: IpAddr) -> usize {
        self.lock().held_by(source)
    }

    /// Counted bytes held in all.
    pub fn total(&self) -> usize {
        self.lock().total()
    }
}

/// A connection's share of a [`BufferTable`]; given back when dropped.
#[derive(Debug)]
pub struct Share {
    table: BufferTable,
    id: ShareId,
    evicted: CancellationToken,
    /// What the table last took for this share: a connection holds the same bytes again
    /// after most lines and writes, and that needs no lock on the node-wide table.
    held: AtomicUsize,
}

impl Share {
    /// Sets the bytes this connection buffers (the first [`FREE_BYTES`] of each kind are
    /// free: the caller counts only what is past them). Refused when the address holds its
    /// share or this connection's bytes were taken for another's.
    pub fn hold(&self, bytes: usize) -> Result<(), Refused> {
        if bytes == self.held.load(Ordering::Relaxed) && !self.is_evicted() {
            return Ok(());
        }
        let evicted = self.table.lock().hold(self.id, bytes)?;
        self.held.store(bytes, Ordering::Relaxed);
        for victim in &evicted {
            victim.cancel();
        }
        if !evicted.is_empty() {
            tracing::info!(
                closed = evicted.len(),
                "the node's buffers are full: closed the biggest connections of the address \
                 holding the most"
            );
        }
        Ok(())
    }

    /// Completes once this connection's bytes were taken for another's: it is closed.
    pub fn evicted(&self) -> WaitForCancellationFuture<'_> {
        self.evicted.cancelled()
    }

    /// Whether this connection's bytes were taken for another's.
    pub fn is_evicted(&self) -> bool {
        self.evicted.is_cancelled()
    }
}

impl Drop for Share {
    fn drop(&mut self) {
        self.table.lock().close(self.id);
    }
}

/// Bytes of a buffer of `capacity` that count against the budget: what is past [`FREE_BYTES`].
pub fn counted(capacity: usize) -> usize {
    capacity.saturating_sub(FREE_BYTES)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([127, 0, 0, last])
    }

    #[test]
    fn an_address_past_its_share_is_refused_and_others_are_not() {
        let mut table = Buffers::new(100, 10);
        let a = table.open(ip(2), 'a');
        let b = table.open(ip(2), 'b');
        let c = table.open(ip(3), 'c');
        assert_eq!(table.hold(a, 6), Ok(vec![]));
        assert_eq!(table.hold(b, 5), Err(Refused::Address));
        assert_eq!(table.hold(b, 4), Ok(vec![]));
        assert_eq!(table.hold(c, 10), Ok(vec![]));
        // Less is always taken, and frees the address's room.
        assert_eq!(table.hold(a, 1), Ok(vec![]));
        assert_eq!(table.hold(b, 9), Ok(vec![]));
        assert_eq!((table.held_by(ip(2)), table.total()), (10, 20));
    }

    #[test]
    fn a_full_table_takes_the_biggest_share_of_the_biggest_holder() {
        let mut table = Buffers::new(20, 12);
        let honest = table.open(ip(9), "honest");
        let small = table.open(ip(2), "attacker, small");
        let big = table.open(ip(2), "attacker, big");
        let newcomer = table.open(ip(7), "newcomer");
        table.hold(honest, 7).unwrap();
        table.hold(small, 3).unwrap();
        table.hold(big, 9).unwrap();
        assert_eq!(table.hold(newcomer, 4), Ok(vec!["attacker, big"]));
        assert_eq!(table.total(), 14);
        assert_eq!(table.held_by(ip(9)), 7, "the honest share stays");
        // The closed share can hold nothing more; giving it back is harmless.
        assert_eq!(table.hold(big, 1), Err(Refused::Evicted));
        assert_eq!(table.hold(big, 0), Ok(vec![]));
        assert_eq!(table.close(big), None);
        assert_eq!(table.total(), 14);
    }

    #[test]
    fn the_one_asking_is_never_its_own_victim() {
        let mut table = Buffers::new(10, 10);
        let a = table.open(ip(2), 'a');
        let c = table.open(ip(3), 'c');
        table.hold(a, 6).unwrap();
        table.hold(c, 3).unwrap();
        let b = table.open(ip(2), 'b');
        // `b`'s own address holds the most: it loses its other share, not `b`.
        assert_eq!(table.hold(b, 4), Ok(vec!['a']));
        assert_eq!((table.total(), table.held_by(ip(3))), (7, 3));
    }

    #[test]
    fn closing_gives_every_byte_back() {
        let mut table = Buffers::new(100, 50);
        let a = table.open(ip(2), 'a');
        let b = table.open(ip(3), 'b');
        table.hold(a, 30).unwrap();
        table.hold(b, 40).unwrap();
        assert_eq!(table.close(a), Some('a'));
        assert_eq!(table.close(b), Some('b'));
        assert_eq!(
            (table.total(), table.held_by(ip(2)), table.held_by(ip(3))),
            (0, 0, 0)
        );
    }

    #[test]
    fn a_shared_table_tells_the_connection_whose_bytes_it_took() {
        let table = BufferTable::new(10, 8);
        let attacker = table.open(ip(2));
        let honest = table.open(ip(3));
        attacker.hold(8).unwrap();
        honest.hold(5).unwrap();
        assert!(attacker.evicted.is_cancelled() && !honest.evicted.is_cancelled());
        assert_eq!(attacker.hold(1), Err(Refused::Evicted));
        drop(attacker);
        assert_eq!(table.total(), 5);
        drop(honest);
        assert_eq!(table.total(), 0);
    }
}
