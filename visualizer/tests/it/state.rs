//! The visualizer's state on its own, without processes: the deltas each change produces, in
//! order and in proportion to what changed, propagation delays, and the node table's merging
//! of the tracker's word with the followers'.

use std::sync::atomic::AtomicBool;

use protocol::tracker::{NodeInfo, NodeStatus, Topology};
use protocol::{AccountId, Block, Params, Record, genesis};
use testkit::{buy, join, key, mine_chain};
use visualizer::state::State;
use visualizer::view::{Link, NodeView, ToBrowser};

use crate::{hashes, now_ms};

/// One block on `parent` holding `records`, at 4 bits, mined by key 7.
fn mine_with(parent: &Block, records: Vec<Record>) -> Block {
    let template = Block::template(
        &parent.header,
        records,
        key(7).account(),
        4,
        parent.header.timestamp + 1000,
    );
    let header = protocol::pow::mine(&template.header, 1, &AtomicBool::new(false), None)
        .header
        .expect("4 bits are always found");
    Block { header, ..template }
}

fn kinds(out: &[ToBrowser]) -> Vec<&'static str> {
    out.iter()
        .map(|m| match m {
            ToBrowser::Snapshot(_) => "snapshot",
            ToBrowser::Blocks { .. } => "blocks",
            ToBrowser::Tip(_) => "tip",
            ToBrowser::Nodes { .. } => "nodes",
            ToBrowser::Ledger(_) => "ledger",
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
    let mut state = State::new("tracker:1", Params::with_floor(4));
    state.link(a, "a:1", 1, Link::Following);
    state.link(b, "b:1", 1, Link::Following);
    let block = mine_chain(&genesis(), 1, 4, 1000);
    let first = state.insert(a, block.clone(), Some(5_000), now_ms());
    assert_eq!(kinds(&first), ["blocks", "tip", "ledger", "nodes"]);
    let again = state.insert(b, block.clone(), Some(5_042), now_ms());
    assert_eq!(
        kinds(&again),
        ["nodes"],
        "a block already known is not sent again"
    );
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
    let ledger = out
        .iter()
        .find_map(|m| match m {
            ToBrowser::Ledger(l) => Some(l.clone()),
            _ => None,
        })
        .expect("a ledger delta");
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
    let ledger = out
        .iter()
        .find_map(|m| match m {
            ToBrowser::Ledger(l) => Some(l.clone()),
            _ => None,
        })
        .expect("a ledger delta");
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
