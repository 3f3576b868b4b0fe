//! Failures: a node killed again and again at random moments, and a network split in two that
//! mines on both sides and heals.

use std::path::{Path, PathBuf};
use std::time::Duration;

use protocol::{Block, RecordId};
use rand::RngExt;
use testkit::*;

/// Kills node `b` with SIGKILL 20 times at random moments while purchases flow through both
/// nodes (so `b` is relaying, mining and writing its store when it dies); every restart loads a
/// valid chain, and in the end both nodes hold every acknowledged purchase exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_killed_twenty_times_always_comes_back_valid_and_catches_up() {
    let tracker = Tracker::start().await;
    let dir = tempfile::tempdir().unwrap();
    let a = NodeProc::start(&tracker.addr, &dir.path().join("a"));
    let b_dir = dir.path().join("b");
    let mut b = NodeProc::start(&tracker.addr, &b_dir);
    tracker.wait_active(&[a.id.clone(), b.id.clone()]).await;

    let alice = key(1);
    let mut ids: Vec<RecordId> = Vec::new();
    let mut seq = 0;
    let mut next_record = |ids: &mut Vec<RecordId>| {
        // Votes cost nothing, so sixty records never run out of coins.
        let record = if seq == 0 {
            join(&alice, "alice")
        } else {
            let poll = format!("poll-{seq}");
            let choice = "yes".to_string();
            protocol::Record::sign(&alice, seq, protocol::Action::Vote { poll, choice })
        };
        seq += 1;
        ids.push(record.id());
        record
    };
    for round in 0..20 {
        // Records at b first, a as the fallback, while b is killed at a random moment.
        let addrs = vec![b.addr.clone(), a.addr.clone()];
        let records: Vec<_> = (0..3).map(|_| next_record(&mut ids)).collect();
        let shopping = tokio::spawn(async move {
            for record in records {
                let block = submit_with_retry(&addrs, &record, Duration::from_secs(5), 10).await;
                assert!(block.is_some(), "a purchase never landed");
            }
        });
        let delay = rand::rng().random_range(0..150);
        tokio::time::sleep(Duration::from_millis(delay)).await;
        b.kill();
        // Restarted at once, as a supervisor would: a record may be waiting at a for a block
        // only b had when it died.
        b = NodeProc::start(&tracker.addr, &b_dir);
        shopping.await.unwrap();
        let log = b.log();
        let last_start = log.rsplit("loaded the store").next().unwrap_or_default();
        assert!(
            !log.contains("did not load"),
            "round {round}: the store had entries that did not load:\n{last_start}"
        );
    }
    let chain = wait_all_agree(&[&a, &b], &ids).await;
    assert_eq!(
        chain.iter().map(|blk| blk.records.len()).sum::<usize>(),
        ids.len()
    );
}

/// A node's refuse file, where the split is written.
fn refuse_file(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("{name}.refuse"))
}

/// Waits until `node` has read its refuse file `times` times with a change.
async fn wait_refuse_reloads(node: &NodeProc, times: usize) {
    wait_for("the refuse file to be read", DEADLINE, || async {
        (node.log().matches("refused peers changed").count() >= times).then_some(())
    })
    .await;
}

/// Work of the blocks after height `from`.
fn work_after(chain: &[Block], from: u64) -> u128 {
    chain
        .iter()
        .filter(|b| b.header.height > from)
        .map(|b| b.header.work())
        .sum()
}

