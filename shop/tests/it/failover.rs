//! A node that dies or goes silent while it holds a purchase: the shop sends the same signed
//! record to another node, and the purchase lands exactly once.
//!
//! The shop is pointed (`--node`) at a small proxy in front of node A, so the test knows when A
//! has acknowledged the record and can decide what the shop hears after that: nothing at all
//! (a silent node), or nothing until A is killed (a node killed mid-purchase; A may or may not
//! have mined and relayed the record by then, and either way it must land once). Chain reads
//! (`D`) pass through the proxy untouched.

use std::sync::Arc;

use protocol::RecordId;
use serde_json::json;
use testkit::{DEADLINE, NodeProc, fetch_chain, record_counts, wait_all_agree};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;

use crate::{Net, command, finish, json_of, num, ok, refused, text};

/// What the proxy passes back from the node on a connection that sends records.
#[derive(Debug, Clone, Copy)]
enum Mode {
    /// The first `K`, then nothing; the connection closes when the node's does.
    DropAfterAck,
    /// Nothing.
    Mute,
}

/// Starts a proxy to `upstream`; returns its address and what fires when the node's first `K`
/// has gone through.
async fn proxy(upstream: String, mode: Mode) -> (String, Arc<Notify>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let acked = Arc::new(Notify::new());
    let fired = Arc::clone(&acked);
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            tokio::spawn(relay(client, upstream.clone(), mode, Arc::clone(&fired)));
        }
    });
    (addr, acked)
}

async fn relay(client: TcpStream, upstream: String, mode: Mode, acked: Arc<Notify>) {
    let Ok(node) = TcpStream::connect(&upstream).await else {
        return;
    };
    let (client_in, mut client_out) = client.into_split();
    let (node_in, mut node_out) = node.into_split();
    let mut client_in = BufReader::new(client_in);
    let mut first = String::new();
    if client_in.read_line(&mut first).await.unwrap_or(0) == 0 {
        return;
    }
    let records = first.starts_with('A');
    let _ = node_out.write_all(first.as_bytes()).await;
    let to_node = tokio::spawn(async move {
        let _ = tokio::io::copy(&mut client_in, &mut node_out).await;
    });
    let mut node_in = BufReader::new(node_in);
    let mut passing = true;
    let mut line = String::new();
    // Bounded by the node: it ends when the node closes (or dies).
    loop {
        line.clear();
        match node_in.read_line(&mut line).await {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        let pass = match (records, mode) {
            (false, _) => true,
            (true, Mode::Mute) => false,
            (true, Mode::DropAfterAck) => passing,
        };
        if pass && client_out.write_all(line.as_bytes()).await.is_err() {
            break;
        }
        if records && passing && line.starts_with("K ") {
            passing = false;
            acked.notify_one();
        }
    }
    to_node.abort();
}

/// Joins alice and waits until every node has her join.
async fn alice(net: &Net) -> RecordId {
    let out = ok(&net.tracker.addr, &net.wallet("w"), &["join", "alice"]).await;
    let id: RecordId = text(&out, "record").parse().unwrap();
    let refs: Vec<&NodeProc> = net.nodes.iter().collect();
    wait_all_agree(&refs, &[id]).await;
    id
}

/// The purchase landed once on `node`, and alice paid once.
async fn landed_once(node: &NodeProc, out: &serde_json::Value, price: u64, monkey: &str) {
    let id: RecordId = text(out, "record").parse().unwrap();
    let chain = fetch_chain(&node.addr).await.expect("the chain");
    let counts = record_counts(&chain);
    assert_eq!(counts.get(&id), Some(&1), "the purchase is not in once");
    assert!(counts.values().all(|&n| n == 1), "a record applied twice");
    assert_eq!(out["status"], "mined");
    assert_eq!(num(out, "balance"), 1000 - price);
    assert_eq!(out["cage"], json!({ monkey: 1 }));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_killed_while_a_purchase_is_in_flight_lands_it_exactly_once() {
    let mut net = Net::start(2).await;
    let join = alice(&net).await;
    let b = net.nodes.pop().expect("node B");
    let a = net.nodes.pop().expect("node A");
    let (via_a, acked) = proxy(a.addr.clone(), Mode::DropAfterAck).await;

    let args = ["--node", &via_a, "buy", "alice", "capuchin", "--json"];
    let shop = command(&net.tracker.addr, &net.wallet("w"), &args)
        .spawn()
        .expect("start the shop");
    tokio::time::timeout(DEADLINE, acked.notified())
        .await
        .expect("node A acknowledged the purchase");
    // A dies holding the purchase; the shop hears nothing more from it.
    a.kill();
    let out = finish(shop, &args).await;
    let out = json_of(&out, &args);

    assert_eq!(out["tried"][0]["node"], via_a.as_str(), "{out}");
    assert_eq!(
        out["tried"][0]["error"], "it closed the connection",
        "{out}"
    );
    assert_eq!(out["node"], b.addr.as_str(), "{out}");
    landed_once(&b, &out, 200, "capuchin").await;
    let id: RecordId = text(&out, "record").parse().unwrap();
    wait_all_agree(&[&b], &[join, id]).await;
    // The shop reads the same from what is left of the network.
    let shown = ok(&net.tracker.addr, &net.wallet("w"), &["show", "alice"]).await;
    assert_eq!(shown["cage"], json!({"capuchin": 1}));
    assert_eq!(num(&shown, "balance"), 800);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_does_not_answer_is_left_for_another() {
    let net = Net::start(2).await;
    let join = alice(&net).await;
    let (via_a, _) = proxy(net.nodes[0].addr.clone(), Mode::Mute).await;

    let out = ok(
        &net.tracker.addr,
        &net.wallet("w"),
        &[
            "--node",
            &via_a,
            "--answer-timeout",
            "2",
            "buy",
            "alice",
            "tamarin",
        ],
    )
    .await;
    assert_eq!(out["tried"][0]["node"], via_a.as_str(), "{out}");
    assert_eq!(out["tried"][0]["error"], "no answer within 2 s", "{out}");
    assert_ne!(out["node"], via_a.as_str());
    // A did get the record through the proxy, and may have mined it: still once everywhere.
    let id: RecordId = text(&out, "record").parse().unwrap();
    let refs: Vec<&NodeProc> = net.nodes.iter().collect();
    wait_all_agree(&refs, &[join, id]).await;
    landed_once(&net.nodes[1], &out, 80, "tamarin").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_tracker_down_the_shop_uses_the_nodes_it_last_saw() {
    let mut net = Net::start(2).await;
    alice(&net).await;
    net.tracker.kill();
    // The nodes go on without the tracker, and so does the shop.
    let out = ok(
        &net.tracker.addr,
        &net.wallet("w"),
        &["buy", "alice", "tamarin"],
    )
    .await;
    landed_once(&net.nodes[0], &out, 80, "tamarin").await;
    // A restarted tracker knows nobody until the nodes report again: same.
    net.tracker.restart().await;
    let out = ok(
        &net.tracker.addr,
        &net.wallet("w"),
        &["buy", "alice", "marmoset"],
    )
    .await;
    assert_eq!(out["status"], "mined");
    // A wallet that never saw the tracker answer has nothing to fall back on.
    net.tracker.kill();
    refused(
        &net.tracker.addr,
        &net.wallet("fresh"),
        &["join", "zoe"],
        "unreachable",
    )
    .await;
}
