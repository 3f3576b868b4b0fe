//! The visualizer's state on its own, without processes: the deltas each change produces, in
//! order and in proportion to what changed, propagation delays, and the node table's merging
//! of the tracker's word with the followers'.

use protocol::tracker::{NodeInfo, NodeStatus, Topology};
use protocol::{AccountId, Block, Params, Record, genesis};
use testkit::{buy, join, key, mine_block, mine_chain};
use visualizer::state::State;
use visualizer::view::{LedgerDelta, Link, NodeView, ToBrowser};

use crate::hashes;
use protocol::clock::now_ms;

/// One block on `parent` holding `records`, at 4 bits, mined by key 7.
fn mine_with(parent: &Block, records: Vec<Record>) -> Block {
    mine_block(parent, records, 4, 1000)
}

/// A state at the floor of 4 bits that follows `nodes` (each an id and its address).
fn following(nodes: &[(AccountId, &str)]) -> State {
    let mut state = State::new("tracker:1", Params::with_floor(4));
    for (id, addr) in nodes {
        state.link(*id, addr, 1, Link::Following);
    }
    state
}

/// The ledger delta among `out`, which must hold one.
fn ledger_delta(out: &[ToBrowser]) -> LedgerDelta {
    out.iter()
        .find_map(|m| match m {
            ToBrowser::Ledger(l) => Some(l.clone()),
            _ => None,
        })
        .expect("a ledger delta")
}

fn kinds(out: &[ToBrowser]) -> Vec<&'static str> {
    out.iter()
        .map(|m| match m {
            ToBrowser::Snapshot(_) => "snapshot",
            ToBrowser::Blocks { .. } => "blocks",
            ToBrowser::Tip(_) => "tip",
            ToBrowser::Nodes { .. } => "nodes",
            ToBrowser::Ledger(_) => "ledger",
            ToBrowser::Load { .. } => "load",
            ToBrowser::Peers { .. } => "peers",
            ToBrowser::Pool(_) => "pool",
            ToBrowser::Arrivals { .. } => "arrivals",
        })
        .collect()
}

fn nodes_of(out: &[ToBrowser]) -> Option<&[NodeView]> {
    out.iter().find_map(|m| match m {
        ToBrowser::Nodes { nodes, .. } => Some(nodes.as_slice()),
        _ => None,
    })
}

fn info(id: AccountId, addr: &str, status: NodeStatus) -> NodeInfo {
    NodeInfo {
        id,
        addr: addr.into(),
        status,
        last_seen_ms: 0,
        tip_height: 0,
        tip_hash: genesis().header.hash(),
        load: 0.25,
        difficulty: 9,
    }
}

#[test]
fn a_block_gives_one_summary_then_the_tip_then_the_ledger_and_delays_per_node() {
    let (a, b) = (key(1).account(), key(2).account());
    let mut state = following(&[(a, "a:1"), (b, "b:1")]);
    let block = mine_chain(&genesis(), 1, 4, 1000);
    let first = state.insert(a, block.clone(), Some(5_000), now_ms());
    assert_eq!(
        kinds(&first),
        ["blocks", "tip", "ledger", "nodes", "arrivals"]
    );
    let again = state.insert(b, block.clone(), Some(5_042), now_ms());
    assert_eq!(
        kinds(&again),
        ["nodes", "arrivals"],
        "a block already known is not sent again, only when it reached b"
    );
    let Some(ToBrowser::Arrivals { node, blocks }) = again.last() else {
        panic!("the arrival at b");
    };
    assert_eq!((*node, blocks[0].received_ms), (b, 5_042));
    let nodes = nodes_of(&again).expect("the node table");
    let delay = |id| nodes.iter().find(|n| n.id == id).and_then(|n| n.delay_ms);
    assert_eq!((delay(a), delay(b)), (Some(0), Some(42)));
    let details = state.details(&block[0].header.hash()).expect("details");
    let seen: Vec<u64> = details.seen.iter().map(|s| s.delay_ms).collect();
    assert_eq!(seen, [0, 42]);
}

