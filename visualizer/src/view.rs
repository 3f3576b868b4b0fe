//! The browser protocol: every message the visualizer sends down its websocket, and the block
//! details it serves at `GET /api/block/HASH`. All of it is JSON; docs/PROTOCOL.md ("Visualizer
//! websocket") is the prose version of this file.
//!
//! A browser gets one [`ToBrowser::Snapshot`] when it connects, then deltas, each costing work in
//! proportion to what changed: [`ToBrowser::Blocks`] for blocks new to the visualizer,
//! [`ToBrowser::Tip`] when the best chain moves (a reorg when `disconnected` is not empty),
//! [`ToBrowser::Nodes`] when a node's row changes (a node caught sending an invalid block says
//! so in its row: [`Misbehaviour`]), [`ToBrowser::Ledger`] with the shoppers and
//! polls the last tip move touched; [`ToBrowser::Load`], [`ToBrowser::Peers`] and
//! [`ToBrowser::Pool`] with what a node says of itself, and [`ToBrowser::Arrivals`] for the
//! relay wave of each block. Summaries carry at most [`SUMMARY_RECORDS`] records and a snapshot
//! only the last [`crate::state::SNAPSHOT_BLOCKS`], so it stays small whatever the chain's
//! length; older summaries come a page at a time ([`crate::history::Page`]) and a block's full
//! details are fetched when it is clicked.

use std::collections::BTreeMap;

use protocol::tracker::NodeStatus;
use protocol::{AccountId, BlockHash, RecordId};
use serde::{Deserialize, Serialize};

/// Most records described in a block summary; the rest are only counted.
pub const SUMMARY_RECORDS: usize = 3;

/// A message to a browser, one per websocket text frame, tagged by `type`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ToBrowser {
    /// Everything, once, when the browser connects.
    Snapshot(Snapshot),
    /// Blocks that entered the visualizer's tree, parents first.
    Blocks {
        /// Their summaries.
        blocks: Vec<BlockSummary>,
    },
    /// The best chain moved.
    Tip(TipChange),
    /// The node table changed: every node, since the table is small.
    Nodes {
        /// Whether the tracker answers.
        tracker: TrackerView,
        /// Every node, ordered by id.
        nodes: Vec<NodeView>,
    },
    /// The ledger at the best tip changed: new totals, and only the rows and polls that changed.
    Ledger(LedgerDelta),
    /// A node's CPU load and difficulty now (its `U status`, at most every
    /// [`crate::observed::MIN_SAMPLE_GAP_MS`]).
    Load {
        /// The node.
        node: AccountId,
        /// The sample.
        sample: LoadSample,
    },
    /// A node's live peers changed.
    Peers {
        /// The node.
        node: AccountId,
        /// The ids it has a link with, sorted.
        peers: Vec<AccountId>,
    },
    /// Records entered or left a node's pending pool.
    Pool(PoolDelta),
    /// Blocks reached a node: when, by its clock (the relay wave).
    Arrivals {
        /// The node.
        node: AccountId,
        /// The blocks and when it got each.
        blocks: Vec<Arrival>,
    },
}

/// A node's CPU load and difficulty at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LoadSample {
    /// When it was heard, on the visualizer's clock (ms): one time axis for every node.
    pub at_ms: u64,
    /// CPU load of other processes on its host, 0 to 1.
    pub load: f32,
    /// The difficulty it mines at, in bits.
    pub difficulty: u32,
}

/// A pending record as the page shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingView {
    /// Its id.
    pub id: RecordId,
    /// Its sequence number.
    pub seq: u64,
    /// Who does what.
    pub record: RecordSummary,
    /// When it entered the node's pool, by the node's clock (ms).
    pub since_ms: u64,
    /// Whether it waits for an earlier record of its account.
    pub waiting: bool,
}

/// A record that left a node's pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeftView {
    /// Its id.
    pub id: RecordId,
    /// The best-chain block it left for, if it did.
    pub block: Option<BlockHash>,
}

/// What changed in one node's pool.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoolDelta {
    /// The node.
    pub node: AccountId,
    /// Whether `added` is the whole listing.
    pub full: bool,
    /// Records that entered it or changed.
    pub added: Vec<PendingView>,
    /// Records that left it.
    pub removed: Vec<LeftView>,
    /// Ready records in its whole pool.
    pub ready: u64,
    /// Waiting records in its whole pool.
    pub waiting: u64,
}

/// When a node got a block.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Arrival {
    /// The block.
    pub hash: BlockHash,
    /// The node's clock when it entered its tree (ms).
    pub received_ms: u64,
}

