//! A chain that keeps only its recent blocks in memory: what it lets go is served through an
//! archive, reorgs as deep as allowed still revert with undo, and one resumed from a ledger at a
//! base block goes on like one that saw every block.

use std::sync::Arc;

use protocol::hash::Hash256;
use protocol::params::{MAX_REORG_DEPTH, MEDIAN_TIME_SPAN};
use protocol::{Archive, Block, BlockHash, Chain, CheckedBlock, Imported, genesis};

use super::*;

/// The caller's store, for tests: the blocks a chain trimmed, by height.
#[derive(Default)]
struct Shelf(Vec<Arc<CheckedBlock>>);

impl Shelf {
    fn take(&mut self, chain: &mut Chain) {
        for block in chain.trim() {
            assert_eq!(block.header.height, self.0.len() as u64, "trimmed in order");
            self.0.push(block);
        }
    }
}

impl Archive for Shelf {
    fn hash_at(&self, height: u64) -> Option<BlockHash> {
        self.0.get(height as usize).map(|b| b.hash())
    }
    fn height_of(&self, hash: &BlockHash) -> Option<u64> {
        self.0
            .iter()
            .find(|b| b.hash() == *hash)
            .map(|b| b.header.height)
    }
    fn block_at(&self, height: u64) -> Option<Arc<CheckedBlock>> {
        self.0.get(height as usize).cloned()
    }
}

/// A chain keeping the fewest recent blocks a reorg of `depth` allows, and one keeping all.
fn pair(depth: usize) -> (Chain, Chain) {
    let mut recent = Chain::new(params());
    recent.set_max_reorg_depth(depth);
    recent.keep_recent(0);
    let mut full = Chain::new(params());
    full.set_max_reorg_depth(depth);
    (recent, full)
}

fn insert_all(chains: [&mut Chain; 2], blocks: &[Block]) -> [Imported; 2] {
    let mut last = [Imported::Duplicate, Imported::Duplicate];
    for b in blocks {
        last = [
            chains[0].insert(b.clone(), NOW).unwrap(),
            chains[1].insert(b.clone(), NOW).unwrap(),
        ];
    }
    last
}

/// A chain of blocks alternating a join and a purchase of key 1 with empty ones.
fn busy_chain(parent: &Block, n: usize) -> Vec<Block> {
    let alice = key(1);
    let mut out: Vec<Block> = Vec::new();
    for i in 0..n {
        let records = match i {
            0 => vec![join(&alice, "alice")],
            1 => vec![buy(&alice, 1, "mandrill")],
            _ => Vec::new(),
        };
        out.push(mine_on(out.last().unwrap_or(parent), records, FLOOR));
    }
    out
}

/// `n` busy blocks given to both chains of [`pair`], and what the recent one trimmed.
fn trimmed(depth: usize, n: usize) -> (Chain, Chain, Shelf, Vec<Block>) {
    let (mut recent, mut full) = pair(depth);
    let mut shelf = Shelf::default();
    let blocks = busy_chain(&genesis(), n);
    insert_all([&mut recent, &mut full], &blocks);
    shelf.take(&mut recent);
    (recent, full, shelf, blocks)
}

#[test]
fn trimmed_blocks_are_served_through_the_archive_as_if_in_memory() {
    let depth = 5;
    let (recent, full, shelf, blocks) = trimmed(depth, 60);
    let keep = (depth + MEDIAN_TIME_SPAN) as u64;
    assert_eq!(recent.base_height(), 60 - keep);
    assert_eq!(
        recent.len() as u64,
        keep + 1,
        "only the recent blocks in memory"
    );
    assert!(recent.at_height(recent.base_height() - 1).is_none());
    assert_eq!(recent.ledger(), full.ledger());
    assert_eq!(recent.locator_in(&shelf), full.locator());

    // A peer at height 3, one just below the base, one above it, one with nothing in common.
    for height in [3, recent.base_height() - 1, recent.base_height() + 2] {
        let mut peer = Chain::new(params());
        for b in &blocks[..height as usize] {
            peer.insert(b.clone(), NOW).unwrap();
        }
        let want = full.blocks_after(&peer.locator(), 20);
        let got = recent.blocks_after_in(&peer.locator(), 20, &shelf);
        assert_eq!(got, want, "peer at {height}");
    }
    let stranger = [Hash256([7; 32])];
    assert_eq!(
        recent.blocks_after_in(&stranger, 500, &shelf),
        full.blocks_after(&stranger, 500)
    );
    // An archive that lacks a block: the answer stops there, saying more follow.
    let (got, more) = recent.blocks_after_in(&[], 500, &protocol::NoArchive);
    assert!(got.is_empty() && more);
}

