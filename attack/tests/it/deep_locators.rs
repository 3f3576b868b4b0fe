//! A flood of `D`s whose locators name only genesis, against a node whose chain is deeper than
//! the blocks it keeps in memory: every answer is read from its store, off the chain thread, so
//! an honest shopper's records are still acknowledged and mined at once.

use std::time::{Duration, Instant};

use attack::{Attack, Target};
use protocol::wire::{Blocks, Message};
use testkit::*;

use crate::support::{PURCHASE_LIMIT, attacker_addr, network};

/// The median purchase during the flood, at most. Measured on a loaded 2-core machine: 27 ms
/// with the reads off the chain thread, 3.2 s with them on it (each deep `D` read and checked
/// 500 blocks there while the purchase waited its turn); this leaves room for a slower machine.
const MEDIAN_LIMIT: Duration = Duration::from_secs(1);

/// Blocks added on top of the network's history: deeper than a node keeps in memory
/// (`node::store::RECENT_BLOCKS`), so a locator naming genesis is answered from the store.
const DEPTH: usize = 1_600;

/// Deep `D`s the attack sends: enough to last through several purchases.
const DEEP_ASKS: usize = 2_000;

/// Purchases timed while the flood runs, at most.
const MAX_PURCHASES: u64 = 10;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deep_locators_never_hold_up_an_honest_purchase() {
    let net = network().await;
    const { assert!(node::store::RECENT_BLOCKS < DEPTH) };
    let chain = fetch_chain(&net.a.addr).await.expect("the chain");
    // A millisecond apart: the tip was mined just now, and blocks from the future are refused.
    let history = mine_chain(chain.last().expect("genesis"), DEPTH, FLOOR, 1);
    let mut peer = Client::connect(&net.a.addr).await;
    for segment in history.chunks(500) {
        peer.send(Message::Blocks(Blocks {
            blocks: segment.to_vec(),
            more: false,
        }))
        .await;
    }
    let want = chain.len() + DEPTH;
    wait_for("node a to take the deep history", DEADLINE, || async {
        let height = fetch_chain(&net.a.addr).await?.len();
        (height >= want).then_some(())
    })
    .await;

    let bob = key(2);
    Client::connect(&net.a.addr)
        .await
        .submit_and_wait(join(&bob, "bob"))
        .await;
    let target = Target {
        node: net.a.addr.clone(),
        from: attacker_addr(),
        floor: FLOOR,
        count: DEEP_ASKS,
        tracker: None,
    };
    let running = tokio::spawn(async move { attack::run(Attack::DeepLocators, &target).await });
    let mut took = Vec::new();
    for seq in 1..=MAX_PURCHASES {
        if running.is_finished() {
            break;
        }
        let started = Instant::now();
        let mut shop = Client::connect(&net.a.addr).await;
        shop.submit_and_wait(buy(&bob, seq, "marmoset")).await;
        took.push(started.elapsed());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let outcome = running.await.unwrap().unwrap();
    took.sort();
    println!(
        "deep-locators: {}; {} purchases acknowledged and mined meanwhile, median {:?}, \
         longest {:?}",
        outcome.note,
        took.len(),
        took.get(took.len() / 2),
        took.last()
    );
    assert!(
        took.len() >= 3,
        "the flood ended too soon to time purchases"
    );
    assert!(outcome.still_served && !outcome.banned, "{outcome:?}");
    let median = took.get(took.len() / 2).copied().unwrap_or_default();
    assert!(
        median < MEDIAN_LIMIT,
        "the median purchase during the flood took {median:?}"
    );
    let longest = took.last().copied().unwrap_or_default();
    assert!(
        longest < PURCHASE_LIMIT,
        "a purchase during the flood took {longest:?}"
    );
}
