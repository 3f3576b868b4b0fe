//! A node's life in the topology: it reports and is active, goes silent and is removed, is
//! forgotten, comes back, or leaves.

use std::time::Instant;

use protocol::tracker::{NodeStatus, TrackerMessage};
use protocol::wire::ErrorCode;

use crate::support::{Node, Tracker, entry, fast_config, status, steady_config, wait_for};

#[tokio::test]
async fn a_signed_report_makes_the_node_active_and_is_answered_with_the_topology() {
    let tracker = Tracker::start(steady_config()).await;
    let mut node = Node::new(1, 9001);
    let mut conn = tracker.connect().await;

    let topology = conn.expect_topology(node.r()).await;
    let info = entry(&topology, &node.id()).expect("the node is listed");
    assert_eq!(info.status, NodeStatus::A);
    assert_eq!(info.addr, node.addr);
    assert_eq!((info.tip_height, info.load, info.difficulty), (1, 0.5, 20));

    // The connection is persistent: the next heartbeats on it are answered too. The whole table
    // is encoded at most every 100 ms, so the stats in it catch up within that.
    for _ in 2..=4 {
        let topology = conn.expect_topology(node.r()).await;
        assert_eq!(status(&topology, &node.id()), Some(NodeStatus::A));
    }
    wait_for(&tracker.addr, "the latest tip", |t| {
        entry(t, &node.id()).map(|n| n.tip_height) == Some(4)
    })
    .await;

    // Anyone else sees it with a plain query.
    let seen = tracker.connect().await.topology().await;
    assert_eq!(status(&seen, &node.id()), Some(NodeStatus::A));
    assert_eq!(seen.nodes.len(), 1);
}

#[tokio::test]
async fn a_silent_node_is_removed_then_forgotten_and_is_active_again_when_it_comes_back() {
    let config = fast_config();
    let tracker = Tracker::start(config.clone()).await;
    let mut node = Node::new(2, 9002);
    let mut conn = tracker.connect().await;
    let reported = Instant::now();
    let topology = conn.expect_topology(node.r()).await;
    assert_eq!(status(&topology, &node.id()), Some(NodeStatus::A));

    let id = node.id();
    wait_for(&tracker.addr, "the silent node is removed", |t| {
        status(t, &id) == Some(NodeStatus::R)
    })
    .await;
    assert!(
        reported.elapsed() > config.silent_after,
        "removed before it was silent for silent_after"
    );

    wait_for(&tracker.addr, "the removed node is forgotten", |t| {
        status(t, &id).is_none()
    })
    .await;
    assert!(
        reported.elapsed() > config.silent_after + config.forget_after,
        "forgotten too early"
    );

    let topology = conn.expect_topology(node.r()).await;
    assert_eq!(status(&topology, &id), Some(NodeStatus::A));
}

#[tokio::test]
async fn a_leave_removes_the_node_at_once() {
    let tracker = Tracker::start(steady_config()).await;
    let mut leaving = Node::new(3, 9003);
    let mut staying = Node::new(4, 9004);
    let mut conn = tracker.connect().await;
    conn.expect_topology(leaving.r()).await;
    tracker.connect().await.expect_topology(staying.r()).await;

    // The answer to the leave itself already shows it removed: no waiting.
    let topology = conn.expect_topology(leaving.leave()).await;
    assert_eq!(status(&topology, &leaving.id()), Some(NodeStatus::R));
    assert_eq!(status(&topology, &staying.id()), Some(NodeStatus::A));
    // Sorted by address for stable output.
    let addrs: Vec<&str> = topology.nodes.iter().map(|n| n.addr.as_str()).collect();
    assert_eq!(addrs, ["127.0.0.1:9003", "127.0.0.1:9004"]);

    // A leave from a node the tracker never heard of changes nothing.
    let mut stranger = Node::new(5, 9005);
    let topology = tracker
        .connect()
        .await
        .expect_topology(stranger.leave())
        .await;
    assert_eq!(topology.nodes.len(), 2);
}

#[tokio::test]
async fn a_connection_speaks_for_one_node_only() {
    let tracker = Tracker::start(fast_config()).await;
    let mut mine = Node::new(6, 9006);
    let mut other = Node::new(7, 9007);
    tracker.connect().await.expect_topology(other.r()).await;
    let mut conn = tracker.connect().await;
    conn.expect_topology(mine.r()).await;
    // Even with valid signatures, this connection cannot report or leave for another node.
    conn.expect_error(other.r(), ErrorCode::WrongConnection)
        .await;
    conn.expect_error(other.leave(), ErrorCode::WrongConnection)
        .await;
    let topology = conn.expect_topology(mine.r()).await;
    assert_eq!(status(&topology, &other.id()), Some(NodeStatus::A));
}

#[tokio::test]
async fn a_node_that_holds_the_current_table_is_told_unchanged_until_membership_changes() {
    let tracker = Tracker::start(steady_config()).await;
    let (mut a, mut b) = (Node::new(1, 9001), Node::new(2, 9002));
    let mut conn_a = tracker.connect().await;
    let first = conn_a.expect_topology(a.r()).await;
    let version = first.version.expect("a versioned table");
    assert!(!first.unchanged);

    // Only tips and loads changed: a few bytes instead of the table.
    let mut report = a.report();
    report.known = Some(version);
    let same = conn_a.expect_topology(TrackerMessage::Report(report)).await;
    assert!(same.unchanged && same.nodes.is_empty(), "{same:?}");
    assert_eq!(same.version, Some(version));
    // A report without `known` (an older node) always gets the whole table.
    assert_eq!(conn_a.expect_topology(a.r()).await.nodes.len(), 1);

    // Another node joins: the next answer is the whole new table, with a new version.
    tracker.connect().await.expect_topology(b.r()).await;
    let mut report = a.report();
    report.known = Some(version);
    let grown = conn_a.expect_topology(TrackerMessage::Report(report)).await;
    assert!(!grown.unchanged);
    assert_eq!(grown.nodes.len(), 2);
    assert_ne!(grown.version, Some(version));

    // Queries always get the whole table.
    let seen = tracker.connect().await.topology().await;
    assert_eq!((seen.nodes.len(), seen.unchanged), (2, false));
}
