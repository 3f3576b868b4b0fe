//! Item: the pending pool filled with records that can never be mined. Fresh keys sign
//! purchases 1, 2, 3... and never join, more of them than the pool holds; the node must hold
//! them apart (neither relayed nor stored), and an honest purchase must be admitted and mined at
//! normal speed during the flood, after it, through the peer, and after the node restarts.

use attack::Attack;
use protocol::params::MAX_POOL_RECORDS;
use testkit::*;

use crate::support::{MAX_PEAK_KIB, PURCHASE_LIMIT, attack_while_buying, network};

/// Pending records the store may hold after the flood: a few honest ones not yet forgotten at
/// most, never the flood's thousands.
const MAX_STORED_AFTER: usize = 8;

/// Records in the flood: more than the whole pool held before unminable records were kept apart.
const FLOOD: usize = MAX_POOL_RECORDS + 1000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unminable_records_never_crowd_out_an_honest_purchase() {
    let mut net = network().await;
    let (outcome, during, overlapped) =
        attack_while_buying(&mut net, Attack::UnminableFlood, FLOOD).await;
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
    // Read with the node stopped: nothing of the flood is on disk (every honest record is mined).
    let (store, loaded) = node::store::Store::open(&dir).expect("open the store");
    assert!(
        loaded.pending.len() < MAX_STORED_AFTER,
        "{} pending records stored",
        loaded.pending.len()
    );
    drop(store);
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