/// A peer paging the whole chain the way a node answers it: from memory when memory can, else
/// from the archive (which stops at the base); it gets every block once, in order, and an
/// answer that stopped at the base goes on from memory.
#[test]
fn paging_through_the_archive_then_memory_gets_the_whole_chain() {
    let (recent, full, shelf, _) = trimmed(5, 60);
    let want = full.blocks_after(&[], 500).0;
    let mut got: Vec<Arc<CheckedBlock>> = Vec::new();
    for _ in 0..100 {
        let locator: Vec<BlockHash> = got.last().map(|b| vec![b.hash()]).unwrap_or_default();
        let (blocks, more) = match recent.blocks_after_in_memory(&locator, 7) {
            Some(answer) => answer,
            None => protocol::blocks_after_archived(&locator, 7, &shelf, recent.best_range()),
        };
        assert!(
            !blocks.is_empty() || !more,
            "an empty answer saying more follow"
        );
        got.extend(blocks);
        if !more {
            break;
        }
    }
    assert_eq!(got, want);
}

/// Mines a branch forking `depth` blocks below the tip of `main`, at the same difficulty, one
/// block longer: its last block makes it the heavier and reorganises onto it.
fn heavier_branch(main: &[Block], depth: usize, stamp: u64) -> Vec<Block> {
    let fork = &main[main.len() - 1 - depth];
    let first = mine_on_at(fork, vec![], FLOOR, fork.header.timestamp + stamp);
    let mut branch = vec![first];
    for _ in 0..depth {
        let next = mine_on(branch.last().unwrap(), vec![], FLOOR);
        branch.push(next);
    }
    branch
}

#[test]
fn a_reorg_down_to_the_deepest_allowed_point_reverts_and_one_deeper_is_refused() {
    let depth = 5;
    let (mut recent, mut full, mut shelf, main) = trimmed(depth, 40);
    let base = recent.base_height();

    // Forking one block too deep: refused, even with more work.
    let too_deep = heavier_branch(&main, depth + 1, 7);
    assert_eq!(
        recent.insert(too_deep[0].clone(), NOW),
        Ok(Imported::TooDeep)
    );

    // Forking exactly `depth` below the tip: every block of the old branch reverted with undo.
    let branch = heavier_branch(&main, depth, 3);
    let [got, _] = insert_all([&mut recent, &mut full], &branch);
    let Imported::Reorganized { disconnected, .. } = got else {
        panic!("{got:?}")
    };
    assert_eq!(disconnected.len(), depth);
    assert_eq!(recent.tip().hash(), branch.last().unwrap().header.hash());
    assert_eq!(recent.ledger(), full.ledger());
    assert_eq!(*recent.ledger(), full.replay_ledger().unwrap());
    assert_eq!(recent.base_height(), base, "the base only moves on a trim");
    shelf.take(&mut recent);
    assert_eq!(recent.locator_in(&shelf), full.locator());
}

#[test]
fn a_reorg_of_exactly_max_reorg_depth_after_a_trim() {
    let n = MAX_REORG_DEPTH + MEDIAN_TIME_SPAN + 40;
    let (mut recent, mut full, _, main) = trimmed(MAX_REORG_DEPTH, n);
    assert!(recent.base_height() > 0, "some of it left memory");
    let branch = heavier_branch(&main, MAX_REORG_DEPTH, 3);
    let [got, _] = insert_all([&mut recent, &mut full], &branch);
    let Imported::Reorganized { disconnected, .. } = got else {
        panic!("{got:?}")
    };
    assert_eq!(disconnected.len(), MAX_REORG_DEPTH);
    assert_eq!(*recent.ledger(), full.replay_ledger().unwrap());
    let too_deep = heavier_branch(&main, MAX_REORG_DEPTH + 1, 9);
    assert_eq!(
        recent.insert(too_deep[0].clone(), NOW),
        Ok(Imported::TooDeep)
    );
}

#[test]
fn a_chain_resumed_from_a_base_and_its_ledger_goes_on_like_one_that_saw_everything() {
    let depth = 5;
    let main = busy_chain(&genesis(), 30);
    let mut full = Chain::new(params());
    full.set_max_reorg_depth(depth);
    insert_all([&mut Chain::new(params()), &mut full], &main[..10]);
    let base = Arc::clone(full.tip());
    let mut resumed = Chain::resume(params(), base, full.tip_work(), full.ledger().clone());
    resumed.set_max_reorg_depth(depth);
    resumed.keep_recent(0);
    assert_eq!(resumed.height(), 10);
    insert_all([&mut resumed, &mut full], &main[10..]);
    assert_eq!(resumed.ledger(), full.ledger());
    assert_eq!(resumed.tip_work(), full.tip_work());
    let branch = heavier_branch(&main, depth, 3);
    let [got, _] = insert_all([&mut resumed, &mut full], &branch);
    assert!(matches!(got, Imported::Reorganized { .. }), "{got:?}");
    assert_eq!(resumed.ledger(), full.ledger());
    // Below the base there is nothing to fork from.
    let below = mine_on_at(&main[5], vec![], FLOOR + 3, main[5].header.timestamp + 5);
    assert_eq!(resumed.insert(below, NOW), Ok(Imported::TooDeep));
}
