//! The messages nodes and clients exchange, one per line (see [`crate::codec`]).
//!
//! | op | payload | meaning |
//! |----|---------|---------|
//! | `A` | a record | a record to mine |
//! | `B` | a block | a new block |
//! | `C` | `{"blocks": [...], "more": bool}` or `{"packed": base64, "more": bool}` | a segment of the chain |
//! | `D` | optional `{"locator": [hash, ...], "packed": bool}` | a request for the chain after the locator |
//! | `E` | `{"code": str, "message": str}` | an error ([`ErrorCode`]) |
//! | `K` | `{"id": record id, "status": "pending" \| "waiting" \| "mined"}` | a record was accepted ([`AckStatus`]) |
//! | `I` | `{"id": node id, "addr": "host:port"}` | an unproven claim to be a node: refused, the connection closed |
//! | `H` | a [`Hello`] | a challenge: "prove who you are"; from a node, also who it will prove to be |
//! | `P` | a [`Proof`] | who the sender is, signed over the other side's nonce (see [`crate::handshake`]) |
//! | `S` | none | subscribe to the node's updates (the visualizer) |
//! | `U` | an [`Update`] | a block entered the node's tree, its best tip moved, its load and peers now, its pool changed |
//! | `Z` | none | keep-alive: a node asks a quiet long-lived connection to show it is there; the other side answers `Z` |

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::{Deserialize, Serialize};

use crate::account::AccountId;
use crate::binary;
use crate::block::{Block, CheckedBlock};
use crate::codec::{WireError, WireMessage};
pub use crate::error_code::ErrorCode;
use crate::handshake::{Hello, Proof};
use crate::hash::BlockHash;
use crate::params::{MAX_ADDR_LEN, MAX_BLOCKS_PER_MESSAGE, MAX_LOCATOR};
use crate::record::{Record, RecordId};

/// A message between nodes, or between a node and a client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// `A`: a record to mine.
    Record(Record),
    /// `B`: a new block.
    Block(Block),
    /// `C`: a chain segment.
    Blocks(Blocks),
    /// `D`: a chain request.
    GetBlocks(GetBlocks),
    /// `E`: an error.
    Error(ErrorMessage),
    /// `K`: a record is pending.
    Ack(Ack),
    /// `I`: an unproven claim to be a node, which nodes refuse (they prove who they are with
    /// `H` and `P`); parsed only to answer it clearly.
    Identify(Identify),
    /// `H`: a handshake challenge.
    Hello(Hello),
    /// `P`: a handshake proof.
    Proof(Proof),
    /// `S`: subscribe to updates.
    Subscribe,
    /// `U`: an update for a subscriber.
    Update(Update),
    /// `Z`: keep-alive. A node sends it to a subscriber or a client waiting on a record that has
    /// been quiet for a while; any line back (a `Z` is enough) shows the connection is alive.
    /// A node never answers a `Z`, so two sides cannot ping-pong for ever.
    KeepAlive,
}

/// The payload of `I`: who a connection says it is. Not signed, so it proves nothing: a node
/// answers it with `E unproven` and closes the connection (see [`crate::handshake`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Identify {
    /// The node's id.
    pub id: AccountId,
    /// The address it advertises.
    pub addr: String,
}

/// The payload of `U`: what a subscriber (the visualizer) is told as it happens, so it follows
/// a node with work in proportion to what changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Update {
    /// A block entered the node's tree, on any branch (relayed, synced or mined).
    Block {
        /// The block.
        block: Block,
        /// The node's clock when the block entered its tree, in milliseconds.
        received_ms: u64,
    },
    /// The node's best tip is now `hash`. Sent first on subscribing, then at every change.
    Tip {
        /// The new best tip.
        hash: BlockHash,
        /// Its height.
        height: u64,
        /// Blocks that left the best chain, the old tip first (empty unless a reorg).
        disconnected: Vec<BlockHash>,
        /// Blocks that joined it, oldest first.
        connected: Vec<BlockHash>,
    },
    /// The node's CPU load, the difficulty it mines at and its live peers: sent every status
    /// period (a second by default), so a chart of load against difficulty moves even when the
    /// chain does not.
    Status {
        /// The node's clock, in milliseconds.
        at_ms: u64,
        /// CPU load of other processes on its host, in thousandths (0 to 1000): an integer, so
        /// messages compare exactly.
        load_permille: u16,
        /// The difficulty it mines at now, in bits.
        difficulty: u32,
        /// The nodes it has a link with, by id (at most [`MAX_REPORTED_PEERS`](crate::params::MAX_REPORTED_PEERS)): links it opened
        /// (or is opening) and links others opened to it once they proved their id.
        peers: Vec<AccountId>,
    },
    /// Records entered or left the node's pending pool. Only the first
    /// [`MAX_REPORTED_PENDING`](crate::params::MAX_REPORTED_PENDING) records of the pool are listed ([`crate::Pool::listing`]); a
    /// record that leaves the pool's listing is `removed` and one that enters it (or whose
    /// `waiting` changed) is `added`. Sent after each change, and whole (`full`) on subscribing.
    Pool {
        /// Whether this is the whole listing (forget the previous one).
        full: bool,
        /// Records that entered the listing or changed.
        added: Vec<PendingRecord>,
        /// Records that left it.
        removed: Vec<LeftPool>,
        /// Ready (minable) records in the whole pool.
        ready: u64,
        /// Records in the whole pool that wait for an earlier record of their account.
        waiting: u64,
    },
}

