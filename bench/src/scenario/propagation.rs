//! Scenario 2: a block mined on one node until it is on every node. The bench mines each block
//! itself and hands it to node 0 as a peer would, so no other node competes; the time is from
//! that send until the last node's subscription reports the block (the bench's own hops to and
//! from the nodes included, so the figure errs high).

use std::time::Instant;

use protocol::wire::Message;
use protocol::{Block, Keypair, genesis};

use crate::net::{PATIENCE, Peer, Watched, loopback_round_trips, mine_on};
use crate::report::{Row, percentile};

/// The floor the network runs at: blocks are mined by the bench in microseconds.
const FLOOR: u32 = 8;

/// Runs the scenario for each network size in `sizes`, `blocks` blocks each.
pub async fn run(sizes: &[usize], blocks: usize) -> anyhow::Result<Vec<Row>> {
    let rtt = loopback_round_trips(1000).await?;
    let rtt_p99 = percentile(&rtt, 99.0);
    let mut rows = Vec::new();
    for &n in sizes {
        let net = Watched::start(n, FLOOR).await?;
        let watch = &net.watch;
        let mut peer = Peer::connect(&net.addrs[0]).await?;
        let key = Keypair::from_seed([9; 32]);
        let mut tip: Block = genesis();
        let mut samples = Vec::with_capacity(blocks);
        // The first blocks warm the links up (peers connect within a second of starting).
        for i in 0..blocks + 5 {
            let block = mine_on(&tip, Vec::new(), FLOOR, &key);
            let hash = block.header.hash();
            let sent = Instant::now();
            peer.send(Message::Block(block.clone())).await?;
            let everywhere = watch.until(PATIENCE, |s| s.block_everywhere(n, hash)).await;
            anyhow::ensure!(everywhere, "block {i} never reached every node of {n}");
            if i >= 5
                && let Some(last) = watch.with(|s| s.block_last(n, hash))
            {
                samples.push(last.duration_since(sent).as_secs_f64() * 1e3);
            }
            tip = block;
        }
        let figure = |p: &str| format!("{p}, {n} nodes");
        let reference = ("loopback TCP round trip p99", rtt_p99);
        let [p50, p99] = Row::percentiles("2 propagation", &samples, figure, reference, "blocks");
        rows.push(p50);
        rows.push(match target_for(n) {
            Some(t) => {
                let met = p99.value < t;
                p99.target(&format!("< {t} ms"), met)
            }
            None => p99,
        });
    }
    Ok(rows)
}

/// The p99 target for a network of `n` nodes.
fn target_for(n: usize) -> Option<f64> {
    match n {
        10 => Some(5.0),
        30 => Some(20.0),
        _ => None,
    }
}
