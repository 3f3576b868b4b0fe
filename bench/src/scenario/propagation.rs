//! Scenario 2: a block mined on one node until it is on every node. The bench mines each block
//! itself and hands it to node 0 as a peer would, so no other node competes; the time is from
//! that send until the last node's subscription reports the block (the bench's own hops to and
//! from the nodes included, so the figure errs high).
//!
//! The p99 of [`BLOCKS`] samples is their fifth worst, not their worst: 50 blocks made the p99
//! the one block that met a compiler's or a store writer's burst, and it moved from 3 to 25 ms
//! from run to run. Blocks go back to back, as soon as the last node reported
//! the one before (a pause between them measured wake-ups from idle instead, and was slower).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use protocol::wire::Message;
use protocol::{Block, Keypair, genesis};

use crate::net::{PATIENCE, Peer, Watched, loopback_round_trips, mine_on};
use crate::report::{Row, percentile};
use crate::scenario::tracker::stat_cpu_seconds;

/// The floor the network runs at: blocks are mined by the bench in microseconds.
const FLOOR: u32 = 8;

/// Blocks timed per network size: enough that the p99 is not the single worst block, few
/// enough that 30 nodes take about ten seconds.
pub const BLOCKS: usize = 500;

/// How long blocks go unmeasured after a network starts: a node dials its peers once the
/// tracker's answer (every second) lists them, and a new link's handshake and first `D`/`C`
/// are not what the figure is about.
const WARM_UP: Duration = Duration::from_secs(2);

/// Blocks left unmeasured at the start, however soon [`WARM_UP`] is over.
const WARM_UP_BLOCKS: usize = 5;

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
        let pids: Vec<u32> = net.nodes.iter().map(|node| node.pid()).collect();
        let started = Instant::now();
        let mut cpu_before = None;
        let mut i = 0;
        while samples.len() < blocks {
            let warming = i < WARM_UP_BLOCKS || started.elapsed() < WARM_UP;
            if !warming && cpu_before.is_none() {
                cpu_before = Some(cpu_by_thread(&pids));
            }
            let block = mine_on(&tip, Vec::new(), FLOOR, &key);
            let hash = block.header.hash();
            let sent = Instant::now();
            peer.send(Message::Block(block.clone())).await?;
            let everywhere = watch.until(PATIENCE, |s| s.block_everywhere(n, hash)).await;
            if !everywhere {
                let logs = net.keep_logs(&format!("propagation-{n}"));
                anyhow::bail!(
                    "block {i} never reached every node of {n} (their logs: {})",
                    logs.display()
                );
            }
            if !warming && let Some(last) = watch.with(|s| s.block_last(n, hash)) {
                samples.push(last.duration_since(sent).as_secs_f64() * 1e3);
            }
            tip = block;
            i += 1;
        }
        let spent = cpu_by_thread(&pids);
        let before = cpu_before.unwrap_or_default();
        let per_block = |name: &str| {
            let used = spent.get(name).copied().unwrap_or(0.0);
            (used - before.get(name).copied().unwrap_or(0.0)) * 1e3 / samples.len() as f64
        };
        // Where a block's time goes on a shared host: the CPU every node spends on it, which
        // the cores serve one slice at a time (README, "Performance": where propagation's
        // time goes).
        println!(
            "  {n} nodes: {:.1} ms of CPU per block in all (async workers {:.1}, chain threads \
             {:.1}, store writers {:.1}); block to every node p10 {:.1}, p90 {:.1}, max {:.1} ms",
            spent.keys().map(|name| per_block(name)).sum::<f64>(),
            per_block("tokio-rt-worker"),
            per_block("chain"),
            per_block("store-writer"),
            percentile(&samples, 10.0),
            percentile(&samples, 90.0),
            percentile(&samples, 100.0),
        );
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

/// CPU seconds used so far by the threads of processes `pids`, summed by thread name (a
/// node's async workers are all `tokio-rt-worker`); a process that is gone counts nothing.
fn cpu_by_thread(pids: &[u32]) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    for pid in pids {
        let Ok(threads) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
            continue;
        };
        for thread in threads.flatten() {
            let path = thread.path();
            let (Ok(name), Ok(stat)) = (
                std::fs::read_to_string(path.join("comm")),
                std::fs::read_to_string(path.join("stat")),
            ) else {
                continue;
            };
            *out.entry(name.trim().to_string()).or_insert(0.0) += stat_cpu_seconds(&stat);
        }
    }
    out
}
