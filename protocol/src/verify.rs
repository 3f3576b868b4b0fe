//! Checking a batch of blocks from someone else (proof of work, commitment, every record's
//! signature) on every core, and the bounded set of record ids whose signatures were verified
//! already, so a record met again (relayed on its own, then in a block; or the same block from
//! several nodes) is not verified again. A node and the visualizer both check blocks this way;
//! where it runs (a blocking thread, never an async worker or a thread that owns a chain) is the
//! caller's choice.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use crate::block::{Block, BlockError, CheckedBlock};
use crate::hash::{DigestSet, Hash256};
use crate::params::Params;
use crate::record::RecordFormatError;
use crate::signature;

/// Most record ids remembered as verified. A record relayed on its own is verified when a
/// node's pool admits it, then arrives again in every block that holds it (several, when miners
/// compete), and the visualizer gets every block once from each node it follows; remembering
/// the id saves all but the first verification. 65,536 ids is a few seconds of the fastest
/// traffic and about 4 MB.
pub const MAX_VERIFIED: usize = 65_536;

/// Ids of records whose signatures were verified, the oldest forgotten first. A record's id is
/// the hash of its signed bytes, so a changed record is a new id and is verified.
pub type Verified = Recent<MAX_VERIFIED>;

/// A set of hashes shared between threads, holding the `CAP` most recently inserted: memory is
/// bounded whatever is inserted, and a hash forgotten only costs its work again.
#[derive(Debug, Clone, Default)]
pub struct Recent<const CAP: usize>(Arc<Mutex<RecentInner>>);

#[derive(Debug, Default)]
struct RecentInner {
    set: DigestSet,
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

    /// How many hashes are held (at most `CAP`).
    pub fn len(&self) -> usize {
        self.lock().order.len()
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
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

/// Below this many blocks a batch is checked on one thread: spreading costs more than it saves.
const PARALLEL_FROM: usize = 8;

/// Checks `blocks` in order with [`Block::check_known`], on every core for a long batch; returns
/// the checked prefix, and the first failure if there is one (the blocks after it are not looked
/// at). Signatures of records in `verified` are not verified again, and the records of the blocks
/// that pass are added to it. CPU work: call it from a blocking thread.
pub fn check_batch(
    blocks: Vec<Block>,
    params: &Params,
    verified: &Verified,
) -> (Vec<CheckedBlock>, Option<BlockError>) {
    let results = in_parallel(blocks, |chunk| check_in_order(chunk, params, verified));
    let mut out = Vec::new();
    let mut failure = None;
    for result in results {
        // The blocks after a chunk that panicked are not trusted.
        let Some((checked, error)) = result else {
            break;
        };
        out.extend(checked);
        if error.is_some() {
            failure = error;
            break;
        }
    }
    verified.insert(out.iter().flat_map(|b| b.ids().iter().copied()));
    (out, failure)
}

/// The cores this process may use, read once: `available_parallelism` reads the cgroup files
/// on every call (tens of microseconds), and a node checks a relayed block on every hop.
fn cores() -> usize {
    static CORES: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *CORES.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

/// Chunks per thread [`in_parallel`] cuts a long batch into: threads take the next chunk when
/// done with one, so a thread that loses its core for a while (the store's writer, another
/// connection) holds back only its current chunk, not half the batch.
const CHUNKS_PER_THREAD: usize = 8;

/// Splits `items` into chunks, runs `work` on each from one thread per core (each thread takes
/// the next chunk not yet taken), and returns the results in the chunks' order (`None` for a
/// chunk whose thread panicked: a bug, not bad input).
pub fn in_parallel<T: Send, R: Send>(
    items: Vec<T>,
    work: impl Fn(Vec<T>) -> R + Sync,
) -> Vec<Option<R>> {
    if items.len() < PARALLEL_FROM {
        return vec![Some(work(items))];
    }
    let threads = cores();
    if threads == 1 {
        return vec![Some(work(items))];
    }
    let chunk = items
        .len()
        .div_ceil(threads * CHUNKS_PER_THREAD)
        .max(PARALLEL_FROM);
    let mut chunks: Vec<Mutex<Option<Vec<T>>>> = Vec::new();
    let mut rest = items;
    while rest.len() > chunk {
        let tail = rest.split_off(chunk);
        chunks.push(Mutex::new(Some(rest)));
        rest = tail;
    }
    chunks.push(Mutex::new(Some(rest)));
    let results: Vec<Mutex<Option<R>>> = chunks.iter().map(|_| Mutex::new(None)).collect();
    let next = AtomicUsize::new(0);
    let (work, chunks, results, next) = (&work, &chunks, &results, &next);
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads.min(chunks.len()))
            .map(|_| {
                scope.spawn(move || {
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(slot) = chunks.get(i) else { break };
                        let taken = slot.lock().unwrap_or_else(PoisonError::into_inner).take();
                        if let Some(items) = taken {
                            let result = work(items);
                            *results[i].lock().unwrap_or_else(PoisonError::into_inner) =
                                Some(result);
                        }
                    }
                })
            })
            .collect();
        // Joined here, so a panic (a bug) is not raised again by the scope: the chunk it was
        // on stays `None`, and the other threads take the chunks after it.
        for handle in handles {
            let _ = handle.join();
        }
    });
    results
        .iter()
        .map(|r| r.lock().unwrap_or_else(PoisonError::into_inner).take())
        .collect()
}

