//! The tracker's table of nodes: who reported, from where, and when; which of them are active
//! (`A`) and which are removed (`R`).
//!
//! This is plain data with the clock passed in, so its rules are tested without sockets or
//! sleeps. A node is listed only once it *proved* its id at the address it advertises: a
//! report hands back a [`Check`] for `reach` to run off the request path, and
//! [`Registry::checked`] records its result. Status changes happen in [`Registry::sweep`], which the server calls from a timer
//! and before every answer, and each change is logged exactly once: a heartbeat is not news.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use protocol::AccountId;
use protocol::hash::BlockHash;
use protocol::tracker::{
    Leave, NodeInfo, NodeStatus, Report, Topology, TrackerError, check_listable,
};
use protocol::wire::ErrorCode;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::Config;

/// Why a report or a leave was refused. Each has the short code sent back in `E`.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub(crate) enum Refusal {
    /// The signature or the address is wrong.
    #[error(transparent)]
    Invalid(#[from] TrackerError),
    /// The load is not a number the topology can carry (JSON has no infinity or NaN).
    #[error("load {0} is not a finite number")]
    BadLoad(f32),
    /// The timestamp is not after the last one accepted for this node.
    #[error("timestamp {got} is not after {last}, the last one accepted for this node")]
    Replayed {
        /// The last accepted timestamp.
        last: u64,
        /// The refused one.
        got: u64,
    },
    /// The timestamp is too far from the tracker's clock.
    #[error(
        "timestamp {got} is {skew_ms} ms away from the tracker's clock {now}; at most {max_ms} ms is allowed"
    )]
    ClockSkew {
        /// The refused timestamp.
        got: u64,
        /// The tracker's clock.
        now: u64,
        /// How far apart they are.
        skew_ms: u64,
        /// The most allowed.
        max_ms: u64,
    },
    /// The table is full of active nodes and this id is not in it.
    #[error("the tracker already knows {0} active nodes and takes no new ones")]
    Full(usize),
    /// This address brought too many new ids lately.
    #[error("too many new nodes from {0} in the last minute; try again later")]
    TooManyNew(IpAddr),
    /// This connection already reports for another node.
    #[error("this connection reports for node {0}; a node reports on its own connection")]
    WrongConnection(String),
    /// This source address already reports for as many ids as it may.
    #[error("{0} already reports for {1} nodes, the most one address may")]
    TooManyActive(IpAddr, usize),
}

impl Refusal {
    /// The short code sent back in `E`.
    pub(crate) fn code(&self) -> ErrorCode {
        match self {
            Refusal::Invalid(TrackerError::BadSignature) => ErrorCode::BadSignature,
            Refusal::Invalid(TrackerError::BadAddress(_) | TrackerError::Unlistable { .. }) => {
                ErrorCode::BadAddress
            }
            Refusal::BadLoad(_) => ErrorCode::BadReport,
            Refusal::Replayed { .. } => ErrorCode::Replayed,
            Refusal::ClockSkew { .. } => ErrorCode::ClockSkew,
            Refusal::Full(_) => ErrorCode::TrackerFull,
            Refusal::TooManyNew(_) => ErrorCode::TooManyNew,
            Refusal::WrongConnection(_) => ErrorCode::WrongConnection,
            Refusal::TooManyActive(..) => ErrorCode::TooManyActive,
        }
    }
}

/// The state every connection shares: the table, behind a lock held only for quick updates.
pub(crate) type Shared = Arc<Mutex<Registry>>;

