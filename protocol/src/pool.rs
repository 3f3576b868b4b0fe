//! The pending pool: valid records not yet in the best chain, waiting to be mined.
//!
//! The pool keeps a [`Delta`] over the best tip's ledger: what every ready record changes, applied
//! in order, without copying the ledger (a clone per new tip cost time and memory in proportion to
//! the whole state). A new record is admitted only when it applies on top of that, so two pending purchases
//! that together overspend admit only the one that fits, and the ready list is always a valid
//! sequence for the next block.
//!
//! Records that cannot be mined yet (a sequence number ahead of the account's next one, which
//! includes every record but the join of an account that has not joined) are *waiting*: held
//! apart in a small buffer with caps of its own ([`MAX_WAITING_RECORDS`],
//! [`MAX_WAITING_BYTES`], [`MAX_WAITING_PER_ACCOUNT`]) and for at most [`MAX_WAITING_MS`], until
//! the gap fills. Such records cost nothing to make and can never be mined if the gap never
//! fills, so they never take the room of ready records, and a node neither relays nor stores
//! them ([`Pool::take_changes`] says when one becomes ready). A ready record is always admitted:
//! at the cap, room is made by evicting others (see [`Pool::add`]).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use crate::account::AccountId;
use crate::block::CheckedBlock;
use crate::hash::DigestSet;
use crate::ledger::{Delta, Ledger, LedgerError};
use crate::params::{
    MAX_POOL_BYTES, MAX_POOL_RECORDS, MAX_SEQ_AHEAD, MAX_WAITING_BYTES, MAX_WAITING_MS,
    MAX_WAITING_PER_ACCOUNT, MAX_WAITING_RECORDS, POOL_EVICT_PERCENT,
};
use crate::record::{Record, RecordFormatError, RecordId};

/// The pool's caps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolLimits {
    /// Most ready (minable) records held.
    pub max_records: usize,
    /// Most bytes of canonical record encodings of ready records held.
    pub max_bytes: usize,
    /// How far ahead of the next sequence number a record may wait.
    pub max_ahead: u64,
    /// Most waiting records held.
    pub max_waiting: usize,
    /// Most bytes of waiting records held.
    pub max_waiting_bytes: usize,
    /// Most waiting records of one account.
    pub max_waiting_per_account: usize,
    /// How long a record may wait, in milliseconds.
    pub max_waiting_ms: u64,
}

impl Default for PoolLimits {
    fn default() -> PoolLimits {
        PoolLimits {
            max_records: MAX_POOL_RECORDS,
            max_bytes: MAX_POOL_BYTES,
            max_ahead: MAX_SEQ_AHEAD,
            max_waiting: MAX_WAITING_RECORDS,
            max_waiting_bytes: MAX_WAITING_BYTES,
            max_waiting_per_account: MAX_WAITING_PER_ACCOUNT,
            max_waiting_ms: MAX_WAITING_MS,
        }
    }
}

/// Why the pool refused a record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PoolError {
    /// Malformed or badly signed.
    #[error(transparent)]
    Format(#[from] RecordFormatError),
    /// Invalid against the best chain plus the pending records before it.
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    /// This exact record is already pending.
    #[error("record is already pending")]
    AlreadyPending,
    /// Another pending record of the same account has this sequence number.
    #[error("another pending record has sequence number {0}")]
    Conflict(u64),
    /// The sequence number is too far past the account's next one.
    #[error("sequence number {got} is too far ahead of {expected}")]
    TooFarAhead {
        /// The account's next sequence number.
        expected: u64,
        /// The record's.
        got: u64,
    },
    /// The account already has as many records waiting as it may.
    #[error("too many records of this account wait for earlier ones")]
    TooManyWaiting,
    /// The pool is at its cap and nothing in it is less useful than this record: only when one
    /// account holds the whole pool, or when the waiting buffer is full of records of accounts
    /// that have joined and this one's has not.
    #[error("pending pool is full")]
    Full,
}

/// Where an admitted record stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admitted {
    /// Valid now and in the next block template.
    Ready,
    /// Waiting for the account's earlier sequence numbers.
    Waiting,
}

/// What changed in the pool besides the records handed to [`Pool::add`], for a node's store and
/// its relays: see [`Pool::take_changes`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PoolChanges {
    /// Records that were waiting and are ready now: to store, and to relay.
    pub ready: Vec<Record>,
    /// Ready records that left the pool without being mined (evicted, made invalid or waiting
    /// again by a new tip): to delete from the store.
    pub dropped: Vec<RecordId>,
}

