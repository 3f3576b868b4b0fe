//! The verified-chain cache: `chain.cache` in the wallet folder, so that a shop asks a node
//! only for what is new instead of fetching and checking the whole chain on every command.
//!
//! It holds what the last command verified of the best chain: the checkpoint (a
//! [`ChainTip`]: hash, height, work and the timestamps the median rule needs), the ledger at
//! the checkpoint, and the tail of up to [`crate::chain::TAIL_BLOCKS`] blocks above it, enough
//! to follow any reorg a node makes. The file is written through a temporary file and a rename,
//! so a reader sees the old file or the new one, and it carries a SHA-256 checksum of its body
//! and the floor it was verified at. Bytes from disk are input like bytes from the network:
//! a file that is too big, not a cache, of another version or floor, fails its checksum, does
//! not decode, or whose tail does not replay onto the checkpoint is *damaged*, and the shop
//! reads the chain from genesis again (and says so once). The tail's blocks are checked again on
//! loading (links, proof of work, commitment, every record against the ledger) but not their
//! signatures, which were verified when the blocks came in: the checksum stands for those.
//!
//! Layout, little-endian: `MKYCHAIN`, version (u32), floor (u32), SHA-256 of the body (32
//! bytes), then the body: the checkpoint ([`protocol::extend::CHAIN_TIP_SIZE`] bytes), the
//! ledger's length (u64) and [`Ledger::to_bytes`], the tail's block count (u32), then each block
//! as its length (u32) and [`Block::to_bytes`].

use std::io::Read;
use std::path::{Path, PathBuf};

use protocol::extend::{CHAIN_TIP_SIZE, ChainTip};
use protocol::hash::Hash256;
use protocol::{Block, Ledger, Params};

use crate::chain::{ChainState, TAIL_BLOCKS};
use crate::wallet::{WalletError, ensure_private_dir, write_replace};

/// The cache's file name in the wallet folder.
pub const CACHE_FILE: &str = "chain.cache";

/// The first bytes of a cache file.
const MAGIC: &[u8; 8] = b"MKYCHAIN";

/// The layout's version; any other is rebuilt.
const VERSION: u32 = 1;

/// The header: magic, version, floor, checksum.
const HEADER_LEN: usize = 8 + 4 + 4 + 32;

/// Most bytes of a cache file read: the tail's cap in bytes and a generous ledger (64 MiB is
/// a million accounts or votes). A bigger file is damaged, not read.
pub const MAX_CACHE_BYTES: u64 = 128 * 1024 * 1024;

/// Why the cache could not be used.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    /// The file could not be read.
    #[error("cannot read it: {0}")]
    Read(std::io::Error),
    /// Bigger than [`MAX_CACHE_BYTES`].
    #[error("it is larger than {MAX_CACHE_BYTES} bytes")]
    TooLarge,
    /// Not a cache file.
    #[error("it is not a chain cache")]
    NotACache,
    /// A layout this shop does not read.
    #[error("it has layout version {0}, this shop reads {VERSION}")]
    Version(u32),
    /// Verified at another floor than the shop's.
    #[error("it was verified at a floor of {cache} bits, the shop's is {shop}")]
    Floor {
        /// The cache's.
        cache: u32,
        /// The shop's (`--floor`).
        shop: u32,
    },
    /// The body does not match its checksum.
    #[error("its checksum does not match")]
    Checksum,
    /// The body does not decode.
    #[error("it does not decode: {0}")]
    Decode(String),
    /// The tail does not replay onto the checkpoint.
    #[error("its blocks do not replay: {0}")]
    Replay(String),
}

/// The cache file of the wallet in `dir`.
pub fn path(dir: &Path) -> PathBuf {
    dir.join(CACHE_FILE)
}

