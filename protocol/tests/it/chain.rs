//! The block tree: insertion outcomes, fork choice by work, contextual rules, sync helpers.

use protocol::block::GENESIS_TIMESTAMP;
use protocol::hash::Hash256;
use protocol::ledger::LedgerError;
use protocol::params::{MAX_FUTURE_MS, MAX_LOCATOR, MAX_ORPHANS, side_block_cost};
use protocol::{BlockError, Chain, Imported, genesis};

use super::*;

/// Inserts `blocks` in order into `chain`; none may be refused.
fn insert_all(chain: &mut Chain, blocks: &[Block]) {
    for b in blocks {
        chain.insert(b.clone(), NOW).unwrap();
    }
}

fn hashes(blocks: &[std::sync::Arc<protocol::CheckedBlock>]) -> Vec<Hash256> {
    blocks.iter().map(|b| b.hash()).collect()
}

#[test]
fn a_block_on_the_tip_extends_and_a_repeat_is_a_duplicate() {
    let mut chain = Chain::new(params());
    let b1 = mine_on(&genesis(), vec![], FLOOR);
    let got = chain.insert(b1.clone(), NOW).unwrap();
    let Imported::Extended { connected, added } = got else {
        panic!("{got:?}")
    };
    assert_eq!(hashes(&connected), vec![b1.header.hash()]);
    assert_eq!(hashes(&added), vec![b1.header.hash()]);
    assert_eq!(chain.height(), 1);
    assert_eq!(chain.tip().hash(), b1.header.hash());
    assert_eq!(chain.insert(b1, NOW).unwrap(), Imported::Duplicate);
    assert_eq!(chain.insert(genesis(), NOW).unwrap(), Imported::Duplicate);
}

#[test]
fn an_orphan_waits_for_its_parent_then_both_connect() {
    let mut chain = Chain::new(params());
    let blocks = mine_chain(&genesis(), 3, FLOOR);
    assert_eq!(
        chain.insert(blocks[2].clone(), NOW).unwrap(),
        Imported::Orphan {
            missing: blocks[1].header.hash()
        }
    );
    assert_eq!(
        chain.insert(blocks[1].clone(), NOW).unwrap(),
        Imported::Orphan {
            missing: blocks[0].header.hash()
        }
    );
    assert_eq!(chain.orphan_count(), 2);
    let got = chain.insert(blocks[0].clone(), NOW).unwrap();
    let Imported::Extended { connected, .. } = got else {
        panic!("{got:?}")
    };
    let expected: Vec<_> = blocks.iter().map(|b| b.header.hash()).collect();
    assert_eq!(hashes(&connected), expected);
    assert_eq!(chain.orphan_count(), 0);
    assert_eq!(chain.height(), 3);
}

#[test]
fn a_tie_keeps_the_tip_seen_first() {
    let mut chain = Chain::new(params());
    let first = mine_on(&genesis(), vec![], 3);
    let second = mine_on_at(&genesis(), vec![], 3, GENESIS_TIMESTAMP + 2000);
    chain.insert(first.clone(), NOW).unwrap();
    let got = chain.insert(second.clone(), NOW).unwrap();
    assert!(matches!(got, Imported::SideBranch { .. }), "{got:?}");
    assert_eq!(chain.tip().hash(), first.header.hash());
    // Both stay known: the visualizer draws the side branch.
    assert!(chain.contains(&second.header.hash()));
    assert!(!chain.is_on_best(&second.header.hash()));
}

