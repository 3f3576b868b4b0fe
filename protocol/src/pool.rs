//! The pending pool: valid records not yet in the best chain, waiting to be mined.
//!
//! The pool keeps a [`Delta`] over the best tip's ledger: what every ready record changes, applied
//! in order, without copying the ledger (a clone per new tip cost time and memory in proportion to
//! the whole state). A new record is admitted only when it applies on top of that, so two pending purchases
//! that together overspend admit only the one that fits, and the ready list is always a valid
//! sequence for the next block. Records whose sequence number is ahead of the account's next one
//! wait (bounded) until the gap fills.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use crate::account::AccountId;
use crate::block::CheckedBlock;
use crate::ledger::{Delta, Ledger, LedgerError};
use crate::params::{MAX_POOL_BYTES, MAX_POOL_RECORDS, MAX_SEQ_AHEAD};
use crate::record::{Record, RecordFormatError, RecordId};

/// The pool's caps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolLimits {
    /// Most records held.
    pub max_records: usize,
    /// Most bytes of canonical record encodings held.
    pub max_bytes: usize,
    /// How far ahead of the next sequence number a record may wait.
    pub max_ahead: u64,
}

impl Default for PoolLimits {
    fn default() -> PoolLimits {
        PoolLimits {
            max_records: MAX_POOL_RECORDS,
            max_bytes: MAX_POOL_BYTES,
            max_ahead: MAX_SEQ_AHEAD,
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
    /// The pool is at its cap.
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

#[derive(Debug, Clone)]
struct Pending {
    record: Record,
    size: usize,
    order: u64,
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
    bytes: usize,
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

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Records that would go into the next block.
    pub fn ready_len(&self) -> usize {
        self.ready.len()
    }

    /// Whether `id` is pending.
    pub fn contains(&self, id: &RecordId) -> bool {
        self.entries.contains_key(id)
    }

    /// A pending record.
    pub fn get(&self, id: &RecordId) -> Option<&Record> {
        self.entries.get(id).map(|p| &p.record)
    }

    /// Checks and admits a record; `ledger` is the best tip's, the one the pool follows.
    pub fn add(&mut self, ledger: &Ledger, record: Record) -> Result<Admitted, PoolError> {
        // The same id is the same signed bytes, already verified: a relayed copy costs a hash.
        let id = record.id();
        if self.entries.contains_key(&id) {
            return Err(PoolError::AlreadyPending);
        }
        record.check()?;
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
        if self.entries.len() >= self.limits.max_records
            || self.bytes + size > self.limits.max_bytes
        {
            return Err(PoolError::Full);
        }
        if got > expected {
            self.insert(id, record, size);
            return Ok(Admitted::Waiting);
        }
        self.delta.apply(ledger, &record)?;
        self.insert(id, record, size);
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
        let included: HashSet<RecordId> = connected
            .iter()
            .flat_map(|b| b.records.iter().map(Record::id))
            .collect();
        let mut candidates: Vec<Record> = disconnected
            .iter()
            .rev()
            .flat_map(|b| b.records.iter().cloned())
            .filter(|r| !included.contains(&r.id()))
            .collect();
        let mut old: Vec<Pending> = self.entries.drain().map(|(_, p)| p).collect();
        old.sort_by_key(|p| p.order);
        candidates.extend(
            old.into_iter()
                .map(|p| p.record)
                .filter(|r| !included.contains(&r.id())),
        );

        self.by_account.clear();
        self.ready.clear();
        self.ready_set.clear();
        self.bytes = 0;
        self.delta = Delta::new();
        for record in candidates {
            self.readmit(ledger, record);
        }
    }

    /// Admits a record again after a tip change; caps are not applied, so nothing that was
    /// acknowledged is lost to a reorg.
    fn readmit(&mut self, ledger: &Ledger, record: Record) {
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
            self.insert(id, record, size);
            return;
        }
        if self.delta.apply(ledger, &record).is_ok() {
            self.insert(id, record, size);
            self.mark_ready(id);
            self.promote(ledger, &account);
        }
    }

    fn insert(&mut self, id: RecordId, record: Record, size: usize) {
        self.by_account
            .entry(record.account)
            .or_default()
            .insert(record.seq, id);
        self.bytes += size;
        let order = self.next_order;
        self.next_order += 1;
        self.entries.insert(
            id,
            Pending {
                record,
                size,
                order,
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
                self.mark_ready(id);
            } else {
                self.remove(&id);
                return;
            }
        }
    }

    fn remove(&mut self, id: &RecordId) {
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
