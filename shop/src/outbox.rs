//! The outbox: the records a shopper signed and sent that the chain may not hold yet.
//!
//! A record's sequence number must be the account's next one, so a shopper's next record
//! depends on the ones still pending: its sequence number is the chain's `next_seq` plus the
//! pending records. The outbox remembers those, one JSON file per shopper in the wallet's
//! `outbox/` folder, so that `--no-wait` sequences, retries and a restarted shop all sign the
//! right number. Before every new record the outbox is *reconciled* with the chain just read:
//! records that chain holds are done and leave; records it has superseded, or that can no longer
//! apply (a join whose name another shopper took first), leave too; the rest are sent again, in
//! order, before the new one. Sending is idempotent (a node answers `K` for a record it already
//! has), so this never applies anything twice.
//!
//! A record leaves the outbox only when a chain that holds it is read, never merely because a
//! node said it was mined: another node, a little behind, may not have that block yet, and a
//! record numbered against it would clash. For the same reason the outbox remembers the height
//! of the highest chain it has met (read, or confirmed by a node), and a lower chain is not
//! trusted to number a record or to show the shopper (see [`Outbox::seen_height`]).
//!
//! Each outbox has a lock file: two shops acting for the same shopper at the same time take
//! turns to number and save their records, so they never sign two records with one number. The
//! lock is held while numbering and saving, never while waiting for a record to be mined.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;

use protocol::ledger::Undo;
use protocol::{AccountId, Ledger, Record};
use serde::{Deserialize, Serialize};

use crate::chain::ChainState;
use crate::wallet::{Wallet, WalletError, ensure_private_dir, write_replace};

/// The folder, inside the wallet, that holds the outboxes.
pub const OUTBOX_DIR: &str = "outbox";

/// One shopper's outbox, locked for as long as this value lives.
#[derive(Debug)]
pub struct Outbox {
    path: PathBuf,
    file: OutboxFile,
    _lock: File,
}

/// What an outbox file holds.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct OutboxFile {
    /// The highest chain this outbox was reconciled with.
    seen_height: u64,
    /// The pending records, by sequence number.
    records: Vec<Record>,
}

/// A record the outbox dropped because it can never be mined, and why.
#[derive(Debug, Clone)]
pub struct Dropped {
    /// The record.
    pub record: Record,
    /// Why it can never apply.
    pub reason: String,
}

/// The outbox measured against the chain.
#[derive(Debug, Clone)]
pub struct Reconciled {
    /// The chain's ledger with every pending record applied: what the shopper will have.
    pub overlay: Ledger,
    /// Records dropped because they can never apply.
    pub dropped: Vec<Dropped>,
}

fn outbox_path(wallet: &Wallet, account: &AccountId) -> PathBuf {
    wallet
        .dir()
        .join(OUTBOX_DIR)
        .join(format!("{account}.json"))
}

/// Reads a shopper's pending records without locking (for showing them).
pub fn peek(wallet: &Wallet, account: &AccountId) -> Result<Vec<Record>, WalletError> {
    Ok(read(&outbox_path(wallet, account), account)?.records)
}

/// The height of the highest chain the shopper's outbox has met (0 for none), without locking.
/// A chain lower than that is behind what this shopper already did.
pub fn seen_height(wallet: &Wallet, account: &AccountId) -> Result<u64, WalletError> {
    Ok(read(&outbox_path(wallet, account), account)?.seen_height)
}

/// Deletes a shopper's outbox and its lock file.
pub fn remove(wallet: &Wallet, account: &AccountId) -> Result<(), WalletError> {
    let path = outbox_path(wallet, account);
    for p in [path.clone(), path.with_extension("lock")] {
        match std::fs::remove_file(&p) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => return Err(WalletError::Write { path: p, source }),
        }
    }
    Ok(())
}

