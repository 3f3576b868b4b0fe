//! What keeps one misbehaving peer from hurting everyone else: bans by network address for
//! provably invalid data, the inbound connection slots (a cap per address, and the longest-idle
//! connection of the biggest holder closed when a new one needs room: [`daemon::slots`]), the
//! budget of buffered bytes (a share per address, [`crate::buffers`]), the idle timeout, the
//! list of peers this node refuses (the test-only network split), and the token bucket that
//! paces each connection.
//!
//! Bans go by IP address, not by the node id a peer proves in its handshake: a new id costs
//! nothing. On one machine every honest node connects from 127.0.0.1, so `monkey-attack` binds another
//! loopback address (127.0.0.2) by default and a ban does not cut a node off from its honest
//! neighbours.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

pub use daemon::slots::Slot;
use daemon::slots::SlotTable;

use crate::buffers::{BufferTable, MAX_BUFFERED, MAX_BUFFERED_PER_IP, Share};
use protocol::AccountId;

/// Most inbound connections served at once (peers, shops, visualizers): each costs a task and
/// up to one line of buffer, so this bounds memory. A new connection past it closes the
/// longest-idle connection of the address holding the most.
pub const MAX_INBOUND: usize = 256;
/// Most inbound connections from one IP address, so one host cannot take every slot: a new one
/// past it closes that address's own longest-idle connection. Thirty nodes, their shops and a
/// visualizer on one machine stay well under it.
pub const MAX_INBOUND_PER_IP: usize = 64;
/// How long an address that sent provably invalid data is refused.
pub const BAN_DURATION: Duration = Duration::from_secs(60);
/// Most banned addresses remembered; the oldest ban goes first when full.
pub const MAX_BANS: usize = 4096;
/// Messages a connection may send per second on average: far above what an honest peer or
/// shop sends, low enough that a flood of duplicates costs the node little.
pub const MESSAGES_PER_SECOND: f64 = 2000.0;
/// Messages a connection may send in a burst before it is paced.
pub const MESSAGE_BURST: f64 = 4000.0;
/// Chain requests (`D`) a connection may send per second on average: each is answered with up to
/// 500 blocks, so it is the most expensive message to answer. Syncing 10,000 blocks takes 20.
pub const GETBLOCKS_PER_SECOND: f64 = 100.0;
/// Chain requests in a burst.
pub const GETBLOCKS_BURST: f64 = 200.0;

/// The shared state of every connection's guard.
#[derive(Debug, Clone)]
pub struct Guard {
    inner: Arc<Mutex<Inner>>,
    refuse_file: Option<PathBuf>,
    slots: SlotTable,
    buffers: BufferTable,
    idle_timeout: Duration,
}

#[derive(Debug, Default)]
struct Inner {
    bans: HashMap<IpAddr, Instant>,
    refused: HashSet<AccountId>,
}

/// Why a new connection is turned away.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The address is banned for a while.
    Banned(Duration),
}

impl Guard {
    /// A guard; `refuse_file` lists peer ids (hex, one per line) this node will not talk to;
    /// `idle_timeout` is how long a client or subscriber may stay silent (see
    /// [`crate::conn::IDLE_TIMEOUT`]).
    pub fn new(refuse_file: Option<PathBuf>, idle_timeout: Duration) -> Guard {
        let guard = Guard {
            inner: Arc::default(),
            refuse_file,
            slots: SlotTable::new(MAX_INBOUND, MAX_INBOUND_PER_IP),
            buffers: BufferTable::new(MAX_BUFFERED, MAX_BUFFERED_PER_IP),
            idle_timeout,
        };
        guard.reload_refused();
        guard
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Admits a new inbound connection from `ip` unless it is banned. There is always room: if
    /// there was none, another connection was told to close ([`daemon::slots`]).
    pub fn admit(&self, ip: IpAddr, now: Instant) -> Result<Slot, Refusal> {
        {
            let mut inner = self.lock();
            if let Some(until) = inner.bans.get(&ip).copied() {
                if until > now {
                    return Err(Refusal::Banned(until - now));
                }
                inner.bans.remove(&ip);
            }
        }
        Ok(self.slots.admit(ip))
    }

    /// A share of the node's buffers for a connection (inbound or outbound) with `ip`.
    pub fn buffers(&self, ip: IpAddr) -> Share {
        self.buffers.open(ip)
    }

    /// How long a client or subscriber may stay silent before it is closed.
    pub fn idle_timeout(&self) -> Duration {
        self.idle_timeout
    }

    /// Bans `ip` for [`BAN_DURATION`]; returns true when it was not banned already (so the
    /// caller logs a ban once).
    pub fn ban(&self, ip: IpAddr, now: Instant) -> bool {
        let mut inner = self.lock();
        let fresh = inner.bans.get(&ip).is_none_or(|until| *until <= now);
        if inner.bans.len() >= MAX_BANS && !inner.bans.contains_key(&ip) {
            inner.bans.retain(|_, until| *until > now);
            if inner.bans.len() >= MAX_BANS
                && let Some(oldest) = inner
                    .bans
                    .iter()
                    .min_by_key(|(_, u)| **u)
                    .map(|(ip, _)| *ip)
            {
                inner.bans.remove(&oldest);
            }
        }
        inner.bans.insert(ip, now + BAN_DURATION);
        fresh
    }

    /// Whether this node refuses to talk to peer `id`.
    pub fn is_refused(&self, id: &AccountId) -> bool {
        self.lock().refused.contains(id)
    }

    /// Reads the refuse file again (the peers task does, every second). A missing or unreadable
    /// file refuses nobody; a line that is not an id is skipped.
    pub fn reload_refused(&self) {
        let Some(path) = &self.refuse_file else {
            return;
        };
        let refused = read_ids(path);
        let mut inner = self.lock();
        if inner.refused != refused {
            tracing::info!(count = refused.len(), file = %path.display(), "refused peers changed");
            inner.refused = refused;
        }
    }
}

fn read_ids(path: &Path) -> HashSet<AccountId> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|line| line.trim().parse().ok())
        .collect()
}

