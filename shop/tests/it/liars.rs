//! A lying node registered with the tracker next to honest ones: the shop checks every block it
//! is given, so the liar's fake blocks and chains never count, the liar is named and skipped,
//! and the record lands on the honest chain.

use attack::liar::{Liar, Lie};
use protocol::tracker::NodeStatus;
use serde_json::Value;
use testkit::{DEADLINE, NodeProc, Tracker, wait_all_agree, wait_for};

use crate::{Net, num, ok, text};

/// A height no honest chain of a test reaches.
const ABSURD: u64 = 1_000;

/// Starts a liar on 127.0.0.3 and waits until the tracker lists it as active.
async fn liar(tracker: &Tracker, lie: Lie) -> Liar {
    let liar = Liar::start(&tracker.addr, "127.0.0.3".parse().expect("an address"), lie)
        .await
        .expect("the liar starts");
    let id = liar.id;
    wait_for("the tracker to list the liar", DEADLINE, || async {
        let t = tracker.topology().await?;
        t.nodes
            .iter()
            .any(|n| n.id == id && n.status == NodeStatus::A)
            .then_some(())
    })
    .await;
    liar
}

/// Checks a purchase sent first to `liar`: mined on the honest chain, at an honest height, by
/// an honest node, with the liar named for `why`; every honest node holds it.
async fn check_bought_past(net: &Net, out: &Value, liar: &Liar, why: &str) {
    assert_eq!(out["status"], "mined", "{out}");
    assert_ne!(text(out, "node"), liar.addr, "{out}");
    let height = num(&out["block"], "height");
    assert!(height < ABSURD, "a made-up height was reported: {out}");
    let named = out["liars"].as_array().expect("a list of liars");
    assert!(
        named
            .iter()
            .any(|l| l["node"] == liar.addr.as_str() && text(l, "error").contains(why)),
        "the liar is not named for {why:?}: {out}"
    );
    let id = text(out, "record").parse().expect("a record id");
    let refs: Vec<&NodeProc> = net.nodes.iter().collect();
    let chain = wait_all_agree(&refs, &[id]).await;
    assert!(chain.len() as u64 >= height);
}

/// The highest chain height the shopper's outbox has met.
fn seen_height(wallet: &std::path::Path) -> u64 {
    let dir = wallet.join(shop::outbox::OUTBOX_DIR);
    let mut highest = 0;
    for entry in std::fs::read_dir(&dir)
        .expect("the outbox folder")
        .flatten()
    {
        if entry.path().extension().is_some_and(|e| e == "json") {
            let text = std::fs::read_to_string(entry.path()).expect("an outbox");
            let file: Value = serde_json::from_str(&text).expect("outbox JSON");
            highest = highest.max(num(&file, "seen_height"));
        }
    }
    highest
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lying_node_cannot_fake_a_purchase_or_drag_the_shop_to_its_chain() {
    let start = std::time::Instant::now();
    let net = Net::start(2).await;
    let t = &net.tracker.addr;
    let w = net.wallet("w");
    let honest = net.addrs();
    ok(t, &w, &["--node", &honest[0], "join", "ann"]).await;
    // From here on the wallet's chain cache is warm: every read starts from it and asks only
    // for what is new, and the liars are still caught.
    assert!(w.join(shop::cache::CACHE_FILE).is_file());

    // A block of no work at height 10^9 for the record, and a chain of genesis alone.
    let fake = liar(
        &net.tracker,
        Lie::FakeMined {
            height: 1_000_000_000,
            bits: 0,
        },
    )
    .await;
    let began = std::time::Instant::now();
    let out = ok(t, &w, &["--node", &fake.addr, "buy", "ann", "capuchin"]).await;
    eprintln!(
        "purchase past a zero-work liar: {:?} (network up after {:?})",
        began.elapsed(),
        began - start
    );
    check_bought_past(&net, &out, &fake, "below the floor").await;
    assert_eq!(num(&out, "balance"), 800, "{out}");
    assert!(seen_height(&w) < ABSURD, "the outbox kept a made-up height");

    // A block with real work at the floor, which the liar's own chain does not hold.
    let worked = liar(
        &net.tracker,
        Lie::FakeMined {
            height: 1_000_000_000,
            bits: testkit::FLOOR,
        },
    )
    .await;
    let began = std::time::Instant::now();
    let out = ok(t, &w, &["--node", &worked.addr, "buy", "ann", "marmoset"]).await;
    eprintln!("purchase past a contradicting liar: {:?}", began.elapsed());
    check_bought_past(&net, &out, &worked, "its own chain").await;
    assert!(seen_height(&w) < ABSURD, "the outbox kept a made-up height");

    // A chain of no work, far higher than the honest one (and, block for block, more of them
    // than the honest chain's work): a later command on an honest node keeps the honest chain,
    // and the shopper is as the honest chain has it. The other liars leave first, so the shop
    // reads every chain listed.
    fake.stop().await;
    worked.stop().await;
    wait_for("the liars to leave", DEADLINE, || async {
        let t = net.tracker.topology().await?;
        (t.active().count() == 2).then_some(())
    })
    .await;
    let _higher = liar(
        &net.tracker,
        Lie::ZeroWorkFlood {
            blocks: 2 * ABSURD as usize,
            records_per_block: 0,
        },
    )
    .await;
    let began = std::time::Instant::now();
    let shown = ok(t, &w, &["--node", &honest[0], "show", "ann"]).await;
    eprintln!(
        "show next to a higher chain of no work: {:?}",
        began.elapsed()
    );
    assert!(num(&shown["chain"], "height") < ABSURD, "{shown}");
    assert_eq!(num(&shown, "balance"), 800 - 50, "{shown}");
    assert_eq!(shown["pending"], Value::Array(Vec::new()), "{shown}");
    let everyone = ok(t, &w, &["show"]).await;
    assert!(num(&everyone["chain"], "height") < ABSURD, "{everyone}");
    eprintln!("whole test: {:?}", start.elapsed());
}