fn read(path: &std::path::Path, account: &AccountId) -> Result<OutboxFile, WalletError> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(OutboxFile::default()),
        Err(e) => {
            return Err(WalletError::Damaged {
                path: path.to_path_buf(),
                reason: format!("cannot read it: {e}"),
            });
        }
    };
    let mut file: OutboxFile = serde_json::from_str(&text).map_err(|e| WalletError::Damaged {
        path: path.to_path_buf(),
        reason: format!("expected {{\"seen_height\", \"records\"}} JSON ({e})"),
    })?;
    if file.records.iter().any(|r| r.account != *account) {
        return Err(WalletError::Damaged {
            path: path.to_path_buf(),
            reason: "it holds another account's record".into(),
        });
    }
    file.records.sort_by_key(|r| r.seq);
    Ok(file)
}

impl Outbox {
    /// Locks and reads a shopper's outbox, waiting for another shop that holds the lock.
    pub fn open(wallet: &Wallet, account: &AccountId) -> Result<Outbox, WalletError> {
        let path = outbox_path(wallet, account);
        let dir = wallet.dir().join(OUTBOX_DIR);
        ensure_private_dir(&dir)?;
        let lock_path = path.with_extension("lock");
        let fail = |source| WalletError::Write {
            path: lock_path.clone(),
            source,
        };
        let lock = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&lock_path)
            .map_err(fail)?;
        lock.lock().map_err(fail)?;
        let file = read(&path, account)?;
        Ok(Outbox {
            path,
            file,
            _lock: lock,
        })
    }

    /// The pending records, by sequence number.
    pub fn records(&self) -> &[Record] {
        &self.file.records
    }

    /// The height of the highest chain this outbox was reconciled with. A chain below it may
    /// lack blocks that took records out of the outbox, so it must not number a new record.
    pub fn seen_height(&self) -> u64 {
        self.file.seen_height
    }

    /// Notes that a chain of height `height` exists (a node confirmed a block there).
    pub fn note_height(&mut self, height: u64) {
        self.file.seen_height = self.file.seen_height.max(height);
    }

    /// Adds a record just signed.
    pub fn push(&mut self, record: Record) {
        self.file.records.push(record);
        self.file.records.sort_by_key(|r| r.seq);
    }

    /// Keeps only the records `keep` says yes to.
    pub fn retain(&mut self, keep: impl FnMut(&Record) -> bool) {
        self.file.records.retain(keep);
    }

    /// Writes the outbox back (atomically).
    pub fn save(&self) -> Result<(), WalletError> {
        let text = serde_json::to_string_pretty(&self.file).map_err(|e| WalletError::Write {
            path: self.path.clone(),
            source: std::io::Error::other(e),
        })?;
        write_replace(&self.path, format!("{text}\n").as_bytes())
    }

    /// Drops what the chain holds or has made impossible, and returns the ledger the shopper's
    /// next record will meet. Saves the outbox if anything was dropped.
    pub fn reconcile(&mut self, chain: &ChainState) -> Result<Reconciled, WalletError> {
        let mut overlay = chain.ledger.clone();
        let mut kept = Vec::new();
        let mut dropped = Vec::new();
        let before = self.file.records.len();
        let mut broken = false;
        for record in std::mem::take(&mut self.file.records) {
            if chain.block_of(&record.id()).is_some() {
                continue;
            }
            let next = overlay.next_seq(&record.account);
            // The chain's tail (see `chain`) names the records of its last blocks only: a
            // record mined deeper shows as a sequence number the ledger has passed.
            let verdict = if record.seq < next {
                Err(format!(
                    "the chain holds sequence number {} already (this record, mined before \
                     the blocks the shop keeps, or another)",
                    record.seq
                ))
            } else if broken {
                Err("an earlier pending record was dropped".to_string())
            } else {
                overlay
                    .apply_record(&record, &mut Undo::default())
                    .map_err(|e| e.to_string())
            };
            match verdict {
                Ok(()) => kept.push(record),
                Err(reason) if record.seq < next => {
                    tracing::info!(record = %record.id().short(), seq = record.seq, %reason, "dropping a pending record the chain has passed");
                    dropped.push(Dropped { record, reason });
                }
                Err(reason) => {
                    broken = true;
                    tracing::warn!(record = %record.id().short(), seq = record.seq, %reason, "dropping a pending record that can never be mined");
                    dropped.push(Dropped { record, reason });
                }
            }
        }
        self.file.records = kept;
        if self.file.records.len() != before || chain.height > self.file.seen_height {
            self.file.seen_height = self.file.seen_height.max(chain.height);
            self.save()?;
        }
        Ok(Reconciled { overlay, dropped })
    }
}

