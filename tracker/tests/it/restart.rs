//! A restarted tracker needs no storage: its table starts empty and fills again from the nodes'
//! next reports.

use protocol::tracker::NodeStatus;

use crate::support::{Node, Tracker, status, steady_config, wait_for};

#[tokio::test]
async fn a_restarted_tracker_shows_the_nodes_again_after_their_next_reports() {
    let config = steady_config();
    let first = Tracker::start(config.clone()).await;
    let mut nodes = [Node::new(1, 9001), Node::new(2, 9002)];
    let mut conns = Vec::new();
    for node in &mut nodes {
        let mut conn = first.connect().await;
        conn.expect_topology(node.r()).await;
        conns.push(conn);
    }

    // Stopping closes the nodes' persistent connections, and `run` returns in time.
    first.stop().await;
    for conn in &mut conns {
        conn.read_until_closed().await;
    }

    let second = Tracker::start(config).await;
    assert!(
        second.connect().await.topology().await.nodes.is_empty(),
        "a new tracker starts empty"
    );
    for node in &mut nodes {
        // What a node does when its connection drops: reconnect and report again.
        second.connect().await.expect_topology(node.r()).await;
    }
    let ids = [nodes[0].id(), nodes[1].id()];
    wait_for(&second.addr, "both nodes are active again", |t| {
        ids.iter().all(|id| status(t, id) == Some(NodeStatus::A))
    })
    .await;
}
