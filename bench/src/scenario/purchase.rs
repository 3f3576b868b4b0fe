//! Scenario 3: `buy` submitted to a random node until a block holding it is in the best chain
//! of every node, at a floor of 12 bits (the original's three hex zeros). Like a shop, each
//! purchase opens a new connection. The reference is the time to mine one 12-bit block on one
//! core in the bench's own process: no purchase can be faster than its block.

use std::time::Instant;

use futures::SinkExt;
use protocol::codec::LineCodec;
use protocol::wire::Message;
use protocol::{Keypair, genesis};
use rand::RngExt;
use testkit::{Client, buy, join};
use tokio::net::TcpStream;
use tokio_util::codec::Framed;

use crate::net::{PATIENCE, Watched, mine_on};
use crate::report::Row;

/// The floor: the original project's three hex zeros.
const FLOOR: u32 = 12;
/// Nodes in the network.
const NODES: usize = 3;
/// Purchases one shopper can afford: 19 marmosets at 50 from 1000 coins.
const PER_SHOPPER: usize = 19;

/// Runs the scenario with `purchases` purchases, one after another.
pub async fn run(purchases: usize) -> anyhow::Result<Vec<Row>> {
    let net = Watched::start(NODES, FLOOR).await?;
    let (addrs, watch) = (&net.addrs, &net.watch);
    let shoppers: Vec<Keypair> = (0..purchases.div_ceil(PER_SHOPPER))
        .map(|i| Keypair::from_seed([100 + i as u8; 32]))
        .collect();
    let mut client = Client::connect(&addrs[0]).await;
    for (i, shopper) in shoppers.iter().enumerate() {
        let record = join(shopper, &format!("shopper{i}"));
        client.submit_and_wait(record.clone()).await;
        let id = record.id();
        anyhow::ensure!(
            watch
                .until(PATIENCE, |s| s.record_everywhere(NODES, id))
                .await,
            "a join never reached every node"
        );
    }

    let mut samples = Vec::with_capacity(purchases);
    for i in 0..purchases {
        let record = buy(
            &shoppers[i / PER_SHOPPER],
            (i % PER_SHOPPER + 1) as u64,
            "marmoset",
        );
        let id = record.id();
        let node = rand::rng().random_range(0..NODES);
        let started = Instant::now();
        let stream = TcpStream::connect(&addrs[node]).await?;
        stream.set_nodelay(true)?;
        let mut link = Framed::new(stream, LineCodec::<Message>::new());
        link.send(Message::Record(record)).await?;
        anyhow::ensure!(
            watch
                .until(PATIENCE, |s| s.record_everywhere(NODES, id))
                .await,
            "purchase {i} never reached every node's best chain"
        );
        if let Some(last) = watch.with(|s| s.record_last(NODES, id)) {
            samples.push(last.duration_since(started).as_secs_f64() * 1e3);
        }
    }

    let reference = {
        let key = Keypair::from_seed([7; 32]);
        let started = Instant::now();
        let mut tip = genesis();
        for _ in 0..50 {
            tip = mine_on(&tip, Vec::new(), FLOOR, &key);
        }
        started.elapsed().as_secs_f64() * 1e3 / 50.0
    };
    let figure = |p: &str| format!("{p}, buy to block on all {NODES} nodes");
    let reference = ("one 12-bit block mined, 1 core", reference);
    let [p50, p99] = Row::percentiles(
        "3 purchase latency",
        &samples,
        figure,
        reference,
        "purchases",
    );
    let met = p50.value < 30.0;
    let rows = vec![p50.target("< 30 ms (original ~1010 ms)", met), p99];
    Ok(rows)
}