#[test]
fn only_the_holder_or_miner_of_the_lowest_tied_tip_breaks_the_tie() {
    let nobody = key(50).account();
    let first = mine_on(&genesis(), vec![], 3);
    let second = mine_on_at(&genesis(), vec![], 3, GENESIS_TIMESTAMP + 2000);
    let (low, high) = if first.header.hash() < second.header.hash() {
        (first, second)
    } else {
        (second, first)
    };
    let mut alone = Chain::new(params());
    alone.insert(low.clone(), NOW).unwrap();
    assert_eq!(alone.tie_break_parent(&nobody), None, "no tie with one tip");

    // Two nodes that each saw their own block first keep it: one of them must move on.
    let mut holds_low = Chain::new(params());
    holds_low.insert(low.clone(), NOW).unwrap();
    holds_low.insert(high.clone(), NOW).unwrap();
    let mut holds_high = Chain::new(params());
    holds_high.insert(high.clone(), NOW).unwrap();
    holds_high.insert(low.clone(), NOW).unwrap();
    let parent = holds_low.tie_break_parent(&nobody).map(|b| b.hash());
    assert_eq!(parent, Some(low.header.hash()));
    assert_eq!(holds_high.tie_break_parent(&nobody), None);
    // Unless it mined the low tip itself and saw the other first.
    let parent = holds_high.tie_break_parent(&low.header.miner);
    assert_eq!(parent.map(|b| b.hash()), Some(low.header.hash()));

    // The next block ends the tie on both.
    let next = mine_on(&low, vec![], 3);
    holds_low.insert(next.clone(), NOW).unwrap();
    holds_high.insert(next.clone(), NOW).unwrap();
    assert_eq!(holds_high.tip().hash(), next.header.hash());
    assert_eq!(holds_low.tie_break_parent(&nobody), None);
    assert_eq!(holds_high.tie_break_parent(&nobody), None);

    // A lighter side branch is no tie.
    let light = mine_on(&genesis(), vec![], 2);
    holds_low.insert(light, NOW).unwrap();
    assert_eq!(holds_low.tie_break_parent(&nobody), None);
}

#[test]
fn changes_since_an_old_tip_are_the_net_reorg() {
    let mut chain = Chain::new(params());
    let easy = mine_chain(&genesis(), 3, 1);
    insert_all(&mut chain, &easy);
    let old_tip = easy[2].header.hash();
    let (gone, joined) = chain.changes_since(&old_tip).unwrap();
    assert!(gone.is_empty() && joined.is_empty(), "nothing changed");

    let hard = mine_chain(&easy[0], 2, 3);
    insert_all(&mut chain, &hard);
    let (gone, joined) = chain.changes_since(&old_tip).unwrap();
    let hashes = |v: &[std::sync::Arc<protocol::CheckedBlock>]| -> Vec<Hash256> {
        v.iter().map(|b| b.hash()).collect()
    };
    assert_eq!(
        hashes(&gone),
        vec![easy[2].header.hash(), easy[1].header.hash()],
        "old tip first"
    );
    assert_eq!(
        hashes(&joined),
        hard.iter().map(|b| b.header.hash()).collect::<Vec<_>>()
    );
    assert!(chain.changes_since(&Hash256([9; 32])).is_none());
}

#[test]
fn side_branches_are_capped_and_the_least_work_goes_first() {
    let mut chain = Chain::new(params());
    let best = mine_chain(&genesis(), 4, 4);
    insert_all(&mut chain, &best);
    chain.set_max_side_blocks(5);
    // A short branch with more work per block, then a long easy one.
    let heavier = mine_chain(&genesis(), 3, 3);
    insert_all(&mut chain, &heavier);
    let easy = mine_chain(&genesis(), 8, 1);
    insert_all(&mut chain, &easy);
    assert_eq!(chain.side_len(), 5, "capped");
    assert_eq!(
        chain.tip().hash(),
        best[3].header.hash(),
        "the best chain is untouched"
    );
    for b in &heavier {
        assert!(
            chain.contains(&b.header.hash()),
            "the heavier branch is kept"
        );
    }
    assert!(chain.contains(&easy[0].header.hash()));
    assert!(
        !chain.contains(&easy[7].header.hash()),
        "the easy branch lost its tip"
    );
    assert_eq!(chain.replay_ledger().unwrap(), *chain.ledger());
}

#[test]
fn fewer_harder_blocks_beat_more_easier_ones() {
    let mut chain = Chain::new(params());
    let easy = mine_chain(&genesis(), 3, 1); // work 3 * 2 = 6
    insert_all(&mut chain, &easy);
    assert_eq!(chain.height(), 3);
    let hard = mine_on_at(&genesis(), vec![], 4, GENESIS_TIMESTAMP + 500); // work 16
    let got = chain.insert(hard.clone(), NOW).unwrap();
    let Imported::Reorganized {
        disconnected,
        connected,
        ..
    } = got
    else {
        panic!("{got:?}")
    };
    let mut easy_hashes: Vec<_> = easy.iter().map(|b| b.header.hash()).collect();
    easy_hashes.reverse();
    assert_eq!(hashes(&disconnected), easy_hashes, "old tip first");
    assert_eq!(hashes(&connected), vec![hard.header.hash()]);
    assert_eq!(chain.height(), 1);
    assert_eq!(chain.tip_work(), 16);
}

