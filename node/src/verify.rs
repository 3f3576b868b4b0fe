//! Checking blocks from the network (proof of work, commitment, every record's signature) off
//! the chain thread and the async workers, spread over the cores. Only then do they go to the
//! chain actor, which attaches them to the tree: the expensive part of a sync of thousands of
//! blocks runs in parallel, and a peer's junk costs a blocking thread, never the chain thread.

use std::collections::{HashSet, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};

use protocol::hash::Hash256;
use protocol::{Block, BlockError, CheckedBlock, Params};

/// Most record ids remembered as verified. A record relayed on its own is verified when the
/// pool admits it, then arrives again in every block that holds it (several, when miners
/// compete); remembering its id saves all but the first verification. 65,536 ids is a few
/// seconds of the fastest traffic and about 4 MB.
pub const MAX_VERIFIED: usize = 65_536;

/// Ids of records whose signatures this node verified, the oldest forgotten first. A record's
/// id is the hash of its signed bytes, so a changed record is a new id and is verified.
pub type Verified = Recent<MAX_VERIFIED>;

/// Most block hashes remembered as already in the tree, for [`SeenBlocks`].
pub const MAX_SEEN_BLOCKS: usize = 4096;

/// Hashes of blocks that entered the tree lately. Relay floods every block to every peer, so a
/// node gets each one from most of its links; the copies after the first are recognised here,
/// by the connection itself, without a round trip to the chain thread (which is busy with the
/// first copy). A hash forgotten only costs that round trip again.
pub type SeenBlocks = Recent<MAX_SEEN_BLOCKS>;

/// A set of hashes shared between tasks, holding the `CAP` most recently inserted.
#[derive(Debug, Clone, Default)]
pub struct Recent<const CAP: usize>(Arc<Mutex<RecentInner>>);

#[derive(Debug, Default)]
struct RecentInner {
    set: HashSet<Hash256>,
    order: VecDeque<Hash256>,
}

impl<const CAP: usize> Recent<CAP> {
    fn lock(&self) -> std::sync::MutexGuard<'_, RecentInner> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether `hash` is held.
    pub fn contains(&self, hash: &Hash256) -> bool {
        self.lock().set.contains(hash)
    }

    /// Adds `hashes`, forgetting the oldest past `CAP`.
    pub fn insert(&self, hashes: impl IntoIterator<Item = Hash256>) {
        let mut inner = self.lock();
        for hash in hashes {
            if inner.set.insert(hash) {
                inner.order.push_back(hash);
            }
        }
        while inner.order.len() > CAP {
            if let Some(old) = inner.order.pop_front() {
                inner.set.remove(&old);
            }
        }
    }
}

/// A batch of one block with at most this many records is checked on the connection's own task
/// (at worst two signature checks, a tenth of a millisecond): a relayed block is often that, and
/// handing it to another thread and back cost more than the check, on every hop.
pub const INLINE_MAX_RECORDS: usize = 2;

/// Below this many blocks a batch is checked on one thread: spreading costs more than it saves.
const PARALLEL_FROM: usize = 8;

/// Checks `blocks` in order; returns the checked prefix, and the first failure if there is one
/// (the blocks after it are not looked at).
/// Signatures of records in `verified` are not verified again, and the records of the blocks
/// that pass are added to it.
pub async fn check_blocks(
    blocks: Vec<Block>,
    params: Params,
    verified: Verified,
) -> (Vec<CheckedBlock>, Option<BlockError>) {
    if let [block] = blocks.as_slice()
        && block.records.len() <= INLINE_MAX_RECORDS
    {
        let (checked, error) = check_prefix(blocks, &params, &verified);
        verified.insert(
            checked
                .iter()
                .flat_map(|b| b.records.iter().map(|r| r.id())),
        );
        return (checked, error);
    }
    let checked = tokio::task::spawn_blocking(move || {
        let (checked, error) = check_all(blocks, &params, &verified);
        verified.insert(
            checked
                .iter()
                .flat_map(|b| b.records.iter().map(|r| r.id())),
        );
        (checked, error)
    })
    .await;
    // The closure does not panic on any input; a join error means the runtime is stopping.
    checked.unwrap_or_else(|_| (Vec::new(), None))
}

