//! The caps that keep a flood from hurting real nodes: connections beyond the maximum are
//! refused with `E busy`, and new ids beyond the node table's size with `E tracker_full`.

use std::time::Duration;

use protocol::codec::WireError;
use protocol::tracker::{NodeStatus, TrackerMessage};
use tracker::Config;

use crate::support::{DEADLINE, Node, POLL, Tracker, assert_single_error, fast_config, status};

#[tokio::test]
async fn connections_beyond_the_maximum_get_busy_and_are_closed() {
    let config = Config {
        max_connections: 2,
        first_message_timeout: Duration::from_secs(10),
        ..fast_config()
    };
    let tracker = Tracker::start(config).await;
    let mut first = tracker.connect().await;
    let mut second = tracker.connect().await;
    first.topology().await;
    second.topology().await;

    let mut third = tracker.connect().await;
    assert_single_error(&third.read_until_closed().await, "busy");
    // The two served ones are unaffected.
    second.topology().await;

    // Once one leaves, its slot is free again (as soon as the tracker notices the close).
    drop(first);
    let mut served = false;
    for _ in 0..(DEADLINE.as_millis() / POLL.as_millis()) {
        let mut conn = tracker.connect().await;
        conn.send(TrackerMessage::Query).await;
        match conn.recv().await {
            Some(Ok(TrackerMessage::Topology(_))) => {
                served = true;
                break;
            }
            Some(Ok(TrackerMessage::Error(e))) if e.code == "busy" => {}
            // A busy refusal may reset a connection that had already sent its query.
            None | Some(Err(WireError::Io(_))) => {}
            other => panic!("unexpected answer {other:?}"),
        }
        tokio::time::sleep(POLL).await;
    }
    assert!(served, "a slot never freed up after a client left");
}

#[tokio::test]
async fn a_full_table_refuses_new_ids_but_keeps_serving_known_ones() {
    let config = Config {
        max_nodes: 3,
        silent_after: Duration::from_secs(10),
        ..fast_config()
    };
    let tracker = Tracker::start(config).await;
    let mut conn = tracker.connect().await;
    let mut nodes: Vec<Node> = (1..=3).map(|i| Node::new(i, 9000 + u16::from(i))).collect();
    for node in &mut nodes {
        conn.expect_topology(node.r()).await;
    }

    let mut newcomer = Node::new(4, 9004);
    conn.expect_error(newcomer.r(), "tracker_full").await;
    for node in &mut nodes {
        let topology = conn.expect_topology(node.r()).await;
        assert_eq!(topology.nodes.len(), 3);
        assert_eq!(status(&topology, &newcomer.id()), None);
    }

    // A node that left still holds its place until it is forgotten...
    let topology = conn.expect_topology(nodes[0].leave()).await;
    assert_eq!(status(&topology, &nodes[0].id()), Some(NodeStatus::R));
    conn.expect_error(newcomer.r(), "tracker_full").await;

    // ...and then the newcomer gets in (forget_after is 1 s in the fast config).
    let mut accepted = None;
    for _ in 0..(DEADLINE.as_millis() / POLL.as_millis()) {
        match conn.ask(newcomer.r()).await {
            TrackerMessage::Topology(topology) => {
                accepted = Some(topology);
                break;
            }
            TrackerMessage::Error(e) if e.code == "tracker_full" => tokio::time::sleep(POLL).await,
            other => panic!("unexpected answer {other:?}"),
        }
    }
    let topology = accepted.expect("the newcomer is accepted once the leaver is forgotten");
    assert_eq!(status(&topology, &newcomer.id()), Some(NodeStatus::A));
    assert_eq!(status(&topology, &nodes[0].id()), None);
}