#[cfg(test)]
mod tests {
    use protocol::{Action, Block};

    use super::*;

    fn key(n: u8) -> protocol::Keypair {
        protocol::Keypair::from_seed([n; 32])
    }

    fn chain_with(records: Vec<Record>) -> ChainState {
        let genesis = protocol::genesis();
        let stamp = genesis.header.timestamp + 1;
        let block = Block::template(&genesis.header, records, key(9).account(), 0, stamp);
        let now = stamp + 1000;
        ChainState::from_blocks(
            "test".into(),
            vec![block],
            &protocol::Params::with_floor(0),
            now,
        )
        .unwrap()
    }

    #[test]
    fn reconcile_keeps_pending_drops_mined_and_impossible_records() {
        let dir = tempfile::tempdir().unwrap();
        let wallet = Wallet::new(dir.path());
        let (me, other) = (key(1), key(2));
        let join = Record::sign(&me, 0, Action::Join { name: "ann".into() });
        let buy = |seq| {
            Record::sign(
                &me,
                seq,
                Action::Purchase {
                    monkey: "marmoset".into(),
                },
            )
        };
        let mut outbox = Outbox::open(&wallet, &me.account()).unwrap();
        for r in [join.clone(), buy(1), buy(2)] {
            outbox.push(r);
        }
        outbox.save().unwrap();
        drop(outbox);

        // The join is mined: it leaves; both purchases are still pending.
        let chain = chain_with(vec![join.clone()]);
        let mut outbox = Outbox::open(&wallet, &me.account()).unwrap();
        let r = outbox.reconcile(&chain).unwrap();
        assert_eq!(outbox.records(), &[buy(1), buy(2)]);
        assert!(r.dropped.is_empty());
        assert_eq!(r.overlay.balance(&me.account()), 1000 - 2 * 50);
        assert_eq!(r.overlay.next_seq(&me.account()), 3);
        drop(outbox);
        assert_eq!(peek(&wallet, &me.account()).unwrap(), vec![buy(1), buy(2)]);

        // A join whose name someone else took first can never apply.
        let mut outbox = Outbox::open(&wallet, &other.account()).unwrap();
        let late = Record::sign(&other, 0, Action::Join { name: "ANN".into() });
        outbox.push(late);
        let r = outbox.reconcile(&chain).unwrap();
        assert!(outbox.records().is_empty());
        assert_eq!(r.dropped.len(), 1);
        assert!(r.dropped[0].reason.contains("taken"), "{:?}", r.dropped);
    }

    #[test]
    fn a_record_stays_until_a_chain_that_passes_the_checks_holds_it() {
        let dir = tempfile::tempdir().unwrap();
        let wallet = Wallet::new(dir.path());
        let me = key(3);
        let join = Record::sign(&me, 0, Action::Join { name: "cy".into() });
        let mut outbox = Outbox::open(&wallet, &me.account()).unwrap();
        outbox.push(join.clone());
        // A liar's chain holding the join in a block of no work, far up: it does not pass at a
        // floor of 1, so the outbox never sees it, and keeps the join and its height.
        let genesis = protocol::genesis();
        let stamp = genesis.header.timestamp + 1;
        let fake = Block::template(&genesis.header, vec![join.clone()], me.account(), 0, stamp);
        let floor = protocol::Params::with_floor(1);
        assert!(ChainState::from_blocks("liar".into(), vec![fake], &floor, stamp + 1).is_err());
        let honest = chain_with(Vec::new());
        let r = outbox.reconcile(&honest).unwrap();
        assert_eq!(outbox.records(), &[join]);
        assert!(r.dropped.is_empty());
        assert_eq!(outbox.seen_height(), 1);
    }
}