/// Four nodes split two against two; both sides mine purchases of their own; after the heal
/// every node is on the side with more work, and the other side's purchases are in it too,
/// each exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_split_network_heals_onto_the_side_with_more_work_and_loses_no_purchase() {
    let tracker = Tracker::start().await;
    let dir = tempfile::tempdir().unwrap();
    let names = ["a", "b", "c", "d"];
    let nodes: Vec<NodeProc> = names
        .iter()
        .map(|n| {
            let refuse = refuse_file(dir.path(), n);
            let refuse = refuse.to_str().unwrap();
            NodeProc::start_with(
                &tracker.addr,
                &dir.path().join(n),
                &["--refuse-peers-file", refuse],
            )
        })
        .collect();
    let ids: Vec<String> = nodes.iter().map(|n| n.id.clone()).collect();
    tracker.wait_active(&ids).await;
    let (alice, bob) = (key(1), key(2));
    let mut first = Client::connect(&nodes[0].addr).await;
    let joins = [join(&alice, "alice"), join(&bob, "bob")];
    for record in &joins {
        first.submit_and_wait(record.clone()).await;
    }
    let all: Vec<&NodeProc> = nodes.iter().collect();
    let before = wait_all_agree(&all, &[joins[0].id(), joins[1].id()]).await;
    let fork_height = before.last().map_or(0, |b| b.header.height);

    // Split: a and b refuse c and d, and the other way round.
    for (i, name) in names.iter().enumerate() {
        let others = if i < 2 { &ids[2..] } else { &ids[..2] };
        std::fs::write(refuse_file(dir.path(), name), others.join("\n")).unwrap();
    }
    for node in &nodes {
        wait_refuse_reloads(node, 1).await;
    }

    // Side one buys three times, side two once: each side agrees on its own chain.
    let mut side_one = Vec::new();
    let mut client = Client::connect(&nodes[0].addr).await;
    for seq in 1..=3 {
        let record = buy(&alice, seq, "tamarin");
        side_one.push(record.id());
        client.submit_and_wait(record).await;
    }
    let mut client = Client::connect(&nodes[2].addr).await;
    let bobs = buy(&bob, 1, "capuchin");
    client.submit_and_wait(bobs.clone()).await;
    let one = wait_all_agree(&[&nodes[0], &nodes[1]], &side_one).await;
    wait_all_agree(&[&nodes[2], &nodes[3]], &[bobs.id()]).await;
    assert!(
        !one.iter().any(|b| b.records.contains(&bobs)),
        "the split leaked a purchase"
    );
    // A side may still mine a block to end a tie of its own: wait until each side is settled.
    let one = settled(&[&nodes[0], &nodes[1]]).await;
    let two = settled(&[&nodes[2], &nodes[3]]).await;
    let (w1, w2) = (work_after(&one, fork_height), work_after(&two, fork_height));

    // Heal: everyone ends on the heavier side, with every purchase of both sides once.
    for name in names {
        std::fs::write(refuse_file(dir.path(), name), "").unwrap();
    }
    let mut every: Vec<RecordId> = side_one.clone();
    every.push(bobs.id());
    let healed = wait_all_agree(&all, &every).await;
    let kept = |side: &[Block]| healed.iter().any(|b| b.header.hash() == tip(side));
    match w1.cmp(&w2) {
        std::cmp::Ordering::Greater => assert!(kept(&one), "side one had more work ({w1} > {w2})"),
        std::cmp::Ordering::Less => assert!(kept(&two), "side two had more work ({w2} > {w1})"),
        // Equal work: the tie is broken one way or the other.
        std::cmp::Ordering::Equal => assert!(kept(&one) || kept(&two)),
    }
}

/// The nodes' common chain once its tip has not moved for 250 ms (five looks 50 ms apart): a
/// tie between them is broken within milliseconds, so by then no more blocks are coming.
async fn settled(nodes: &[&NodeProc]) -> Vec<Block> {
    let mut last = None;
    let mut steady = 0;
    // At most 30 s of looks.
    for _ in 0..600 {
        let mut tips = Vec::new();
        let mut chain = Vec::new();
        for node in nodes {
            chain = fetch_chain(&node.addr).await.expect("fetch a side's chain");
            tips.push(tip(&chain));
        }
        let agreed = tips.windows(2).all(|w| w[0] == w[1]).then_some(tips[0]);
        if agreed.is_some() && agreed == last {
            steady += 1;
            if steady == 5 {
                return chain;
            }
        } else {
            steady = 0;
        }
        last = agreed;
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("a side never settled in 30 s");
}
