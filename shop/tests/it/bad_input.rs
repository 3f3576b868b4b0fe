//! Bad input gets one clear line on stderr, exit 1, and changes nothing: not the chain, not the
//! wallet. A node's own refusal is shown with its reason.

use std::collections::HashSet;

use protocol::RecordId;
use protocol::wire::Message;
use testkit::{Client, NodeProc, Tracker, fetch_chain, key, record_counts, wait_all_agree};

use crate::{Net, files, keys, ok, refused, text};

/// Every record id in a node's chain.
async fn records_of(node: &NodeProc) -> HashSet<RecordId> {
    let chain = fetch_chain(&node.addr).await.expect("the chain");
    let counts = record_counts(&chain);
    assert!(counts.values().all(|&n| n == 1), "a record applied twice");
    counts.into_keys().collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_refused_in_one_line_and_changes_nothing() {
    let net = Net::start(2).await;
    let t = &net.tracker.addr;
    let (w, other) = (net.wallet("w"), net.wallet("other"));
    let mut ids: Vec<RecordId> = Vec::new();
    for (wallet, args) in [
        (&w, vec!["join", "alice"]),
        (&other, vec!["join", "bob"]),
        (&w, vec!["buy", "alice", "snub-nosed"]),
        (&w, vec!["vote", "alice", "monkey-of-the-month", "capuchin"]),
    ] {
        let out = ok(t, wallet, &args).await;
        ids.push(text(&out, "record").parse().unwrap());
    }
    let refs: Vec<&NodeProc> = net.nodes.iter().collect();
    wait_all_agree(&refs, &ids).await;
    let chain_before = records_of(&net.nodes[0]).await;
    let wallets_before = (keys(&w), keys(&other));

    let long = "x".repeat(33);
    let cases: Vec<(&std::path::Path, Vec<&str>, &str)> = vec![
        (
            &w,
            vec!["buy", "alice", "unicorn"],
            "unknown monkey \"unicorn\"",
        ),
        (
            &w,
            vec!["buy", "alice", "capuchin"],
            "alice has 100 coins, not enough for a Capuchin at 200 coins",
        ),
        (
            &w,
            vec!["send", "alice", "bob", "101"],
            "alice has 100 coins, not enough to send 101 coins",
        ),
        (&other, vec!["join", "ALICE"], "the name \"ALICE\" is taken"),
        // Look-alike names are one name; hidden characters are refused before a key is made.
        (&other, vec!["join", "ａｌｉｃｅ"], "is taken"),
        (
            &other,
            vec!["join", "alice\u{200B}"],
            "cannot be a name: name holds the invisible or direction-changing character U+200B",
        ),
        (
            &other,
            vec!["join", "\u{202E}ecila"],
            "cannot be a name: name holds the invisible or direction-changing character U+202E",
        ),
        (&w, vec!["join", "alice"], "alice has already joined"),
        (&other, vec!["join", ""], "name is empty"),
        (&other, vec!["join", "   "], "name is empty"),
        (
            &other,
            vec!["join", &long],
            "name is longer than 32 characters",
        ),
        (
            &other,
            vec!["join", "a\tb"],
            "name contains a control character",
        ),
        (
            &w,
            vec!["buy", "zed", "capuchin"],
            "no shopper named \"zed\" in the wallet",
        ),
        (
            &w,
            vec!["send", "alice", "zed", "5"],
            "no shopper named \"zed\" has joined",
        ),
        (
            &w,
            vec!["send", "alice", "alice", "5"],
            "alice cannot send coins to themself",
        ),
        (
            &w,
            vec!["send", "alice", "bob", "0"],
            "above zero, not \"0\"",
        ),
        (
            &w,
            vec!["send", "alice", "bob", "lots"],
            "above zero, not \"lots\"",
        ),
        (
            &w,
            vec!["vote", "alice", "monkey-of-the-month", "baboon"],
            "alice has already voted for capuchin in monkey-of-the-month",
        ),
        (
            &other,
            vec!["vote", "bob", "monkey-of-the-month", "unicorn"],
            "unknown monkey \"unicorn\"",
        ),
        (
            &w,
            vec!["show", "zed"],
            "no shopper named \"zed\" has joined",
        ),
    ];
    for (wallet, args, needle) in &cases {
        refused(t, wallet, args, needle).await;
    }
    assert_eq!((keys(&w), keys(&other)), wallets_before, "a wallet changed");
    for (wallet, name) in [(&w, "alice"), (&other, "bob")] {
        let shown = ok(t, wallet, &["show", name]).await;
        assert_eq!(shown["pending"], serde_json::json!([]), "{shown}");
    }
    assert_eq!(records_of(&net.nodes[0]).await, chain_before);

    // Nothing was sent either: the next good record is the only thing the chain gains.
    let good = ok(t, &w, &["buy", "alice", "marmoset"]).await;
    let id: RecordId = text(&good, "record").parse().unwrap();
    ids.push(id);
    wait_all_agree(&refs, &ids).await;
    let mut want = chain_before;
    want.insert(id);
    for node in &net.nodes {
        assert_eq!(records_of(node).await, want);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tracker_that_lists_no_node_or_is_down_is_refused() {
    let mut tracker = Tracker::start().await;
    let dir = tempfile::tempdir().unwrap();
    let wallet = dir.path().join("w");
    let t = tracker.addr.clone();
    refused(
        &t,
        &wallet,
        &["join", "alice"],
        &format!("the tracker at {t} lists no active node"),
    )
    .await;
    let status = ok(&t, &wallet, &["status"]).await;
    assert_eq!(status["active"], 0);
    assert_eq!(status["nodes"], serde_json::json!([]));
    assert_eq!(status["chain"], serde_json::Value::Null);
    tracker.kill();
    let unreachable = format!("tracker at {t} is unreachable");
    refused(&t, &wallet, &["join", "alice"], &unreachable).await;
    refused(&t, &wallet, &["status"], &unreachable).await;
    refused(&t, &wallet, &["show"], &unreachable).await;
    assert!(files(&wallet).is_empty(), "{:?}", files(&wallet));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_refuses_the_record_has_its_reason_shown() {
    // A node that never mines (floor 40) holds a pending join of "zoe" by someone else; the
    // chain does not have it, so only the node can tell the shop that the name is taken.
    let tracker = Tracker::start().await;
    let dir = tempfile::tempdir().unwrap();
    let node = NodeProc::start_with(
        &tracker.addr,
        &dir.path().join("n"),
        &["--difficulty-floor", "40"],
    );
    tracker.wait_active(std::slice::from_ref(&node.id)).await;
    let mut client = Client::connect(&node.addr).await;
    client
        .send(Message::Record(testkit::join(&key(1), "zoe")))
        .await;
    assert!(matches!(client.next().await, Some(Message::Ack(_))));

    let wallet = dir.path().join("w");
    refused(
        &tracker.addr,
        &wallet,
        &["join", "zoe"],
        &format!(
            "node {} refused the record: name \"zoe\" is taken",
            node.addr
        ),
    )
    .await;
    // The key made for the refused join is gone again.
    assert!(files(&wallet).is_empty(), "{:?}", files(&wallet));
    assert_eq!(fetch_chain(&node.addr).await.unwrap().len(), 0);
}