/// What a node says of itself, in a snapshot.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ObservedView {
    /// The node.
    pub node: AccountId,
    /// Its live peers, sorted.
    pub peers: Vec<AccountId>,
    /// Its pending records as it listed them.
    pub pool: Vec<PendingView>,
    /// Ready records in its whole pool.
    pub ready: u64,
    /// Waiting records in its whole pool.
    pub waiting: u64,
    /// Its load and difficulty over the last minutes, oldest first.
    pub samples: Vec<LoadSample>,
}

/// The first message a browser gets.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    /// The best tip.
    pub tip: BlockHash,
    /// Its height.
    pub height: u64,
    /// The best chain's last [`crate::state::SNAPSHOT_BLOCKS`] blocks and the side blocks at
    /// those heights (at most [`crate::state::SNAPSHOT_SIDE_BLOCKS`]), parents before children.
    pub blocks: Vec<BlockSummary>,
    /// Whether the tracker answers.
    pub tracker: TrackerView,
    /// Every node, ordered by id.
    pub nodes: Vec<NodeView>,
    /// Totals, every shopper and every poll.
    pub ledger: LedgerDelta,
    /// What each node says of itself: peers, pending records, load samples.
    pub observed: Vec<ObservedView>,
}

/// A block as the chain view draws it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockSummary {
    /// Its hash.
    pub hash: BlockHash,
    /// Its parent's hash.
    pub prev: BlockHash,
    /// Its height.
    pub height: u64,
    /// Its difficulty in leading zero bits.
    pub bits: u32,
    /// Its nonce, in decimal: a JSON number loses precision past 2^53 in a browser.
    pub nonce: String,
    /// The miner's key, short (8 hex digits).
    pub miner: String,
    /// The miner's timestamp, ms since the Unix epoch.
    pub time: u64,
    /// How many records it holds.
    pub count: u32,
    /// The first [`SUMMARY_RECORDS`] of them.
    pub records: Vec<RecordSummary>,
}

/// One record, in words: who did what. Names are the ones accounts joined with, or short keys.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum RecordSummary {
    /// `who` joined.
    Join {
        /// The name joined with.
        who: String,
    },
    /// `who` bought a `monkey` for `price` coins.
    Purchase {
        /// The buyer.
        who: String,
        /// The catalog id.
        monkey: String,
        /// Its price.
        price: u64,
    },
    /// `who` sent `amount` coins to `to`.
    Transfer {
        /// The sender.
        who: String,
        /// The receiver.
        to: String,
        /// Coins sent.
        amount: u64,
    },
    /// `who` voted `choice` in `poll`.
    Vote {
        /// The voter.
        who: String,
        /// The poll.
        poll: String,
        /// The choice.
        choice: String,
    },
}

/// How the best chain moved. A reorg of depth `disconnected.len()` when that is not empty.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TipChange {
    /// The new best tip.
    pub hash: BlockHash,
    /// Its height.
    pub height: u64,
    /// Blocks that left the best chain, the old tip first.
    pub disconnected: Vec<BlockHash>,
    /// Blocks that joined it, oldest first.
    pub connected: Vec<BlockHash>,
}

/// The tracker, as the page shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrackerView {
    /// Its address.
    pub addr: String,
    /// Whether its last query was answered.
    pub up: bool,
}

/// How the visualizer's connection to a node is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Link {
    /// Not followed (the tracker lists it as removed).
    None,
    /// Connecting, or waiting to reconnect.
    Connecting,
    /// Connected, fetching the blocks it has that the visualizer lacks.
    Syncing,
    /// Connected and up to date: every update arrives as it happens.
    Following,
    /// The last attempt failed; retrying with backoff.
    Down,
    /// It sent an invalid block: disconnected, and not followed again until a long back-off
    /// has passed (its row's `misbehaviour` says what it sent).
    Dropped,
}

/// A node caught sending something invalid: what it sent and why it was refused, for the
/// network panel (a lesson in itself: a node is anyone with a key, and everything it says is
/// checked).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Misbehaviour {
    /// What it sent, in words: the block's hash, height, difficulty and record count.
    pub sent: String,
    /// Why it was refused: the rule it broke.
    pub why: String,
    /// When, on the visualizer's clock (ms since the Unix epoch).
    pub at_ms: u64,
    /// How many times it was caught since the visualizer started following it.
    pub offences: u64,
}

