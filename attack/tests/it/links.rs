//! The attacks on links and registrations against real networks: connections that claim other
//! nodes' ids cut no link, made-up ids are never listed, and nodes started meanwhile link and
//! pass blocks as usual.

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use attack::liar::{Liar, Lie};
use attack::links::{Fakes, TrackerConn};
use attack::{Attack, Target};
use protocol::wire::{ErrorCode, Message, Update};
use testkit::*;

/// How long a purchase may take to reach every node of a small loopback network under these
/// attacks: it takes well under a second unloaded; the bound allows for a loaded machine.
const PROMPTLY: Duration = Duration::from_secs(10);

async fn tracker_conn(tracker: &str, from: &str) -> TrackerConn {
    TrackerConn::open(tracker, from.parse().unwrap())
        .await
        .unwrap()
}

fn target(node: &str, from: [u8; 4], tracker: &Tracker, count: usize) -> Target {
    Target {
        node: node.to_string(),
        from: IpAddr::V4(Ipv4Addr::from(from)),
        floor: FLOOR,
        count,
        tracker: Some(tracker.addr.clone()),
    }
}

/// A shopper joins through `nodes[0]`; returns how long until every node holds the join.
async fn join_reaches_all(nodes: &[&NodeProc], seed: u8, name: &str) -> Duration {
    let started = Instant::now();
    let record = join(&key(seed), name);
    Client::connect(&nodes[0].addr)
        .await
        .submit_and_wait(record.clone())
        .await;
    let reached = tokio::time::timeout(PROMPTLY * 3, wait_all_agree(nodes, &[record.id()])).await;
    assert!(reached.is_ok(), "the block did not reach every node");
    started.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn impostors_claiming_peer_ids_are_closed_and_cut_no_link() {
    let tracker = Tracker::start().await;
    let dir = tempfile::tempdir().unwrap();
    let nodes = start_network(&tracker, dir.path(), 3).await;
    let all: Vec<&NodeProc> = nodes.iter().collect();
    join_reaches_all(&all, 1, "before").await;

    // Every node is told, twice for each other node, that that node is calling: six claims
    // of each kind in all.
    let attacks: Vec<_> = nodes
        .iter()
        .enumerate()
        .map(|(i, node)| {
            let target = target(&node.addr, [127, 0, 3, 2 + i as u8], &tracker, 1);
            tokio::spawn(async move { attack::run(Attack::Impostor, &target).await })
        })
        .collect();
    let took = join_reaches_all(&all, 2, "during").await;
    println!("a block reached all 3 nodes in {took:?} under the impostors");
    assert!(took < PROMPTLY, "took {took:?}");
    for attack in attacks {
        let outcome = attack.await.unwrap().unwrap();
        println!("impostor: {outcome:?}");
        assert!(outcome.closed, "a claim was left open: {outcome:?}");
        assert_eq!(outcome.sent, 4);
        for code in [ErrorCode::Unproven, ErrorCode::Handshake] {
            assert!(
                outcome.errors.iter().any(|c| c == code.as_str()),
                "no E {code}: {outcome:?}"
            );
        }
    }
    // And after them.
    let took = join_reaches_all(&all, 3, "after").await;
    assert!(took < PROMPTLY, "took {took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn made_up_ids_are_never_listed_and_honest_nodes_started_after_them_link() {
    let tracker = Tracker::start().await;
    let fakes_from = target("127.0.0.1:1", [127, 0, 4, 2], &tracker, 200);
    let fakes = Fakes::register(&fakes_from).await.unwrap();
    println!(
        "{} made-up ids taken, {} refused ({:?})",
        fakes.accepted.len(),
        fakes.refused.len(),
        fakes.refused.first()
    );
    assert!(
        !fakes.accepted.is_empty(),
        "the tracker took no report at all"
    );

    let dir = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let nodes = start_network(&tracker, dir.path(), 3).await;
    let all: Vec<&NodeProc> = nodes.iter().collect();
    let took = join_reaches_all(&all, 1, "honest").await;
    println!(
        "3 honest nodes started after 200 made-up ids: a block reached all {took:?} after they \
         were listed, {:?} after they started",
        started.elapsed()
    );
    assert!(took < PROMPTLY, "took {took:?}");
    let listed = fakes.listed(&tracker.addr).await.unwrap();
    assert_eq!(listed, 0, "the tracker lists made-up ids");
    let topology = tracker.topology().await.unwrap();
    assert_eq!(topology.active().count(), 3, "{topology:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_address_gets_only_so_many_ids_listed_even_when_they_answer() {
    let tracker = Tracker::start_with(&["--max-active-per-address", "8"]).await;
    // Made-up ids that do answer the address check: one listener holds all their keys.
    let keys: Vec<_> = (0..40).map(|i| key(100 + i)).collect();
    let prover = Prover::start("127.0.0.5", keys.clone()).await;
    let mut accepted = 0;
    let mut refused = Vec::new();
    let mut held = Vec::new();
    for key in &keys {
        let mut conn = tracker_conn(&tracker.addr, "127.0.0.5").await;
        match conn.report(key, &prover.addr).await {
            Ok(()) => accepted += 1,
            Err(code) => refused.push(code),
        }
        held.push(conn);
    }
    assert_eq!(accepted, 8);
    assert!(
        refused
            .iter()
            .all(|c| c == ErrorCode::TooManyActive.as_str()),
        "{refused:?}"
    );
    let ids: Vec<String> = keys[..8].iter().map(|k| k.account().to_string()).collect();
    tracker.wait_active(&ids).await;
    assert_eq!(tracker.topology().await.unwrap().active().count(), 8);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn addresses_no_node_can_be_at_are_refused() {
    let tracker = Tracker::start().await;
    let own = tracker.addr.clone();
    let mut conn = tracker_conn(&tracker.addr, "127.0.0.1").await;
    for bad in [
        "0.0.0.0:22",
        "255.255.255.255:7000",
        "224.0.0.1:7000",
        "[::]:7000",
        own.as_str(),
    ] {
        assert_eq!(
            conn.report(&key(9), bad).await,
            Err("bad_address".to_string()),
            "{bad}"
        );
    }
    // Loopback stays allowed (it is only never listed while nothing answers there).
    assert_eq!(conn.report(&key(9), "127.0.0.1:1").await, Ok(()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_never_proven_is_closed_after_the_handshake_timeout() {
    use protocol::handshake::{Hello, Nonce};
    use protocol::wire::Message;
    let tracker = Tracker::start().await;
    let dir = tempfile::tempdir().unwrap();
    let node = NodeProc::start(&tracker.addr, dir.path());
    let target = target(&node.addr, [127, 0, 5, 2], &tracker, 1);
    let mut conn = attack::RawConn::open(&target).await.unwrap();
    let hello = Hello {
        nonce: Nonce([1; 32]),
        to: None,
        from: Some(key(77).account()),
    };
    let started = Instant::now();
    assert!(conn.send(&Message::Hello(hello)).await);
    // The node proves itself, then waits for a proof that never comes: 10 s, not the 60 s an
    // idle client gets.
    let mut codes = Vec::new();
    for _ in 0..10 {
        match tokio::time::timeout(Duration::from_secs(30), conn.next_raw()).await {
            Ok(Some(Message::Error(e))) => codes.push(e.code),
            Ok(Some(_)) => {}
            Ok(None) | Err(_) => break,
        }
    }
    let took = started.elapsed();
    assert_eq!(codes, [ErrorCode::Timeout], "closed after {took:?}");
    assert!(took < Duration::from_secs(20), "held {took:?}");
}

/// Useless peers listed before the honest nodes: this many, each from its own address.
const USELESS_PEERS: u8 = 12;

/// Waits until `node` (reporting every 200 ms) says its only peers are among `ids`.
async fn peers_only_among(node: &NodeProc, ids: &[String]) {
    let mut watcher = Client::connect(&node.addr).await;
    watcher.send(Message::Subscribe).await;
    let waited = tokio::time::timeout(DEADLINE, async {
        while let Some(message) = watcher.next().await {
            if let Message::Update(Update::Status { peers, .. }) = message
                && !peers.is_empty()
                && peers.iter().all(|p| ids.contains(&p.to_string()))
            {
                return true;
            }
        }
        false
    })
    .await;
    assert_eq!(
        waited,
        Ok(true),
        "the node never linked to the useless peers"
    );
}

/// Peers that prove their ids, answer every keep-alive and relay nothing hold the one outbound
/// slot of a node; a second honest node arriving later must still link with it (else each
/// mines alone, a fork for ever). Each node rotates out a link that delivered no block for a
/// period, one per period, so honest nodes find each other and keep that link: a purchase
/// sent to the first reaches the second.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peers_that_relay_nothing_lose_their_slots_to_nodes_that_do() {
    let tracker = Tracker::start().await;
    let mut useless = Vec::new();
    for i in 0..USELESS_PEERS {
        let liar = Liar::start(&tracker.addr, [127, 0, 4, 2 + i].into(), Lie::Useless)
            .await
            .expect("a useless peer starts");
        useless.push(liar);
    }
    let ids: Vec<String> = useless.iter().map(|l| l.id.to_string()).collect();
    tracker.wait_active(&ids).await;

    let dir = tempfile::tempdir().unwrap();
    let flags = [
        "--max-peers",
        "1",
        "--peer-rotation-ms",
        "1000",
        "--report-interval-ms",
        "200",
    ];
    let first = NodeProc::start_with(&tracker.addr, &dir.path().join("first"), &flags);
    peers_only_among(&first, &ids).await;
    let started = Instant::now();
    let second = NodeProc::start_with(&tracker.addr, &dir.path().join("second"), &flags);
    let mut everyone = ids.clone();
    everyone.extend([first.id.clone(), second.id.clone()]);
    tracker.wait_active(&everyone).await;
    let took = join_reaches_all(&[&first, &second], 1, "ann").await;
    println!(
        "with {USELESS_PEERS} useless peers and one slot each, a join reached both honest \
         nodes in {took:?}, {:?} after the second started",
        started.elapsed()
    );
    for liar in useless {
        liar.stop().await;
    }
}