#[test]
fn a_reorg_reverts_and_reapplies_the_ledger() {
    let mut chain = Chain::new(params());
    let (alice, bob) = (key(1), key(2));
    let a1 = mine_on(&genesis(), vec![join(&alice, "alice")], 1);
    let a2 = mine_on(&a1, vec![buy(&alice, 1, "mandrill")], 1);
    chain.insert(a1.clone(), NOW).unwrap();
    chain.insert(a2, NOW).unwrap();
    assert_eq!(chain.ledger().balance(&alice.account()), 200);
    // A heavier branch from a1 where alice buys something else and bob joins.
    let b2 = mine_on(&a1, vec![buy(&alice, 1, "marmoset"), join(&bob, "bob")], 1);
    let b3 = mine_on(&b2, vec![], 1);
    chain.insert(b2, NOW).unwrap();
    let got = chain.insert(b3, NOW).unwrap();
    assert!(matches!(got, Imported::Reorganized { .. }), "{got:?}");
    let ledger = chain.ledger();
    assert_eq!(ledger.balance(&alice.account()), 950);
    assert_eq!(ledger.balance(&bob.account()), 1000);
    assert_eq!(
        ledger
            .account(&alice.account())
            .unwrap()
            .cage
            .get("mandrill"),
        None
    );
    assert_eq!(*ledger, chain.replay_ledger().unwrap());
}

/// A main chain a1..a4 (alice joins, buys a mandrill) and a branch from a1 where she buys a
/// marmoset and bob joins, one block longer; each block at 1 bit.
fn deep_fork(chain: &mut Chain) -> (Vec<Block>, Vec<Block>) {
    let alice = key(1);
    let a1 = mine_on(&genesis(), vec![join(&alice, "alice")], 1);
    let a2 = mine_on(&a1, vec![buy(&alice, 1, "mandrill")], 1);
    let mut main = vec![a1.clone(), a2.clone()];
    main.extend(mine_chain(&a2, 2, 1));
    insert_all(chain, &main);
    let b2 = mine_on_at(
        &a1,
        vec![buy(&alice, 1, "marmoset"), join(&key(2), "bob")],
        1,
        GENESIS_TIMESTAMP + 2007,
    );
    let mut side = vec![b2.clone()];
    side.extend(mine_chain(&b2, 3, 1));
    (main, side)
}

#[test]
fn a_reorg_deeper_than_the_undo_depth_replays_the_ledger() {
    let mut chain = Chain::new(params());
    chain.set_undo_depth(2);
    let (main, side) = deep_fork(&mut chain);
    let mut last = None;
    for b in &side {
        last = Some(chain.insert(b.clone(), NOW).unwrap());
    }
    let Some(Imported::Reorganized { disconnected, .. }) = last else {
        panic!("{last:?}")
    };
    let gone: Vec<_> = main[1..].iter().rev().map(|b| b.header.hash()).collect();
    assert_eq!(hashes(&disconnected), gone);
    assert_eq!(chain.tip().hash(), side[3].header.hash());
    let alice = chain.ledger().account(&key(1).account()).unwrap();
    assert!(alice.cage.contains_key("marmoset") && !alice.cage.contains_key("mandrill"));
    assert_eq!(chain.ledger().balance(&key(2).account()), 1000);
    assert_eq!(*chain.ledger(), chain.replay_ledger().unwrap());
}

