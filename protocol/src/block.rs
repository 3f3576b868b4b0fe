//! Blocks: a header plus its records, the genesis block, and the checks a block passes on its own
//! (before its place in the chain is known). Passing them turns a [`Block`] into a
//! [`CheckedBlock`], the only kind the chain accepts.

use std::ops::Deref;
use std::sync::atomic::AtomicBool;

use serde::{Deserialize, Serialize};
use smallvec::SmallVec;

use crate::account::AccountId;
use crate::hash::{BlockHash, Hash256};
use crate::header::{HEADER_VERSION, Header};
use crate::ledger_error::LedgerError;
use crate::params::{MAX_BITS, MAX_BLOCK_RECORDS, MAX_BLOCK_RECORDS_SIZE, Params};
use crate::record::{Record, RecordFormatError, RecordId};

/// Domain separation for the records commitment.
const RECORDS_DOMAIN: &[u8] = b"monkeychain/records/v1";
/// Genesis time: 2026-01-01T00:00:00Z in milliseconds.
pub const GENESIS_TIMESTAMP: u64 = 1_767_225_600_000;

/// A block as it travels: not yet checked.
///
/// On the wire it is `{"hash": ..., "header": ..., "records": [...]}`; the `hash` is there for
/// people and pages, and a line whose `hash` is not its header's hash is refused as it is parsed.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "BlockJson")]
pub struct Block {
    /// The header, which the hash covers.
    pub header: Header,
    /// The records, committed to by `header.records_root`.
    pub records: Vec<Record>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct BlockJson {
    hash: BlockHash,
    header: Header,
    records: Vec<Record>,
}

#[derive(Serialize)]
struct BlockJsonRef<'a> {
    hash: BlockHash,
    header: &'a Header,
    records: &'a [Record],
}

impl TryFrom<BlockJson> for Block {
    type Error = String;

    fn try_from(json: BlockJson) -> Result<Block, String> {
        let actual = json.header.hash();
        if actual != json.hash {
            return Err(format!(
                "block hash {} is not its header's hash {actual}",
                json.hash
            ));
        }
        // JSON gives no length up front, so the vector grew by doubling; a block is kept for
        // the chain's life, and the spare capacity of 100,000 of them is tens of megabytes.
        let mut records = json.records;
        records.shrink_to_fit();
        Ok(Block {
            header: json.header,
            records,
        })
    }
}

impl Serialize for Block {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        BlockJsonRef {
            hash: self.header.hash(),
            header: &self.header,
            records: &self.records,
        }
        .serialize(s)
    }
}

/// Why a block is invalid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BlockError {
    /// Unknown header version.
    #[error("unknown header version {0}")]
    BadVersion(u32),
    /// Declared difficulty under the network's floor.
    #[error("difficulty {bits} is below the floor {floor}")]
    BelowFloor {
        /// Declared.
        bits: u32,
        /// Required at least.
        floor: u32,
    },
    /// Declared difficulty above [`MAX_BITS`].
    #[error("difficulty {bits} is above the maximum {MAX_BITS}")]
    TooHard {
        /// Declared.
        bits: u32,
    },
    /// The hash does not have the declared number of leading zero bits.
    #[error("proof of work missed: {zeros} leading zero bits, {bits} declared")]
    InsufficientWork {
        /// Declared.
        bits: u32,
        /// Actual leading zero bits of the hash.
        zeros: u32,
    },
    /// More records than a block may hold.
    #[error("{count} records, at most {MAX_BLOCK_RECORDS} allowed")]
    TooManyRecords {
        /// How many it holds.
        count: usize,
    },
    /// Records larger than a block may hold.
    #[error("records take {size} bytes, at most {MAX_BLOCK_RECORDS_SIZE} allowed")]
    TooLarge {
        /// Their encoded size.
        size: usize,
    },
    /// The header's record count or size disagrees with the records.
    #[error(
        "header declares {declared_count} records of {declared_size} bytes, block has {count} of {size}"
    )]
    SizeMismatch {
        /// `header.record_count`.
        declared_count: u32,
        /// `header.records_size`.
        declared_size: u32,
        /// Actual count.
        count: usize,
        /// Actual size.
        size: usize,
    },
    /// The records do not hash to `header.records_root`.
    #[error("records do not match the header's commitment")]
    BadCommitment,
    /// A record is malformed or badly signed.
    #[error("record {index}: {error}")]
    BadRecord {
        /// Its position in the block.
        index: usize,
        /// What is wrong with it.
        error: RecordFormatError,
    },
    /// Height is not the parent's plus one.
    #[error("height {got}, expected {expected}")]
    BadHeight {
        /// The parent's height plus one.
        expected: u64,
        /// Declared.
        got: u64,
    },
    /// A height-0 block that is not our genesis.
    #[error("not this network's genesis block")]
    WrongGenesis,
    /// Timestamp too far in the future.
    #[error("timestamp {timestamp} is more than 2 minutes ahead of local time {now}")]
    FutureTimestamp {
        /// Declared.
        timestamp: u64,
        /// Local clock.
        now: u64,
    },
    /// Timestamp before the median of the last 11 blocks.
    #[error("timestamp {timestamp} is before the median {median} of the previous blocks")]
    TimestampBeforeMedian {
        /// Declared.
        timestamp: u64,
        /// Median of the ancestors' timestamps.
        median: u64,
    },
    /// A record is invalid against the ledger state at the parent.
    #[error("record {index}: {error}")]
    Ledger {
        /// Its position in the block.
        index: usize,
        /// What the ledger refused.
        error: LedgerError,
    },
    /// An ancestor was found invalid.
    #[error("descends from invalid block {0}")]
    InvalidAncestor(BlockHash),
}

