//! Lines that do not parse: each gets an `E` with the codec's code and its connection is closed,
//! while the tracker goes on serving everyone else.

use protocol::tracker::NodeStatus;
use protocol::wire::ErrorCode;
use tracker::MAX_REQUEST_LINE;

use crate::support::{Node, Tracker, assert_single_error, fast_config, status};

#[tokio::test]
async fn bad_lines_get_an_error_and_close_only_their_own_connection() {
    let tracker = Tracker::start(fast_config()).await;
    let mut node = Node::new(1, 9001);
    let mut node_conn = tracker.connect().await;
    node_conn.expect_topology(node.r()).await;
    let mut bystander = tracker.connect().await;
    bystander.topology().await;

    let mut oversize = vec![b'Q'; MAX_REQUEST_LINE + 100];
    oversize.push(b'\n');
    let cases: [(&str, Vec<u8>, ErrorCode); 8] = [
        (
            "garbage bytes",
            b"\xff\xfe\x00\x01garbage\n".to_vec(),
            ErrorCode::NotUtf8,
        ),
        (
            "an unknown opcode",
            b"Z {}\n".to_vec(),
            ErrorCode::UnknownOpcode,
        ),
        (
            "plain text",
            b"hello tracker\n".to_vec(),
            ErrorCode::UnknownOpcode,
        ),
        (
            "an opcode run into its payload",
            b"Q{}\n".to_vec(),
            ErrorCode::Malformed,
        ),
        ("bad JSON", b"R {\"id\": \n".to_vec(), ErrorCode::BadPayload),
        (
            "a report without a payload",
            b"R\n".to_vec(),
            ErrorCode::MissingPayload,
        ),
        ("an oversize line", oversize, ErrorCode::LineTooLong),
        (
            "an oversize line still unterminated",
            vec![b'x'; MAX_REQUEST_LINE + 100],
            ErrorCode::LineTooLong,
        ),
    ];
    for (what, bytes, code) in cases {
        let mut conn = tracker.connect().await;
        conn.send_raw(&bytes).await;
        let received = conn.read_until_closed().await;
        assert_single_error(&received, code);
        println!("{what}: E {code}, then closed");

        // Everyone else is still served, on their existing connections.
        let seen = bystander.topology().await;
        assert_eq!(
            status(&seen, &node.id()),
            Some(NodeStatus::A),
            "after {what}"
        );
        node_conn.expect_topology(node.r()).await;
    }
}

#[tokio::test]
async fn a_line_of_exactly_the_limit_is_read_and_one_byte_more_is_not() {
    let tracker = Tracker::start(fast_config()).await;
    // `Q` followed by spaces is a valid query (an all-blank payload counts as none).
    let mut exact = b"Q ".to_vec();
    exact.resize(MAX_REQUEST_LINE, b' ');
    exact.push(b'\n');
    let mut conn = tracker.connect().await;
    conn.send_raw(&exact).await;
    match conn.recv().await {
        Some(Ok(protocol::tracker::TrackerMessage::Topology(_))) => {}
        other => panic!(
            "a line of exactly {MAX_REQUEST_LINE} bytes should be answered with T, got {other:?}"
        ),
    }

    let mut over = b"Q ".to_vec();
    over.resize(MAX_REQUEST_LINE + 1, b' ');
    over.push(b'\n');
    let mut conn = tracker.connect().await;
    conn.send_raw(&over).await;
    assert_single_error(&conn.read_until_closed().await, ErrorCode::LineTooLong);
}