#[test]
fn a_failed_reorg_deeper_than_the_undo_depth_restores_the_old_chain() {
    let mut chain = Chain::new(params());
    chain.set_undo_depth(2);
    let (main, mut side) = deep_fork(&mut chain);
    let before = chain.ledger().clone();
    // The branch's last block overspends: bob buys what costs more than he has.
    side.pop();
    let bad = mine_on(
        &side[2],
        vec![buy(&key(2), 1, "snub-nosed"), buy(&key(2), 2, "snub-nosed")],
        1,
    );
    insert_all(&mut chain, &side);
    assert!(matches!(
        chain.insert(bad, NOW),
        Err(BlockError::Ledger { index: 1, .. })
    ));
    assert_eq!(chain.tip().hash(), main[3].header.hash());
    assert_eq!(*chain.ledger(), before);
    // And a block on the restored tip still applies: the undo kept near it is right.
    let next = mine_on(&main[3], vec![buy(&key(1), 2, "capuchin")], 1);
    assert!(matches!(
        chain.insert(next, NOW),
        Ok(Imported::Extended { .. })
    ));
    assert_eq!(*chain.ledger(), chain.replay_ledger().unwrap());
}

#[test]
fn each_contextual_fault_is_refused_with_its_reason() {
    let mut chain = Chain::new(params());
    let b1 = mine_on(&genesis(), vec![], FLOOR);
    chain.insert(b1.clone(), NOW).unwrap();

    // Height not the parent's plus one.
    let mut bad = Block::template(
        &b1.header,
        vec![],
        key(9).account(),
        FLOOR,
        b1.header.timestamp + 1,
    );
    bad.header.height = 5;
    let bad = solve(bad);
    assert_eq!(
        chain.insert(bad, NOW),
        Err(BlockError::BadHeight {
            expected: 2,
            got: 5
        })
    );

    // More than two minutes ahead of the local clock.
    let future = mine_on_at(&b1, vec![], FLOOR, NOW + MAX_FUTURE_MS + 1);
    assert!(matches!(
        chain.insert(future, NOW),
        Err(BlockError::FutureTimestamp { .. })
    ));
    let just_in_time = mine_on_at(&b1, vec![], FLOOR, NOW + MAX_FUTURE_MS);
    assert!(chain.insert(just_in_time, NOW).is_ok());

    // Before the median of the previous blocks.
    let early = mine_on_at(&b1, vec![], FLOOR, GENESIS_TIMESTAMP);
    assert!(matches!(
        chain.insert(early, NOW),
        Err(BlockError::TimestampBeforeMedian { .. })
    ));

    // A record the ledger refuses: a purchase before joining.
    let stranger = mine_on(&b1, vec![buy(&key(5), 0, "baboon")], 4);
    assert_eq!(
        chain.insert(stranger.clone(), NOW),
        Err(BlockError::Ledger {
            index: 0,
            error: LedgerError::NotJoined
        })
    );
    // It is remembered: its child is refused without work.
    let child = mine_on(&stranger, vec![], FLOOR);
    assert_eq!(
        chain.insert(child, NOW),
        Err(BlockError::InvalidAncestor(stranger.header.hash()))
    );

    // Below the floor, from a chain with a higher floor.
    let mut strict = Chain::new(Params::with_floor(3));
    let weak = mine_on(&genesis(), vec![], 2);
    assert_eq!(
        strict.insert(weak, NOW),
        Err(BlockError::BelowFloor { bits: 2, floor: 3 })
    );
}

fn solve(block: Block) -> Block {
    let header = protocol::pow::mine(
        &block.header,
        1,
        &std::sync::atomic::AtomicBool::new(false),
        None,
    )
    .header
    .unwrap();
    Block { header, ..block }
}

#[test]
fn an_overspending_block_is_invalid_and_the_tip_stays() {
    let mut chain = Chain::new(params());
    let alice = key(1);
    let b1 = mine_on(&genesis(), vec![join(&alice, "alice")], FLOOR);
    chain.insert(b1.clone(), NOW).unwrap();
    let before = chain.ledger().clone();
    let spend = mine_on(
        &b1,
        vec![buy(&alice, 1, "snub-nosed"), buy(&alice, 2, "capuchin")],
        6,
    );
    assert_eq!(
        chain.insert(spend, NOW),
        Err(BlockError::Ledger {
            index: 1,
            error: LedgerError::InsufficientFunds {
                balance: 100,
                needed: 200
            }
        })
    );
    assert_eq!(chain.tip().hash(), b1.header.hash());
    assert_eq!(*chain.ledger(), before);
}

