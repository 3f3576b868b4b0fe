//! The block header and its fixed 136-byte encoding, the only thing a block hash covers.
//!
//! The layout puts everything but the nonce in the first 128 bytes (two SHA-256 blocks), so a miner
//! compresses those once (the midstate) and per nonce hashes only the last 64-byte block.

use serde::{Deserialize, Serialize};

use crate::account::AccountId;
use crate::hash::{BlockHash, Hash256};

/// Bytes in an encoded header.
pub const HEADER_SIZE: usize = 136;
/// Bytes before the nonce: exactly two SHA-256 blocks, hashed once per template.
pub const HEADER_PREFIX_SIZE: usize = 128;
/// The only header version this code understands.
pub const HEADER_VERSION: u32 = 1;

/// A block header. Field names follow Bitcoin's where the concept is the same.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Header {
    /// Format version, [`HEADER_VERSION`].
    pub version: u32,
    /// Difficulty: the number of leading zero bits the hash must have.
    pub bits: u32,
    /// Distance from genesis (genesis is 0).
    pub height: u64,
    /// Hash of the parent block.
    pub prev_hash: BlockHash,
    /// Commitment to the records: see [`crate::block::records_root`].
    pub records_root: Hash256,
    /// The miner's account, credited with the block reward.
    pub miner: AccountId,
    /// Milliseconds since the Unix epoch, as claimed by the miner.
    pub timestamp: u64,
    /// Number of records in the block.
    pub record_count: u32,
    /// Sum of the records' canonical encoded sizes, in bytes.
    pub records_size: u32,
    /// The value the miner varies.
    pub nonce: u64,
}

impl Header {
    /// The fixed little-endian encoding the hash is computed over.
    pub fn encode(&self) -> [u8; HEADER_SIZE] {
        let mut out = [0u8; HEADER_SIZE];
        out[0..4].copy_from_slice(&self.version.to_le_bytes());
        out[4..8].copy_from_slice(&self.bits.to_le_bytes());
        out[8..16].copy_from_slice(&self.height.to_le_bytes());
        out[16..48].copy_from_slice(&self.prev_hash.0);
        out[48..80].copy_from_slice(&self.records_root.0);
        out[80..112].copy_from_slice(&self.miner.0);
        out[112..120].copy_from_slice(&self.timestamp.to_le_bytes());
        out[120..124].copy_from_slice(&self.record_count.to_le_bytes());
        out[124..128].copy_from_slice(&self.records_size.to_le_bytes());
        out[128..136].copy_from_slice(&self.nonce.to_le_bytes());
        out
    }

    /// The block hash: SHA-256 of [`Header::encode`].
    pub fn hash(&self) -> BlockHash {
        Hash256::digest(&self.encode())
    }

    /// The expected number of hashes to find this block: 2^bits.
    pub fn work(&self) -> u128 {
        work_for_bits(self.bits)
    }
}

/// Expected hashes for a difficulty: 2^bits, saturating far beyond any real difficulty.
pub fn work_for_bits(bits: u32) -> u128 {
    1u128.checked_shl(bits).unwrap_or(u128::MAX >> 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_field_is_in_the_hash() {
        let base = crate::block::genesis().header;
        let h = base.hash();
        let variants = [
            Header {
                version: 2,
                ..base.clone()
            },
            Header {
                bits: 1,
                ..base.clone()
            },
            Header {
                height: 1,
                ..base.clone()
            },
            Header {
                prev_hash: Hash256([1; 32]),
                ..base.clone()
            },
            Header {
                records_root: Hash256([1; 32]),
                ..base.clone()
            },
            Header {
                miner: AccountId([1; 32]),
                ..base.clone()
            },
            Header {
                timestamp: 1,
                ..base.clone()
            },
            Header {
                record_count: 1,
                ..base.clone()
            },
            Header {
                records_size: 1,
                ..base.clone()
            },
            Header {
                nonce: 1,
                ..base.clone()
            },
        ];
        for v in variants {
            assert_ne!(v.hash(), h, "{v:?}");
        }
    }

    #[test]
    fn nonce_is_alone_in_the_last_sha256_block() {
        let a = crate::block::genesis().header;
        let b = Header {
            nonce: 99,
            ..a.clone()
        };
        assert_eq!(
            a.encode()[..HEADER_PREFIX_SIZE],
            b.encode()[..HEADER_PREFIX_SIZE]
        );
        assert_eq!(HEADER_PREFIX_SIZE % 64, 0);
        // The tail plus SHA-256 padding (1 byte + 8 length bytes) fits one block.
        const { assert!(HEADER_SIZE - HEADER_PREFIX_SIZE + 9 <= 64) };
    }

    #[test]
    fn work_doubles_per_bit() {
        assert_eq!(work_for_bits(0), 1);
        assert_eq!(work_for_bits(20), 1 << 20);
        assert!(work_for_bits(200) > work_for_bits(100));
    }
}

#[cfg(test)]
mod vector {
    use std::sync::atomic::AtomicBool;

    use crate::account::Keypair;
    use crate::block::{Block, GENESIS_TIMESTAMP, genesis};

    /// The test vectors quoted in docs/PROTOCOL.md. A change here is a consensus change.
    #[test]
    fn genesis_and_block_one_vectors() {
        let g = genesis().header;
        assert_eq!(
            hex::encode(g.encode()),
            "01000000000000000000000000000000000000000000000000000000000000000000000000000000\
             0000000000000000cc9158c0187782fa5056cddb43502700242ec6b8a54b93a110cdcecfed5e8597\
             000000000000000000000000000000000000000000000000000000000000000000a8da769b010000\
             00000000000000000000000000000000"
        );
        assert_eq!(
            g.hash().to_string(),
            "a06b1dd94b9d706b0727c251bf406b1499ce115b760026aaa7d506a7afe8091d"
        );

        let miner = Keypair::from_seed([1; 32]).account();
        let template = Block::template(&g, Vec::new(), miner, 8, GENESIS_TIMESTAMP + 1000).header;
        let solved = crate::pow::mine(&template, 1, &AtomicBool::new(false), None)
            .header
            .unwrap();
        assert_eq!(solved.nonce, 141);
        assert_eq!(
            hex::encode(solved.encode()),
            "01000000080000000100000000000000a06b1dd94b9d706b0727c251bf406b1499ce115b760026aa\
             a7d506a7afe8091dcc9158c0187782fa5056cddb43502700242ec6b8a54b93a110cdcecfed5e8597\
             8a88e3dd7409f195fd52db2d3cba5d72ca6709bf1d94121bf3748801b40f6f5ce8abda769b010000\
             00000000000000008d00000000000000"
        );
        assert_eq!(
            solved.hash().to_string(),
            "00cf5c47247cc92d9434c54a23806bce84d528b062eee2be99901b338992cc0d"
        );
    }
}
