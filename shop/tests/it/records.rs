//! Join, buy, send, vote, show, catalog and status through the subcommands, their `--json`
//! checked field by field against each other and against the chain the nodes hold.

use std::path::Path;

use protocol::{Block, RecordId};
use serde_json::{Value, json};
use testkit::{DEADLINE, fetch_chain, record_counts, wait_all_agree, wait_for};

use crate::{Net, num, ok, run, text};

/// Checks what every record command prints, and that the chain holds the record exactly once,
/// in the block the shop named. Returns the record id.
async fn check_record(net: &Net, out: &Value, command: &str, shopper: &str, seq: u64) -> RecordId {
    assert_eq!(out["command"], command, "{out}");
    assert_eq!(out["shopper"], shopper, "{out}");
    assert_eq!(num(out, "seq"), seq, "{out}");
    assert_eq!(out["status"], "mined", "{out}");
    assert_eq!(out["tried"], json!([]), "{out}");
    assert_eq!(num(out, "pending"), 0, "{out}");
    assert!(net.addrs().contains(&text(out, "node")), "{out}");
    let account = text(out, "account");
    assert_eq!(account.len(), 64, "{out}");
    let id: RecordId = text(out, "record").parse().expect("a record id");
    let block = &out["block"];
    let height = num(block, "height");
    let miner = text(block, "miner");
    let miner_node = net
        .nodes
        .iter()
        .find(|n| n.id == miner)
        .expect("a node mined it");
    assert_eq!(block["miner_addr"], miner_node.addr.as_str(), "{out}");
    // The chain of the node that took it has the record once: in that very block, unless a
    // tie between two nodes that both mined it has since been settled the other way.
    let chain: Vec<Block> = fetch_chain(&text(out, "node")).await.expect("the chain");
    let holder = chain
        .iter()
        .find(|b| b.records.iter().any(|r| r.id() == id))
        .expect("the chain holds the record");
    if let Some(named) = chain.get(height as usize - 1)
        && named.header.hash().to_string() == text(block, "hash")
    {
        assert_eq!(named.header.hash(), holder.header.hash(), "{out}");
    }
    let record = holder
        .records
        .iter()
        .find(|r| r.id() == id)
        .expect("the block holds the record");
    assert_eq!(record.account.to_string(), account);
    assert_eq!(record.seq, seq);
    assert_eq!(serde_json::to_value(&record.action).unwrap(), out["action"]);
    assert_eq!(record_counts(&chain).get(&id), Some(&1));
    id
}

/// The poll the tests vote in.
const POLL: &str = "monkey-of-the-month";