#[test]
fn a_ledger_delta_carries_only_the_rows_a_tip_move_touched() {
    let node = key(1).account();
    let (alice, bob) = (key(2), key(3));
    let mut state = State::new("tracker:1", Params::with_floor(4));
    let one = mine_with(&genesis(), vec![join(&alice, "alice")]);
    let two = mine_with(&one, vec![join(&bob, "bob")]);
    state.insert(node, vec![one.clone(), two.clone()], None, now_ms());
    let three = mine_with(&two, vec![buy(&alice, 1, "marmoset")]);
    let out = state.insert(node, vec![three], None, now_ms());
    let ledger = ledger_delta(&out);
    let names: Vec<&str> = ledger.shoppers.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["alice"], "bob's row did not change");
    assert!(
        ledger.gone.is_empty(),
        "the miner never joined: no row to remove"
    );
    assert_eq!(ledger.totals.monkeys_sold, 1);

    // A heavier branch from block one, without bob's join: his row goes, and the tip delta says
    // how deep the reorg was (the third block outweighs two and three).
    let branch: Vec<Block> = {
        let mut out = vec![mine_with(&one, Vec::new())];
        for _ in 0..2 {
            let next = mine_with(out.last().expect("a block"), Vec::new());
            out.push(next);
        }
        out
    };
    let out = state.insert(node, branch.clone(), None, now_ms());
    let tip = out
        .iter()
        .find_map(|m| match m {
            ToBrowser::Tip(t) => Some(t.clone()),
            _ => None,
        })
        .expect("a tip delta");
    assert_eq!(tip.disconnected.len(), 2, "a reorg of depth 2");
    assert_eq!(tip.connected, hashes(&branch));
    let ledger = ledger_delta(&out);
    assert_eq!(ledger.gone, [bob.account()]);
    assert_eq!((ledger.totals.shoppers, ledger.totals.monkeys_sold), (1, 0));
    assert_eq!(ledger.totals.side_blocks, 2);
}

#[test]
fn the_node_table_merges_the_tracker_and_the_followers() {
    let (a, b) = (key(1).account(), key(2).account());
    let mut state = State::new("tracker:1", Params::with_floor(4));
    let topology = Topology {
        nodes: vec![info(a, "a:1", NodeStatus::A), info(b, "b:1", NodeStatus::R)],
        ..Topology::default()
    };
    let out = state.topology(Some(&topology));
    let nodes = nodes_of(&out).expect("the node table");
    assert_eq!(nodes.len(), 2);
    assert!(
        nodes
            .iter()
            .all(|n| n.load == Some(0.25) && n.link == Link::None)
    );
    assert_eq!(
        state.topology(Some(&topology)).len(),
        0,
        "nothing changed, nothing sent"
    );

    // A replaced follower's last words are ignored.
    state.link(a, "a:1", 2, Link::Following);
    assert!(state.link(a, "a:1", 1, Link::None).is_empty());
    let out = state.topology(None);
    let ToBrowser::Nodes { tracker, nodes } = &out[0] else {
        panic!("expected the node table, got {out:?}");
    };
    assert!(!tracker.up);
    let row = nodes.iter().find(|n| n.id == a).expect("a's row");
    assert_eq!((row.link, row.behind), (Link::Following, Some(0)));

    // Forgotten by the tracker: b goes at once (not followed), a once its follower stops.
    let out = state.topology(Some(&Topology::default()));
    assert_eq!(nodes_of(&out).map(<[NodeView]>::len), Some(1));
    let out = state.link(a, "a:1", 2, Link::None);
    assert_eq!(nodes_of(&out).map(<[NodeView]>::len), Some(0));
    let ToBrowser::Snapshot(snapshot) = state.snapshot() else {
        panic!("a snapshot");
    };
    assert!(snapshot.nodes.is_empty());
}