/// Checks blocks read back from this node's own store ([`Block::check_own`]: all but the
/// signatures) on every core; yields each in order, `None` for one that did not pass. An
/// iterator, not a second vector: the caller moves each block into the chain as it comes, so
/// a long chain is not held twice at start.
pub fn check_own(
    blocks: Vec<Block>,
    params: &Params,
) -> impl Iterator<Item = Option<CheckedBlock>> + use<> {
    in_parallel(blocks, |chunk| {
        chunk
            .into_iter()
            .map(|block| block.check_own(params).ok())
            .collect::<Vec<_>>()
    })
    .into_iter()
    .flatten()
    .flatten()
}

/// Splits `items` into one chunk per core, runs `work` on each on its own thread, and returns
/// the results in order (`None` for a chunk whose thread panicked: a bug, not bad input).
fn in_parallel<T: Send, R: Send>(
    items: Vec<T>,
    work: impl Fn(Vec<T>) -> R + Sync,
) -> Vec<Option<R>> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    if items.len() < PARALLEL_FROM || threads == 1 {
        return vec![Some(work(items))];
    }
    let chunk = items.len().div_ceil(threads);
    let mut chunks: Vec<Vec<T>> = Vec::new();
    let mut rest = items;
    while rest.len() > chunk {
        let tail = rest.split_off(chunk);
        chunks.push(rest);
        rest = tail;
    }
    chunks.push(rest);
    let work = &work;
    std::thread::scope(|scope| {
        let handles: Vec<_> = chunks
            .into_iter()
            .map(|chunk| scope.spawn(move || work(chunk)))
            .collect();
        handles.into_iter().map(|h| h.join().ok()).collect()
    })
}

fn check_all(
    blocks: Vec<Block>,
    params: &Params,
    verified: &Verified,
) -> (Vec<CheckedBlock>, Option<BlockError>) {
    let results = in_parallel(blocks, |chunk| check_prefix(chunk, params, verified));
    let mut out = Vec::new();
    for result in results {
        // The blocks after a chunk that panicked are not trusted.
        let Some((checked, error)) = result else {
            return (out, None);
        };
        out.extend(checked);
        if error.is_some() {
            return (out, error);
        }
    }
    (out, None)
}

fn check_prefix(
    blocks: Vec<Block>,
    params: &Params,
    verified: &Verified,
) -> (Vec<CheckedBlock>, Option<BlockError>) {
    let mut out = Vec::with_capacity(blocks.len());
    for block in blocks {
        match block.check_known(params, &|id| verified.contains(id)) {
            Ok(checked) => out.push(checked),
            Err(error) => return (out, Some(error)),
        }
    }
    (out, None)
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicBool;

    use protocol::pow::mine;
    use protocol::{Keypair, genesis};

    use super::*;

    fn chain(n: usize) -> Vec<Block> {
        let miner = Keypair::from_seed([1; 32]).account();
        let mut out: Vec<Block> = Vec::new();
        for _ in 0..n {
            let parent = out.last().map_or_else(genesis, Clone::clone);
            let t = Block::template(
                &parent.header,
                vec![],
                miner,
                4,
                parent.header.timestamp + 1,
            );
            let header = mine(&t.header, 1, &AtomicBool::new(false), None)
                .header
                .unwrap();
            out.push(Block { header, ..t });
        }
        out
    }

    #[test]
    fn a_batch_is_checked_in_order_and_stops_at_the_first_bad_block() {
        let params = Params::with_floor(4);
        let mut blocks = chain(40);
        let (checked, error) = check_all(blocks.clone(), &params, &Verified::default());
        assert_eq!(checked.len(), 40);
        assert!(error.is_none());
        let hashes: Vec<_> = checked.iter().map(|b| b.hash()).collect();
        let want: Vec<_> = blocks.iter().map(|b| b.header.hash()).collect();
        assert_eq!(hashes, want, "order kept across threads");

        blocks[25].header.bits = 2;
        let (checked, error) = check_all(blocks, &params, &Verified::default());
        assert_eq!(checked.len(), 25, "the prefix before the bad block");
        assert!(matches!(error, Some(BlockError::BelowFloor { .. })));
    }
}
