//! The ledger: balances, cages, names, sequence numbers and poll tallies, derived by replaying the
//! best chain. Applying a block yields an [`Undo`] that reverts it exactly, which is how a reorg
//! walks back to the fork point without replaying from genesis.

use std::collections::{BTreeMap, HashMap, HashSet};

use serde::Serialize;

use crate::account::AccountId;
use crate::block::Block;
use crate::catalog;
pub use crate::ledger_error::LedgerError;
use crate::name::{check_name, name_key};
use crate::params::{BLOCK_REWARD, JOIN_CREDIT};
use crate::record::{Action, Record};

/// One account's state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Account {
    /// The name it joined with; `None` for a miner that never joined.
    pub name: Option<String>,
    /// Coins.
    pub balance: u64,
    /// The sequence number its next record must carry.
    pub next_seq: u64,
    /// Monkeys owned, by catalog id, with how many of each.
    pub cage: BTreeMap<String, u32>,
}

/// The state derived from a chain.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ledger {
    accounts: HashMap<AccountId, Account>,
    /// Name key ([`name_key`]) to owner: names are unique ignoring case and look-alike forms.
    names: HashMap<String, AccountId>,
    /// (poll, voter) to the choice voted for.
    votes: HashMap<(String, AccountId), String>,
    /// (poll, choice) to the number of votes.
    tallies: BTreeMap<(String, String), u64>,
}

/// What it takes to revert one block: the prior value of everything it touched, oldest last.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Undo {
    accounts: Vec<(AccountId, Option<Account>)>,
    names: Vec<(String, Option<AccountId>)>,
    votes: Vec<((String, AccountId), Option<String>)>,
    tallies: Vec<((String, String), Option<u64>)>,
}

impl Ledger {
    /// The state at genesis: nothing.
    pub fn new() -> Ledger {
        Ledger::default()
    }

    /// Every vote cast, (poll, voter) and the choice: with the accounts, all a ledger holds
    /// that is not derived (for [`Ledger::to_bytes`]).
    pub(crate) fn votes(&self) -> impl Iterator<Item = (&(String, AccountId), &String)> {
        self.votes.iter()
    }

    /// A ledger from its accounts and votes, with the names and tallies derived from them as
    /// the rules build them; `None` when two accounts hold the same name key, which no chain
    /// can produce (for [`Ledger::from_bytes`]).
    pub(crate) fn from_parts(
        accounts: HashMap<AccountId, Account>,
        votes: HashMap<(String, AccountId), String>,
    ) -> Option<Ledger> {
        let mut names = HashMap::new();
        for (id, account) in &accounts {
            if let Some(name) = &account.name
                && names.insert(name_key(name), *id).is_some()
            {
                return None;
            }
        }
        let mut tallies: BTreeMap<(String, String), u64> = BTreeMap::new();
        for ((poll, _), choice) in &votes {
            *tallies.entry((poll.clone(), choice.clone())).or_default() += 1;
        }
        Some(Ledger {
            accounts,
            names,
            votes,
            tallies,
        })
    }

    /// An account's state, if it has ever received or signed anything.
    pub fn account(&self, id: &AccountId) -> Option<&Account> {
        self.accounts.get(id)
    }

    /// Every account with state.
    pub fn accounts(&self) -> impl Iterator<Item = (&AccountId, &Account)> {
        self.accounts.iter()
    }

    /// The sequence number the account's next record must carry.
    pub fn next_seq(&self, id: &AccountId) -> u64 {
        self.accounts.get(id).map_or(0, |a| a.next_seq)
    }

    /// A balance; zero for an unknown account.
    pub fn balance(&self, id: &AccountId) -> u64 {
        self.accounts.get(id).map_or(0, |a| a.balance)
    }

    /// The account that joined under `name`, ignoring case and look-alike forms.
    pub fn account_by_name(&self, name: &str) -> Option<AccountId> {
        self.names.get(&name_key(name)).copied()
    }

