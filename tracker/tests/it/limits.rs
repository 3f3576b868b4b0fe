//! The caps that keep a flood from hurting real nodes: a connection beyond the maximum closes the
//! longest-idle one (`E evicted`), and new ids beyond the node table's size get `E tracker_full`.

use std::time::Duration;

use protocol::tracker::{NodeStatus, TrackerMessage};
use protocol::wire::ErrorCode;
use tracker::Config;

use crate::support::{
    Conn, Node, Tracker, assert_single_error, fast_config, status, steady_config,
};

#[tokio::test]
async fn a_connection_beyond_the_maximum_closes_the_longest_idle() {
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

    // The newcomer is served; `first`, idle the longest, made room and was told why.
    let mut third = tracker.connect().await;
    third.topology().await;
    assert_single_error(&first.read_until_closed().await, ErrorCode::Evicted);
    second.topology().await;
    third.topology().await;
}

#[tokio::test]
async fn a_full_table_refuses_new_ids_but_keeps_serving_known_ones() {
    let config = Config {
        max_nodes: 3,
        ..steady_config()
    };
    let tracker = Tracker::start(config).await;
    let mut nodes: Vec<Node> = (1..=3).map(|i| Node::new(i, 9000 + u16::from(i))).collect();
    let mut conns = Vec::new();
    for node in &mut nodes {
        let mut conn = tracker.connect().await;
        conn.expect_topology(node.r()).await;
        conns.push(conn);
    }

    // Every known node is active: a newcomer cannot push one out.
    let mut newcomer = Node::new(4, 9004);
    let mut newcomer_conn = tracker.connect().await;
    newcomer_conn
        .expect_error(newcomer.r(), ErrorCode::TrackerFull)
        .await;
    for (node, conn) in nodes.iter_mut().zip(&mut conns) {
        let topology = conn.expect_topology(node.r()).await;
        assert_eq!(topology.nodes.len(), 3);
        assert_eq!(status(&topology, &newcomer.id()), None);
    }

    // A node that left makes room at once: the newcomer takes its place.
    let topology = conns[0].expect_topology(nodes[0].leave()).await;
    assert_eq!(status(&topology, &nodes[0].id()), Some(NodeStatus::R));
    let topology = newcomer_conn.expect_topology(newcomer.r()).await;
    assert_eq!(status(&topology, &newcomer.id()), Some(NodeStatus::A));
    assert_eq!(status(&topology, &nodes[0].id()), None);
    assert_eq!(status(&topology, &nodes[1].id()), Some(NodeStatus::A));
}

#[tokio::test]
async fn a_flood_of_fake_registrations_pushes_no_real_node_out() {
    let tracker = Tracker::start(Config {
        max_nodes: 64,
        max_new_ids_per_minute: 16,
        ..steady_config()
    })
    .await;
    let mut real = Node::new(1, 9001);
    let mut real_conn = tracker.connect().await;
    real_conn.expect_topology(real.r()).await;

    // A flooder on another address signs up ids as fast as it can, one connection each.
    let mut accepted = 0;
    let mut refused = 0;
    for seed in 10..=110u8 {
        let mut fake = Node::new(seed, 20_000 + u16::from(seed));
        let mut conn = Conn::connect_from(&tracker.addr, "127.0.0.9").await;
        match conn.ask(fake.r()).await {
            TrackerMessage::Topology(_) => accepted += 1,
            TrackerMessage::Error(e) if e.code == ErrorCode::TooManyNew => refused += 1,
            other => panic!("unexpected answer {other:?}"),
        }
    }
    assert_eq!((accepted, refused), (16, 85), "one address's budget");

    // The real node stays, and a new real node from another address still joins.
    let topology = real_conn.expect_topology(real.r()).await;
    assert_eq!(status(&topology, &real.id()), Some(NodeStatus::A));
    let mut newcomer = Node::new(2, 9002);
    let topology = tracker.connect().await.expect_topology(newcomer.r()).await;
    assert_eq!(status(&topology, &newcomer.id()), Some(NodeStatus::A));
    assert_eq!(topology.nodes.len(), 18);
}
