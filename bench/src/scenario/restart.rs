//! Scenario 6: a node restarting with a long chain (the shoppers' purchases and transfers) in its
//! store, until it serves again (its
//! `listening on` line, printed once the store is loaded and the listener bound). The reference
//! is rebuilding the same chain in the bench's own process the way the node does it: decoding
//! the stored bytes, checking all but the signatures, inserting.

use std::time::Instant;

use protocol::{Block, Chain, Params};
use testkit::NodeProc;

use crate::chains::{Chains, FLOOR, ensure_holds, seed, stop_limit};
use crate::net::network;
use crate::report::Row;

/// Runs the scenario with a chain of `n` blocks.
pub async fn run(n: usize, chains: &mut Chains) -> anyhow::Result<Vec<Row>> {
    let chain = chains.get(n);
    let dir = tempfile::tempdir()?;
    let floor = FLOOR.to_string();
    let extra = ["--difficulty-floor", floor.as_str()];
    let (tracker, mut nodes) = network(dir.path(), 1, &extra).await?;
    seed(&nodes[0], &chain).await?;
    let node = nodes.remove(0);
    let data = node.dir.clone();
    let status = tokio::task::spawn_blocking(move || node.terminate_within(stop_limit(n))).await?;
    anyhow::ensure!(
        status.success(),
        "the node did not stop cleanly: {status:?}"
    );

    let started = Instant::now();
    let node = tokio::task::spawn_blocking({
        let (tracker, data) = (tracker.addr.clone(), data.clone());
        move || NodeProc::start_with(&tracker, &data, &["--difficulty-floor", &floor])
    })
    .await?;
    let took = started.elapsed().as_secs_f64();
    ensure_holds(&node, n).await?;
    drop(node);

    let reference = {
        let bytes: Vec<Vec<u8>> = chain.iter().map(Block::to_bytes).collect();
        let started = Instant::now();
        let mut local = Chain::new(Params::with_floor(FLOOR));
        for bytes in bytes {
            let block = Block::from_bytes(&bytes)?.check_own(local.params())?;
            local.insert_checked(block, u64::MAX / 2)?;
        }
        started.elapsed().as_secs_f64()
    };
    let row = Row::new(
        "6 restart",
        format!("{n} blocks in the store, start to serving"),
        (took, "s"),
        ("same chain rebuilt in-process, 1 thread", reference),
    );
    Ok(vec![row.target("< 1 s", took < 1.0)])
}
