//! Everything the shop refuses or cannot do, each as one line a person can act on.
//!
//! Bad input is found before anything is signed or sent, so a refused command changes nothing;
//! a node's own refusal is shown with the node's reason.

use std::path::PathBuf;

use protocol::name::NameError;
use protocol::record::RecordFormatError;

use serde::Serialize;

use crate::listing::listing;
use crate::wallet::WalletError;

/// A node that was tried and failed.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Attempt {
    /// Its address.
    pub node: String,
    /// What went wrong.
    pub error: String,
}

impl Attempt {
    /// `node: error; node: error`, for messages.
    pub fn list(attempts: &[Attempt]) -> String {
        let each = attempts.iter().map(|a| format!("{}: {}", a.node, a.error));
        listing(each, "; ", "no node to try")
    }
}

/// Why a shop command failed.
#[derive(Debug, thiserror::Error)]
pub enum ShopError {
    /// The monkey is not in the catalog.
    #[error("unknown monkey {0:?}: `monkey-shop catalog` lists them")]
    UnknownMonkey(String),
    /// The shopper's coins, counting pending records, do not cover it.
    #[error("{name} has {balance} coins{}, not enough {what}", if *.pending { " (counting pending records)" } else { "" })]
    InsufficientFunds {
        /// The shopper.
        name: String,
        /// Coins left once the pending records apply.
        balance: u64,
        /// What it is for: "for a Capuchin at 200 coins", "to send 5 coins".
        what: String,
        /// Whether pending records were counted.
        pending: bool,
    },
    /// Another shopper has the name (ignoring case and look-alike forms).
    #[error("the name {0:?} is taken (names are compared ignoring case, width and accents' form)")]
    NameTaken(String),
    /// A name, poll or choice that breaks the ledger's rules (empty, too long, control
    /// characters).
    #[error("{0}")]
    BadText(RecordFormatError),
    /// A name that breaks the ledger's name rule: it holds a character that cannot be seen or
    /// that turns the text around, so it would pass for another name.
    #[error(
        "{name:?} cannot be a name: {error}; names are compared as they look, so they may not hide characters"
    )]
    BadName {
        /// The name asked for.
        name: String,
        /// What is wrong with it.
        error: NameError,
    },
    /// No shopper of that name in the wallet.
    #[error("no shopper named {name:?} in the wallet {}: `monkey-shop join {name}` makes one", wallet.display())]
    UnknownShopper {
        /// The name asked for.
        name: String,
        /// The wallet folder.
        wallet: PathBuf,
    },
    /// No shopper of that name on the chain.
    #[error("no shopper named {0:?} has joined")]
    NotOnChain(String),
    /// The wallet's shopper has not joined (and no join is pending).
    #[error("{0} has not joined: `monkey-shop join {0}` sends the join again")]
    NotJoined(String),
    /// A second join.
    #[error("{0} has already joined")]
    AlreadyJoined(String),
    /// A transfer to oneself.
    #[error("{0} cannot send coins to themself")]
    SelfTransfer(String),
    /// A transfer of nothing, or not a number.
    #[error("the amount must be a whole number of coins above zero, not {0:?}")]
    BadAmount(String),
    /// A second vote in a poll.
    #[error("{name} has already voted for {choice} in {poll}")]
    AlreadyVoted {
        /// The shopper.
        name: String,
        /// The poll.
        poll: String,
        /// What they voted for.
        choice: String,
    },
    /// The tracker did not answer.
    #[error("{0}")]
    Tracker(String),
    /// The tracker knows no active node.
    #[error("the tracker at {0} lists no active node")]
    NoActiveNode(String),
    /// No node let us read its chain.
    #[error("cannot read the chain from any node: {}", Attempt::list(.0))]
    NoChain(Vec<Attempt>),
    /// The shop's own check of the record against the chain failed.
    #[error("the record would be refused: {0}")]
    Invalid(String),
    /// A node refused the record.
    #[error("node {node} refused the record: {reason}")]
    Refused {
        /// The node.
        node: String,
        /// The node's reason.
        reason: String,
    },
    /// No node acknowledged the record; it was discarded.
    #[error("no node took the record ({}); it was not kept, so trying again cannot do it twice", Attempt::list(.0))]
    NoNodeTook(Vec<Attempt>),
    /// A node acknowledged the record, but no node confirmed it in a block in time.
    #[error(
        "{what} is pending (record {record}, taken by node {node}) but not in a block yet: {why}; it stays pending and is sent again before {name}'s next record: `monkey-shop show {name}` tells when it lands"
    )]
    Unconfirmed {
        /// The shopper.
        name: String,
        /// What the record does, for people.
        what: String,
        /// The record id, short.
        record: String,
        /// The node that acknowledged it.
        node: String,
        /// What went wrong after.
        why: String,
    },
    /// The wallet could not be read or written.
    #[error(transparent)]
    Wallet(#[from] WalletError),
}
