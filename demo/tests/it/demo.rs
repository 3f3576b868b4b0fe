//! The demo as a person uses it: a purchase at the prompt shows on the page and lands on every
//! node; Ctrl-C stops everything; the same folder brings the same network back.

use std::time::{Duration, Instant};

use expectrl::process::unix::WaitStatus;
use protocol::{Action, Block};
use testkit::{DEADLINE, fetch_chain, wait_for};
use visualizer::view::{LedgerDelta, ToBrowser};

use crate::{Demo, FLOOR, Page, children_of, refused};

/// How long the demo may take to stop after Ctrl-C. Every daemon bounds its own shutdown to
/// about two seconds; this leaves room for a busy machine.
const STOP_LIMIT: Duration = Duration::from_secs(15);

/// Makes the shopper `name` at the first menu; leaves the demo at that shopper's menu.
fn create_shopper(demo: &mut Demo, name: &str) {
    demo.terminal.expect("Who is shopping?");
    demo.terminal.keys("Create");
    demo.terminal.keys("\r");
    demo.terminal.expect("Name of the new shopper");
    demo.terminal.keys(name);
    demo.terminal.keys("\r");
    demo.terminal.expect(&format!("{name} joined: in block "));
    demo.terminal
        .expect(&format!("{name}: 1000 coins, 0 monkeys. What next?"));
}

/// Buys a Capuchin from the shopper's menu and waits for its block; returns to the menu.
fn buy_capuchin(demo: &mut Demo, name: &str, coins: u64) {
    demo.terminal.keys("Buy");
    demo.terminal.keys("\r");
    demo.terminal
        .expect(&format!("Which monkey? ({name} has {coins} coins)"));
    demo.terminal.keys("Capuchin");
    demo.terminal.keys("\r");
    demo.terminal.expect(&format!(
        "{name} bought a Capuchin for 200 coins: in block "
    ));
    demo.terminal.expect("What next?");
}

/// Whether a chain holds a purchase of `monkey`.
fn holds_purchase(chain: &[Block], monkey: &str) -> bool {
    chain
        .iter()
        .flat_map(|b| &b.records)
        .any(|r| matches!(&r.action, Action::Purchase { monkey: m } if m == monkey))
}

/// Whether the shopper `name` has `count` of `monkey` in a ledger message.
fn cage_has(ledger: &LedgerDelta, name: &str, monkey: &str, count: u32) -> bool {
    ledger
        .shopper(name)
        .is_some_and(|s| s.cage.get(monkey) == Some(&count))
}