/// The row of `node` in the last node table of `out`.
fn row_of(out: &[ToBrowser], node: AccountId) -> NodeView {
    nodes_of(out)
        .and_then(|nodes| nodes.iter().find(|n| n.id == node).cloned())
        .expect("the node's row")
}

#[test]
fn a_node_that_sends_an_invalid_block_is_shown_as_misbehaving() {
    let (liar, honest) = (key(1).account(), key(2).account());
    let mut state = following(&[(liar, "liar:1"), (honest, "honest:1")]);

    // Below the floor: refused on its own, before the chain sees it.
    let mut easy = Block::template(
        &genesis().header,
        Vec::new(),
        key(7).account(),
        0,
        genesis().header.timestamp + 1000,
    );
    easy.header.nonce = 1;
    let out = state.insert(liar, vec![easy.clone()], None, now_ms());
    let row = row_of(&out, liar);
    let offence = row.misbehaviour.expect("the liar's offence");
    assert!(offence.why.contains("below the floor 4"), "{offence:?}");
    assert!(offence.sent.contains(&easy.header.hash().short()));
    assert!(offence.sent.contains("0 bits"), "{offence:?}");
    assert_eq!(offence.offences, 1);
    assert!(!state.contains(&easy.header.hash()));

    // Valid work, but a purchase by an account that never joined: the chain refuses it when
    // it would join the best chain.
    let unjoined = mine_with(&genesis(), vec![buy(&key(3), 1, "capuchin")]);
    let (out, refused) = {
        let checked = unjoined
            .clone()
            .check(state.params())
            .expect("valid on its own");
        state.insert_checked(liar, vec![checked], None, now_ms())
    };
    assert!(refused.is_some(), "the hub tells the follower");
    let offence = row_of(&out, liar).misbehaviour.expect("the second offence");
    assert_eq!(offence.offences, 2);
    assert!(offence.why.starts_with("record 0:"), "{offence:?}");
    assert!(!state.contains(&unjoined.header.hash()));

    // The honest node's blocks go in, and it is not blamed for anything.
    let good = mine_with(&genesis(), vec![join(&key(4), "dana")]);
    let out = state.insert(honest, vec![good.clone()], None, now_ms());
    assert_eq!(state.tip(), good.header.hash());
    assert_eq!(row_of(&out, honest).misbehaviour, None);
}

#[test]
fn side_branches_are_bounded_in_bytes() {
    const CAP: usize = 8 * 1024;
    let node = key(1).account();
    let mut state = State::new("tracker:1", Params::with_floor(4));
    state.set_max_side_bytes(CAP);
    // The best chain: three blocks at 8 bits outweigh any 4-bit branch below.
    let best = mine_chain(&genesis(), 3, 8, 1000);
    state.insert(node, best.clone(), None, now_ms());
    // A side branch of 4-bit blocks, each with 20 joins: about 2.7 KiB a block, 27 KiB in all.
    // (A side branch is not checked against the ledger, so one key signs them all.)
    let mut side: Vec<Block> = Vec::new();
    for b in 0..10 {
        let parent = side.last().cloned().unwrap_or_else(genesis);
        let joins = (0..20)
            .map(|i| join(&key(9), &format!("s{b}x{i}")))
            .collect();
        side.push(mine_with(&parent, joins));
    }
    for block in &side {
        state.insert(node, vec![block.clone()], None, now_ms());
        assert!(
            state.side_bytes() <= CAP,
            "{} bytes off the best chain",
            state.side_bytes()
        );
    }
    assert_eq!(state.tip(), best[2].header.hash(), "the best chain stays");
    let ToBrowser::Snapshot(snapshot) = state.snapshot() else {
        panic!("a snapshot");
    };
    let kept = snapshot.ledger.totals.side_blocks;
    assert!((1..10).contains(&kept), "{kept} side blocks kept");
    assert_eq!(snapshot.blocks.len() as u64, 4 + kept);
    // What was pruned is forgotten, not just hidden.
    assert_eq!(state.summarised() as u64, 4 + kept);
    let gone = side
        .iter()
        .filter(|b| state.details(&b.header.hash()).is_none())
        .count() as u64;
    assert_eq!(gone, 10 - kept);

    // Blocks summarised before are forgotten too when the chain prunes them later.
    state.set_max_side_bytes(1);
    assert_eq!(state.side_bytes(), 0);
    assert_eq!(state.summarised(), 4, "genesis and the best chain only");
}

