//! What the visualizer survives: a node killed and started again (at a new address), and the
//! tracker killed and restarted. The browser's stream goes on through both.

use protocol::genesis;
use protocol::tracker::NodeStatus;
use protocol::wire::Message;
use testkit::*;
use visualizer::view::{Link, NodeView, ToBrowser};

use crate::*;

fn row<'a>(nodes: &'a [NodeView], id: &str) -> Option<&'a NodeView> {
    nodes.iter().find(|n| n.id.to_string() == id)
}

/// Sends `block` to the node at `addr` and waits until the page's tip is on it.
async fn push_and_see(page: &mut Page, addr: &str, block: &protocol::Block) {
    let mut peer = Client::connect(addr).await;
    peer.send(Message::Block(block.clone())).await;
    let hash = block.header.hash();
    page.wait("the block on the page's best chain", |m| match m {
        ToBrowser::Tip(t) if t.connected.contains(&hash) => Some(()),
        _ => None,
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_visualizer_survives_a_node_killed_and_started_again() {
    let tracker = Tracker::start().await;
    let dir = tempfile::tempdir().unwrap();
    let nodes = start_network(&tracker, dir.path(), 2).await;
    let mut nodes = nodes.into_iter();
    let (a, b) = (nodes.next().unwrap(), nodes.next().unwrap());
    let (a_id, a_addr, a_dir) = (a.id.clone(), a.addr.clone(), a.dir.clone());
    let vis = Visualizer::start(&tracker.addr).await;
    let mut page = Page::connect(&vis.addr).await;
    page.snapshot().await;
    page.wait_nodes("both nodes followed", |nodes| {
        nodes.len() == 2 && nodes.iter().all(|n| n.link == Link::Following)
    })
    .await;

    let blocks = mine_chain(&genesis(), 3, FLOOR, 1000);
    a.kill();
    page.wait_nodes("the lost node shown as lost", |nodes| {
        row(nodes, &a_id).is_some_and(|n| n.link != Link::Following)
    })
    .await;
    // The other node still feeds the page.
    push_and_see(&mut page, &b.addr, &blocks[0]).await;
    // Once the tracker marks it removed, it is no longer followed.
    page.wait_nodes("the dead node marked removed", |nodes| {
        row(nodes, &a_id).is_some_and(|n| n.status == Some(NodeStatus::R) && n.link == Link::None)
    })
    .await;

    // Back, at another port: followed again, and it catches up and feeds the page.
    let a = NodeProc::start(&tracker.addr, &a_dir);
    assert_ne!(a.addr, a_addr);
    page.wait_nodes("the node followed again at its new address", |nodes| {
        row(nodes, &a.id).is_some_and(|n| {
            n.link == Link::Following && n.addr == a.addr && n.status == Some(NodeStatus::A)
        })
    })
    .await;
    push_and_see(&mut page, &a.addr, &blocks[1]).await;
    let tip = blocks[1].header.hash();
    page.wait_nodes("both nodes on the new tip", |nodes| {
        nodes.len() == 2
            && nodes
                .iter()
                .all(|n| n.tip_hash == tip && n.behind == Some(0))
    })
    .await;
    vis.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_visualizer_survives_the_tracker_killed_and_restarted() {
    let mut tracker = Tracker::start().await;
    let dir = tempfile::tempdir().unwrap();
    let node = NodeProc::start(&tracker.addr, &dir.path().join("a"));
    let vis = Visualizer::start(&tracker.addr).await;
    let mut page = Page::connect(&vis.addr).await;
    page.snapshot().await;
    page.wait_nodes("the node followed", |nodes| {
        row(nodes, &node.id).is_some_and(|n| n.link == Link::Following)
    })
    .await;

    let blocks = mine_chain(&genesis(), 2, FLOOR, 1000);
    tracker.kill();
    page.wait("the tracker shown as down", |m| match m {
        ToBrowser::Nodes { tracker, .. } if !tracker.up => Some(()),
        _ => None,
    })
    .await;
    // Without the tracker the node is still followed, and its blocks still arrive.
    push_and_see(&mut page, &node.addr, &blocks[0]).await;

    tracker.restart().await;
    page.wait("the tracker back, listing the node again", |m| match m {
        ToBrowser::Nodes { tracker, nodes } if tracker.up => row(nodes, &node.id)
            .is_some_and(|n| n.status == Some(NodeStatus::A) && n.link == Link::Following)
            .then_some(()),
        _ => None,
    })
    .await;
    push_and_see(&mut page, &node.addr, &blocks[1]).await;
    vis.stop().await;
}