/// Takes the table's lock. A panic while holding it cannot leave the table half-updated in a way
/// that matters more than stopping the tracker would, so a poisoned lock is used as it is.
pub(crate) fn lock(registry: &Shared) -> MutexGuard<'_, Registry> {
    registry.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Checks what can be checked without the table: the address, the signature (unless `signed`
/// says this connection already verified one for this node and address) and the load. Kept
/// apart from [`Registry::report`] so that the signature is verified outside the lock.
pub(crate) fn verify_report(report: &Report, signed: bool) -> Result<(), Refusal> {
    report.check_addr()?;
    if !signed {
        report.check_signature()?;
    }
    // A load of 1e300 parses into an f32 infinity, which serde_json would write as `null` in
    // every later `T`, breaking every client's parse: refuse it here.
    if !report.load.is_finite() {
        return Err(Refusal::BadLoad(report.load));
    }
    Ok(())
}

/// Checks a leave's signature, outside the lock.
pub(crate) fn verify_leave(leave: &Leave) -> Result<(), Refusal> {
    Ok(leave.check()?)
}

/// Sorts a topology's nodes by address, then id, so the output is stable.
pub(crate) fn sort_nodes(nodes: &mut [NodeInfo]) {
    // Ids are unique, so an unstable sort gives the same order.
    nodes.sort_unstable_by(|a, b| a.addr.cmp(&b.addr).then(a.id.cmp(&b.id)));
}

/// One node as the tracker remembers it.
#[derive(Debug, Clone)]
struct Entry {
    addr: String,
    /// The newest timestamp accepted from this node, report or leave; older ones are replays.
    last_timestamp: u64,
    /// When its last report arrived, by the tracker's monotonic clock.
    last_seen: Instant,
    /// When it was marked removed (it left, or went silent), if it is removed.
    removed_at: Option<Instant>,
    tip_height: u64,
    tip_hash: BlockHash,
    load: f32,
    difficulty: u32,
    /// Where its reports come from, for the cap on ids per source address.
    source: IpAddr,
    /// Whether it proved its id at `addr`: only then is it listed. Cleared when it moves or
    /// comes back after being removed.
    proven: bool,
    /// Whether a check of its address is running.
    checking: bool,
    /// Failed checks in a row.
    failed_checks: u32,
    /// No check starts before this.
    next_check: Instant,
}

/// A check of a node's address to run, off the request path (see `reach`): it holds one of
/// the [`MAX_CONCURRENT_CHECKS`] permits until it is done.
#[derive(Debug)]
pub(crate) struct Check {
    /// The node.
    pub(crate) id: AccountId,
    /// The address it advertises, to dial.
    pub(crate) addr: String,
    /// Its share of the concurrency cap.
    pub(crate) permit: OwnedSemaphorePermit,
}

/// The most address checks running at once. Each is one short connection bounded by a timeout,
/// so this bounds the tracker's sockets and tasks however many ids report at once; a report that
/// finds no permit free gets its check with a later report.
pub(crate) const MAX_CONCURRENT_CHECKS: usize = 64;
/// The pause before checking again an address that failed its check; it doubles with each
/// failure in a row (a node reports before its listener is up, or for a moment cannot answer).
const CHECK_BACKOFF: Duration = Duration::from_millis(500);
/// The longest pause between checks of an address that keeps failing: an id that never answers
/// costs one connection this often, and a node that starts answering is listed within this.
const MAX_CHECK_BACKOFF: Duration = Duration::from_secs(30);

/// What is kept about a forgotten node: its last timestamp, until any message it signed before
/// is too old to pass the clock-skew check anyway. Without it, a report captured a minute ago
/// could bring a node back right after it was forgotten.
#[derive(Debug, Clone, Copy)]
struct Tombstone {
    last_timestamp: u64,
    until: Instant,
}

/// The table of nodes.
#[derive(Debug)]
pub(crate) struct Registry {
    silent_after: Duration,
    forget_after: Duration,
    max_nodes: usize,
    max_clock_skew: Duration,
    nodes: HashMap<AccountId, Entry>,
    tombstones: HashMap<AccountId, Tombstone>,
    max_new_ids_per_minute: u32,
    /// Per source address: new ids it may still bring (refilled at the per-minute rate), and when
    /// that was last worked out.
    new_ids: HashMap<IpAddr, (f64, Instant)>,
    /// The membership version (see [`Topology::version`]): bumped by [`Registry::changed`].
    version: u64,
    /// When the table was last swept: at most every [`SWEEP_EVERY`], not on every report.
    last_sweep: Option<Instant>,
    /// The last encoded whole table (see `connection::whole_table`).
    pub(crate) table_cache: Option<TableCache>,
    /// The tracker's own listening address, which no node may advertise.
    pub(crate) own_addr: Option<SocketAddr>,
    max_active_per_address: usize,
    check_reachability: bool,
    /// The permits of the address checks running.
    checks: Arc<Semaphore>,
}

/// An encoded `T` line of the whole table, with its membership version and the time it was
/// made at.
#[derive(Debug)]
pub(crate) struct TableCache {
    pub(crate) version: u64,
    pub(crate) at: Instant,
    pub(crate) line: bytes::Bytes,
    /// Whether a newer encoding is already being made in the background.
    pub(crate) refreshing: bool,
}

/// How often the table is swept for silent nodes at most. With a thousand nodes reporting every
/// second, sweeping on every report would walk the table a thousand times a second.
const SWEEP_EVERY: Duration = Duration::from_millis(20);

/// Most source addresses whose new-id budget is remembered; past it the fullest budgets (the
/// addresses that brought nothing new for longest) are forgotten first.
const MAX_TRACKED_SOURCES: usize = 4096;

impl Registry {
    /// An empty table with the timings and limits of `config`.
    pub(crate) fn new(config: &Config) -> Registry {
        Registry {
            silent_after: config.silent_after,
            forget_after: config.forget_after,
            max_nodes: config.max_nodes,
            max_clock_skew: config.max_clock_skew,
            nodes: HashMap::new(),
            tombstones: HashMap::new(),
            max_new_ids_per_minute: config.max_new_ids_per_minute,
            new_ids: HashMap::new(),
            version: rand::random(),
            last_sweep: None,
            table_cache: None,
            own_addr: None,
            max_active_per_address: config.max_active_per_address,
            check_reachability: config.check_reachability,
            checks: Arc::new(Semaphore::new(MAX_CONCURRENT_CHECKS)),
        }
    }

    /// The current membership version.
    pub(crate) fn version(&self) -> u64 {
        self.version
    }

    /// Notes that the membership changed: every node gets the whole table with its next report.
    fn changed(&mut self) {
        self.version = self.version.wrapping_add(1);
    }

    /// Records a report already passed through [`verify_report`], from `source`: the node is
    /// active again, with the address and stats it reported. `now` is the monotonic clock,
    /// `wall_ms` the wall clock.
    ///
    /// A new id is taken when there is room, or when a removed node can make room (the one
    /// removed longest ago goes); an active node is never pushed out. Each source address may
    /// bring [`Config::max_new_ids_per_minute`] new ids a minute, so a flood of fake
    /// registrations from one host fills neither the table nor the log, and report for at most
    /// [`Config::max_active_per_address`] ids at once. An address no peer could use (see
    /// [`check_listable`]) is refused.
    ///
    /// A node is listed once it proved its id at its address: the [`Check`] returned, when one
    /// is due, is for the caller to run (see `reach`) and to report with [`Registry::checked`].
    pub(crate) fn report(
        &mut self,
        report: &Report,
        source: IpAddr,
        now: Instant,
        wall_ms: u64,
    ) -> Result<Option<Check>, Refusal> {
        self.sweep(now);
        check_listable(&report.addr, self.own_addr)?;
        self.check_timestamp(&report.id, report.timestamp, wall_ms)?;
        // Whether the id is known, and then whether it already counts against `source`.
        let known = self
            .nodes
            .get(&report.id)
            .map(|e| e.removed_at.is_none() && e.source == source);
        if known != Some(true) {
            self.check_source(source)?;
        }
        if known.is_none() {
            self.make_room(now)?;
            self.take_new_id(source, now)?;
        }
        let trusted = !self.check_reachability;
        match self.nodes.get_mut(&report.id) {
            Some(entry) => {
                let moved = entry.addr != report.addr;
                let back = entry.removed_at.is_some();
                if back {
                    let node = report.id.short();
                    tracing::info!(node, addr = %report.addr, "node active again");
                } else if moved {
                    let node = report.id.short();
                    tracing::info!(node, from = %entry.addr, to = %report.addr, "node moved");
                }
                if moved || back {
                    self.version = self.version.wrapping_add(1);
                    entry.addr.clone_from(&report.addr);
                    // Listed again only once it proves itself at the address it gives now.
                    entry.proven = trusted;
                    entry.failed_checks = 0;
                    entry.next_check = now;
                }
                entry.source = source;
                entry.last_timestamp = report.timestamp;
                entry.last_seen = now;
                entry.removed_at = None;
                entry.tip_height = report.tip_height;
                entry.tip_hash = report.tip_hash;
                entry.load = report.load;
                entry.difficulty = report.difficulty;
            }
            None => {
                tracing::info!(node = report.id.short(), addr = %report.addr, "node joined");
                self.changed();
                self.tombstones.remove(&report.id);
                self.nodes.insert(
                    report.id,
                    Entry {
                        addr: report.addr.clone(),
                        last_timestamp: report.timestamp,
                        last_seen: now,
                        removed_at: None,
                        tip_height: report.tip_height,
                        tip_hash: report.tip_hash,
                        load: report.load,
                        difficulty: report.difficulty,
                        source,
                        proven: trusted,
                        checking: false,
                        failed_checks: 0,
                        next_check: now,
                    },
                );
            }
        }
        Ok(self.due_check(&report.id, now))
    }

    /// Refuses one more id from `source` when it already reports for the most it may.
    fn check_source(&self, source: IpAddr) -> Result<(), Refusal> {
        let active = self
            .nodes
            .values()
            .filter(|e| e.removed_at.is_none() && e.source == source)
            .count();
        if active >= self.max_active_per_address {
            return Err(Refusal::TooManyActive(source, self.max_active_per_address));
        }
        Ok(())
    }

    /// A check of `id`'s address, when it is not proven, none is running, its backoff is over
    /// and a permit is free.
    fn due_check(&mut self, id: &AccountId, now: Instant) -> Option<Check> {
        let entry = self.nodes.get_mut(id)?;
        if entry.proven || entry.checking || now < entry.next_check {
            return None;
        }
        let permit = self.checks.clone().try_acquire_owned().ok()?;
        entry.checking = true;
        Some(Check {
            id: *id,
            addr: entry.addr.clone(),
            permit,
        })
    }

    /// Records the result of a [`Check`] of `id` at `addr`: proven, the node is listed (if it
    /// still advertises that address); failed, it is checked again after a backoff.
    pub(crate) fn checked(&mut self, id: &AccountId, addr: &str, proven: bool, now: Instant) {
        let Some(entry) = self.nodes.get_mut(id) else {
            return;
        };
        entry.checking = false;
        if entry.addr != addr {
            // It moved meanwhile: the new address gets its own check.
            return;
        }
        if proven {
            if !entry.proven {
                entry.proven = true;
                entry.failed_checks = 0;
                tracing::info!(node = id.short(), %addr, "node proved its address; listed");
                self.changed();
            }
        } else {
            entry.failed_checks = entry.failed_checks.saturating_add(1);
            let backoff = CHECK_BACKOFF
                .saturating_mul(1 << (entry.failed_checks - 1).min(16))
                .min(MAX_CHECK_BACKOFF);
            entry.next_check = now + backoff;
        }
    }

    /// Records a leave already passed through [`verify_leave`]: the node is removed at once. A
    /// leave from a node the tracker does not know changes nothing.
    pub(crate) fn leave(
        &mut self,
        leave: &Leave,
        now: Instant,
        wall_ms: u64,
    ) -> Result<(), Refusal> {
        self.sweep(now);
        self.check_timestamp(&leave.id, leave.timestamp, wall_ms)?;
        if let Some(entry) = self.nodes.get_mut(&leave.id) {
            entry.last_timestamp = leave.timestamp;
            if entry.removed_at.is_none() {
                entry.removed_at = Some(now);
                tracing::info!(
                    node = leave.id.short(),
                    addr = %entry.addr,
                    reason = "left",
                    "node marked removed"
                );
                self.changed();
            }
        }
        Ok(())
    }

    /// The topology as of `now`, sorted by address (then id) so the output is stable.
    #[cfg(test)]
    pub(crate) fn topology(&mut self, now: Instant) -> Topology {
        let mut topology = self.snapshot(now);
        sort_nodes(&mut topology.nodes);
        topology
    }

    /// The topology as of `now`, in no particular order: [`sort_nodes`] sorts it once the lock
    /// is released.
    pub(crate) fn snapshot(&mut self, now: Instant) -> Topology {
        self.sweep(now);
        let nodes: Vec<NodeInfo> = self
            .nodes
            .iter()
            // Unproven ids are nobody's business: no peer may be sent to them.
            .filter(|(_, entry)| entry.proven)
            .map(|(id, entry)| NodeInfo {
                id: *id,
                addr: entry.addr.clone(),
                status: if entry.removed_at.is_some() {
                    NodeStatus::R
                } else {
                    NodeStatus::A
                },
                last_seen_ms: u64::try_from(
                    now.saturating_duration_since(entry.last_seen).as_millis(),
                )
                .unwrap_or(u64::MAX),
                tip_height: entry.tip_height,
                tip_hash: entry.tip_hash,
                load: entry.load,
                difficulty: entry.difficulty,
            })
            .collect();
        Topology {
            nodes,
            version: Some(self.version),
            unchanged: false,
        }
    }

    /// Marks nodes silent for longer than `silent_after` removed, forgets nodes removed for
    /// `forget_after`, and drops tombstones that have served their time.
    pub(crate) fn sweep(&mut self, now: Instant) {
        if self
            .last_sweep
            .is_some_and(|last| now.saturating_duration_since(last) < SWEEP_EVERY && now >= last)
        {
            return;
        }
        self.last_sweep = Some(now);
        let mut forgotten = Vec::new();
        let mut changed = false;
        for (id, entry) in &mut self.nodes {
            if entry.removed_at.is_none()
                && now.saturating_duration_since(entry.last_seen) > self.silent_after
            {
                // Removed from the moment it went silent, so when it is forgotten does not depend
                // on how often the sweep runs.
                entry.removed_at = Some(entry.last_seen + self.silent_after);
                changed = true;
                tracing::info!(
                    node = id.short(),
                    addr = %entry.addr,
                    reason = "silent",
                    "node marked removed"
                );
            }
            if entry
                .removed_at
                .is_some_and(|removed| now.saturating_duration_since(removed) >= self.forget_after)
            {
                forgotten.push(*id);
            }
        }
        changed |= !forgotten.is_empty();
        if changed {
            self.changed();
        }
        for id in forgotten {
            if let Some(entry) = self.nodes.remove(&id) {
                tracing::info!(node = id.short(), addr = %entry.addr, "node forgotten");
                // Bounded like the table itself: past that, the clock-skew check is the only
                // guard against replays, as it is after a restart.
                if self.tombstones.len() < self.max_nodes {
                    let tombstone = Tombstone {
                        last_timestamp: entry.last_timestamp,
                        until: now + self.max_clock_skew,
                    };
                    self.tombstones.insert(id, tombstone);
                }
            }
        }
        self.tombstones.retain(|_, tombstone| tombstone.until > now);
    }

    /// Makes room for a new id: nothing to do below the cap; at it, forgets the node removed
    /// longest ago (keeping a tombstone against replays); refuses when every node is active.
    fn make_room(&mut self, now: Instant) -> Result<(), Refusal> {
        if self.nodes.len() < self.max_nodes {
            return Ok(());
        }
        let oldest_removed = self
            .nodes
            .iter()
            .filter_map(|(id, e)| e.removed_at.map(|at| (at, *id)))
            .min()
            .map(|(_, id)| id);
        let Some(id) = oldest_removed else {
            return Err(Refusal::Full(self.max_nodes));
        };
        if let Some(entry) = self.nodes.remove(&id) {
            self.changed();
            tracing::debug!(node = id.short(), "forgotten early to make room");
            let tombstone = Tombstone {
                last_timestamp: entry.last_timestamp,
                until: now + self.max_clock_skew,
            };
            self.tombstones.insert(id, tombstone);
        }
        Ok(())
    }

    /// Takes one new id from `source`'s budget, or refuses when it is spent.
    fn take_new_id(&mut self, source: IpAddr, now: Instant) -> Result<(), Refusal> {
        let per_minute = f64::from(self.max_new_ids_per_minute);
        if !self.new_ids.contains_key(&source) && self.new_ids.len() >= MAX_TRACKED_SOURCES {
            let fullest = self
                .new_ids
                .iter()
                .max_by(|a, b| a.1.0.total_cmp(&b.1.0))
                .map(|(ip, _)| *ip);
            if let Some(ip) = fullest {
                self.new_ids.remove(&ip);
            }
        }
        let (tokens, last) = self.new_ids.entry(source).or_insert((per_minute, now));
        let refill = now.saturating_duration_since(*last).as_secs_f64() * per_minute / 60.0;
        *tokens = (*tokens + refill).min(per_minute);
        *last = now;
        if *tokens < 1.0 {
            return Err(Refusal::TooManyNew(source));
        }
        *tokens -= 1.0;
        Ok(())
    }

    /// How many nodes the table holds, active or removed.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.nodes.len()
    }

    fn check_timestamp(&self, id: &AccountId, timestamp: u64, wall_ms: u64) -> Result<(), Refusal> {
        let skew_ms = timestamp.abs_diff(wall_ms);
        let max_ms = u64::try_from(self.max_clock_skew.as_millis()).unwrap_or(u64::MAX);
        if skew_ms > max_ms {
            return Err(Refusal::ClockSkew {
                got: timestamp,
                now: wall_ms,
                skew_ms,
                max_ms,
            });
        }
        let last = self
            .nodes
            .get(id)
            .map(|entry| entry.last_timestamp)
            .or_else(|| {
                self.tombstones
                    .get(id)
                    .map(|tombstone| tombstone.last_timestamp)
            });
        match last {
            Some(last) if timestamp <= last => Err(Refusal::Replayed {
                last,
                got: timestamp,
            }),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use protocol::Keypair;

    const WALL: u64 = 1_700_000_000_000;
    const LOCAL: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

    fn config() -> Config {
        Config {
            silent_after: Duration::from_secs(5),
            forget_after: Duration::from_secs(60),
            max_nodes: 2,
            max_clock_skew: Duration::from_secs(300),
            // These tests are about the table's other rules; `reach_*` tests check addresses.
            check_reachability: false,
            ..Config::default()
        }
    }

    fn report(seed: u8, port: u16, timestamp: u64) -> Report {
        let key = Keypair::from_seed([seed; 32]);
        Report::sign(
            &key,
            format!("127.0.0.1:{port}"),
            timestamp,
            (7, BlockHash::ZERO),
            0.25,
            20,
        )
    }

    /// Reports nodes 1, 2 and 3 from one address, which it returns.
    fn report_three(registry: &mut Registry, t0: Instant) -> IpAddr {
        let flooder: IpAddr = "127.0.0.9".parse().unwrap();
        for seed in 1..=3 {
            let r = report(seed, 9000 + u16::from(seed), WALL);
            accepted(registry, &r, flooder, t0, WALL);
        }
        flooder
    }

    /// Reports `report` from `from` at `now` (the tracker's wall clock `wall`), which must be
    /// accepted; returns the address check it asks for, if any.
    fn accepted(
        registry: &mut Registry,
        report: &Report,
        from: IpAddr,
        now: Instant,
        wall: u64,
    ) -> Option<Check> {
        match registry.report(report, from, now, wall) {
            Ok(check) => check,
            Err(e) => panic!("report refused: {e}"),
        }
    }

    fn statuses(registry: &mut Registry, now: Instant) -> Vec<(String, NodeStatus)> {
        registry
            .topology(now)
            .nodes
            .into_iter()
            .map(|n| (n.addr, n.status))
            .collect()
    }

    #[test]
    fn a_silent_node_is_removed_then_forgotten_and_a_returning_one_is_active() {
        let t0 = Instant::now();
        let mut registry = Registry::new(&config());
        accepted(&mut registry, &report(1, 9000, WALL), LOCAL, t0, WALL);
        let topology = registry.topology(t0 + Duration::from_secs(2));
        assert_eq!(topology.nodes[0].status, NodeStatus::A);
        assert_eq!(topology.nodes[0].last_seen_ms, 2000);
        assert_eq!(topology.nodes[0].tip_height, 7);

        let silent = t0 + Duration::from_secs(6);
        assert_eq!(
            statuses(&mut registry, silent),
            [("127.0.0.1:9000".to_string(), NodeStatus::R)]
        );
        // Removed at t0 + 5 s, so forgotten at t0 + 65 s, however late the sweep runs.
        assert_eq!(
            registry.topology(t0 + Duration::from_secs(64)).nodes.len(),
            1
        );
        assert!(
            registry
                .topology(t0 + Duration::from_secs(66))
                .nodes
                .is_empty()
        );

        let back = t0 + Duration::from_secs(70);
        let returning = report(1, 9000, WALL + 70_000);
        accepted(&mut registry, &returning, LOCAL, back, WALL + 70_000);
        assert_eq!(
            statuses(&mut registry, back),
            [("127.0.0.1:9000".to_string(), NodeStatus::A)]
        );
    }

    #[test]
    fn replays_are_refused_even_after_the_node_is_forgotten() {
        let t0 = Instant::now();
        let mut registry = Registry::new(&config());
        accepted(&mut registry, &report(1, 9000, WALL), LOCAL, t0, WALL);
        let again = registry.report(&report(1, 9000, WALL), LOCAL, t0, WALL);
        assert_eq!(again.unwrap_err().code(), ErrorCode::Replayed);
        let leave = Leave::sign(&Keypair::from_seed([1; 32]), WALL);
        assert_eq!(
            registry.leave(&leave, t0, WALL).unwrap_err().code(),
            ErrorCode::Replayed
        );

        let later = t0 + Duration::from_secs(100);
        assert!(registry.topology(later).nodes.is_empty());
        let replay = registry.report(&report(1, 9000, WALL), LOCAL, later, WALL + 100_000);
        assert_eq!(replay.unwrap_err().code(), ErrorCode::Replayed);
        // Once its messages are too old for the clock check, the tombstone goes too.
        registry.sweep(later + Duration::from_secs(301));
        assert!(registry.tombstones.is_empty());
    }

    #[test]
    fn clock_skew_and_a_full_table_are_refused() {
        let t0 = Instant::now();
        let mut registry = Registry::new(&config());
        let future = registry.report(&report(1, 9000, WALL + 301_000), LOCAL, t0, WALL);
        assert_eq!(future.unwrap_err().code(), ErrorCode::ClockSkew);
        let past = registry.report(&report(1, 9000, WALL - 301_000), LOCAL, t0, WALL);
        assert_eq!(past.unwrap_err().code(), ErrorCode::ClockSkew);

        accepted(&mut registry, &report(1, 9001, WALL), LOCAL, t0, WALL);
        accepted(&mut registry, &report(2, 9002, WALL), LOCAL, t0, WALL);
        assert_eq!(
            registry
                .report(&report(3, 9003, WALL), LOCAL, t0, WALL)
                .unwrap_err()
                .code(),
            ErrorCode::TrackerFull
        );
        accepted(&mut registry, &report(2, 9002, WALL + 1), LOCAL, t0, WALL);
        assert_eq!(registry.len(), 2);
    }

    #[test]
    fn a_full_table_makes_room_from_removed_nodes_never_active_ones() {
        let t0 = Instant::now();
        let mut registry = Registry::new(&config());
        accepted(&mut registry, &report(1, 9001, WALL), LOCAL, t0, WALL);
        accepted(&mut registry, &report(2, 9002, WALL), LOCAL, t0, WALL);
        let later = t0 + Duration::from_secs(4);
        let still_there = report(2, 9002, WALL + 4000);
        accepted(&mut registry, &still_there, LOCAL, later, WALL + 4000);
        // Node 1 went silent and is removed; node 2 still reports.
        let t = t0 + Duration::from_secs(6);
        let newcomer = report(3, 9003, WALL + 6000);
        accepted(&mut registry, &newcomer, LOCAL, t, WALL + 6000);
        let addrs: Vec<_> = statuses(&mut registry, t)
            .into_iter()
            .map(|(a, _)| a)
            .collect();
        assert_eq!(addrs, ["127.0.0.1:9002", "127.0.0.1:9003"]);
        // The one pushed out cannot be replayed back in.
        let replay = registry.report(&report(1, 9001, WALL), LOCAL, t, WALL + 6000);
        assert_eq!(replay.unwrap_err().code(), ErrorCode::Replayed);
    }

    #[test]
    fn one_address_brings_only_so_many_new_ids_a_minute() {
        let t0 = Instant::now();
        let mut registry = Registry::new(&Config {
            max_nodes: 100,
            max_new_ids_per_minute: 3,
            ..config()
        });
        let flooder = report_three(&mut registry, t0);
        let fourth = registry.report(&report(4, 9004, WALL), flooder, t0, WALL);
        assert_eq!(fourth.unwrap_err().code(), ErrorCode::TooManyNew);
        // Known ids still report, other addresses still join, and the budget refills.
        accepted(&mut registry, &report(1, 9001, WALL + 1), flooder, t0, WALL);
        accepted(&mut registry, &report(5, 9005, WALL), LOCAL, t0, WALL);
        let t = t0 + Duration::from_secs(20);
        accepted(&mut registry, &report(4, 9004, WALL + 1), flooder, t, WALL);
    }

    #[test]
    fn a_leave_removes_at_once_and_the_output_is_sorted_by_address() {
        let t0 = Instant::now();
        let mut registry = Registry::new(&config());
        accepted(&mut registry, &report(1, 9002, WALL), LOCAL, t0, WALL);
        accepted(&mut registry, &report(2, 9001, WALL), LOCAL, t0, WALL);
        registry
            .leave(
                &Leave::sign(&Keypair::from_seed([1; 32]), WALL + 1),
                t0,
                WALL,
            )
            .unwrap();
        assert_eq!(
            statuses(&mut registry, t0),
            [
                ("127.0.0.1:9001".to_string(), NodeStatus::A),
                ("127.0.0.1:9002".to_string(), NodeStatus::R)
            ]
        );
        // Forgotten `forget_after` after the leave (t0 + 60 s), while the other node, silent
        // since t0 + 5 s, is still listed.
        assert_eq!(
            statuses(&mut registry, t0 + Duration::from_secs(61)),
            [("127.0.0.1:9001".to_string(), NodeStatus::R)]
        );
    }

    #[test]
    fn an_infinite_load_is_refused_before_it_can_break_the_topology() {
        let mut bad = report(1, 9000, WALL);
        bad.load = f32::INFINITY;
        // The load is not signed, so this still has a valid signature.
        assert_eq!(
            verify_report(&bad, false).unwrap_err().code(),
            ErrorCode::BadReport
        );
        assert_eq!(verify_report(&report(1, 9000, WALL), false), Ok(()));
    }

    fn checking_config() -> Config {
        Config {
            max_nodes: 100,
            max_active_per_address: 3,
            check_reachability: true,
            ..config()
        }
    }

    #[test]
    fn reach_a_node_is_listed_only_once_it_proved_its_address() {
        let t0 = Instant::now();
        let mut registry = Registry::new(&checking_config());
        let node = report(1, 9001, WALL);
        let check = registry
            .report(&node, LOCAL, t0, WALL)
            .unwrap()
            .expect("a check");
        assert_eq!((check.id, check.addr.as_str()), (node.id, "127.0.0.1:9001"));
        assert!(registry.topology(t0).nodes.is_empty());
        // The same node reporting again, its `n`th report since, by the tracker's clock `now`;
        // it asks for the address check it needs, if any.
        let again_at = |registry: &mut Registry, n: u64, now: Instant| {
            accepted(registry, &report(1, 9001, WALL + n), LOCAL, now, WALL)
        };
        // One check at a time, however often it reports.
        assert!(again_at(&mut registry, 1, t0).is_none());
        drop(check);
        // A failed check: not listed, and not checked again before the backoff.
        registry.checked(&node.id, &node.addr, false, t0);
        assert!(registry.topology(t0).nodes.is_empty());
        assert!(again_at(&mut registry, 2, t0).is_none());
        let later = t0 + CHECK_BACKOFF;
        assert!(again_at(&mut registry, 3, later).is_some());
        let version = registry.version();
        registry.checked(&node.id, &node.addr, true, later);
        assert_ne!(
            registry.version(),
            version,
            "listing a node changes the membership"
        );
        assert_eq!(
            statuses(&mut registry, later),
            [("127.0.0.1:9001".to_string(), NodeStatus::A)]
        );
        // Moving unlists it until the new address is proven.
        let new_address = report(1, 9002, WALL + 4);
        let moved = accepted(&mut registry, &new_address, LOCAL, later, WALL);
        assert!(moved.is_some());
        assert!(registry.topology(later).nodes.is_empty());
        // A late result for the old address proves nothing about the new one.
        registry.checked(&node.id, "127.0.0.1:9001", true, later);
        assert!(registry.topology(later).nodes.is_empty());
    }

    #[test]
    fn reach_checks_run_a_bounded_number_at_once() {
        let t0 = Instant::now();
        let mut registry = Registry::new(&Config {
            max_active_per_address: 1000,
            max_nodes: 1000,
            max_new_ids_per_minute: 1000,
            ..checking_config()
        });
        let mut running = Vec::new();
        for n in 0..(MAX_CONCURRENT_CHECKS as u16 + 10) {
            let mut seed = [7; 32];
            seed[..2].copy_from_slice(&n.to_le_bytes());
            let key = Keypair::from_seed(seed);
            let r = Report::sign(
                &key,
                format!("127.0.0.1:{}", 10_000 + n),
                WALL,
                (0, BlockHash::ZERO),
                0.0,
                20,
            );
            if let Some(check) = registry.report(&r, LOCAL, t0, WALL).unwrap() {
                running.push(check);
            }
        }
        assert_eq!(running.len(), MAX_CONCURRENT_CHECKS);
    }

    #[test]
    fn reach_one_address_reports_for_so_many_ids_and_unusable_addresses_are_refused() {
        let t0 = Instant::now();
        let mut registry = Registry::new(&checking_config());
        let flooder = report_three(&mut registry, t0);
        let fourth = registry.report(&report(4, 9004, WALL), flooder, t0, WALL);
        assert_eq!(fourth.unwrap_err().code(), ErrorCode::TooManyActive);
        // Its own ids report on; other addresses still join.
        accepted(&mut registry, &report(1, 9001, WALL + 1), flooder, t0, WALL);
        accepted(&mut registry, &report(4, 9004, WALL), LOCAL, t0, WALL);
        // Once one of its ids is removed, the address may bring another.
        registry
            .leave(
                &Leave::sign(&Keypair::from_seed([2; 32]), WALL + 1),
                t0,
                WALL,
            )
            .unwrap();
        accepted(&mut registry, &report(5, 9005, WALL), flooder, t0, WALL);

        registry.own_addr = Some("127.0.0.1:7070".parse().unwrap());
        for bad in [
            "0.0.0.0:22",
            "127.0.0.1:7070",
            "224.1.2.3:9000",
            "255.255.255.255:9000",
        ] {
            let key = Keypair::from_seed([6; 32]);
            let r = Report::sign(&key, bad.into(), WALL, (0, BlockHash::ZERO), 0.0, 20);
            assert_eq!(
                registry.report(&r, LOCAL, t0, WALL).unwrap_err().code(),
                ErrorCode::BadAddress,
                "{bad}"
            );
        }
    }
}
