//! Reports and leaves the tracker must refuse: forged, replayed, badly addressed, from a wrong
//! clock. Each gets an `E` with a clear code, changes nothing, and keeps the connection.

use protocol::Keypair;
use protocol::codec::encode_line;
use protocol::hash::BlockHash;
use protocol::tracker::{Leave, Report, Topology, TrackerMessage};
use protocol::wire::{ErrorCode, ErrorMessage};

use crate::support::{Node, Tracker, steady_config};
use protocol::clock::now_ms;

/// The topology without its clock-dependent part, to compare before and after.
fn without_ages(mut topology: Topology) -> Topology {
    for node in &mut topology.nodes {
        node.last_seen_ms = 0;
    }
    topology
}

#[tokio::test]
async fn forged_replayed_and_malformed_reports_and_leaves_are_refused_and_change_nothing() {
    let tracker = Tracker::start(steady_config()).await;
    let mut node = Node::new(1, 9001);
    let mut conn = tracker.connect().await;
    let first = node.report();
    let before = without_ages(
        conn.expect_topology(TrackerMessage::Report(first.clone()))
            .await,
    );

    // A leave for this node signed by someone else's key.
    let mallory = Keypair::from_seed([66; 32]);
    let forged = Leave {
        id: node.id(),
        ..Leave::sign(&mallory, node.next_timestamp())
    };
    conn.expect_error(TrackerMessage::Leave(forged), ErrorCode::BadSignature)
        .await;

    // The same report again, an older one, and a leave older than the last report.
    conn.expect_error(TrackerMessage::Report(first.clone()), ErrorCode::Replayed)
        .await;
    let older = Report::sign(
        &node.key,
        node.addr.clone(),
        first.timestamp - 1,
        (1, BlockHash::ZERO),
        0.5,
        20,
    );
    conn.expect_error(TrackerMessage::Report(older), ErrorCode::Replayed)
        .await;
    let stale_leave = Leave::sign(&node.key, first.timestamp);
    conn.expect_error(TrackerMessage::Leave(stale_leave), ErrorCode::Replayed)
        .await;

    // Someone moving this node to their own address with its old signature.
    let moved = Report {
        addr: "10.9.9.9:9001".into(),
        timestamp: node.next_timestamp(),
        ..first.clone()
    };
    conn.expect_error(TrackerMessage::Report(moved), ErrorCode::BadSignature)
        .await;

    // A clock ten minutes ahead, an unusable address, a load JSON cannot carry back.
    let future = Report::sign(
        &node.key,
        node.addr.clone(),
        now_ms() + 600_000,
        (1, BlockHash::ZERO),
        0.5,
        20,
    );
    conn.expect_error(TrackerMessage::Report(future), ErrorCode::ClockSkew)
        .await;
    let timestamp = node.next_timestamp();
    let nowhere = Report::sign(
        &node.key,
        "nowhere".into(),
        timestamp,
        (1, BlockHash::ZERO),
        0.5,
        20,
    );
    conn.expect_error(TrackerMessage::Report(nowhere), ErrorCode::BadAddress)
        .await;
    // The load is not signed, and 1e300 parses into an f32 infinity, which a `T` could not carry.
    let line = encode_line(&node.r()).expect("encode a report");
    assert!(line.contains("\"load\":0.5"), "{line}");
    conn.send_raw(line.replace("\"load\":0.5", "\"load\":1e300").as_bytes())
        .await;
    match conn.recv().await {
        Some(Ok(TrackerMessage::Error(e))) => {
            assert_eq!(e.code, ErrorCode::BadReport, "{}", e.message)
        }
        other => panic!("expected E bad_report, got {other:?}"),
    }

    // T and E are the tracker's own words.
    conn.expect_error(
        TrackerMessage::Topology(Topology::default()),
        ErrorCode::Unexpected,
    )
    .await;
    conn.expect_error(
        TrackerMessage::Error(ErrorMessage::new(ErrorCode::Io, "y")),
        ErrorCode::Unexpected,
    )
    .await;

    // Same connection, same topology.
    let after = without_ages(conn.topology().await);
    assert_eq!(after, before);
    // And the real node still reports fine.
    conn.expect_topology(node.r()).await;
}