/// One row of the network panel.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeView {
    /// Its id (public key).
    pub id: AccountId,
    /// The id, short.
    pub short: String,
    /// Where it listens.
    pub addr: String,
    /// The tracker's status for it; `None` once the tracker no longer lists it.
    pub status: Option<NodeStatus>,
    /// The visualizer's connection to it.
    pub link: Link,
    /// Its best tip's height (from its updates, or its last report to the tracker).
    pub tip_height: u64,
    /// Its best tip.
    pub tip_hash: BlockHash,
    /// Blocks it is behind the visualizer's best tip, when its tip is on the best chain.
    pub behind: Option<u64>,
    /// Whether its tip is on the visualizer's best chain (false: on a side branch, or unknown).
    pub on_best: bool,
    /// CPU load of other processes on its host, 0 to 1, from the tracker.
    pub load: Option<f32>,
    /// The difficulty it mines at now, from the tracker.
    pub difficulty: Option<u32>,
    /// The last block that reached it.
    pub last_block: Option<BlockHash>,
    /// How long that block took to reach it: its arrival here minus its first arrival at any node.
    pub delay_ms: Option<u64>,
    /// The last invalid thing it sent, if it was ever caught.
    pub misbehaviour: Option<Misbehaviour>,
}

/// Counts at the best tip.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Totals {
    /// Blocks on the best chain after genesis (its height).
    pub blocks: u64,
    /// Blocks known off the best chain.
    pub side_blocks: u64,
    /// Records on the best chain.
    pub records: u64,
    /// Accounts that joined.
    pub shoppers: u64,
    /// Monkeys bought.
    pub monkeys_sold: u64,
}

/// A shopper's row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShopperRow {
    /// The account.
    pub account: AccountId,
    /// The name it joined with.
    pub name: String,
    /// Coins.
    pub balance: u64,
    /// Monkeys by catalog id, with how many of each.
    pub cage: BTreeMap<String, u32>,
}

/// One poll's tally.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PollView {
    /// The poll.
    pub poll: String,
    /// Votes per choice, most first; empty when the poll has no votes left (after a reorg).
    pub tally: Vec<ChoiceVotes>,
}

/// Votes for one choice.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChoiceVotes {
    /// The choice.
    pub choice: String,
    /// Its votes.
    pub votes: u64,
}

/// The ledger's changes (or, in a snapshot, all of it).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LedgerDelta {
    /// The totals now.
    pub totals: Totals,
    /// Shoppers whose row changed (in a snapshot: every shopper), by account.
    pub shoppers: Vec<ShopperRow>,
    /// Accounts that are no longer shoppers (a reorg undid their join).
    pub gone: Vec<AccountId>,
    /// Polls whose tally changed (in a snapshot: every poll).
    pub polls: Vec<PollView>,
}

impl LedgerDelta {
    /// The row of the shopper who joined as `name`, if it is in this message.
    pub fn shopper(&self, name: &str) -> Option<&ShopperRow> {
        self.shoppers.iter().find(|row| row.name == name)
    }
}

/// `GET /api/block/HASH`: everything about one block, for its details and the tamper lesson.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BlockDetails {
    /// Its hash.
    pub hash: BlockHash,
    /// Whether it is on the best chain.
    pub best: bool,
    /// The full header; `nonce` in decimal.
    pub header: HeaderView,
    /// The miner's name, if its key joined.
    pub miner_name: Option<String>,
    /// Every record in full.
    pub records: Vec<RecordView>,
    /// When each node got it, first first.
    pub seen: Vec<Seen>,
    /// Its children in the tree.
    pub children: Vec<BlockHash>,
}

/// A header with its nonce as a decimal string (see [`BlockSummary::nonce`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeaderView {
    /// Format version.
    pub version: u32,
    /// Difficulty.
    pub bits: u32,
    /// Height.
    pub height: u64,
    /// The parent's hash.
    pub prev_hash: BlockHash,
    /// The records commitment.
    pub records_root: BlockHash,
    /// The miner's key, hex.
    pub miner: AccountId,
    /// ms since the Unix epoch.
    pub timestamp: u64,
    /// Number of records.
    pub record_count: u32,
    /// Bytes of their canonical encodings.
    pub records_size: u32,
    /// The nonce, decimal.
    pub nonce: String,
}

/// A record in full, as the tamper lesson needs it: every field its id covers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordView {
    /// SHA-256 of its canonical bytes.
    pub id: BlockHash,
    /// The signer.
    pub account: AccountId,
    /// The signer's name, if it joined.
    pub who: Option<String>,
    /// Its sequence number.
    pub seq: u64,
    /// What it does, as on the wire (`kind` and the action's fields).
    pub action: protocol::Action,
    /// For a transfer, the receiver's name if it joined.
    pub to_name: Option<String>,
    /// The ed25519 signature, hex.
    pub sig: String,
}

/// When one node got a block.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Seen {
    /// The node, short.
    pub node: String,
    /// Its clock when the block entered its tree, ms.
    pub received_ms: u64,
    /// Minus the first arrival at any node.
    pub delay_ms: u64,
}
