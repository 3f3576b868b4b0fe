//! The wallet's chain cache (`chain.cache`): a warm shop asks a node only for what is new and
//! still checks it, follows a reorg below the tip it cached, rebuilds a damaged cache from
//! genesis (saying so once), and reads a node whose chain does not hold the cache's checkpoint
//! from genesis. Chains are mined here at the nodes' floor and handed to a node, so each test
//! knows exactly how many blocks a read should bring.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use protocol::params::MAX_BLOCKS_PER_MESSAGE;
use protocol::wire::{Blocks, Message};
use protocol::{Block, genesis};
use serde_json::Value;
use testkit::{
    Client, DEADLINE, FLOOR, NodeProc, Tracker, fetch_chain, mine_chain, start_network,
    wait_all_agree, wait_for,
};

use crate::{Net, json_of, num, ok, run, text};

/// Hands `blocks` to the node at `addr` as a peer would, and waits until its tip is the last.
async fn give(addr: &str, blocks: &[Block]) {
    let mut client = Client::connect(addr).await;
    for chunk in blocks.chunks(MAX_BLOCKS_PER_MESSAGE) {
        client
            .send(Message::Blocks(Blocks {
                blocks: chunk.to_vec(),
                more: false,
                packed: false,
            }))
            .await;
    }
    let Some(last) = blocks.last() else { return };
    let tip = last.header.hash();
    wait_for("the node to take the blocks", DEADLINE, || async {
        let chain = fetch_chain(addr).await?;
        (chain.last().map(|b| b.header.hash()) == Some(tip)).then_some(())
    })
    .await;
}

/// A network of one node holding `n` blocks mined here (each test knows what a read brings), and
/// a wallet `w` that has read nothing yet: the network, the node's address, the wallet, the
/// blocks.
async fn one_node_holding(n: usize) -> (Net, String, PathBuf, Vec<Block>) {
    let net = Net::start(1).await;
    let node = net.addrs()[0].clone();
    let w = net.wallet("w");
    let blocks = mine_chain(&genesis(), n, FLOOR, 1000);
    give(&node, &blocks).await;
    (net, node, w, blocks)
}

/// `show --json` through `node` first: the chain read, as (height, tip, blocks received).
async fn show(tracker: &str, wallet: &Path, node: &str) -> (u64, String, u64) {
    let out = ok(tracker, wallet, &["--node", node, "show"]).await;
    chain_of(&out)
}