/// Why a waiting record is kept: the eviction order sorts by this, least useful first.
/// Records of accounts that have not joined go before those of accounts that have (such
/// accounts cost an attacker nothing), then the oldest.
type WaitKey = (bool, u64);

#[derive(Debug, Clone)]
struct Pending {
    record: Record,
    size: usize,
    order: u64,
    /// When it was admitted (the pool's clock, milliseconds).
    since: u64,
    /// Present while it waits.
    wait: Option<WaitKey>,
}

/// The pending pool.
#[derive(Debug, Clone)]
pub struct Pool {
    entries: HashMap<RecordId, Pending>,
    by_account: HashMap<AccountId, BTreeMap<u64, RecordId>>,
    /// Ready records in an order that applies cleanly to the tip's ledger.
    ready: Vec<RecordId>,
    ready_set: HashSet<RecordId>,
    /// What the ready records change over the best tip's ledger.
    delta: Delta,
    /// Bytes of ready records.
    bytes: usize,
    /// Waiting records, least useful first.
    waiting: BTreeMap<WaitKey, RecordId>,
    /// Waiting records by admission time, for expiry.
    waiting_since: BTreeMap<(u64, u64), RecordId>,
    waiting_bytes: usize,
    waiting_per_account: HashMap<AccountId, usize>,
    changes: PoolChanges,
    /// The clock as last given to [`Pool::expire`].
    now: u64,
    next_order: u64,
    limits: PoolLimits,
}

impl Pool {
    /// An empty pool.
    pub fn new(limits: PoolLimits) -> Pool {
        Pool {
            entries: HashMap::new(),
            by_account: HashMap::new(),
            ready: Vec::new(),
            ready_set: HashSet::new(),
            delta: Delta::new(),
            bytes: 0,
            waiting: BTreeMap::new(),
            waiting_since: BTreeMap::new(),
            waiting_bytes: 0,
            waiting_per_account: HashMap::new(),
            changes: PoolChanges::default(),
            now: 0,
            next_order: 0,
            limits,
        }
    }

    /// Records held, ready or waiting.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the pool is empty.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Bytes of ready records held.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Records that would go into the next block.
    pub fn ready_len(&self) -> usize {
        self.ready.len()
    }

    /// Records waiting for their account's earlier ones.
    pub fn waiting_len(&self) -> usize {
        self.waiting.len()
    }

    /// Bytes of waiting records held.
    pub fn waiting_bytes(&self) -> usize {
        self.waiting_bytes
    }

    /// Whether `id` is pending.
    pub fn contains(&self, id: &RecordId) -> bool {
        self.entries.contains_key(id)
    }

    /// Whether `id` is pending and ready (minable now).
    pub fn is_ready(&self, id: &RecordId) -> bool {
        self.ready_set.contains(id)
    }

    /// A pending record.
    pub fn get(&self, id: &RecordId) -> Option<&Record> {
        self.entries.get(id).map(|p| &p.record)
    }

    /// The first `max` pending records, for a subscriber to see: ready ones in the order of the
    /// next block template, then waiting ones, the oldest first; each with when it was admitted
    /// (the pool's clock) and whether it waits. Costs `max` steps, whatever the pool holds.
    pub fn listing(&self, max: usize) -> Vec<(&Record, u64, bool)> {
        let ready = self.ready.iter();
        let waiting = self.waiting_since.values();
        ready
            .chain(waiting)
            .filter_map(|id| self.entries.get(id))
            .take(max)
            .map(|p| (&p.record, p.since, p.wait.is_some()))
            .collect()
    }

    /// What changed since the last call, besides the records given to [`Pool::add`] (see
    /// [`PoolChanges`]).
    pub fn take_changes(&mut self) -> PoolChanges {
        std::mem::take(&mut self.changes)
    }

    /// Sets the pool's clock (milliseconds) and drops the records that have waited longer than
    /// the limit. Records admitted from now on are stamped with `now`.
    pub fn expire(&mut self, now: u64) {
        self.now = self.now.max(now);
        let oldest = self.now.saturating_sub(self.limits.max_waiting_ms);
        while let Some((&(since, _), &id)) = self.waiting_since.first_key_value() {
            if since >= oldest {
                break;
            }
            self.remove(&id);
        }
    }

