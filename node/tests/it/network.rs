//! A network of real node processes: topology, relay, mining and agreement.

use protocol::RecordId;
use protocol::tracker::NodeStatus;

use testkit::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_nodes_see_each_other_and_agree_on_a_record() {
    let tracker = Tracker::start().await;
    let dir = tempfile::tempdir().unwrap();
    let nodes = start_network(&tracker, dir.path(), 4).await;

    let mut client = Client::connect(&nodes[0].addr).await;
    let record = join(&key(1), "alice");
    let block = client.submit_and_wait(record.clone()).await;
    assert_eq!(block.records, vec![record.clone()]);
    let refs: Vec<&NodeProc> = nodes.iter().collect();
    wait_all_agree(&refs, &[record.id()]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_concurrent_records_land_exactly_once_on_every_node() {
    let tracker = Tracker::start().await;
    let dir = tempfile::tempdir().unwrap();
    let nodes = start_network(&tracker, dir.path(), 4).await;

    // Five accounts, each a join and nine purchases, all sent at once, spread over the nodes:
    // an account's later records often reach a node before its earlier ones.
    let mut records = Vec::new();
    for a in 0..5u8 {
        let k = key(10 + a);
        records.push(join(&k, &format!("shopper{a}")));
        for seq in 1..10 {
            records.push(buy(&k, seq, "marmoset"));
        }
    }
    let all: Vec<RecordId> = records.iter().map(|r| r.id()).collect();
    let mut sends = Vec::new();
    for (i, record) in records.into_iter().enumerate() {
        let addr = nodes[i % nodes.len()].addr.clone();
        sends.push(tokio::spawn(async move {
            let mut client = Client::connect(&addr).await;
            client.send(protocol::wire::Message::Record(record)).await;
            match client.next().await {
                Some(protocol::wire::Message::Ack(_)) => {}
                other => panic!("expected an acknowledgement, got {other:?}"),
            }
        }));
    }
    for s in sends {
        s.await.unwrap();
    }
    let refs: Vec<&NodeProc> = nodes.iter().collect();
    let chain = wait_all_agree(&refs, &all).await;
    assert_eq!(chain.iter().map(|b| b.records.len()).sum::<usize>(), 50);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_node_is_removed_at_once_and_exits_cleanly() {
    let tracker = Tracker::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = start_pair(&tracker, dir.path()).await;
    let id = b.id.clone();
    let started = std::time::Instant::now();
    let status = tokio::task::spawn_blocking(move || b.terminate())
        .await
        .unwrap();
    assert!(status.success(), "{status:?}");
    wait_for("the stopped node to be marked R", DEADLINE, || async {
        (tracker.status_of(&id).await == Some(NodeStatus::R)).then_some(())
    })
    .await;
    // Silence alone takes 5 s to mark a node removed; a leave does it at once.
    assert!(
        started.elapsed() < std::time::Duration::from_secs(4),
        "marked R by silence, not by its leave"
    );
    assert_eq!(tracker.status_of(&a.id).await, Some(NodeStatus::A));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_tracker_has_the_whole_topology_again_and_nodes_relay_meanwhile() {
    let mut tracker = Tracker::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = start_pair(&tracker, dir.path()).await;
    // Give the nodes a moment to connect to each other: wait until a record relays.
    let mut client = Client::connect(&a.addr).await;
    let first = join(&key(1), "alice");
    client.submit_and_wait(first.clone()).await;
    wait_all_agree(&[&a, &b], &[first.id()]).await;

    tracker.kill();
    // With the tracker down, a purchase at one node is mined and reaches the other.
    let second = buy(&key(1), 1, "capuchin");
    client.submit_and_wait(second.clone()).await;
    wait_all_agree(&[&a, &b], &[first.id(), second.id()]).await;

    let restarted = std::time::Instant::now();
    tracker.restart().await;
    tracker.wait_active(&[a.id.clone(), b.id.clone()]).await;
    // Nodes retry at least once a second, so the topology is whole in about 2 s; the bound is
    // loose for a loaded machine but fails a node that backs off for longer.
    let took = restarted.elapsed();
    assert!(took < std::time::Duration::from_secs(5), "took {took:?}");
}