#[test]
fn a_purchase_at_the_prompt_reaches_the_page_and_every_node_and_ctrl_c_stops_it_all() {
    let dir = tempfile::tempdir().expect("a temporary folder");
    let runtime = tokio::runtime::Runtime::new().expect("a runtime");
    let mut demo = Demo::start(dir.path(), 3, Some(FLOOR));
    assert!(!demo.resumed, "a new folder is not resumed");
    create_shopper(&mut demo, "alice");
    buy_capuchin(&mut demo, "alice", 1000);

    runtime.block_on(async {
        // The page: its first message, or a later ledger delta, shows alice's monkey.
        let mut page = Page::connect(&demo.visualizer).await;
        page.wait("alice's capuchin on the page", |m| match m {
            ToBrowser::Snapshot(s) if cage_has(&s.ledger, "alice", "capuchin", 1) => Some(()),
            ToBrowser::Ledger(l) if cage_has(l, "alice", "capuchin", 1) => Some(()),
            _ => None,
        })
        .await;
        // Every node's chain holds the purchase.
        for addr in &demo.nodes {
            wait_for(
                &format!("the purchase on node {addr}"),
                DEADLINE,
                || async {
                    let chain = fetch_chain(addr).await?;
                    holds_purchase(&chain, "capuchin").then_some(())
                },
            )
            .await;
        }
    });

    // The demo runs everything in its own process: there is no child to leave behind.
    let pid = demo.terminal.pid();
    assert_eq!(
        children_of(pid),
        Vec::<i32>::new(),
        "the demo started processes"
    );
    let addrs: Vec<String> = [demo.tracker.clone(), demo.visualizer.clone()]
        .into_iter()
        .chain(demo.nodes.iter().cloned())
        .collect();
    let start = Instant::now();
    demo.terminal.interrupt();
    demo.terminal.expect("Stopped.");
    let status = demo.terminal.exit_status();
    assert!(
        start.elapsed() < STOP_LIMIT,
        "stopping took {:?}",
        start.elapsed()
    );
    assert!(matches!(status, WaitStatus::Exited(_, 0)), "{status:?}");
    assert!(
        !std::path::Path::new(&format!("/proc/{pid}")).exists(),
        "the demo's process is still there"
    );
    runtime.block_on(async {
        for addr in &addrs {
            assert!(refused(addr).await, "something still listens on {addr}");
        }
    });
    // Every node stopped cleanly and told the tracker it was leaving.
    let logs = dir.path().join("logs");
    let nodes_log = std::fs::read_to_string(logs.join("nodes.log")).expect("the nodes' log");
    for n in 1..=3 {
        assert!(
            nodes_log.contains(&format!("node{{n={n}}}: node: stopped")),
            "node {n} did not stop cleanly:\n{nodes_log}"
        );
    }
    let tracker_log = std::fs::read_to_string(logs.join("tracker.log")).expect("the tracker's log");
    assert_eq!(
        tracker_log.matches("reason=\"left\"").count(),
        3,
        "every node tells the tracker it leaves:\n{tracker_log}"
    );
}

#[test]
fn the_same_folder_resumes_the_same_network_and_chain() {
    let dir = tempfile::tempdir().expect("a temporary folder");
    let runtime = tokio::runtime::Runtime::new().expect("a runtime");
    let mut demo = Demo::start(dir.path(), 2, Some(FLOOR));
    create_shopper(&mut demo, "bob");
    let first_ids = demo.ids.clone();
    let before = runtime.block_on(async {
        wait_for("bob's join on node 1", DEADLINE, || async {
            let chain = fetch_chain(&demo.nodes[0]).await?;
            (!chain.is_empty()).then_some(chain)
        })
        .await
    });
    // Quit from the menu this time.
    demo.terminal.keys("Quit");
    demo.terminal.keys("\r");
    demo.terminal.expect("Bye.");
    let status = demo.terminal.exit_status();
    assert!(matches!(status, WaitStatus::Exited(_, 0)), "{status:?}");

    // No floor given: the folder's own is used, so every stored block is taken back.
    let mut demo = Demo::start(dir.path(), 2, None);
    assert!(demo.resumed, "the banner says the folder is resumed");
    assert_eq!(demo.ids, first_ids, "the nodes keep their keys");
    runtime.block_on(async {
        for addr in &demo.nodes {
            let chain = fetch_chain(addr).await.expect("the resumed node answers");
            assert!(
                chain.len() >= before.len() && chain[..before.len()] == before[..],
                "node {addr} lost its chain"
            );
        }
    });
    // The wallet is back too, and the chain goes on from where it was.
    demo.terminal.expect("bob (1000 coins, 0 monkeys)");
    demo.terminal.keys("bob");
    demo.terminal.keys("\r");
    demo.terminal
        .expect("bob: 1000 coins, 0 monkeys. What next?");
    buy_capuchin(&mut demo, "bob", 1000);
    runtime.block_on(async {
        let chain = fetch_chain(&demo.nodes[0]).await.expect("node 1 answers");
        assert!(holds_purchase(&chain, "capuchin"));
        assert_eq!(&chain[..before.len()], &before[..], "the old chain is kept");
    });
    demo.terminal.keys("\x1b");
    demo.terminal.expect("Bye.");
    let status = demo.terminal.exit_status();
    assert!(matches!(status, WaitStatus::Exited(_, 0)), "{status:?}");
}