#[test]
fn a_heavier_side_branch_with_a_bad_block_is_cut_at_that_block() {
    let mut chain = Chain::new(params());
    let alice = key(1);
    let main = mine_chain(&genesis(), 2, 1);
    insert_all(&mut chain, &main);
    // Side branch: a good block (work 2, a side branch), then a bad one that would make it heavier.
    let side1 = mine_on_at(&genesis(), vec![], 1, GENESIS_TIMESTAMP + 1);
    assert!(matches!(
        chain.insert(side1.clone(), NOW),
        Ok(Imported::SideBranch { .. })
    ));
    let side2 = mine_on(&side1, vec![buy(&alice, 0, "tamarin")], 5);
    assert!(matches!(
        chain.insert(side2.clone(), NOW),
        Err(BlockError::Ledger { .. })
    ));
    assert_eq!(chain.tip().hash(), main[1].header.hash());
    assert!(chain.contains(&side1.header.hash()));
    assert!(!chain.contains(&side2.header.hash()));
    assert_eq!(*chain.ledger(), chain.replay_ledger().unwrap());
}

#[test]
fn the_locator_is_dense_near_the_tip_then_exponential() {
    let mut chain = Chain::new(params());
    for b in mine_chain(&genesis(), 300, FLOOR) {
        chain.insert(b, NOW).unwrap();
    }
    let locator = chain.locator();
    assert!(locator.len() <= MAX_LOCATOR);
    assert_eq!(locator[0], chain.tip().hash());
    assert_eq!(locator.last(), Some(&genesis().header.hash()));
    let heights: Vec<u64> = locator
        .iter()
        .map(|h| chain.get(h).unwrap().header.height)
        .collect();
    assert_eq!(
        &heights[..10],
        &[300, 299, 298, 297, 296, 295, 294, 293, 292, 291]
    );
    assert!(heights.windows(2).all(|w| w[0] > w[1]));
    assert!(
        locator.len() < 30,
        "exponential steps keep it short: {}",
        locator.len()
    );
}

#[test]
fn blocks_after_sends_only_what_the_other_side_lacks() {
    let mut chain = Chain::new(params());
    let blocks = mine_chain(&genesis(), 700, FLOOR);
    insert_all(&mut chain, &blocks);
    // A peer that has the first 100 blocks.
    let mut peer = Chain::new(params());
    for b in &blocks[..100] {
        peer.insert(b.clone(), NOW).unwrap();
    }
    let (got, more) = chain.blocks_after(&peer.locator(), 500);
    assert_eq!(got.len(), 500);
    assert!(more);
    assert_eq!(got[0].header.height, 101);
    for b in got {
        peer.insert(b.block().clone(), NOW).unwrap();
    }
    let (rest, more) = chain.blocks_after(&peer.locator(), 500);
    assert_eq!(rest.len(), 100);
    assert!(!more);
    // No locator, or one of unknown hashes, means from genesis.
    assert_eq!(chain.blocks_after(&[], 10).0[0].header.height, 1);
    assert_eq!(
        chain.blocks_after(&[Hash256([7; 32]); 1000], 10).0[0]
            .header
            .height,
        1
    );
    // A peer on a side branch gets the blocks after the fork point.
    let fork = mine_on_at(&blocks[49], vec![], FLOOR, blocks[49].header.timestamp + 1);
    let mut forked = Chain::new(params());
    for b in blocks[..50].iter().chain([&fork]) {
        forked.insert(b.clone(), NOW).unwrap();
    }
    assert_eq!(
        chain.blocks_after(&forked.locator(), 1).0[0].header.height,
        51
    );
}

#[test]
fn orphans_are_capped() {
    let mut chain = Chain::new(params());
    // Orphans of distinct unknown parents: each on its own fake parent.
    for i in 0..(MAX_ORPHANS + 50) {
        let mut parent = genesis();
        parent.header.nonce = i as u64 + 1;
        let orphan = mine_on(&parent, vec![], FLOOR);
        assert!(matches!(
            chain.insert(orphan, NOW),
            Ok(Imported::Orphan { .. })
        ));
    }
    assert_eq!(chain.orphan_count(), MAX_ORPHANS);
}