    /// Checks and admits a record; `ledger` is the best tip's, the one the pool follows.
    ///
    /// A ready record is admitted even at the cap: [`POOL_EVICT_PERCENT`] of the pool is evicted
    /// first, whole accounts at a time (an account's later records depend on its earlier ones),
    /// those holding the most records first and, among equals, those whose last record is the
    /// oldest; the record's own account is spared. A spammer's long runs go first; then a flood
    /// of one-record accounts (free to make, and as minable as an honest purchase) pushes out
    /// its own oldest records, so a new honest record moves up as the flood goes on instead of
    /// being the first to go in the next round. A waiting record at the waiting buffer's cap
    /// evicts the least useful waiting one (see [`MAX_WAITING_RECORDS`]).
    pub fn add(&mut self, ledger: &Ledger, record: Record) -> Result<Admitted, PoolError> {
        self.admit(ledger, record, false)
    }

    /// [`Pool::add`] for a record whose signature the caller verified already (a node checks
    /// them on each connection's task, so its chain thread never spends a flood's signature
    /// checks); the formats are still checked here.
    pub fn add_verified(&mut self, ledger: &Ledger, record: Record) -> Result<Admitted, PoolError> {
        self.admit(ledger, record, true)
    }

    fn admit(
        &mut self,
        ledger: &Ledger,
        record: Record,
        signature_verified: bool,
    ) -> Result<Admitted, PoolError> {
        // The same id is the same signed bytes, already verified: a relayed copy costs a hash.
        let id = record.id();
        if self.entries.contains_key(&id) {
            return Err(PoolError::AlreadyPending);
        }
        if signature_verified {
            record.check_format()?;
        } else {
            record.check()?;
        }
        let account = record.account;
        let (expected, got) = (self.delta.next_seq(ledger, &account), record.seq);
        let taken = self
            .by_account
            .get(&account)
            .is_some_and(|seqs| seqs.contains_key(&got));
        if taken {
            return Err(PoolError::Conflict(got));
        }
        if got < expected {
            return Err(LedgerError::BadSequence { expected, got }.into());
        }
        if got - expected > self.limits.max_ahead {
            return Err(PoolError::TooFarAhead { expected, got });
        }
        let size = record.encode().len();
        if got > expected {
            self.hold(ledger, id, record, size, self.now, true)?;
            return Ok(Admitted::Waiting);
        }
        // Checked before anything is evicted for it.
        self.delta.check(ledger, &record)?;
        if self.ready.len() >= self.limits.max_records || self.bytes + size > self.limits.max_bytes
        {
            self.make_room(ledger, &account, size);
            // Nothing to evict but the record's own account, whose records it follows.
            if self.ready.len() >= self.limits.max_records
                || self.bytes + size > self.limits.max_bytes
            {
                return Err(PoolError::Full);
            }
        }
        self.delta.apply(ledger, &record)?;
        self.insert(id, record, size, self.now, None);
        self.mark_ready(id);
        self.promote(ledger, &account);
        Ok(Admitted::Ready)
    }

    /// Up to `max_records` ready records within `max_bytes`, in an order valid on the tip.
    pub fn template(&self, max_records: usize, max_bytes: usize) -> Vec<Record> {
        let mut out = Vec::new();
        let mut bytes = 0;
        for id in self.ready.iter().take(max_records) {
            let pending = &self.entries[id];
            if bytes + pending.size > max_bytes {
                break;
            }
            bytes += pending.size;
            out.push(pending.record.clone());
        }
        out
    }

    /// Follows the best chain to a new tip: drops what `connected` included, gives back the
    /// records of `disconnected` blocks that the new chain lacks, and re-checks everything
    /// against `ledger` (the new tip's). `disconnected` is tip first, `connected` oldest first,
    /// as [`crate::chain::Imported`] reports them.
    pub fn on_tip_change(
        &mut self,
        ledger: &Ledger,
        disconnected: &[Arc<CheckedBlock>],
        connected: &[Arc<CheckedBlock>],
    ) {
        let included: DigestSet = connected
            .iter()
            .flat_map(|b| b.ids().iter().copied())
            .collect();
        let now = self.now;
        let candidates: Vec<(Record, u64)> = disconnected
            .iter()
            .rev()
            .flat_map(|b| b.records.iter().cloned())
            .filter(|r| !included.contains(&r.id()))
            .map(|r| (r, now))
            .collect();
        self.rebuild(ledger, candidates, &included);
    }