impl BlockError {
    /// Whether the block stays invalid whatever comes later: every fault but a timestamp from
    /// the future, which time makes valid. A node remembers such a block as invalid and bans
    /// its sender; one from the future it only refuses for now.
    pub fn is_final(&self) -> bool {
        !matches!(self, BlockError::FutureTimestamp { .. })
    }
}

/// Solves a block template on one thread, searching until a nonce is found: what tests, tools
/// and benchmarks use to make a valid block at a low difficulty. The node's miner calls [`crate::pow::mine`]
/// itself, with threads and a cancel flag.
pub fn solve(template: Block) -> Block {
    let never = AtomicBool::new(false);
    let mut header = template.header.clone();
    loop {
        match crate::pow::mine(&header, 1, &never, None).header {
            Some(solved) => {
                return Block {
                    header: solved,
                    ..template
                };
            }
            // Not reached without a cancel flag or a limit; should it be, search on.
            None => header.nonce = header.nonce.wrapping_add(1),
        }
    }
}

/// The records commitment: SHA-256 over a domain tag, the record count and every record id.
pub fn records_root(records: &[Record]) -> Hash256 {
    let ids: Vec<RecordId> = records.iter().map(Record::id).collect();
    records_root_of_ids(&ids)
}

/// The records commitment from the records' ids.
fn records_root_of_ids(ids: &[RecordId]) -> Hash256 {
    let mut bytes = Vec::with_capacity(RECORDS_DOMAIN.len() + 4 + 32 * ids.len());
    bytes.extend_from_slice(RECORDS_DOMAIN);
    bytes.extend_from_slice(&(ids.len() as u32).to_le_bytes());
    for id in ids {
        bytes.extend_from_slice(&id.0);
    }
    Hash256::digest(&bytes)
}

/// The one genesis block every node starts from. It carries no proof of work: it is not mined,
/// it is agreed.
pub fn genesis() -> Block {
    Block {
        header: Header {
            version: HEADER_VERSION,
            bits: 0,
            height: 0,
            prev_hash: Hash256::ZERO,
            records_root: records_root(&[]),
            miner: AccountId([0; 32]),
            timestamp: GENESIS_TIMESTAMP,
            record_count: 0,
            records_size: 0,
            nonce: 0,
        },
        records: Vec::new(),
    }
}

impl Block {
    /// An unsolved block (nonce 0) on `parent` with `records`, ready for the miner.
    pub fn template(
        parent: &Header,
        records: Vec<Record>,
        miner: AccountId,
        bits: u32,
        timestamp: u64,
    ) -> Block {
        let size: usize = records.iter().map(|r| r.encode().len()).sum();
        Block {
            header: Header {
                version: HEADER_VERSION,
                bits,
                height: parent.height + 1,
                prev_hash: parent.hash(),
                records_root: records_root(&records),
                miner,
                timestamp,
                record_count: records.len() as u32,
                records_size: size as u32,
                nonce: 0,
            },
            records,
        }
    }