/// `n` siblings of `parent` at `bits`, each holding `records` signed records (never checked
/// against the ledger: they sit on side branches).
fn big_siblings(parent: &Block, n: usize, records: u64, bits: u32) -> Vec<Block> {
    let records: Vec<_> = (1..=records).map(|s| buy(&key(5), s, "marmoset")).collect();
    (0..n)
        .map(|i| {
            mine_on_at(
                parent,
                records.clone(),
                bits,
                parent.header.timestamp + 1 + i as u64,
            )
        })
        .collect()
}

#[test]
fn side_branches_are_capped_in_bytes_and_pruned_blocks_are_reported() {
    let mut chain = Chain::new(params());
    chain.log_removed();
    let best = mine_chain(&genesis(), 3, 4);
    insert_all(&mut chain, &best);
    let siblings = big_siblings(&best[0], 20, 10, FLOOR);
    let cost = side_block_cost(siblings[0].header.records_size);
    chain.set_max_side_bytes(5 * cost);
    insert_all(&mut chain, &siblings);
    // The byte cap, not the count cap (10,000), is what held them.
    assert_eq!(chain.side_len(), 5);
    assert!(chain.side_bytes() <= 5 * cost, "{}", chain.side_bytes());
    assert_eq!(chain.tip().hash(), best[2].header.hash());
    // The first five stay (the newest among equals goes first); the others are reported once.
    for b in &siblings[..5] {
        assert!(chain.contains(&b.header.hash()));
    }
    let removed = chain.take_removed();
    let expected: Vec<_> = siblings[5..]
        .iter()
        .map(|b| (b.header.height, b.header.hash()))
        .collect();
    assert_eq!(removed, expected);
    assert!(chain.take_removed().is_empty());
    assert_eq!(chain.replay_ledger().unwrap(), *chain.ledger());
}

#[test]
fn a_block_forking_deeper_than_the_deepest_reorg_is_not_kept() {
    let mut chain = Chain::new(params());
    chain.log_removed();
    chain.set_max_reorg_depth(3);
    let best = mine_chain(&genesis(), 6, 4);
    insert_all(&mut chain, &best);
    // Tip at height 6: a sibling of block 2 forks at 1, five below it.
    let deep = big_siblings(&best[0], 1, 1, 8).remove(0);
    assert_eq!(chain.insert(deep.clone(), NOW), Ok(Imported::TooDeep));
    assert!(!chain.contains(&deep.header.hash()));
    // Even with more work than the whole best chain, it is never switched to.
    assert_eq!(chain.tip().hash(), best[5].header.hash());
    // An orphan that low could never join either.
    let mut unknown = best[0].clone();
    unknown.header.nonce ^= 1;
    let low_orphan = mine_on(&unknown, vec![], FLOOR);
    assert_eq!(chain.insert(low_orphan, NOW), Ok(Imported::TooDeep));
    assert_eq!(chain.orphan_count(), 0);

    // A sibling of block 5 forks at 4, two below: kept, until the tip moves two further on.
    let shallow = mine_on_at(&best[3], vec![], FLOOR, best[3].header.timestamp + 1);
    let shallow_child = mine_on(&shallow, vec![], FLOOR);
    for b in [&shallow, &shallow_child] {
        assert!(matches!(
            chain.insert(b.clone(), NOW),
            Ok(Imported::SideBranch { .. })
        ));
    }
    assert!(chain.take_removed().is_empty());
    for b in mine_chain(&best[5], 2, 4) {
        chain.insert(b, NOW).unwrap();
    }
    assert!(!chain.contains(&shallow.header.hash()));
    assert!(!chain.contains(&shallow_child.header.hash()));
    let mut removed = chain.take_removed();
    removed.sort();
    let mut expected = vec![
        (shallow.header.height, shallow.header.hash()),
        (shallow_child.header.height, shallow_child.header.hash()),
    ];
    expected.sort();
    assert_eq!(removed, expected);
    assert_eq!(chain.side_len(), 0);
    assert_eq!(chain.replay_ledger().unwrap(), *chain.ledger());
}
