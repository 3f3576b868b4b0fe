//! Scenario 5: a fresh node joining a network whose chain is long, until it has the tip. The
//! time runs from starting the new node's process to its subscription reporting the tip height.
//! The reference is the same blocks checked (signatures included) and inserted into a chain in
//! the bench's own process, on one thread: the work a sync cannot avoid. The chain is the
//! shoppers' purchases and transfers ([`crate::chains::Kind::Shoppers`]). Targets: under 1 s
//! at 10,000 blocks; from a million, under 60 s and faster than the reference.

use std::time::{Duration, Instant};

use protocol::{Chain, Params};
use testkit::NodeProc;

use crate::chains::{Chains, FLOOR, seed};
use crate::net::network;
use crate::report::Row;
use crate::watch::Watch;

/// Runs the scenario for each chain length in `lengths`.
pub async fn run(lengths: &[usize], chains: &mut Chains) -> anyhow::Result<Vec<Row>> {
    let mut rows = Vec::new();
    for &n in lengths {
        let chain = chains.get(n);
        let dir = tempfile::tempdir()?;
        let floor = FLOOR.to_string();
        let extra = ["--difficulty-floor", floor.as_str()];
        let (tracker, nodes) = network(dir.path(), 1, &extra).await?;
        seed(&nodes[0], &chain).await?;

        let started = Instant::now();
        let fresh = NodeProc::start_with(&tracker.addr, &dir.path().join("fresh"), &extra);
        let watch = Watch::start(std::slice::from_ref(&fresh.addr)).await?;
        let tip = n as u64;
        let limit = Duration::from_secs(60) + Duration::from_millis(n as u64);
        anyhow::ensure!(
            watch.until(limit, |s| s.heights[0] >= tip).await,
            "the fresh node never caught up with {n} blocks"
        );
        let took = started.elapsed().as_secs_f64();

        let reference = {
            let blocks = chain.to_vec();
            let started = Instant::now();
            let mut local = Chain::new(Params::with_floor(FLOOR));
            for block in blocks {
                local.insert(block, u64::MAX / 2)?;
            }
            started.elapsed().as_secs_f64()
        };
        let mut row = Row::new(
            "5 sync",
            format!("{n} blocks, fresh node to tip"),
            (took, "s"),
            ("same blocks checked in-process, 1 thread", reference),
        );
        if n == 10_000 {
            row = row.target("< 1 s", took < 1.0);
        }
        if n >= 1_000_000 {
            let met = took < 60.0 && took < reference;
            row = row.target("< 60 s and < the reference", met);
        }
        rows.push(row);
    }
    Ok(rows)
}