/// Loads the cache of the wallet in `dir`, checked at `params` (`now` is the local clock in
/// milliseconds): `Ok(None)` when there is none. CPU work (the tail's checks): call it off the
/// async threads.
pub fn load(dir: &Path, params: &Params, now: u64) -> Result<Option<ChainState>, CacheError> {
    let file = match std::fs::File::open(path(dir)) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(CacheError::Read(e)),
    };
    let mut bytes = Vec::new();
    file.take(MAX_CACHE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(CacheError::Read)?;
    if bytes.len() as u64 > MAX_CACHE_BYTES {
        return Err(CacheError::TooLarge);
    }
    decode(&bytes, params, now).map(Some)
}

/// Writes `chain`'s checkpoint, ledger there and tail as the cache of the wallet in `dir`,
/// atomically.
pub fn save(dir: &Path, chain: &ChainState, params: &Params) -> Result<(), WalletError> {
    ensure_private_dir(dir)?;
    write_replace(&path(dir), &encode(chain, params))
}

/// The file's bytes for `chain`.
pub fn encode(chain: &ChainState, params: &Params) -> Vec<u8> {
    let mut body = Vec::new();
    body.extend_from_slice(&chain.checkpoint().to_bytes());
    let ledger = chain.checkpoint_ledger().to_bytes();
    body.extend_from_slice(&(ledger.len() as u64).to_le_bytes());
    body.extend_from_slice(&ledger);
    let blocks: Vec<Vec<u8>> = chain.tail().map(Block::to_bytes).collect();
    body.extend_from_slice(&(blocks.len() as u32).to_le_bytes());
    for block in blocks {
        body.extend_from_slice(&(block.len() as u32).to_le_bytes());
        body.extend_from_slice(&block);
    }
    let mut out = Vec::with_capacity(HEADER_LEN + body.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&VERSION.to_le_bytes());
    out.extend_from_slice(&params.difficulty_floor.to_le_bytes());
    out.extend_from_slice(Hash256::digest(&body).as_bytes());
    out.extend_from_slice(&body);
    out
}

/// Reads a cache file's bytes back into a chain (its source is "the cache").
pub fn decode(bytes: &[u8], params: &Params, now: u64) -> Result<ChainState, CacheError> {
    let mut r = bytes;
    if take(&mut r, 8)? != MAGIC {
        return Err(CacheError::NotACache);
    }
    let version = u32_of(take(&mut r, 4)?);
    if version != VERSION {
        return Err(CacheError::Version(version));
    }
    let floor = u32_of(take(&mut r, 4)?);
    if floor != params.difficulty_floor {
        return Err(CacheError::Floor {
            cache: floor,
            shop: params.difficulty_floor,
        });
    }
    let checksum = take(&mut r, 32)?;
    if Hash256::digest(r).as_bytes()[..] != *checksum {
        return Err(CacheError::Checksum);
    }
    let base = ChainTip::from_bytes(take(&mut r, CHAIN_TIP_SIZE)?)
        .map_err(|e| CacheError::Decode(format!("checkpoint: {e}")))?;
    let len = u64::from_le_bytes(array(take(&mut r, 8)?));
    let len = usize::try_from(len).map_err(|_| CacheError::Decode("ledger length".into()))?;
    let ledger = Ledger::from_bytes(take(&mut r, len)?)
        .map_err(|e| CacheError::Decode(format!("ledger: {e}")))?;
    let count = u32_of(take(&mut r, 4)?) as usize;
    if count > TAIL_BLOCKS {
        return Err(CacheError::Decode(format!(
            "{count} blocks in the tail, at most {TAIL_BLOCKS}"
        )));
    }
    let mut blocks = Vec::new();
    for i in 0..count {
        let len = u32_of(take(&mut r, 4)?) as usize;
        let block = Block::from_bytes(take(&mut r, len)?)
            .map_err(|e| CacheError::Decode(format!("block {i} of the tail: {e}")))?;
        blocks.push(block);
    }
    if !r.is_empty() {
        return Err(CacheError::Decode(format!("{} trailing bytes", r.len())));
    }
    let mut chain = ChainState::at_checkpoint("the cache".into(), base, ledger);
    chain
        .extend_by(blocks, now, |b| b.check_own(params))
        .map_err(|e| CacheError::Replay(e.to_string()))?;
    Ok(chain)
}