    /// Checks everything that needs neither the parent nor the ledger: version, difficulty floor,
    /// proof of work, size caps, the commitment, and every record's format and signature.
    /// Cheap checks come first, so junk costs little.
    pub fn check(self, params: &Params) -> Result<CheckedBlock, BlockError> {
        self.check_with(params, &|_| false, None)
    }

    /// [`Block::check`], except that the signatures of records `verified` says were verified
    /// before (by this node, e.g. when its pool admitted them) are not verified again. A record
    /// is named by its id, the hash of its signed bytes, so any change to it is a new id.
    pub fn check_known(
        self,
        params: &Params,
        verified: &dyn Fn(&RecordId) -> bool,
    ) -> Result<CheckedBlock, BlockError> {
        self.check_with(params, verified, None)
    }

    /// [`Block::check_known`], except that the signatures it would verify are left to the
    /// caller: their records' places in the block are returned, for a check of many at once
    /// ([`crate::verify::check_in_order`]).
    pub fn check_deferring(
        self,
        params: &Params,
        verified: &dyn Fn(&RecordId) -> bool,
    ) -> Result<(CheckedBlock, Vec<usize>), BlockError> {
        let mut deferred = Vec::new();
        let checked = self.check_with(params, verified, Some(&mut deferred))?;
        Ok((checked, deferred))
    }

    /// Checks a block of this node's own: read back from its store, or mined from records its
    /// pool admitted. Everything [`Block::check`] does except verifying the records'
    /// signatures, which the node did when the block or the records first came in and which are
    /// by far the slowest part. Proof of work and the commitment are still checked (a few
    /// hashes), so a damaged store entry is caught. Anything from elsewhere goes through
    /// [`Block::check`] or [`Block::check_known`] (or [`Block::check_deferring`], which
    /// leaves the signatures to a batch check).
    pub fn check_own(self, params: &Params) -> Result<CheckedBlock, BlockError> {
        self.check_with(params, &|_| true, None)
    }

    /// The cheap first part of [`Block::check`], from the header and the record count alone:
    /// version, the difficulty floor, the proof of work (one hash), and the count of records
    /// against the header and the cap. A block that fails here is refused before its records are
    /// encoded, hashed or verified, so a flood of blocks without work costs one hash each.
    pub fn check_header(&self, params: &Params) -> Result<BlockHash, BlockError> {
        let h = &self.header;
        if h.height == 0 {
            return if *self == genesis() {
                Ok(h.hash())
            } else {
                Err(BlockError::WrongGenesis)
            };
        }
        if h.version != HEADER_VERSION {
            return Err(BlockError::BadVersion(h.version));
        }
        if h.bits < params.difficulty_floor {
            return Err(BlockError::BelowFloor {
                bits: h.bits,
                floor: params.difficulty_floor,
            });
        }
        if h.bits > MAX_BITS {
            return Err(BlockError::TooHard { bits: h.bits });
        }
        let hash = h.hash();
        let zeros = hash.leading_zero_bits();
        if zeros < h.bits {
            return Err(BlockError::InsufficientWork {
                bits: h.bits,
                zeros,
            });
        }
        let count = self.records.len();
        if count > MAX_BLOCK_RECORDS as usize {
            return Err(BlockError::TooManyRecords { count });
        }
        Ok(hash)
    }