#[test]
fn a_nodes_load_peers_and_pool_are_passed_on_bounded_and_in_the_snapshot() {
    use protocol::params::MAX_REPORTED_PENDING;
    use protocol::wire::{LeftPool, PendingRecord};

    let (a, stranger) = (key(1).account(), key(9).account());
    let mut state = following(&[(a, "a:1")]);
    // A node nobody follows is not listened to.
    assert!(state.status(stranger, 1_000, 500, 9, vec![a]).is_empty());

    let out = state.status(a, 1_000, 750, 7, vec![key(2).account()]);
    assert_eq!(kinds(&out), ["load", "peers"]);
    let Some(ToBrowser::Load { sample, .. }) = out.first() else {
        panic!("a sample");
    };
    assert_eq!(
        (sample.at_ms, sample.load, sample.difficulty),
        (1_000, 0.75, 7)
    );
    // The same peers again: only the sample; too soon after the last: nothing.
    assert_eq!(
        kinds(&state.status(a, 2_000, 100, 5, vec![key(2).account()])),
        ["load"]
    );
    assert!(
        state
            .status(a, 2_001, 100, 5, vec![key(2).account()])
            .is_empty()
    );
    // A load past 1 is cut to 1.
    let out = state.status(a, 3_000, 60_000, 5, vec![key(2).account()]);
    let Some(ToBrowser::Load { sample, .. }) = out.first() else {
        panic!("a sample");
    };
    assert_eq!(sample.load, 1.0);

    // Records: named as their accounts joined, bounded, and leaving for a block.
    let ann = key(3);
    let records: Vec<PendingRecord> = (0..(MAX_REPORTED_PENDING as u64 + 3))
        .map(|seq| PendingRecord {
            record: if seq == 0 {
                join(&ann, "ann")
            } else {
                buy(&ann, seq, "marmoset")
            },
            since_ms: 10 + seq,
            waiting: seq > 0,
        })
        .collect();
    let first = records[0].record.id();
    let out = state.pool(a, true, records, Vec::new(), (1, 66));
    let Some(ToBrowser::Pool(delta)) = out.first() else {
        panic!("a pool delta");
    };
    assert_eq!(delta.added.len(), MAX_REPORTED_PENDING);
    assert_eq!((delta.ready, delta.waiting), (1, 66));
    let block = genesis().header.hash();
    let out = state.pool(
        a,
        false,
        Vec::new(),
        vec![
            LeftPool {
                id: first,
                block: Some(block),
            },
            // A record the node never listed is not passed on.
            LeftPool {
                id: genesis().header.hash(),
                block: None,
            },
        ],
        (0, 66),
    );
    let Some(ToBrowser::Pool(delta)) = out.first() else {
        panic!("a pool delta");
    };
    assert_eq!(delta.removed.len(), 1);
    assert_eq!(delta.removed[0].block, Some(block));

    let ToBrowser::Snapshot(snapshot) = state.snapshot() else {
        panic!("a snapshot");
    };
    let observed = snapshot
        .observed
        .iter()
        .find(|o| o.node == a)
        .expect("a's observations");
    assert_eq!(observed.samples.len(), 3);
    assert_eq!(observed.peers, vec![key(2).account()]);
    assert_eq!(observed.pool.len(), MAX_REPORTED_PENDING - 1);
    assert!(observed.pool.iter().all(|p| p.waiting));
}