    /// Admits `candidates` then every record held but those in `leave`, in their order, on a
    /// new delta over `ledger`. Records that were waiting and are ready now, and ready records
    /// that are no longer ready (but for those in `leave`, which a block mined), go into
    /// [`Pool::changes`].
    fn rebuild(&mut self, ledger: &Ledger, mut candidates: Vec<(Record, u64)>, leave: &DigestSet) {
        let was_ready = std::mem::take(&mut self.ready_set);
        let was_waiting: HashSet<RecordId> = self.waiting.values().copied().collect();
        let mut old: Vec<Pending> = self.entries.drain().map(|(_, p)| p).collect();
        old.sort_by_key(|p| p.order);
        candidates.extend(
            old.into_iter()
                .filter(|p| !leave.contains(&p.record.id()))
                .map(|p| (p.record, p.since)),
        );
        self.clear();
        let promoted_before = self.changes.ready.len();
        for (record, since) in candidates {
            self.readmit(ledger, record, since);
        }
        // What the rebuild promoted is worked out from the sets instead.
        self.changes.ready.truncate(promoted_before);
        for id in &self.ready {
            if was_waiting.contains(id) {
                self.changes.ready.push(self.entries[id].record.clone());
            }
        }
        self.changes.dropped.extend(
            was_ready
                .into_iter()
                .filter(|id| !self.ready_set.contains(id) && !leave.contains(id)),
        );
    }

    /// Forgets every record, keeping the clock, the pending changes and the limits.
    fn clear(&mut self) {
        self.entries.clear();
        self.by_account.clear();
        self.ready.clear();
        self.ready_set.clear();
        self.bytes = 0;
        self.delta = Delta::new();
        self.waiting.clear();
        self.waiting_since.clear();
        self.waiting_bytes = 0;
        self.waiting_per_account.clear();
    }

    /// Admits a record again after a tip change or an eviction. The ready records' caps are not
    /// applied, so nothing that was acknowledged is lost to a reorg; the waiting buffer's are.
    fn readmit(&mut self, ledger: &Ledger, record: Record, since: u64) {
        let id = record.id();
        let account = record.account;
        let expected = self.delta.next_seq(ledger, &account);
        let taken = self
            .by_account
            .get(&account)
            .is_some_and(|s| s.contains_key(&record.seq));
        if self.entries.contains_key(&id) || taken || record.seq < expected {
            return;
        }
        if record.seq - expected > self.limits.max_ahead {
            return;
        }
        let size = record.encode().len();
        if record.seq > expected {
            // Refused only by the waiting buffer's caps: nothing to do about it.
            let _ = self.hold(ledger, id, record, size, since, false);
            return;
        }
        if self.delta.apply(ledger, &record).is_ok() {
            self.insert(id, record, size, since, None);
            self.mark_ready(id);
            self.promote(ledger, &account);
        }
    }

    /// Puts a record in the waiting buffer, evicting the least useful waiting records to stay
    /// within its caps. `fresh`: newly arrived (a record that waited too long is not admitted
    /// again by a rebuild either way).
    fn hold(
        &mut self,
        ledger: &Ledger,
        id: RecordId,
        record: Record,
        size: usize,
        since: u64,
        fresh: bool,
    ) -> Result<(), PoolError> {
        let account = record.account;
        if since.saturating_add(self.limits.max_waiting_ms) < self.now && !fresh {
            return Ok(());
        }
        let count = self.waiting_per_account.get(&account).copied().unwrap_or(0);
        if count >= self.limits.max_waiting_per_account {
            return Err(PoolError::TooManyWaiting);
        }
        if size > self.limits.max_waiting_bytes || self.limits.max_waiting == 0 {
            return Err(PoolError::Full);
        }
        let joined = self
            .delta
            .account(ledger, &account)
            .is_some_and(|a| a.name.is_some());
        let key = (joined, self.next_order);
        while self.waiting.len() >= self.limits.max_waiting
            || self.waiting_bytes + size > self.limits.max_waiting_bytes
        {
            let Some((&least, &victim)) = self.waiting.first_key_value() else {
                break;
            };
            if least > key {
                return Err(PoolError::Full);
            }
            self.remove(&victim);
        }
        self.insert(id, record, size, since, Some(key));
        Ok(())
    }