    /// Checks everything; a record's signature only when `verified` does not vouch for it, and
    /// then not here but by the caller when it gives `deferred` (the record's place goes there).
    fn check_with(
        self,
        params: &Params,
        verified: &dyn Fn(&RecordId) -> bool,
        mut deferred: Option<&mut Vec<usize>>,
    ) -> Result<CheckedBlock, BlockError> {
        let hash = self.check_header(params)?;
        if self.header.height == 0 {
            return Ok(CheckedBlock::genesis());
        }
        let h = &self.header;
        let count = self.records.len();
        // Each record encoded once, for the size and the id.
        let encoded: Vec<Vec<u8>> = self.records.iter().map(Record::encode).collect();
        let size: usize = encoded.iter().map(Vec::len).sum();
        if size > MAX_BLOCK_RECORDS_SIZE as usize {
            return Err(BlockError::TooLarge { size });
        }
        if count != h.record_count as usize || size != h.records_size as usize {
            return Err(BlockError::SizeMismatch {
                declared_count: h.record_count,
                declared_size: h.records_size,
                count,
                size,
            });
        }
        let ids: Ids = encoded.iter().map(|e| Record::id_of_encoding(e)).collect();
        drop(encoded);
        if records_root_of_ids(&ids) != h.records_root {
            return Err(BlockError::BadCommitment);
        }
        for (index, (record, id)) in self.records.iter().zip(&ids).enumerate() {
            let checked = if verified(id) {
                record.check_format()
            } else if let Some(deferred) = deferred.as_deref_mut() {
                deferred.push(index);
                record.check_format()
            } else {
                record.check()
            };
            checked.map_err(|error| BlockError::BadRecord { index, error })?;
        }
        Ok(CheckedBlock {
            block: self,
            hash,
            ids,
        })
    }
}

/// A checked block's record ids, in place up to two. Most blocks hold one or two records; ids
/// the check threads allocated apart from the block, kept as long as the block, raised the
/// node's peak memory in a sync of 100,000 blocks from about 52 MB to 55 to 70 MB. Each
/// short-lived check thread allocates from a malloc arena of its own, and those arenas kept the
/// space the blocks that left memory freed (with `MALLOC_ARENA_MAX=2`, 50 to 52 MB).
type Ids = SmallVec<[RecordId; 2]>;

/// A block that passed [`Block::check`]. Only these enter the chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckedBlock {
    block: Block,
    hash: BlockHash,
    /// Its records' ids, in order: the check computes them, and the pool, the store and the
    /// node's indexes need them again (a hash and an allocation each time otherwise).
    ids: Ids,
}

impl CheckedBlock {
    /// The genesis block, checked by definition.
    pub fn genesis() -> CheckedBlock {
        let block = genesis();
        let hash = block.header.hash();
        let ids = block.records.iter().map(Record::id).collect();
        CheckedBlock { block, hash, ids }
    }

    /// The block's hash, computed once.
    pub fn hash(&self) -> BlockHash {
        self.hash
    }

    /// Its records' ids, in the records' order, computed once.
    pub fn ids(&self) -> &[RecordId] {
        &self.ids
    }

    /// Each record with its id.
    pub fn records_with_ids(&self) -> impl Iterator<Item = (&Record, RecordId)> {
        self.block.records.iter().zip(self.ids.iter().copied())
    }

    /// The block.
    pub fn block(&self) -> &Block {
        &self.block
    }

    /// Gives the block back, for sending or storing.
    pub fn into_block(self) -> Block {
        self.block
    }
}

impl Deref for CheckedBlock {
    type Target = Block;

