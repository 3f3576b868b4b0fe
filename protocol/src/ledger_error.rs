//! Why a record cannot be applied to the ledger, apart from the ledger itself: a block's error
//! names the record that broke a rule (`BlockError::Ledger`), and the ledger applies blocks, so
//! this type sits below both.

use crate::account::AccountId;
use crate::name::NameError;

/// Why a record cannot be applied to the ledger state it meets.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LedgerError {
    /// Replayed, reordered or skipped sequence number.
    #[error("bad sequence number: expected {expected}, got {got}")]
    BadSequence {
        /// What the account's next record must carry.
        expected: u64,
        /// What the record carried.
        got: u64,
    },
    /// Any action but `Join` from an account that has not joined.
    #[error("account has not joined")]
    NotJoined,
    /// A second `Join` from the same account.
    #[error("account has already joined")]
    AlreadyJoined,
    /// The name belongs to another account.
    #[error("name {0:?} is taken")]
    NameTaken(String),
    /// The purchase or transfer costs more than the balance.
    #[error("insufficient funds: balance {balance}, needed {needed}")]
    InsufficientFunds {
        /// What the account has.
        balance: u64,
        /// What the record costs.
        needed: u64,
    },
    /// A transfer to an account that has not joined.
    #[error("unknown recipient {0:?}")]
    UnknownRecipient(AccountId),
    /// A second vote in the same poll.
    #[error("already voted in poll {0:?}")]
    AlreadyVoted(String),
    /// The monkey is not in the catalog.
    #[error("unknown monkey {0:?}")]
    UnknownMonkey(String),
    /// A balance would pass `u64::MAX`.
    #[error("balance overflow")]
    Overflow,
    /// A join whose name breaks the name rule (see [`crate::name`]).
    #[error("{0}")]
    BadName(NameError),
}
