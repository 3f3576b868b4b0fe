//! Records from clients: the connection verifies each signature before the chain thread sees
//! the record; records that cannot be mined yet (their account's earlier records have not
//! arrived) wait at the node that got them and are never relayed, so a flood of them costs its
//! peers nothing.

use protocol::Record;
use protocol::wire::Message;

use testkit::*;

/// Sends `record` and returns the status of its `K` (or the code of its `E`).
async fn status(client: &mut Client, record: Record) -> String {
    client.send(Message::Record(record)).await;
    loop {
        match client.next().await {
            Some(Message::Ack(ack)) => return ack.status.to_string(),
            Some(Message::Error(e)) => return e.code.to_string(),
            // The node checks that a quiet client is still there.
            Some(Message::KeepAlive) => client.send(Message::KeepAlive).await,
            other => panic!("unexpected answer {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiting_record_is_not_relayed() {
    let tracker = Tracker::start().await;
    let dir = tempfile::tempdir().unwrap();
    let nodes = start_network(&tracker, dir.path(), 2).await;
    let (a, b) = (&nodes[0], &nodes[1]);

    // A record both nodes hold in a block: the link between them carries relays.
    let mut client = Client::connect(&a.addr).await;
    let first = join(&key(1), "alice");
    client.submit_and_wait(first.clone()).await;
    wait_all_agree(&[a, b], &[first.id()]).await;

    // A purchase of an account that never joined waits at a; then a minable record follows it
    // on the same link. Once b holds the second, it would have had the first before it.
    let waiting = buy(&key(2), 1, "marmoset");
    assert_eq!(status(&mut client, waiting.clone()).await, "waiting");
    let second = join(&key(3), "bob");
    let mut other = Client::connect(&a.addr).await;
    other.submit_and_wait(second.clone()).await;
    wait_all_agree(&[a, b], &[first.id(), second.id()]).await;

    // New to b: it waits there too, rather than being already pending.
    let mut at_b = Client::connect(&b.addr).await;
    assert_eq!(status(&mut at_b, waiting).await, "waiting");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_record_is_refused_and_its_sender_closed() {
    let tracker = Tracker::start().await;
    let dir = tempfile::tempdir().unwrap();
    let node = NodeProc::start(&tracker.addr, dir.path());
    // From an address of its own: the forger's is banned.
    let forger = std::net::IpAddr::from([127, 0, 0, 2]);
    let mut client = Client::connect_from(&node.addr, forger).await;
    let mut forged = join(&key(1), "alice");
    forged.seq = 1;
    assert_eq!(status(&mut client, forged).await, "invalid_record");
    assert!(client.next().await.is_none(), "the connection is closed");
    // Nothing of it is pending: the real join is new to the node.
    let mut honest = Client::connect(&node.addr).await;
    honest.submit_and_wait(join(&key(1), "alice")).await;
}
