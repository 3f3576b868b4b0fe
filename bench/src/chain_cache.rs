//! The disk cache of the bench's long chains, so that a million-block chain is built once per
//! machine (well, per target folder), not once per run: `target/bench-chains/<kind>-<floor>-<n>.blocks`
//! (or the folder `BENCH_CHAINS_DIR` names). A file is a magic line, the block count (u64 LE),
//! the tip's hash, then each block as its length (u32 LE) and its binary form
//! ([`Block::to_bytes`]). It is
//! written to a temporary file and renamed, so a run stopped halfway leaves no half file under
//! the real name. Disk input like any other: on load every block is decoded and checked again
//! (its proof of work at the floor, its records against the header's commitment, its link to
//! the block before; the last one read against the tip's hash or the next block's link), and a file that fails is reported and rebuilt, never trusted.

use std::fs::File;
use std::io::{BufReader, BufWriter, ErrorKind, Read, Write};
use std::path::{Path, PathBuf};

use protocol::block::records_root;
use protocol::header::HEADER_SIZE;
use protocol::params::{MAX_BLOCK_RECORDS, MAX_BLOCK_RECORDS_SIZE};
use protocol::{Block, Hash256, Params, genesis};

/// The first bytes of a cache file; a new layout gets a new magic.
const MAGIC: &[u8] = b"monkeychain bench chain v1\n";
/// The largest block a file may declare: a header, the record count, and the most records of
/// the most bytes a block may carry, each with its length. A damaged length is refused before
/// anything is allocated for it.
const MAX_BLOCK_BYTES: usize =
    HEADER_SIZE + 4 + 4 * MAX_BLOCK_RECORDS as usize + MAX_BLOCK_RECORDS_SIZE as usize;
/// The cache files' extension.
const EXTENSION: &str = "blocks";

/// The cache folder: `BENCH_CHAINS_DIR`, or `bench-chains` in the target folder the bench runs
/// from (`target/release/bench` → `target/bench-chains`).
pub fn dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("BENCH_CHAINS_DIR") {
        return dir.into();
    }
    let exe = std::env::current_exe().unwrap_or_default();
    let target = exe
        .parent()
        .and_then(Path::parent)
        .unwrap_or(Path::new("."));
    target.join("bench-chains")
}

/// The file of the chain `kind` of `n` blocks at `floor` in `dir`.
pub fn path(dir: &Path, kind: &str, floor: u32, n: usize) -> PathBuf {
    dir.join(format!("{kind}-{floor}-{n}.{EXTENSION}"))
}

/// The file to read the first `n` blocks of chain `kind` at `floor` from: its own, or else the
/// shortest longer one (a chain is a prefix of every longer chain of its kind); `None` if there
/// is neither.
pub fn find(dir: &Path, kind: &str, floor: u32, n: usize) -> Option<PathBuf> {
    let own = path(dir, kind, floor, n);
    if own.is_file() {
        return Some(own);
    }
    let prefix = format!("{kind}-{floor}-");
    let suffix = format!(".{EXTENSION}");
    std::fs::read_dir(dir)
        .ok()?
        .filter_map(|entry| {
            let name = entry.ok()?.file_name().into_string().ok()?;
            let len: usize = name
                .strip_prefix(&prefix)?
                .strip_suffix(&suffix)?
                .parse()
                .ok()?;
            (len > n).then_some((len, name))
        })
        .min()
        .map(|(_, name)| dir.join(name))
}

/// Reads the first `n` blocks of the chain in `path` and checks them: each decodes, meets
/// `floor` with its proof of work, matches its header's record commitment and extends the block
/// before it, from genesis.
pub fn load(path: &Path, floor: u32, n: usize) -> anyhow::Result<Vec<Block>> {
    let mut file = BufReader::with_capacity(1 << 20, File::open(path)?);
    let mut magic = vec![0; MAGIC.len()];
    file.read_exact(&mut magic).map_err(eof)?;
    anyhow::ensure!(magic == MAGIC, "not a bench chain file of this version");
    let count = u64::from_le_bytes(read_array(&mut file)?);
    let tip = Hash256(read_array::<32>(&mut file)?);
    anyhow::ensure!(
        count >= n as u64,
        "the file holds {count} blocks, not the {n} wanted"
    );
    let params = Params::with_floor(floor);
    let mut parent = genesis().header;
    let mut parent_hash = parent.hash();
    let mut blocks = Vec::with_capacity(n);
    for height in 1..=n as u64 {
        let block = read_block(&mut file, height)?;
        let hash = block
            .check_header(&params)
            .map_err(|e| anyhow::anyhow!("block {height}: {e}"))?;
        let h = &block.header;
        anyhow::ensure!(
            h.height == height && h.prev_hash == parent_hash && h.height == parent.height + 1,
            "block {height} does not extend the block before it"
        );
        anyhow::ensure!(
            records_root(&block.records) == h.records_root,
            "block {height}'s records do not match its header"
        );
        parent = block.header.clone();
        parent_hash = hash;
        blocks.push(block);
    }
    // The last header read is covered by nothing above: by the tip's hash when it is the tip,
    // else by the link of the block after it.
    let covered = if n as u64 == count {
        parent_hash == tip
    } else {
        read_block(&mut file, n as u64 + 1)?.header.prev_hash == parent_hash
    };
    anyhow::ensure!(covered, "block {n}'s header was changed");
    Ok(blocks)
}