    /// Evicts whole accounts' records, the accounts with the most ready records first (the one
    /// whose last record is the oldest first among equals), sparing `spare`, until [`POOL_EVICT_PERCENT`] of both caps
    /// is free besides `size`; then rebuilds the ready list on what is left.
    fn make_room(&mut self, ledger: &Ledger, spare: &AccountId, size: usize) {
        let slack_records = (self.limits.max_records * POOL_EVICT_PERCENT / 100).max(1);
        let slack_bytes = self.limits.max_bytes * POOL_EVICT_PERCENT / 100;
        let records_goal = self.limits.max_records.saturating_sub(slack_records);
        let bytes_goal = self
            .limits
            .max_bytes
            .saturating_sub(slack_bytes)
            .saturating_sub(size);
        // Per account: ready records, and the newest one's admission order.
        let mut accounts: HashMap<AccountId, (usize, u64)> = HashMap::new();
        for id in &self.ready {
            let p = &self.entries[id];
            let slot = accounts.entry(p.record.account).or_default();
            slot.0 += 1;
            slot.1 = slot.1.max(p.order);
        }
        accounts.remove(spare);
        let mut ranked: Vec<(AccountId, (usize, u64))> = accounts.into_iter().collect();
        ranked.sort_by_key(|(_, (count, last))| (std::cmp::Reverse(*count), *last));
        let (mut records, mut bytes) = (self.ready.len(), self.bytes);
        let mut evicted = DigestSet::default();
        for (account, _) in ranked {
            if records <= records_goal && bytes <= bytes_goal {
                break;
            }
            let ids: Vec<RecordId> = self
                .by_account
                .get(&account)
                .map(|s| s.values().copied().collect())
                .unwrap_or_default();
            for id in ids {
                if self.ready_set.contains(&id) {
                    records -= 1;
                    bytes -= self.entries[&id].size;
                }
                evicted.insert(id);
            }
        }
        self.rebuild(ledger, Vec::new(), &evicted);
        self.changes.dropped.extend(evicted);
    }

    fn insert(
        &mut self,
        id: RecordId,
        record: Record,
        size: usize,
        since: u64,
        wait: Option<WaitKey>,
    ) {
        self.by_account
            .entry(record.account)
            .or_default()
            .insert(record.seq, id);
        let order = self.next_order;
        self.next_order += 1;
        match wait {
            Some(key) => {
                self.waiting.insert(key, id);
                self.waiting_since.insert((since, order), id);
                self.waiting_bytes += size;
                *self.waiting_per_account.entry(record.account).or_default() += 1;
            }
            None => self.bytes += size,
        }
        self.entries.insert(
            id,
            Pending {
                record,
                size,
                order,
                since,
                wait,
            },
        );
    }

    fn mark_ready(&mut self, id: RecordId) {
        self.ready.push(id);
        self.ready_set.insert(id);
    }

    /// Moves an account's waiting records to ready while they continue its sequence; one that
    /// turns out invalid is dropped.
    fn promote(&mut self, ledger: &Ledger, account: &AccountId) {
        loop {
            let next = self.delta.next_seq(ledger, account);
            let Some(id) = self
                .by_account
                .get(account)
                .and_then(|s| s.get(&next))
                .copied()
            else {
                return;
            };
            if self.ready_set.contains(&id) {
                return;
            }
            let record = self.entries[&id].record.clone();
            if self.delta.apply(ledger, &record).is_ok() {
                self.unwait(&id);
                self.mark_ready(id);
                self.changes.ready.push(record);
            } else {
                self.remove(&id);
                return;
            }
        }
    }

    /// Takes a record out of the waiting buffer's indexes and counts it as ready.
    fn unwait(&mut self, id: &RecordId) {
        let Some(p) = self.entries.get_mut(id) else {
            return;
        };
        let Some(key) = p.wait.take() else { return };
        let (size, since, order, account) = (p.size, p.since, p.order, p.record.account);
        self.waiting.remove(&key);
        self.waiting_since.remove(&(since, order));
        self.waiting_bytes -= size;
        if let Some(n) = self.waiting_per_account.get_mut(&account) {
            *n -= 1;
            if *n == 0 {
                self.waiting_per_account.remove(&account);
            }
        }
        self.bytes += size;
    }

    /// Removes a waiting record (ready ones leave only through a rebuild, which keeps the
    /// ready list and the delta in step).
    fn remove(&mut self, id: &RecordId) {
        self.unwait(id);
        if let Some(p) = self.entries.remove(id) {
            self.bytes -= p.size;
            if let Some(seqs) = self.by_account.get_mut(&p.record.account) {
                seqs.remove(&p.record.seq);
                if seqs.is_empty() {
                    self.by_account.remove(&p.record.account);
                }
            }
        }
    }
}
