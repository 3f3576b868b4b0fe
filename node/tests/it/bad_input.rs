//! Bad lines get an `E` and a closed connection; the node serves everyone else on.

use protocol::codec::MAX_LINE;
use protocol::wire::Message;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use testkit::*;

/// Sends `bytes`, then reads everything until the node closes; returns what it said.
async fn send_raw(addr: &str, bytes: &[u8]) -> String {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    // The node may close before it has read everything: that is the point.
    let _ = stream.write_all(bytes).await;
    let mut out = Vec::new();
    let read = tokio::time::timeout(DEADLINE, stream.read_to_end(&mut out))
        .await
        .expect("node closed the connection");
    let _ = read;
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_oversize_and_unknown_opcodes_get_an_error_and_a_close() {
    let net = OneNode::start().await;
    let node = &net.node;
    let mut bystander = Client::connect(&node.addr).await;

    let cases: Vec<(Vec<u8>, &str)> = vec![
        (b"\x00\xff garbage \xfe\n".to_vec(), "not_utf8"),
        (vec![b'x'; MAX_LINE + 2], "line_too_long"),
        (b"X {}\n".to_vec(), "unknown_opcode"),
        (b"A {\"not\": \"a record\"}\n".to_vec(), "bad_payload"),
    ];
    for (bytes, code) in cases {
        let said = send_raw(&node.addr, &bytes).await;
        assert!(said.starts_with("E "), "{code}: {said:?}");
        assert!(said.contains(code), "{code}: {said:?}");
    }
    // The node still serves: the connection opened before, and a new one.
    bystander.send(Message::GetBlocks(Default::default())).await;
    assert!(matches!(bystander.next().await, Some(Message::Blocks(_))));
    assert!(fetch_chain(&node.addr).await.is_some());
}
