//! `tracker::client::query`, as the shop and the visualizer use it.

use std::time::{Duration, Instant};

use protocol::tracker::NodeStatus;
use tokio::net::TcpListener;

use crate::support::{Node, Tracker, fast_config, status};

#[tokio::test]
async fn query_returns_the_topology() {
    let tracker = Tracker::start(fast_config()).await;
    let mut node = Node::new(1, 9001);
    tracker.connect().await.expect_topology(node.r()).await;
    let topology = tracker::client::query(&tracker.addr, Duration::from_secs(5))
        .await
        .expect("query the tracker");
    assert_eq!(status(&topology, &node.id()), Some(NodeStatus::A));
}

#[tokio::test]
async fn query_fails_clearly_when_nothing_listens() {
    let (listener, addr) = bound().await;
    drop(listener);
    let message = query_error(&addr, Duration::from_secs(5)).await;
    assert!(
        message.contains(&format!("tracker at {addr} is unreachable")),
        "{message}"
    );
}

#[tokio::test]
async fn query_gives_up_on_a_tracker_that_never_answers() {
    // Bound but never accepting: the connection completes in the kernel, and no answer ever comes.
    let (listener, addr) = bound().await;
    let started = Instant::now();
    let message = query_error(&addr, Duration::from_millis(300)).await;
    assert!(
        message.contains(&format!("tracker at {addr} did not answer within 300 ms")),
        "{message}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "the timeout was not honoured"
    );
    drop(listener);
}

/// A listener on a free loopback port that never accepts, and its address.
async fn bound() -> (TcpListener, String) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind port 0");
    let addr = listener.local_addr().expect("bound address").to_string();
    (listener, addr)
}

/// The whole error chain of a query to `addr` that must fail.
async fn query_error(addr: &str, timeout: Duration) -> String {
    let error = tracker::client::query(addr, timeout)
        .await
        .expect_err("the query must fail");
    format!("{error:#}")
}