/// A pending record as a node lists it to a subscriber.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingRecord {
    /// The record, signed.
    pub record: Record,
    /// When it entered the pool, on the node's clock (ms).
    pub since_ms: u64,
    /// Whether it waits for an earlier record of its account (not minable yet).
    pub waiting: bool,
}

/// A record that left a node's pool listing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeftPool {
    /// Its id.
    pub id: RecordId,
    /// The best-chain block that holds it, when it left for one (otherwise it was evicted,
    /// expired, made invalid by a new tip, or only pushed out of the listing).
    pub block: Option<BlockHash>,
}

/// The payload of `C`: `{"blocks": [block, ...], "more": bool}`, or, when the `D` asked for
/// it, `{"packed": text, "more": bool}` where the text is the blocks' packed binary form
/// ([`binary::pack_blocks`]) in base64. Packed, a sync's blocks cost a fraction of their JSON
/// to write and to read, and their hashes are not sent (the receiver computes them anyway).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Blocks {
    /// Consecutive blocks, oldest first.
    pub blocks: Vec<Block>,
    /// Whether the sender has more after these (ask again with a new locator).
    pub more: bool,
    /// Whether the blocks travel packed.
    pub packed: bool,
}

impl Serialize for Blocks {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Listed<'a> {
            blocks: &'a [Block],
            more: bool,
        }
        #[derive(Serialize)]
        struct Packed {
            packed: String,
            more: bool,
        }
        if self.packed {
            let packed = BASE64.encode(binary::pack_blocks(&self.blocks));
            let more = self.more;
            Packed { packed, more }.serialize(serializer)
        } else {
            let blocks = &self.blocks;
            let more = self.more;
            Listed { blocks, more }.serialize(serializer)
        }
    }
}

impl Blocks {
    /// The most characters a checked `block` adds to a packed `C`'s text: its binary form in
    /// base64 (4 characters for every 3 bytes or part of 3), for an answer sized before it is
    /// made.
    pub fn packed_len(block: &CheckedBlock) -> usize {
        block.binary_len().div_ceil(3) * 4
    }
}

impl<'de> Deserialize<'de> for Blocks {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Either {
            blocks: Option<Vec<Block>>,
            packed: Option<String>,
            more: bool,
        }
        let Either {
            blocks,
            packed,
            more,
        } = Either::deserialize(deserializer)?;
        let (blocks, packed) = match (blocks, packed) {
            (Some(blocks), None) => (blocks, false),
            (None, Some(text)) => {
                let bytes = BASE64
                    .decode(text.as_bytes())
                    .map_err(|e| D::Error::custom(format!("packed is not base64: {e}")))?;
                let blocks = binary::unpack_blocks(&bytes, MAX_BLOCKS_PER_MESSAGE)
                    .map_err(|e| D::Error::custom(format!("packed blocks: {e}")))?;
                (blocks, true)
            }
            _ => return Err(D::Error::custom("exactly one of blocks and packed")),
        };
        Ok(Blocks {
            blocks,
            more,
            packed,
        })
    }
}

/// The payload of `D`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GetBlocks {
    /// The asker's block locator; empty means from genesis.
    #[serde(default)]
    pub locator: Vec<BlockHash>,
    /// Whether the answer's blocks should come packed ([`Blocks`]).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub packed: bool,
}

impl GetBlocks {
    /// A request for the blocks after `locator`, as JSON.
    pub fn json_after(locator: Vec<BlockHash>) -> GetBlocks {
        GetBlocks {
            locator,
            packed: false,
        }
    }

    /// A request for the blocks after `locator`, packed: what nodes and the shop send.
    pub fn packed_after(locator: Vec<BlockHash>) -> GetBlocks {
        GetBlocks {
            locator,
            packed: true,
        }
    }
}

/// The payload of `E`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorMessage {
    /// What went wrong, for programs.
    pub code: ErrorCode,
    /// A sentence for people.
    pub message: String,
}