    /// Votes per choice in `poll`, most first.
    pub fn tally(&self, poll: &str) -> Vec<(String, u64)> {
        let mut out: Vec<_> = self
            .tallies
            .iter()
            .filter(|((p, _), _)| p == poll)
            .map(|((_, c), n)| (c.clone(), *n))
            .collect();
        out.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        out
    }

    /// Every poll with at least one vote.
    pub fn polls(&self) -> Vec<String> {
        let mut polls: Vec<String> = self.tallies.keys().map(|(p, _)| p.clone()).collect();
        polls.dedup();
        polls
    }

    /// The choice `voter` made in `poll`.
    pub fn vote_of(&self, poll: &str, voter: &AccountId) -> Option<&str> {
        self.votes
            .get(&(poll.to_string(), *voter))
            .map(String::as_str)
    }

    /// Checks a record against this state without changing it.
    pub fn check_record(&self, record: &Record) -> Result<(), LedgerError> {
        check(self, record)
    }

    /// Applies one record, noting in `undo` how to revert it. Changes nothing when it fails.
    pub fn apply_record(&mut self, record: &Record, undo: &mut Undo) -> Result<(), LedgerError> {
        apply(&mut Writing { ledger: self, undo }, record)
    }

    /// Applies a block's records in order, then credits its miner. On failure nothing changes and
    /// the error names the index of the offending record.
    pub fn apply_block(&mut self, block: &Block) -> Result<Undo, (usize, LedgerError)> {
        let mut undo = Undo::default();
        for (i, record) in block.records.iter().enumerate() {
            if let Err(e) = self.apply_record(record, &mut undo) {
                self.revert(undo);
                return Err((i, e));
            }
        }
        let miner = block.header.miner;
        if self.balance(&miner).checked_add(BLOCK_REWARD).is_none() {
            self.revert(undo);
            return Err((block.records.len(), LedgerError::Overflow));
        }
        self.update(miner, &mut undo, |a| a.balance += BLOCK_REWARD);
        Ok(undo)
    }

    /// Reverts what `undo` recorded, restoring the state before it.
    pub fn revert(&mut self, undo: Undo) {
        fn restore<K: std::hash::Hash + Eq + Ord, V>(
            map: &mut impl MapLike<K, V>,
            entries: Vec<(K, Option<V>)>,
        ) {
            for (k, v) in entries.into_iter().rev() {
                match v {
                    Some(v) => map.put(k, v),
                    None => map.take(&k),
                }
            }
        }
        restore(&mut self.accounts, undo.accounts);
        restore(&mut self.names, undo.names);
        restore(&mut self.votes, undo.votes);
        restore(&mut self.tallies, undo.tallies);
    }

    fn update(&mut self, id: AccountId, undo: &mut Undo, f: impl FnOnce(&mut Account)) {
        let before = self.accounts.get(&id).cloned();
        let account = self.accounts.entry(id).or_default();
        f(account);
        undo.accounts.push((id, before));
    }
}

/// What checking a record reads: a whole ledger, or the records a pool holds layered over one.
/// One set of rules serves both.
trait View {
    fn account(&self, id: &AccountId) -> Option<&Account>;
    /// Whether a name key ([`name_key`]) belongs to someone.
    fn name_taken(&self, key: &str) -> bool;
    fn has_voted(&self, poll: &str, voter: &AccountId) -> bool;
}

/// What applying a record writes.
trait State: View {
    fn update(&mut self, id: AccountId, f: impl FnOnce(&mut Account));
    fn add_name(&mut self, key: String, owner: AccountId);
    fn add_vote(&mut self, poll: &str, voter: AccountId, choice: &str);
}