/// Checks `blocks` in order on the calling thread, up to the first failure: first everything
/// but the signatures, then the signatures not `verified` before, all in one batch
/// ([`signature::first_failure`]: about twice as fast as one at a time; should the batch fail,
/// its halves, to find the first block with a bad one). The prefix that passes is the one
/// [`Block::check_known`] block by block would pass, and so is the failure, except in a block
/// with two faults: a cheap one after a bad signature is the one reported. [`check_batch`]
/// runs this on every core, a chunk at a time, and remembers the records that passed.
pub fn check_in_order(
    blocks: Vec<Block>,
    params: &Params,
    verified: &Verified,
) -> (Vec<CheckedBlock>, Option<BlockError>) {
    let mut out = Vec::with_capacity(blocks.len());
    // The records whose signatures are left to the batch: by block and place in it.
    let mut unverified: Vec<(usize, usize)> = Vec::new();
    let mut failure = None;
    for block in blocks {
        match block.check_deferring(params, &|id| verified.contains(id)) {
            Ok((checked, deferred)) => {
                unverified.extend(deferred.into_iter().map(|index| (out.len(), index)));
                out.push(checked);
            }
            Err(error) => {
                failure = Some(error);
                break;
            }
        }
    }
    let messages: Vec<Vec<u8>> = unverified
        .iter()
        .map(|&(at, index)| out[at].records[index].signing_bytes())
        .collect();
    let items: Vec<signature::Item> = unverified
        .iter()
        .zip(&messages)
        .map(|(&(at, index), message)| {
            let record = &out[at].records[index];
            signature::Item {
                account: &record.account,
                message,
                signature: &record.sig,
            }
        })
        .collect();
    let bad = signature::first_failure(&items).and_then(|i| unverified.get(i).copied());
    let Some((at, index)) = bad else {
        return (out, failure);
    };
    out.truncate(at);
    let error = RecordFormatError::BadSignature;
    (out, Some(BlockError::BadRecord { index, error }))
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicBool;

    use super::*;
    use crate::account::Keypair;
    use crate::block::genesis;
    use crate::pow::mine;
    use crate::record::{Action, Record};

    fn chain(n: usize, records: impl Fn(usize) -> Vec<Record>) -> Vec<Block> {
        let miner = Keypair::from_seed([1; 32]).account();
        let mut out: Vec<Block> = Vec::new();
        for i in 0..n {
            let parent = out.last().map_or_else(genesis, Clone::clone);
            let t = Block::template(
                &parent.header,
                records(i),
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
        let mut blocks = chain(40, |_| Vec::new());
        let (checked, error) = check_batch(blocks.clone(), &params, &Verified::default());
        assert_eq!(checked.len(), 40);
        assert!(error.is_none());
        let hashes: Vec<_> = checked.iter().map(|b| b.hash()).collect();
        let want: Vec<_> = blocks.iter().map(|b| b.header.hash()).collect();
        assert_eq!(hashes, want, "order kept across threads");

        blocks[25].header.bits = 2;
        let (checked, error) = check_batch(blocks, &params, &Verified::default());
        assert_eq!(checked.len(), 25, "the prefix before the bad block");
        assert!(matches!(error, Some(BlockError::BelowFloor { .. })));
    }

    #[test]
    fn a_bad_signature_in_a_batch_stops_it_at_that_block() {
        let alice = Keypair::from_seed([4; 32]);
        let alice = &alice;
        let records = |forge: Option<usize>| {
            move |i: usize| {
                let name = format!("a{i}");
                let mut record = Record::sign(alice, i as u64, Action::Join { name });
                if forge == Some(i) {
                    record.sig.0[40] ^= 1;
                }
                vec![record]
            }
        };
        let params = Params::with_floor(4);
        let blocks = chain(40, records(None));
        let (checked, error) = check_batch(blocks, &params, &Verified::default());
        assert_eq!((checked.len(), error), (40, None));

        // A forged signature in block 25 (committed to by its header): its block and
        // everything after it is refused, and the error names the record, as a block-by-block
        // check would.
        let forged = chain(40, records(Some(25)));
        let one_by_one = forged[25].clone().check(&params);
        let (checked, error) = check_batch(forged, &params, &Verified::default());
        assert_eq!(checked.len(), 25);
        let bad = BlockError::BadRecord {
            index: 0,
            error: RecordFormatError::BadSignature,
        };
        assert_eq!(error, Some(bad.clone()));
        assert_eq!(one_by_one.err(), Some(bad));
    }

    #[test]
    fn records_of_checked_blocks_are_remembered_and_the_set_stays_bounded() {
        let alice = Keypair::from_seed([2; 32]);
        let join = |seq: usize| {
            Record::sign(
                &alice,
                seq as u64,
                Action::Join {
                    name: format!("alice{seq}"),
                },
            )
        };
        let blocks = chain(3, |i| vec![join(i)]);
        let ids: Vec<_> = blocks.iter().map(|b| b.records[0].id()).collect();
        let verified = Verified::default();
        let (checked, error) = check_batch(blocks, &Params::with_floor(4), &verified);
        assert_eq!((checked.len(), error), (3, None));
        assert!(ids.iter().all(|id| verified.contains(id)));

        let small = Recent::<2>::default();
        small.insert(ids.iter().copied());
        assert_eq!(small.len(), 2);
        assert!(!small.contains(&ids[0]), "the oldest is forgotten first");
        assert!(small.contains(&ids[2]));
    }
}