fn chain_of(out: &Value) -> (u64, String, u64) {
    let chain = &out["chain"];
    (
        num(chain, "height"),
        text(chain, "tip"),
        num(chain, "received"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_warm_cache_asks_only_for_new_blocks_and_follows_a_reorg_below_its_tip() {
    let (net, node, w, a) = one_node_holding(40).await;
    let t = &net.tracker.addr;

    // Cold: the whole chain comes.
    let (height, tip, received) = show(t, &w, &node).await;
    assert_eq!((height, received), (40, 40));
    assert_eq!(tip, a[39].header.hash().to_string());
    assert!(w.join(shop::cache::CACHE_FILE).is_file());

    // Warm: the locator starts at the tip's parent, so the node sends the tip and what is new.
    let more = mine_chain(&a[39], 5, FLOOR, 1000);
    give(&node, &more).await;
    let (height, tip, received) = show(t, &w, &node).await;
    assert_eq!(tip, more[4].header.hash().to_string());
    assert_eq!((height, received), (45, 1 + 5));
    let (_, _, received) = show(t, &w, &node).await;
    assert_eq!(received, 1, "nothing new: only the tip comes again");

    // A heavier branch from height 42, three below the cached tip: the node reorganises, and
    // the shop follows from its tail, receiving the branch only.
    let branch = mine_chain(&more[1], 6, FLOOR, 1500);
    give(&node, &branch).await;
    let (height, tip, received) = show(t, &w, &node).await;
    assert_eq!(tip, branch[5].header.hash().to_string());
    assert_eq!((height, received), (48, 6));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_cache_is_rebuilt_from_genesis_and_said_once() {
    let (net, node, w, _) = one_node_holding(30).await;
    let t = &net.tracker.addr;
    assert_eq!(show(t, &w, &node).await.2, 30);

    let file = w.join(shop::cache::CACHE_FILE);
    let mut bytes = std::fs::read(&file).expect("the cache");
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x10;
    std::fs::write(&file, &bytes).expect("damage the cache");
    let args = ["--node", node.as_str(), "show", "--json"];
    let out = run(t, &w, &args).await;
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let (height, _, received) = chain_of(&json_of(&out, &args));
    assert_eq!((height, received), (30, 30), "read again from genesis");
    assert_eq!(stderr.matches("damaged").count(), 1, "said once: {stderr}");
    assert!(stderr.contains("checksum"), "{stderr}");
    // Written again: the next command is warm.
    assert_eq!(show(t, &w, &node).await.2, 1);

    // A file that is not a cache at all is damaged too, never a crash.
    std::fs::write(&file, b"not a cache").expect("overwrite the cache");
    let out = run(t, &w, &args).await;
    assert_eq!(chain_of(&json_of(&out, &args)).2, 30);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cache_whose_checkpoint_no_node_holds_is_read_again_from_genesis() {
    // A chain longer than the tail, so the cache's checkpoint is above genesis.
    let tail = shop::chain::TAIL_BLOCKS;
    let (net, node, w, a) = one_node_holding(tail + 10).await;
    let (height, _, received) = show(&net.tracker.addr, &w, &node).await;
    assert_eq!((height, received), (a.len() as u64, a.len() as u64));

    // Another network, whose chain shares only genesis: its node answers the locator from
    // genesis, and the shop checks that chain whole.
    let other = Tracker::start().await;
    let dir = tempfile::tempdir().expect("a folder");
    let nodes = start_network(&other, dir.path(), 1).await;
    let b = mine_chain(&genesis(), tail + 5, FLOOR, 1001);
    give(&nodes[0].addr, &b).await;
    let (height, tip, received) = show(&other.addr, &w, &nodes[0].addr).await;
    assert_eq!(tip, b[b.len() - 1].header.hash().to_string());
    assert_eq!((height, received), (b.len() as u64, b.len() as u64));
}

/// A node that answers every `D` with `blocks`, whatever the locator (a liar that extends the
/// honest tip with a block of its own, or a node on a chain of its own); it counts the `D`s it
/// was sent.
async fn lying_node(blocks: Vec<Block>) -> (String, tokio::task::JoinHandle<()>, Arc<AtomicUsize>) {
    use futures::{SinkExt, StreamExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("an address").to_string();
    let asked = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&asked);
    let server = tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let (blocks, counter) = (blocks.clone(), Arc::clone(&counter));
            tokio::spawn(async move {
                let codec = protocol::codec::LineCodec::<Message>::new();
                let mut link = tokio_util::codec::Framed::new(stream, codec);
                while let Some(Ok(message)) = link.next().await {
                    if matches!(message, Message::GetBlocks(_)) {
                        counter.fetch_add(1, Ordering::Relaxed);
                        let answer = Message::Blocks(Blocks {
                            blocks: blocks.clone(),
                            more: false,
                            packed: false,
                        });
                        if link.send(answer).await.is_err() {
                            break;
                        }
                    }
                }
            });
        }
    });
    (addr, server, asked)
}

/// Two honest nodes holding `n` blocks mined here, and a wallet `w` where ann joined through
/// the first, so its cache is warm: the network, the nodes' addresses, the wallet.
async fn ann_joined(n: usize) -> (Net, Vec<String>, PathBuf) {
    let net = Net::start(2).await;
    let honest = net.addrs();
    let w = net.wallet("w");
    let blocks = mine_chain(&genesis(), n, FLOOR, 1000);
    for node in &honest {
        give(node, &blocks).await;
    }
    ok(
        &net.tracker.addr,
        &w,
        &["--node", &honest[0], "join", "ann"],
    )
    .await;
    assert!(
        w.join(shop::cache::CACHE_FILE).is_file(),
        "the cache is warm"
    );
    (net, honest, w)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_extends_the_cached_tip_with_an_invalid_block_is_named_a_liar() {
    let (net, honest, w) = ann_joined(0).await;
    let t = &net.tracker.addr;
    // Both nodes may have mined the join, each in a block of its own, and then one breaks the
    // tie with an empty block: once they agree nothing more is mined, and the cache is brought
    // to that tip, so the lie below is built on the cache's tip.
    let nodes: Vec<&NodeProc> = net.nodes.iter().collect();
    wait_all_agree(&nodes, &[]).await;
    ok(t, &w, &["show", "ann"]).await;

    // The honest tip, re-sent as an up-to-date node would, then a block of no work on it: only
    // checking what comes on top of the cache tells the lie.
    let chain = fetch_chain(&honest[0]).await.expect("the honest chain");
    let tip = chain.last().expect("a block").clone();
    let bad = testkit::mine_block(&tip, Vec::new(), 0, 1);
    let (liar, server, _) = lying_node(vec![tip, bad]).await;
    let out = ok(t, &w, &["--node", &liar, "buy", "ann", "capuchin"]).await;
    server.abort();
    assert_eq!(out["status"], "mined", "{out}");
    assert!(honest.contains(&text(&out, "node")), "{out}");
    let named = out["liars"].as_array().expect("a list of liars");
    assert!(
        named
            .iter()
            .any(|l| l["node"] == liar.as_str() && text(l, "error").contains("below the floor")),
        "the liar is not named: {out}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_off_the_cached_checkpoint_is_set_aside_while_another_agrees_with_the_cache() {
    // A chain longer than the tail: the cache's checkpoint, written by the join, is above
    // genesis.
    let (net, honest, w) = ann_joined(shop::chain::TAIL_BLOCKS + 10).await;
    let t = &net.tracker.addr;

    // A node whose chain shares only genesis with the cache's, and ends with a block of no
    // work: checking its chain from genesis would name it a liar.
    let mut own = mine_chain(&genesis(), 5, FLOOR, 1001);
    let last = own.last().expect("a block").clone();
    own.push(testkit::mine_block(&last, Vec::new(), 0, 1));
    let (off, server, asked) = lying_node(own).await;
    let args = ["--node", off.as_str(), "--answer-timeout", "3"];
    let out = ok(t, &w, &[&args[..], &["buy", "ann", "capuchin"]].concat()).await;
    server.abort();
    assert_eq!(out["status"], "mined", "{out}");
    assert!(honest.contains(&text(&out, "node")), "{out}");
    // Set aside unchecked, since the honest nodes agree with the cache...
    let named = out["liars"].as_array().expect("a list of liars");
    assert!(
        named.iter().all(|l| l["node"] != off.as_str()),
        "its chain was checked from genesis: {out}"
    );
    // ...and remembered: asked once, though the purchase read the chains again to follow it.
    assert_eq!(asked.load(Ordering::Relaxed), 1, "{out}");
}
