//! The lying node itself: it registers with a real tracker like any node, and answers with its
//! lie over real TCP. What the shop and the visualizer make of it is tested in their crates.

use attack::liar::{Liar, Lie};
use protocol::wire::{GetBlocks, Message, Update};
use protocol::{Action, Keypair, Record};
use testkit::{Client, DEADLINE, Tracker, wait_for};

/// Starts a liar next to a tracker and waits until the tracker lists it as active.
async fn listed(lie: Lie) -> (Tracker, Liar) {
    let tracker = Tracker::start().await;
    let liar = Liar::start(&tracker.addr, "127.0.0.3".parse().unwrap(), lie)
        .await
        .expect("the liar starts");
    let id = liar.id.to_string();
    tracker.wait_active(&[id]).await;
    (tracker, liar)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fake_miner_is_listed_and_claims_a_block_its_chain_lacks() {
    let (tracker, liar) = listed(Lie::FakeMined {
        height: 1_000_000_000,
        bits: 0,
    })
    .await;
    assert!(liar.addr.starts_with("127.0.0.3:"), "{}", liar.addr);
    let mut client = Client::connect(&liar.addr).await;
    let record = Record::sign(
        &Keypair::from_seed([1; 32]),
        0,
        Action::Join { name: "ann".into() },
    );
    client.send(Message::Record(record.clone())).await;
    assert!(matches!(client.next().await, Some(Message::Ack(k)) if k.id == record.id()));
    match client.next().await {
        Some(Message::Block(block)) => {
            assert_eq!(block.header.height, 1_000_000_000);
            assert_eq!(block.header.bits, 0);
            assert_eq!(block.records, vec![record]);
        }
        other => panic!("expected a B, got {other:?}"),
    }
    client.send(Message::GetBlocks(GetBlocks::default())).await;
    assert!(
        matches!(client.next().await, Some(Message::Blocks(c)) if c.blocks.is_empty() && !c.more)
    );
    liar.stop().await;
    wait_for("the liar to leave", DEADLINE, || async {
        tracker
            .topology()
            .await
            .filter(|t| t.active().next().is_none())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flooder_answers_a_subscriber_with_blocks_of_no_work() {
    let (_tracker, liar) = listed(Lie::ZeroWorkFlood {
        blocks: 40,
        records_per_block: 50,
    })
    .await;
    let mut client = Client::connect(&liar.addr).await;
    client.send(Message::Subscribe).await;
    let tip = match client.next().await {
        Some(Message::Update(Update::Tip { hash, height, .. })) => {
            assert_eq!(height, 40);
            hash
        }
        other => panic!("expected a U tip, got {other:?}"),
    };
    let mut locator = Vec::new();
    let mut got = Vec::new();
    for _ in 0..40 {
        client
            .send(Message::GetBlocks(GetBlocks::json_after(locator)))
            .await;
        let Some(Message::Blocks(segment)) = client.next().await else {
            panic!("expected a C");
        };
        got.extend(segment.blocks);
        let Some(last) = got.last() else { break };
        locator = vec![last.header.hash()];
        if !segment.more {
            break;
        }
    }
    assert_eq!(got.len(), 40);
    assert_eq!(got.last().map(|b| b.header.hash()), Some(tip));
    assert!(
        got.iter()
            .all(|b| b.header.bits == 0 && b.records.len() == 50)
    );
}