/// Reads block `height`'s length and bytes, and decodes it.
fn read_block(file: &mut impl Read, height: u64) -> anyhow::Result<Block> {
    let len = u32::from_le_bytes(read_array(file)?) as usize;
    anyhow::ensure!(
        len <= MAX_BLOCK_BYTES,
        "block {height} declares {len} bytes, more than any block holds"
    );
    let mut bytes = vec![0; len];
    file.read_exact(&mut bytes).map_err(eof)?;
    Block::from_bytes(&bytes).map_err(|e| anyhow::anyhow!("block {height} does not decode: {e}"))
}

/// Writes `chain` to `path` through a temporary file renamed into place; returns its size in
/// bytes.
pub fn store(path: &Path, chain: &[Block]) -> anyhow::Result<u64> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let temp = path.with_extension(format!("tmp{}", std::process::id()));
    let written = write(&temp, chain).and_then(|()| Ok(std::fs::rename(&temp, path)?));
    if written.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    written?;
    Ok(std::fs::metadata(path)?.len())
}

/// Deletes `path`, if it is there.
pub fn remove(path: &Path) -> anyhow::Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != ErrorKind::NotFound => Err(e.into()),
        _ => Ok(()),
    }
}

fn write(path: &Path, chain: &[Block]) -> anyhow::Result<()> {
    let file = File::create(path)?;
    let mut out = BufWriter::with_capacity(1 << 20, &file);
    out.write_all(MAGIC)?;
    out.write_all(&(chain.len() as u64).to_le_bytes())?;
    let tip = chain
        .last()
        .map_or(genesis().header.hash(), |b| b.header.hash());
    out.write_all(&tip.0)?;
    for block in chain {
        let bytes = block.to_bytes();
        out.write_all(&(bytes.len() as u32).to_le_bytes())?;
        out.write_all(&bytes)?;
    }
    out.flush()?;
    drop(out);
    file.sync_all()?;
    Ok(())
}

fn read_array<const N: usize>(file: &mut impl Read) -> anyhow::Result<[u8; N]> {
    let mut bytes = [0; N];
    file.read_exact(&mut bytes).map_err(eof)?;
    Ok(bytes)
}

/// A read error, the end of the file named as such.
fn eof(e: std::io::Error) -> anyhow::Error {
    match e.kind() {
        ErrorKind::UnexpectedEof => anyhow::anyhow!("the file ends early"),
        _ => e.into(),
    }
}

#[cfg(test)]
mod tests {
    use testkit::mine_chain;

    use super::*;

    const FLOOR: u32 = 4;

    /// A chain written and read back is the same chain, and a shorter one is read from a
    /// longer file's start; a truncated, a flipped or a foreign file is refused with a reason,
    /// never a panic.
    #[test]
    fn a_stored_chain_loads_back_and_a_damaged_one_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let chain = {
            let mut blocks = mine_chain(&genesis(), 5, FLOOR, 1000);
            let k = testkit::key(1);
            let joined = testkit::mine_block(&blocks[4], vec![testkit::join(&k, "a")], FLOOR, 1);
            blocks.push(joined);
            blocks.extend(mine_chain(&blocks[5].clone(), 4, FLOOR, 1000));
            blocks
        };
        let file = path(dir.path(), "test", FLOOR, chain.len());
        let size = store(&file, &chain).unwrap();
        assert_eq!(size, std::fs::metadata(&file).unwrap().len());
        assert_eq!(load(&file, FLOOR, chain.len()).unwrap(), chain);
        assert_eq!(find(dir.path(), "test", FLOOR, 3), Some(file.clone()));
        assert_eq!(load(&file, FLOOR, 3).unwrap(), chain[..3]);
        assert_eq!(find(dir.path(), "test", FLOOR, 11), None);
        assert!(load(&file, FLOOR, 11).is_err(), "more blocks than held");
        assert!(load(&file, FLOOR + 40, 10).is_err(), "below the floor");

        let good = std::fs::read(&file).unwrap();
        let damaged = dir.path().join("damaged");
        let refused = |bytes: &[u8]| {
            std::fs::write(&damaged, bytes).unwrap();
            load(&damaged, FLOOR, chain.len()).unwrap_err().to_string()
        };
        for cut in [0, 5, MAGIC.len() + 3, good.len() / 2, good.len() - 1] {
            refused(&good[..cut]);
        }
        // Every byte after the count, flipped in turn, is caught: the header links and the
        // commitments cover every block but the last header, and the tip's hash covers that.
        for at in MAGIC.len() + 8..good.len() {
            let mut bytes = good.clone();
            bytes[at] ^= 0x01;
            refused(&bytes);
        }
        let mut foreign = good.clone();
        foreign[0] ^= 0x20;
        assert!(refused(&foreign).contains("not a bench chain"));
    }
}