/// Checks a record against `state` without changing it.
fn check(state: &impl View, record: &Record) -> Result<(), LedgerError> {
    let account = state.account(&record.account);
    let next = account.map_or(0, |a| a.next_seq);
    if record.seq != next {
        return Err(LedgerError::BadSequence {
            expected: next,
            got: record.seq,
        });
    }
    let joined = account.is_some_and(|a| a.name.is_some());
    let balance = account.map_or(0, |a| a.balance);
    match &record.action {
        Action::Join { name } => {
            if joined {
                return Err(LedgerError::AlreadyJoined);
            }
            check_name(name).map_err(LedgerError::BadName)?;
            if state.name_taken(&name_key(name)) {
                return Err(LedgerError::NameTaken(name.clone()));
            }
            balance
                .checked_add(JOIN_CREDIT)
                .ok_or(LedgerError::Overflow)?;
        }
        _ if !joined => return Err(LedgerError::NotJoined),
        Action::Purchase { monkey } => {
            let price = catalog::monkey(monkey)
                .ok_or_else(|| LedgerError::UnknownMonkey(monkey.clone()))?
                .price;
            if balance < price {
                return Err(LedgerError::InsufficientFunds {
                    balance,
                    needed: price,
                });
            }
        }
        Action::Transfer { to, amount } => {
            if balance < *amount {
                return Err(LedgerError::InsufficientFunds {
                    balance,
                    needed: *amount,
                });
            }
            let recipient = state.account(to).filter(|a| a.name.is_some());
            let Some(recipient) = recipient else {
                return Err(LedgerError::UnknownRecipient(*to));
            };
            recipient
                .balance
                .checked_add(*amount)
                .ok_or(LedgerError::Overflow)?;
        }
        Action::Vote { poll, .. } => {
            if state.has_voted(poll, &record.account) {
                return Err(LedgerError::AlreadyVoted(poll.clone()));
            }
        }
    }
    Ok(())
}

/// Applies one record to `state`. Changes nothing when it fails.
fn apply(state: &mut impl State, record: &Record) -> Result<(), LedgerError> {
    check(state, record)?;
    let me = record.account;
    match &record.action {
        Action::Join { name } => {
            state.add_name(name_key(name), me);
            state.update(me, |a| {
                a.name = Some(name.clone());
                a.balance += JOIN_CREDIT;
                a.next_seq += 1;
            });
        }
        Action::Purchase { monkey } => {
            let price = catalog::monkey(monkey).map_or(0, |m| m.price);
            state.update(me, |a| {
                a.balance -= price;
                *a.cage.entry(monkey.clone()).or_default() += 1;
                a.next_seq += 1;
            });
        }
        Action::Transfer { to, amount } => {
            state.update(me, |a| {
                a.balance -= amount;
                a.next_seq += 1;
            });
            state.update(*to, |a| a.balance += amount);
        }
        Action::Vote { poll, choice } => {
            state.add_vote(poll, me, choice);
            state.update(me, |a| a.next_seq += 1);
        }
    }
    Ok(())
}

/// A ledger being changed, with the undo that reverts the changes.
struct Writing<'a> {
    ledger: &'a mut Ledger,
    undo: &'a mut Undo,
}

impl View for Ledger {
    fn account(&self, id: &AccountId) -> Option<&Account> {
        self.accounts.get(id)
    }

    fn name_taken(&self, key: &str) -> bool {
        self.names.contains_key(key)
    }

    fn has_voted(&self, poll: &str, voter: &AccountId) -> bool {
        self.votes.contains_key(&(poll.to_string(), *voter))
    }
}

impl View for Writing<'_> {
    fn account(&self, id: &AccountId) -> Option<&Account> {
        self.ledger.accounts.get(id)
    }

    fn name_taken(&self, key: &str) -> bool {
        self.ledger.name_taken(key)
    }

    fn has_voted(&self, poll: &str, voter: &AccountId) -> bool {
        self.ledger.has_voted(poll, voter)
    }
}

impl State for Writing<'_> {
    fn update(&mut self, id: AccountId, f: impl FnOnce(&mut Account)) {
        self.ledger.update(id, self.undo, f);
    }

    fn add_name(&mut self, key: String, owner: AccountId) {
        let before = self.ledger.names.insert(key.clone(), owner);
        self.undo.names.push((key, before));
    }

    fn add_vote(&mut self, poll: &str, voter: AccountId, choice: &str) {
        let key = (poll.to_string(), voter);
        let before = self.ledger.votes.insert(key.clone(), choice.to_string());
        self.undo.votes.push((key, before));
        let tally_key = (poll.to_string(), choice.to_string());
        let before = self.ledger.tallies.get(&tally_key).copied();
        self.ledger
            .tallies
            .insert(tally_key.clone(), before.unwrap_or(0) + 1);
        self.undo.tallies.push((tally_key, before));
    }
}