    fn deref(&self) -> &Block {
        &self.block
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::account::Keypair;
    use crate::record::Action;

    fn valid_block(bits: u32) -> Block {
        let alice = Keypair::from_seed([1; 32]);
        let records = vec![Record::sign(
            &alice,
            0,
            Action::Join {
                name: "alice".into(),
            },
        )];
        solve(Block::template(
            &genesis().header,
            records,
            alice.account(),
            bits,
            GENESIS_TIMESTAMP + 1,
        ))
    }

    fn check(block: Block) -> Result<CheckedBlock, BlockError> {
        block.check(&Params::with_floor(4))
    }

    #[test]
    fn a_mined_block_passes() {
        let b = valid_block(6);
        let c = check(b.clone()).unwrap();
        assert_eq!(c.hash(), b.header.hash());
        let ids: Vec<RecordId> = b.records.iter().map(Record::id).collect();
        assert_eq!(c.ids(), ids, "the check's ids, in the records' order");
        assert_eq!(CheckedBlock::genesis().ids(), [] as [RecordId; 0]);
    }

    #[test]
    fn genesis_is_fixed_and_checks() {
        assert_eq!(genesis(), genesis());
        assert!(check(genesis()).is_ok());
        let mut fake = genesis();
        fake.header.timestamp += 1;
        assert_eq!(check(fake), Err(BlockError::WrongGenesis));
    }

    #[test]
    fn each_fault_is_refused_with_its_reason() {
        let good = valid_block(6);
        let mut b = good.clone();
        b.header.version = 9;
        assert_eq!(check(solve(b)), Err(BlockError::BadVersion(9)));

        let mut b = good.clone();
        b.header.bits = 3;
        assert_eq!(
            check(solve(b)),
            Err(BlockError::BelowFloor { bits: 3, floor: 4 })
        );

        let mut b = good.clone();
        b.header.bits = MAX_BITS + 1;
        assert_eq!(check(b), Err(BlockError::TooHard { bits: MAX_BITS + 1 }));

        // Declaring more work than was done: find a nonce whose hash misses 20 bits.
        let mut b = good.clone();
        b.header.bits = 20;
        while b.header.hash().leading_zero_bits() >= 20 {
            b.header.nonce += 1;
        }
        assert!(matches!(
            check(b),
            Err(BlockError::InsufficientWork { bits: 20, .. })
        ));

        let mut b = good.clone();
        b.records[0].sig.0[0] ^= 1;
        b.header.records_root = records_root(&b.records);
        assert_eq!(
            check(solve(b)),
            Err(BlockError::BadRecord {
                index: 0,
                error: RecordFormatError::BadSignature
            })
        );

        let mut b = good.clone();
        b.header.records_root = Hash256([7; 32]);
        assert_eq!(check(solve(b)), Err(BlockError::BadCommitment));

        let mut b = good.clone();
        b.header.record_count = 2;
        assert!(matches!(
            check(solve(b)),
            Err(BlockError::SizeMismatch { .. })
        ));
    }

    #[test]
    fn a_stored_block_skips_only_the_signatures() {
        let good = valid_block(6);
        let mut forged = good.clone();
        forged.records[0].sig.0[0] ^= 1;
        forged.header.records_root = records_root(&forged.records);
        let forged = solve(forged);
        let params = Params::with_floor(4);
        assert!(forged.clone().check_own(&params).is_ok());
        assert!(forged.check(&params).is_err());
        let mut damaged = good;
        damaged.header.nonce ^= 0xffff;
        damaged.header.bits = 24;
        assert!(matches!(
            damaged.check_own(&params),
            Err(BlockError::InsufficientWork { .. })
        ));
    }

    #[test]
    fn known_records_skip_only_their_signature_checks() {
        let mut forged = valid_block(6);
        forged.records[0].sig.0[0] ^= 1;
        forged.header.records_root = records_root(&forged.records);
        let forged = solve(forged);
        let id = forged.records[0].id();
        let params = Params::with_floor(4);
        assert!(forged.clone().check_known(&params, &|r| *r == id).is_ok());
        assert!(matches!(
            forged.check_known(&params, &|_| false),
            Err(BlockError::BadRecord { index: 0, .. })
        ));
    }

    #[test]
    fn size_caps_are_enforced() {
        let alice = Keypair::from_seed([1; 32]);
        let records: Vec<_> = (0..=MAX_BLOCK_RECORDS as u64)
            .map(|seq| {
                Record::sign(
                    &alice,
                    seq,
                    Action::Purchase {
                        monkey: "marmoset".into(),
                    },
                )
            })
            .collect();
        let b = solve(Block::template(
            &genesis().header,
            records,
            alice.account(),
            4,
            1,
        ));
        assert_eq!(check(b), Err(BlockError::TooManyRecords { count: 1001 }));

        // A single oversized (and otherwise invalid) record hits the byte cap before any
        // per-record check runs.
        let huge = Record::sign(
            &alice,
            0,
            Action::Join {
                name: "x".repeat(600 * 1024),
            },
        );
        let b = solve(Block::template(
            &genesis().header,
            vec![huge],
            alice.account(),
            4,
            1,
        ));
        assert!(matches!(check(b), Err(BlockError::TooLarge { .. })));
    }

    #[test]
    fn wire_json_carries_the_hash_and_refuses_a_wrong_one() {
        let b = valid_block(4);
        let json = serde_json::to_string(&b).unwrap();
        assert!(json.contains(&b.header.hash().to_string()));
        assert_eq!(serde_json::from_str::<Block>(&json).unwrap(), b);
        let tampered = json.replacen(
            &b.header.hash().to_string(),
            &Hash256([0; 32]).to_string(),
            1,
        );
        let err = serde_json::from_str::<Block>(&tampered)
            .unwrap_err()
            .to_string();
        assert!(err.contains("is not its header's hash"), "{err}");
    }
}
