//! Item: the pending pool filled with records that can never be mined. Fresh keys sign
//! purchases 1, 2, 3... and never join, more of them than the pool holds; the node must hold
//! them apart (neither relayed nor stored), and an honest purchase must be admitted and mined at
//! normal speed during the flood, after it, through the peer, and after the node restarts.

use std::time::{Duration, Instant};

use attack::{Attack, Target};
use protocol::params::MAX_POOL_RECORDS;
use testkit::*;

use crate::support::{MAX_PEAK_KIB, Net, attacker_addr, network};

/// Records in the flood: more than the whole pool held before unminable records were kept apart.
const FLOOD: usize = MAX_POOL_RECORDS + 1000;

/// How long an honest purchase may take: tens of milliseconds at this floor; the bound only
/// allows for a loaded machine.
pub const PURCHASE_LIMIT: Duration = Duration::from_secs(5);

/// Purchases bought while an attack runs, at most (the shopper's coins last for 19).
const MAX_DURING: usize = 8;
/// Time between them, so that they spread over the attack rather than all come before it.
const BUY_EVERY: Duration = Duration::from_millis(300);

/// Buys through node `a` every [`BUY_EVERY`] until `attack` ends (at most [`MAX_DURING`]
/// times); returns the longest purchase and how many overlapped the attack.
pub async fn buy_while<T>(net: &mut Net, attack: &tokio::task::JoinHandle<T>) -> (Duration, usize) {
    let mut longest = Duration::ZERO;
    let mut bought = 0;
    while bought < MAX_DURING && !attack.is_finished() {
        longest = longest.max(net.shopper.buy(&net.a, &net.b).await);
        bought += 1;
        tokio::time::sleep(BUY_EVERY).await;
    }
    assert!(bought > 0, "the attack ended before any purchase");
    (longest, bought)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unminable_records_never_crowd_out_an_honest_purchase() {
    let mut net = network().await;
    let target = Target {
        node: net.a.addr.clone(),
        from: attacker_addr(),
        floor: FLOOR,
        count: FLOOD,
    };
    let started = Instant::now();
    let flood = tokio::spawn(async move { attack::run(Attack::UnminableFlood, &target).await });
    let (during, overlapped) = buy_while(&mut net, &flood).await;
    let outcome = flood.await.unwrap().unwrap();
    let flood_took = started.elapsed();
    println!("unminable-flood: {outcome:?} in {flood_took:?}");
    assert_eq!(outcome.sent, FLOOD);
    assert!(outcome.note.contains("K waiting"), "{}", outcome.note);
    assert!(outcome.still_served && !outcome.banned, "{outcome:?}");

    // After the flood, through the attacked node and through its peer (nothing was relayed to
    // fill the peer's pool either).
    let after = net.shopper.buy(&net.a, &net.b).await;
    let via_peer = net.shopper.buy(&net.b, &net.a).await;
    let (_, peak) = net.a.memory_kib().expect("read /proc");

    // After a restart: nothing unminable was stored, so nothing fills the pool again.
    let dir = net.a.dir.clone();
    assert!(net.a.terminate().success());
    net.a = NodeProc::start(&net.tracker.addr, &dir);
    let ids = [net.a.id.clone(), net.b.id.clone()];
    net.tracker.wait_active(&ids).await;
    let restarted = net.shopper.buy(&net.a, &net.b).await;
    println!(
        "honest purchase: at most {during:?} during the flood ({overlapped} purchases), {after:?} after it, {via_peer:?} via the \
         peer, {restarted:?} after a restart; peak memory {} MiB",
        peak / 1024
    );
    for (when, took) in [
        ("during the flood", during),
        ("after it", after),
        ("via the peer", via_peer),
        ("after a restart", restarted),
    ] {
        assert!(took < PURCHASE_LIMIT, "a purchase {when} took {took:?}");
    }
    assert!(peak < MAX_PEAK_KIB, "peak memory {peak} KiB");
}