impl ErrorMessage {
    /// An error message.
    pub fn new(code: ErrorCode, message: impl ToString) -> ErrorMessage {
        ErrorMessage {
            code,
            message: message.to_string(),
        }
    }
}

/// The payload of `K`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ack {
    /// The record's id.
    pub id: RecordId,
    /// Where the record stands.
    pub status: AckStatus,
}

/// Where an acknowledged record stands: the `status` of a `K`. A status this build does not
/// know makes the line a bad payload: the shop must not take an unknown answer for `pending`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AckStatus {
    /// In the node's pool, in its next block template.
    Pending,
    /// In the node's pool, waiting for the account's earlier records.
    Waiting,
    /// Already in a block of the node's best chain (its `B` follows).
    Mined,
}

impl std::fmt::Display for AckStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            AckStatus::Pending => "pending",
            AckStatus::Waiting => "waiting",
            AckStatus::Mined => "mined",
        })
    }
}

/// Refuses an address longer than any the tracker lists.
fn check_addr_len(addr: &str) -> Result<(), String> {
    if addr.len() > MAX_ADDR_LEN {
        return Err(format!("address longer than {} bytes", MAX_ADDR_LEN));
    }
    Ok(())
}

impl WireMessage for Message {
    fn opcode(&self) -> u8 {
        match self {
            Message::Record(_) => b'A',
            Message::Block(_) => b'B',
            Message::Blocks(_) => b'C',
            Message::GetBlocks(_) => b'D',
            Message::Error(_) => b'E',
            Message::Ack(_) => b'K',
            Message::Identify(_) => b'I',
            Message::Hello(_) => b'H',
            Message::Proof(_) => b'P',
            Message::Subscribe => b'S',
            Message::Update(_) => b'U',
            Message::KeepAlive => b'Z',
        }
    }

    fn payload(&self) -> Result<Option<String>, serde_json::Error> {
        let json = match self {
            Message::Record(r) => serde_json::to_string(r)?,
            Message::Block(b) => serde_json::to_string(b)?,
            Message::Blocks(c) => serde_json::to_string(c)?,
            Message::GetBlocks(d) if d.locator.is_empty() && !d.packed => return Ok(None),
            Message::GetBlocks(d) => serde_json::to_string(d)?,
            Message::Error(e) => serde_json::to_string(e)?,
            Message::Ack(k) => serde_json::to_string(k)?,
            Message::Identify(i) => serde_json::to_string(i)?,
            Message::Hello(h) => serde_json::to_string(h)?,
            Message::Proof(p) => serde_json::to_string(p)?,
            Message::Subscribe | Message::KeepAlive => return Ok(None),
            Message::Update(u) => serde_json::to_string(u)?,
        };
        Ok(Some(json))
    }

    fn parse(opcode: u8, payload: Option<&str>) -> Result<Message, WireError> {
        let bad = |reason: String| WireError::BadPayload {
            opcode: opcode as char,
            reason,
        };
        Ok(match opcode {
            b'A' => Message::Record(WireError::json(opcode, payload)?),
            b'B' => Message::Block(WireError::json(opcode, payload)?),
            b'C' => {
                let blocks: Blocks = WireError::json(opcode, payload)?;
                if blocks.blocks.len() > MAX_BLOCKS_PER_MESSAGE {
                    return Err(bad(format!("more than {MAX_BLOCKS_PER_MESSAGE} blocks")));
                }
                Message::Blocks(blocks)
            }
            b'D' => {
                let request: GetBlocks = match payload {
                    None => GetBlocks::default(),
                    Some(_) => WireError::json(opcode, payload)?,
                };
                if request.locator.len() > MAX_LOCATOR {
                    return Err(bad(format!("locator longer than {MAX_LOCATOR} hashes")));
                }
                Message::GetBlocks(request)
            }
            b'E' => Message::Error(WireError::json(opcode, payload)?),
            b'K' => Message::Ack(WireError::json(opcode, payload)?),
            b'I' => {
                let identify: Identify = WireError::json(opcode, payload)?;
                check_addr_len(&identify.addr).map_err(bad)?;
                Message::Identify(identify)
            }
            b'H' => Message::Hello(WireError::json(opcode, payload)?),
            b'P' => {
                let proof: Proof = WireError::json(opcode, payload)?;
                check_addr_len(&proof.addr).map_err(bad)?;
                Message::Proof(proof)
            }
            b'S' => Message::Subscribe,
            b'U' => Message::Update(WireError::json(opcode, payload)?),
            b'Z' => Message::KeepAlive,
            other => return Err(WireError::UnknownOpcode((other as char).to_string())),
        })
    }
}