/// Runs the record command `args` (`[command, shopper, ...]`) with `wallet`, checks what it
/// prints with [`check_record`] (`seq`: the shopper's sequence number the record must have),
/// and returns that.
async fn record(net: &Net, wallet: &Path, args: &[&str], seq: u64) -> Value {
    let out = ok(&net.tracker.addr, wallet, args).await;
    check_record(net, &out, args[0], args[1], seq).await;
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn join_buy_send_vote_and_show_through_the_subcommands() {
    let net = Net::start(2).await;
    let t = &net.tracker.addr;
    let wallet = net.wallet("w");

    let alice = record(&net, &wallet, &["join", "alice"], 0).await;
    assert_eq!(alice["action"], json!({"kind": "join", "name": "alice"}));
    assert_eq!(num(&alice, "balance"), 1000);
    assert_eq!(alice["cage"], json!({}));
    let bob = record(&net, &wallet, &["join", "bob"], 0).await;

    let buy = record(&net, &wallet, &["buy", "alice", "capuchin"], 1).await;
    assert_eq!(
        buy["action"],
        json!({"kind": "purchase", "monkey": "capuchin"})
    );
    assert_eq!(
        buy["monkey"],
        json!({"id": "capuchin", "name": "Capuchin", "price": 200})
    );
    assert_eq!(num(&buy, "balance"), 800);
    assert_eq!(buy["cage"], json!({"capuchin": 1}));

    let send = record(&net, &wallet, &["send", "alice", "bob", "50"], 2).await;
    assert_eq!(
        send["action"],
        json!({"kind": "transfer", "to": text(&bob, "account"), "amount": 50})
    );
    assert_eq!(send["to"], "bob");
    assert_eq!(num(&send, "amount"), 50);
    assert_eq!(num(&send, "balance"), 750);

    let vote = record(&net, &wallet, &["vote", "alice", POLL, "capuchin"], 3).await;
    assert_eq!(
        vote["action"],
        json!({"kind": "vote", "poll": "monkey-of-the-month", "choice": "capuchin"})
    );
    assert_eq!(vote["tally"], json!([{"choice": "capuchin", "votes": 1}]));
    // Display names work too, and the tally counts both votes.
    let vote = record(&net, &wallet, &["vote", "bob", POLL, "Baboon"], 1).await;
    assert_eq!(
        vote["tally"],
        json!([{"choice": "baboon", "votes": 1}, {"choice": "capuchin", "votes": 1}])
    );

    // A shop with an empty wallet (a restarted shop, another machine) sees all of it, from
    // whichever node it reads once they agree.
    let refs: Vec<&testkit::NodeProc> = net.nodes.iter().collect();
    let chain = wait_all_agree(&refs, &[]).await;
    let elsewhere = net.wallet("elsewhere");
    let show = ok(t, &elsewhere, &["show", "alice"]).await;
    assert_eq!(show["name"], "alice");
    assert_eq!(show["account"], alice["account"]);
    assert_eq!(show["joined"], true);
    assert_eq!(num(&show, "balance"), 750);
    assert_eq!(show["cage"], json!({"capuchin": 1}));
    assert_eq!(num(&show, "monkeys"), 1);
    assert_eq!(show["votes"], json!({"monkey-of-the-month": "capuchin"}));
    assert_eq!(show["pending"], json!([]));
    assert_eq!(show["in_wallet"], false);
    let height = num(&show["chain"], "height");
    assert!(height >= 6, "{show}");
    let mine = ok(t, &wallet, &["show", "ALICE"]).await;
    assert_eq!(mine["in_wallet"], true);
    assert_eq!(mine["name"], "alice");

    let all = ok(t, &elsewhere, &["show"]).await;
    let rows = all["shoppers"].as_array().expect("shoppers");
    assert_eq!(rows.len(), 2, "{all}");
    assert_eq!(rows[0]["name"], "alice");
    assert_eq!(num(&rows[0], "balance"), 750);
    assert_eq!(num(&rows[0], "monkeys"), 1);
    assert_eq!(rows[0]["cage"], json!({"capuchin": 1}));
    assert_eq!(rows[1]["name"], "bob");
    assert_eq!(num(&rows[1], "balance"), 1050);
    assert_eq!(num(&rows[1], "monkeys"), 0);
    assert_eq!(
        all["polls"]["monkey-of-the-month"],
        json!([{"choice": "baboon", "votes": 1}, {"choice": "capuchin", "votes": 1}])
    );

    let catalog = ok(t, &elsewhere, &["catalog"]).await;
    let monkeys = catalog["monkeys"].as_array().expect("monkeys");
    assert_eq!(monkeys.len(), protocol::catalog::CATALOG.len());
    assert_eq!(
        monkeys[0],
        json!({"id": "marmoset", "name": "Pygmy marmoset", "price": 50})
    );

    let status = wait_for("the tracker to report the tip", DEADLINE, || async {
        let s = ok(t, &elsewhere, &["status"]).await;
        let nodes = s["nodes"].as_array()?;
        nodes
            .iter()
            .all(|n| num(n, "tip_height") == chain.len() as u64)
            .then_some(s)
    })
    .await;
    assert_eq!(status["tracker"], t.as_str());
    assert_eq!(num(&status, "active"), 2);
    let mut addrs: Vec<String> = status["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| text(n, "addr"))
        .collect();
    addrs.sort();
    let mut want = net.addrs();
    want.sort();
    assert_eq!(addrs, want);
    for n in status["nodes"].as_array().unwrap() {
        assert_eq!(n["status"], "active");
        assert!(net.nodes.iter().any(|p| p.id == text(n, "id")));
    }
    assert_eq!(num(&status["chain"], "height"), chain.len() as u64);

    // The same, for people.
    let out = run(t, &wallet, &["buy", "alice", "marmoset"]).await;
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{said}");
    assert!(
        said.starts_with("alice bought a Pygmy marmoset for 50 coins: in block "),
        "{said}"
    );
    assert!(said.contains("alice has 700 coins and 2 monkeys"), "{said}");
    let out = run(t, &wallet, &["show"]).await;
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains("NAME   BALANCE  MONKEYS"), "{said}");
    assert!(
        said.contains("alice      700  1 Capuchin, 1 Pygmy marmoset"),
        "{said}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_wait_records_are_numbered_after_the_pending_ones_and_all_land() {
    let net = Net::start(2).await;
    let t = &net.tracker.addr;
    let wallet = net.wallet("w");

    let join = ok(t, &wallet, &["join", "carol", "--no-wait"]).await;
    assert_eq!(num(&join, "seq"), 0);
    assert_ne!(join["status"], "mined", "{join}");
    assert_eq!(join["block"], Value::Null);
    // Numbered after the join, whether or not it is in a block yet.
    let first = ok(t, &wallet, &["buy", "carol", "marmoset", "--no-wait"]).await;
    assert_eq!(num(&first, "seq"), 1, "{first}");
    assert_eq!(num(&first, "balance"), 950, "{first}");
    let second = ok(t, &wallet, &["buy", "carol", "marmoset", "--no-wait"]).await;
    assert_eq!(num(&second, "seq"), 2, "{second}");
    assert_eq!(num(&second, "balance"), 900, "{second}");
    assert_eq!(second["cage"], json!({"marmoset": 2}));

    let shown = wait_for("carol's records to land", DEADLINE, || async {
        let s = ok(t, &wallet, &["show", "carol"]).await;
        (s["cage"] == json!({"marmoset": 2}) && s["pending"] == json!([])).then_some(s)
    })
    .await;
    assert_eq!(num(&shown, "balance"), 900);
    let last = ok(t, &wallet, &["buy", "carol", "tamarin"]).await;
    assert_eq!(num(&last, "seq"), 3, "{last}");
    assert_eq!(last["cage"], json!({"marmoset": 2, "tamarin": 1}));
    assert_eq!(num(&last, "balance"), 820);
    let ids: Vec<RecordId> = [&join, &first, &second, &last]
        .iter()
        .map(|v| text(v, "record").parse().unwrap())
        .collect();
    let refs: Vec<&testkit::NodeProc> = net.nodes.iter().collect();
    wait_all_agree(&refs, &ids).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shops_running_at_once_keep_their_records_apart() {
    let net = Net::start(2).await;
    let t = &net.tracker.addr;
    let (w1, w2) = (net.wallet("one"), net.wallet("two"));

    let (ann, ben) = tokio::join!(ok(t, &w1, &["join", "ann"]), ok(t, &w2, &["join", "ben"]));
    assert_eq!(ann["shopper"], "ann");
    assert_eq!(ben["shopper"], "ben");
    // Two shops for ann (one wallet, so they take turns numbering) and one for ben, at once.
    let (a1, a2, b1) = tokio::join!(
        ok(t, &w1, &["buy", "ann", "marmoset"]),
        ok(t, &w1, &["buy", "ann", "tamarin"]),
        ok(t, &w2, &["buy", "ben", "baboon"]),
    );
    let mut seqs = vec![num(&a1, "seq"), num(&a2, "seq")];
    seqs.sort();
    assert_eq!(seqs, vec![1, 2]);
    assert_eq!(num(&b1, "seq"), 1);
    let ids: Vec<RecordId> = [&ann, &ben, &a1, &a2, &b1]
        .iter()
        .map(|v| text(v, "record").parse().unwrap())
        .collect();
    let refs: Vec<&testkit::NodeProc> = net.nodes.iter().collect();
    wait_all_agree(&refs, &ids).await;
    let ann = ok(t, &w2, &["show", "ann"]).await;
    assert_eq!(ann["cage"], json!({"marmoset": 1, "tamarin": 1}));
    assert_eq!(num(&ann, "balance"), 870);
    let ben = ok(t, &w1, &["show", "ben"]).await;
    assert_eq!(ben["cage"], json!({"baboon": 1}));
    assert_eq!(num(&ben, "balance"), 350);
}
