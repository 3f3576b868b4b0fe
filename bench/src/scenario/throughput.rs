//! Scenario 4: purchases per second committed on 5 nodes while 3 shops submit as fast as they
//! can, each pipelining its records over one connection to a random node. Committed means in
//! the best chain of every node; at the end every node's chain is fetched and each purchase
//! must be in it exactly once. The reference is how many record signatures one core verifies
//! per second, in the bench's own process: every node checks every record once.

use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use protocol::codec::LineCodec;
use protocol::wire::Message;
use protocol::{Keypair, Record, RecordId};
use rand::RngExt;
use testkit::{buy, fetch_chain, join, record_counts};
use tokio::net::TcpStream;
use tokio_util::codec::Framed;

use crate::net::{PATIENCE, Watched};
use crate::report::Row;

const FLOOR: u32 = 12;
const NODES: usize = 5;
const SHOPS: usize = 3;
/// Purchases one shopper can afford: 19 marmosets at 50 from 1000 coins.
const PER_SHOPPER: usize = 19;

/// A shop's connection: records sent, answers being read.
struct Shop {
    sink: futures::stream::SplitSink<Framed<TcpStream, LineCodec<Message>>, Message>,
    reader: tokio::task::JoinHandle<usize>,
}

impl Shop {
    /// Sends `records` over one connection to `addr` as fast as the node takes them, reading
    /// its answers meanwhile.
    async fn send(addr: String, records: Vec<Record>) -> anyhow::Result<Shop> {
        let stream = TcpStream::connect(&addr).await?;
        stream.set_nodelay(true)?;
        let (mut sink, mut answers) = Framed::new(stream, LineCodec::<Message>::new()).split();
        let reader = tokio::spawn(async move {
            let mut refused = 0;
            while let Some(Ok(message)) = answers.next().await {
                if let Message::Error(e) = message {
                    eprintln!("throughput: refused: {} {}", e.code, e.message);
                    refused += 1;
                }
            }
            refused
        });
        for record in records {
            sink.feed(Message::Record(record)).await?;
        }
        sink.flush().await?;
        Ok(Shop { sink, reader })
    }

    /// Closes the connection and returns how many records the node refused.
    async fn finish(self) -> usize {
        drop(self.sink);
        match tokio::time::timeout(Duration::from_secs(10), self.reader).await {
            Ok(Ok(refused)) => refused,
            _ => 0,
        }
    }
}

/// Runs the scenario with `purchases` purchases.
pub async fn run(purchases: usize) -> anyhow::Result<Vec<Row>> {
    let net = Watched::start(NODES, FLOOR).await?;
    let (addrs, watch) = (&net.addrs, &net.watch);

    let shoppers: Vec<Keypair> = (0..purchases.div_ceil(PER_SHOPPER))
        .map(|i| {
            let mut seed = [0u8; 32];
            seed[..8].copy_from_slice(&(i as u64 + 1).to_le_bytes());
            Keypair::from_seed(seed)
        })
        .collect();
    let joins: Vec<Record> = shoppers
        .iter()
        .enumerate()
        .map(|(i, k)| join(k, &format!("s{i}")))
        .collect();
    let join_ids: Vec<RecordId> = joins.iter().map(Record::id).collect();
    let joining = Shop::send(addrs[0].clone(), joins).await?;
    anyhow::ensure!(
        watch
            .until(PATIENCE, |s| join_ids
                .iter()
                .all(|id| s.record_everywhere(NODES, *id)))
            .await,
        "the shoppers never all joined"
    );
    anyhow::ensure!(joining.finish().await == 0, "a join was refused");

    // Each shop takes a third of the shoppers and sends their purchases round by round, so
    // every shopper's records go out in order on one connection.
    let mut orders: Vec<Vec<Record>> = vec![Vec::new(); SHOPS];
    let mut ids = Vec::with_capacity(purchases);
    for round in 0..PER_SHOPPER {
        for (i, shopper) in shoppers.iter().enumerate() {
            if ids.len() == purchases {
                break;
            }
            let record = buy(shopper, round as u64 + 1, "marmoset");
            ids.push(record.id());
            orders[i % SHOPS].push(record);
        }
    }
    let started = Instant::now();
    let shops: Vec<_> = orders
        .into_iter()
        .map(|records| {
            let addr = addrs[rand::rng().random_range(0..NODES)].clone();
            tokio::spawn(Shop::send(addr, records))
        })
        .collect();
    let committed = watch
        .until(PATIENCE * 5, |s| {
            ids.iter().all(|id| s.record_everywhere(NODES, *id))
        })
        .await;
    let took = started.elapsed().as_secs_f64();
    let mut refused = 0;
    for shop in shops {
        refused += shop.await??.finish().await;
    }
    anyhow::ensure!(committed, "not every purchase was committed on every node");
    anyhow::ensure!(refused == 0, "{refused} purchases were refused");
    for node in &net.nodes {
        let chain = fetch_chain(&node.addr)
            .await
            .ok_or_else(|| anyhow::anyhow!("cannot fetch the chain"))?;
        let counts = record_counts(&chain);
        anyhow::ensure!(
            ids.iter().all(|id| counts.get(id) == Some(&1)),
            "a purchase is missing or doubled on a node"
        );
    }
    let rate = purchases as f64 / took;
    let reference = verify_rate(&shoppers[0]);
    let row = Row::new(
        "4 throughput",
        format!("purchases/s committed, {NODES} nodes, {SHOPS} shops, {purchases} purchases"),
        (rate, "/s"),
        ("ed25519 verifications, 1 core", reference),
    );
    Ok(vec![
        row.target(">= 1000/s, all accounted for", rate >= 1000.0),
    ])
}

/// Record signatures one core verifies per second.
fn verify_rate(key: &Keypair) -> f64 {
    let record = buy(key, 1, "marmoset");
    let started = Instant::now();
    let mut n = 0;
    while started.elapsed() < Duration::from_millis(500) {
        for _ in 0..100 {
            let _ = std::hint::black_box(&record).check();
        }
        n += 100;
    }
    n as f64 / started.elapsed().as_secs_f64()
}
