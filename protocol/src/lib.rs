//! Everything every Monkeychain party must agree on: blocks and their fixed-layout headers,
//! proof of work, consensus rules, fork choice, the ledger, the pending pool, and the wire
//! messages with their line codec.
//!
//! This crate does no network or disk I/O: callers pass in bytes and the clock (read once, by
//! [`clock::now_ms`]), and get back values. That keeps every rule here fast to test.

pub mod account;
pub mod binary;
pub mod block;
pub mod catalog;
pub mod chain;
pub mod clock;
pub mod codec;
pub mod difficulty;
pub mod error_code;
pub mod extend;
pub mod fuzzing;
pub mod handshake;
pub mod hash;
pub mod header;
pub mod ledger;
pub mod ledger_error;
pub mod name;
pub mod orphans;
pub mod params;
pub mod pool;
pub mod pow;
pub mod record;
pub mod signature;
pub mod tracker;
pub mod verify;
pub mod wire;

pub use account::{AccountId, Keypair, Signature};
pub use block::{Block, BlockError, CheckedBlock, genesis};
pub use chain::{Archive, Chain, Imported, NoArchive, blocks_after_archived};
pub use hash::{BlockHash, Hash256};
pub use header::Header;
pub use ledger::{Ledger, LedgerError};
pub use params::Params;
pub use pool::{Admitted, Pool, PoolChanges, PoolError, PoolLimits};
pub use record::{Action, Record, RecordId};