/// What pending records change, over a ledger that is not copied: the accounts they touch (whole,
/// copied on first touch), and the names and votes they take. Only what `check` reads is kept.
#[derive(Debug, Clone, Default)]
pub struct Delta {
    accounts: HashMap<AccountId, Account>,
    names: HashSet<String>,
    votes: HashSet<(String, AccountId)>,
}

impl Delta {
    /// Nothing changed.
    pub fn new() -> Delta {
        Delta::default()
    }

    /// The account's state with these changes over `base`.
    pub fn account<'a>(&'a self, base: &'a Ledger, id: &AccountId) -> Option<&'a Account> {
        self.accounts.get(id).or_else(|| base.account(id))
    }

    /// The sequence number the account's next record must carry, with these changes.
    pub fn next_seq(&self, base: &Ledger, id: &AccountId) -> u64 {
        self.account(base, id).map_or(0, |a| a.next_seq)
    }

    /// Checks `record` against `base` with these changes, and adds it to them when it applies.
    pub fn apply(&mut self, base: &Ledger, record: &Record) -> Result<(), LedgerError> {
        apply(&mut Layered { base, delta: self }, record)
    }

    /// Checks `record` against `base` with these changes, without adding it.
    pub fn check(&self, base: &Ledger, record: &Record) -> Result<(), LedgerError> {
        check(&Peek { base, delta: self }, record)
    }
}

/// A [`Delta`] over its ledger, read only.
struct Peek<'a> {
    base: &'a Ledger,
    delta: &'a Delta,
}

impl View for Peek<'_> {
    fn account(&self, id: &AccountId) -> Option<&Account> {
        self.delta.account(self.base, id)
    }

    fn name_taken(&self, key: &str) -> bool {
        self.delta.names.contains(key) || self.base.names.contains_key(key)
    }

    fn has_voted(&self, poll: &str, voter: &AccountId) -> bool {
        let key = (poll.to_string(), *voter);
        self.delta.votes.contains(&key) || self.base.votes.contains_key(&key)
    }
}

/// A [`Delta`] over its ledger.
struct Layered<'a> {
    base: &'a Ledger,
    delta: &'a mut Delta,
}

impl View for Layered<'_> {
    fn account(&self, id: &AccountId) -> Option<&Account> {
        self.delta.account(self.base, id)
    }

    fn name_taken(&self, key: &str) -> bool {
        let (base, delta) = (self.base, &*self.delta);
        Peek { base, delta }.name_taken(key)
    }

    fn has_voted(&self, poll: &str, voter: &AccountId) -> bool {
        let (base, delta) = (self.base, &*self.delta);
        Peek { base, delta }.has_voted(poll, voter)
    }
}

impl State for Layered<'_> {
    fn update(&mut self, id: AccountId, f: impl FnOnce(&mut Account)) {
        let account = self
            .delta
            .accounts
            .entry(id)
            .or_insert_with(|| self.base.account(&id).cloned().unwrap_or_default());
        f(account);
    }

    fn add_name(&mut self, key: String, _owner: AccountId) {
        self.delta.names.insert(key);
    }

    fn add_vote(&mut self, poll: &str, voter: AccountId, _choice: &str) {
        self.delta.votes.insert((poll.to_string(), voter));
    }
}

/// The two map types `revert` restores, behind one interface.
trait MapLike<K, V> {
    fn put(&mut self, k: K, v: V);
    fn take(&mut self, k: &K);
}

impl<K: std::hash::Hash + Eq, V> MapLike<K, V> for HashMap<K, V> {
    fn put(&mut self, k: K, v: V) {
        self.insert(k, v);
    }
    fn take(&mut self, k: &K) {
        self.remove(k);
    }
}