/// The next `n` bytes of `r`.
fn take<'a>(r: &mut &'a [u8], n: usize) -> Result<&'a [u8], CacheError> {
    if r.len() < n {
        return Err(CacheError::Decode("it is truncated".into()));
    }
    let (head, rest) = r.split_at(n);
    *r = rest;
    Ok(head)
}

/// `bytes` (exactly N of them, as [`take`] gives) as an array.
fn array<const N: usize>(bytes: &[u8]) -> [u8; N] {
    let mut out = [0u8; N];
    out.copy_from_slice(&bytes[..N]);
    out
}

/// Four bytes as a little-endian u32.
fn u32_of(bytes: &[u8]) -> u32 {
    u32::from_le_bytes(array(bytes))
}

#[cfg(test)]
mod tests {
    use protocol::{AccountId, Action, Keypair, Record};

    use super::*;

    const NOW: u64 = protocol::block::GENESIS_TIMESTAMP + 1_000_000_000;

    /// `n` blocks at a floor of 0, the first holding a join.
    fn chain(n: usize) -> ChainState {
        let key = Keypair::from_seed([5; 32]);
        let mut blocks: Vec<Block> = Vec::new();
        let genesis = protocol::genesis();
        for i in 0..n {
            let parent = blocks.last().map_or(&genesis.header, |b| &b.header);
            let records = match i {
                0 => vec![Record::sign(&key, 0, Action::Join { name: "ed".into() })],
                _ => Vec::new(),
            };
            let stamp = parent.timestamp + 1;
            blocks.push(Block::template(
                parent,
                records,
                AccountId::default(),
                0,
                stamp,
            ));
        }
        ChainState::from_blocks("n".into(), blocks, &Params::with_floor(0), NOW).unwrap()
    }

    #[test]
    fn a_chain_longer_than_the_tail_comes_back_the_same() {
        let params = Params::with_floor(0);
        let long = chain(TAIL_BLOCKS + 30);
        assert_eq!(long.checkpoint().height, 30);
        let back = decode(&encode(&long, &params), &params, NOW).unwrap();
        assert_eq!(
            (back.height, back.tip, back.work),
            (long.height, long.tip, long.work)
        );
        assert_eq!(back.ledger, long.ledger);
        assert_eq!(back.locator(), long.locator());
    }

    #[test]
    fn every_damage_is_an_error_never_a_panic() {
        let params = Params::with_floor(0);
        let bytes = encode(&chain(20), &params);
        // Every truncation, and every single flipped byte, is refused.
        for cut in 0..bytes.len() {
            assert!(decode(&bytes[..cut], &params, NOW).is_err(), "cut at {cut}");
        }
        for at in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[at] ^= 0x40;
            assert!(decode(&bad, &params, NOW).is_err(), "byte {at} flipped");
        }
        assert!(matches!(
            decode(&bytes, &Params::with_floor(1), NOW),
            Err(CacheError::Floor { cache: 0, shop: 1 })
        ));
        // A body with a valid checksum whose blocks do not replay onto the checkpoint.
        let mut forged = bytes.clone();
        let tail_start = HEADER_LEN + CHAIN_TIP_SIZE;
        forged[tail_start] ^= 1; // the ledger's length
        let body = forged[HEADER_LEN..].to_vec();
        forged[16..48].copy_from_slice(Hash256::digest(&body).as_bytes());
        assert!(matches!(
            decode(&forged, &params, NOW),
            Err(CacheError::Decode(_))
        ));
        // A checkpoint whose hash the tail's first block does not follow.
        let mut forged = bytes.clone();
        forged[HEADER_LEN] ^= 1;
        let body = forged[HEADER_LEN..].to_vec();
        forged[16..48].copy_from_slice(Hash256::digest(&body).as_bytes());
        assert!(matches!(
            decode(&forged, &params, NOW),
            Err(CacheError::Replay(_))
        ));
    }
}