/// A token bucket: `rate` tokens a second, at most `burst` saved up.
#[derive(Debug, Clone)]
pub struct Bucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl Bucket {
    /// A full bucket.
    pub fn new(rate: f64, burst: f64, now: Instant) -> Bucket {
        Bucket {
            rate,
            burst,
            tokens: burst,
            last: now,
        }
    }

    /// Takes one token; returns how long to wait first when there is none (the token is taken
    /// either way, so waiting that long and going on keeps the average rate).
    pub fn take(&mut self, now: Instant) -> Duration {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst) - 1.0;
        if self.tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-self.tokens / self.rate)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bans_expire_and_slots_are_counted_per_address() {
        let guard = Guard::new(None, Duration::from_secs(60));
        let now = Instant::now();
        let a: IpAddr = "127.0.0.2".parse().unwrap();
        let b: IpAddr = "127.0.0.1".parse().unwrap();
        assert!(guard.ban(a, now));
        assert!(!guard.ban(a, now), "a second ban is not news");
        assert!(matches!(guard.admit(a, now), Err(Refusal::Banned(_))));
        assert!(guard.admit(b, now).is_ok(), "other addresses are served");
        assert!(guard.admit(a, now + BAN_DURATION).is_ok(), "bans expire");

        let slots: Vec<Slot> = (0..MAX_INBOUND_PER_IP)
            .map(|_| guard.admit(b, now).unwrap())
            .collect();
        assert!(slots.iter().all(|s| !s.is_evicted()));
        let one_more = guard.admit(b, now).unwrap();
        assert!(
            slots[0].is_evicted(),
            "past its share, an address loses its oldest"
        );
        assert_eq!(guard.slots.held_by(b), MAX_INBOUND_PER_IP);
        drop((slots, one_more));
        assert_eq!(guard.slots.held_by(b), 0, "slots come back when dropped");
    }

    #[test]
    fn a_bucket_paces_to_its_rate_after_the_burst() {
        let now = Instant::now();
        let mut bucket = Bucket::new(10.0, 5.0, now);
        for _ in 0..5 {
            assert_eq!(bucket.take(now), Duration::ZERO);
        }
        let wait = bucket.take(now);
        assert!(wait > Duration::from_millis(90) && wait <= Duration::from_millis(100));
        assert_eq!(bucket.take(now + Duration::from_secs(1)), Duration::ZERO);
    }

    #[test]
    fn the_refuse_file_is_read_again_on_reload() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("refuse");
        let id = protocol::Keypair::from_seed([5; 32]).account();
        let guard = Guard::new(Some(path.clone()), Duration::from_secs(60));
        assert!(!guard.is_refused(&id), "a missing file refuses nobody");
        std::fs::write(&path, format!("{id}\nnot an id\n")).unwrap();
        guard.reload_refused();
        assert!(guard.is_refused(&id));
        std::fs::write(&path, "").unwrap();
        guard.reload_refused();
        assert!(!guard.is_refused(&id));
    }
}