impl<K: Ord, V> MapLike<K, V> for BTreeMap<K, V> {
    fn put(&mut self, k: K, v: V) {
        self.insert(k, v);
    }
    fn take(&mut self, k: &K) {
        self.remove(k);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::account::Keypair;

    fn key(n: u8) -> Keypair {
        Keypair::from_seed([n; 32])
    }

    fn join(k: &Keypair, name: &str) -> Record {
        Record::join(k, name)
    }

    fn apply(l: &mut Ledger, r: &Record) -> Result<(), LedgerError> {
        l.apply_record(r, &mut Undo::default())
    }

    #[test]
    fn a_delta_over_a_ledger_decides_as_a_copy_of_it_would() {
        let (alice, bob, carol) = (key(1), key(2), key(3));
        let mut base = Ledger::new();
        apply(&mut base, &join(&alice, "alice")).unwrap();
        apply(&mut base, &join(&bob, "bob")).unwrap();
        let buy = |k: &Keypair, seq, monkey: &str| {
            let monkey = monkey.into();
            Record::sign(k, seq, Action::Purchase { monkey })
        };
        let vote = |k: &Keypair, seq| {
            let (poll, choice) = ("best".into(), "mandrill".into());
            Record::sign(k, seq, Action::Vote { poll, choice })
        };
        let records = [
            buy(&alice, 1, "mandrill"),
            buy(&alice, 2, "capuchin"),
            buy(&alice, 3, "capuchin"),
            Record::sign(
                &bob,
                1,
                Action::Transfer {
                    to: alice.account(),
                    amount: 300,
                },
            ),
            buy(&alice, 3, "capuchin"),
            join(&carol, "ALICE"),
            join(&carol, "carol"),
            vote(&carol, 1),
            vote(&carol, 2),
            Record::sign(
                &carol,
                2,
                Action::Transfer {
                    to: key(9).account(),
                    amount: 1,
                },
            ),
        ];
        let mut copy = base.clone();
        let mut delta = Delta::new();
        for r in &records {
            let want = apply(&mut copy, r);
            assert_eq!(delta.apply(&base, r), want, "{r:?}");
            for k in [&alice, &bob, &carol] {
                let id = k.account();
                assert_eq!(delta.account(&base, &id), copy.account(&id));
            }
        }
        // The ledger underneath did not move.
        assert_eq!(base.balance(&alice.account()), JOIN_CREDIT);
    }

    #[test]
    fn join_credits_and_names_are_unique_ignoring_case() {
        let mut l = Ledger::new();
        apply(&mut l, &join(&key(1), "Alice")).unwrap();
        assert_eq!(l.balance(&key(1).account()), JOIN_CREDIT);
        assert_eq!(l.account_by_name("alice"), Some(key(1).account()));
        assert_eq!(
            apply(&mut l, &join(&key(2), "ALICE")),
            Err(LedgerError::NameTaken("ALICE".into()))
        );
        let again = Record::sign(
            &key(1),
            1,
            Action::Join {
                name: "other".into(),
            },
        );
        assert_eq!(apply(&mut l, &again), Err(LedgerError::AlreadyJoined));
    }

    #[test]
    fn sequence_numbers_refuse_replay_reorder_and_gaps() {
        let mut l = Ledger::new();
        let a = key(1);
        let j = join(&a, "alice");
        apply(&mut l, &j).unwrap();
        assert_eq!(
            apply(&mut l, &j),
            Err(LedgerError::BadSequence {
                expected: 1,
                got: 0
            })
        );
        let skip = Record::sign(
            &a,
            2,
            Action::Purchase {
                monkey: "marmoset".into(),
            },
        );
        assert_eq!(
            apply(&mut l, &skip),
            Err(LedgerError::BadSequence {
                expected: 1,
                got: 2
            })
        );
    }

    #[test]
    fn nothing_before_joining() {
        let mut l = Ledger::new();
        let buy = Record::sign(
            &key(1),
            0,
            Action::Purchase {
                monkey: "marmoset".into(),
            },
        );
        assert_eq!(apply(&mut l, &buy), Err(LedgerError::NotJoined));
        let vote = Record::sign(
            &key(1),
            0,
            Action::Vote {
                poll: "p".into(),
                choice: "c".into(),
            },
        );
        assert_eq!(apply(&mut l, &vote), Err(LedgerError::NotJoined));
    }

    #[test]
    fn purchases_and_transfers_never_overdraw() {
        let mut l = Ledger::new();
        let (a, b) = (key(1), key(2));
        apply(&mut l, &join(&a, "alice")).unwrap();
        let buy = |seq, monkey: &str| {
            Record::sign(
                &a,
                seq,
                Action::Purchase {
                    monkey: monkey.into(),
                },
            )
        };
        apply(&mut l, &buy(1, "snub-nosed")).unwrap();
        assert_eq!(l.balance(&a.account()), 100);
        assert_eq!(
            apply(&mut l, &buy(2, "capuchin")),
            Err(LedgerError::InsufficientFunds {
                balance: 100,
                needed: 200
            })
        );
        let send = |seq, amount| {
            Record::sign(
                &a,
                seq,
                Action::Transfer {
                    to: b.account(),
                    amount,
                },
            )
        };
        assert_eq!(
            apply(&mut l, &send(2, 50)),
            Err(LedgerError::UnknownRecipient(b.account()))
        );
        apply(&mut l, &join(&b, "bob")).unwrap();
        assert_eq!(
            apply(&mut l, &send(2, 101)),
            Err(LedgerError::InsufficientFunds {
                balance: 100,
                needed: 101
            })
        );
        apply(&mut l, &send(2, 100)).unwrap();
        assert_eq!(l.balance(&a.account()), 0);
        assert_eq!(l.balance(&b.account()), 1100);
        assert_eq!(
            l.account(&a.account()).unwrap().cage.get("snub-nosed"),
            Some(&1)
        );
    }

    #[test]
    fn one_vote_per_account_per_poll_and_tallies_count() {
        let mut l = Ledger::new();
        let (a, b) = (key(1), key(2));
        apply(&mut l, &join(&a, "alice")).unwrap();
        apply(&mut l, &join(&b, "bob")).unwrap();
        let vote = |k: &Keypair, seq, poll: &str, choice: &str| {
            Record::sign(
                k,
                seq,
                Action::Vote {
                    poll: poll.into(),
                    choice: choice.into(),
                },
            )
        };
        apply(&mut l, &vote(&a, 1, "motm", "baboon")).unwrap();
        apply(&mut l, &vote(&b, 1, "motm", "baboon")).unwrap();
        assert_eq!(
            apply(&mut l, &vote(&a, 2, "motm", "tamarin")),
            Err(LedgerError::AlreadyVoted("motm".into()))
        );
        apply(&mut l, &vote(&a, 2, "other", "tamarin")).unwrap();
        assert_eq!(l.tally("motm"), vec![("baboon".to_string(), 2)]);
        assert_eq!(l.vote_of("other", &a.account()), Some("tamarin"));
        assert_eq!(l.polls(), vec!["motm".to_string(), "other".to_string()]);
    }

    #[test]
    fn undo_restores_the_exact_prior_state() {
        let mut l = Ledger::new();
        let (a, b) = (key(1), key(2));
        apply(&mut l, &join(&a, "alice")).unwrap();
        let before = l.clone();
        let mut undo = Undo::default();
        let records = [
            join(&b, "bob"),
            Record::sign(
                &a,
                1,
                Action::Transfer {
                    to: b.account(),
                    amount: 10,
                },
            ),
            Record::sign(
                &b,
                1,
                Action::Purchase {
                    monkey: "baboon".into(),
                },
            ),
            Record::sign(
                &b,
                2,
                Action::Vote {
                    poll: "p".into(),
                    choice: "c".into(),
                },
            ),
        ];
        for r in &records {
            l.apply_record(r, &mut undo).unwrap();
        }
        assert_ne!(l, before);
        l.revert(undo);
        assert_eq!(l, before);
    }
}
