//! Scenario 8: a node's peak resident memory holding a long chain of purchases and transfers
//! among 1,000 shoppers ([`crate::chains::Kind::Shoppers`]): once after taking the chain from a
//! peer, once after restarting on it. The reference is the size of the blocks themselves in
//! their binary form. The target is the issue's: under 64 MB at 100,000 blocks, under 100 MB
//! from a million.

use protocol::Block;
use testkit::NodeProc;

use crate::chains::{Chains, FLOOR, ensure_holds, seed, stop_limit};
use crate::net::network;
use crate::report::Row;

/// Runs the scenario with a chain of `n` blocks.
pub async fn run(n: usize, chains: &mut Chains) -> anyhow::Result<Vec<Row>> {
    let chain = chains.get(n);
    let data_mb = chain
        .iter()
        .map(|b| Block::to_bytes(b).len())
        .sum::<usize>() as f64
        / 1e6;
    let dir = tempfile::tempdir()?;
    let floor = FLOOR.to_string();
    let (tracker, mut nodes) = network(dir.path(), 1, &["--difficulty-floor", &floor]).await?;
    seed(&nodes[0], &chain).await?;
    let synced = peak_mb(&nodes[0])?;
    let node = nodes.remove(0);
    let data = node.dir.clone();
    tokio::task::spawn_blocking(move || node.terminate_within(stop_limit(n))).await?;
    let node = tokio::task::spawn_blocking(move || {
        NodeProc::start_with(&tracker.addr, &data, &["--difficulty-floor", &floor])
    })
    .await?;
    ensure_holds(&node, n).await?;
    let restarted = peak_mb(&node)?;
    let target = if n >= 1_000_000 { 100.0 } else { 64.0 };
    let row = |figure: &str, value: f64| {
        Row::new(
            "8 memory",
            format!("peak RSS, {n} blocks of purchases and transfers, {figure}"),
            (value, "MB"),
            ("the blocks' binary size", data_mb),
        )
        .target(&format!("< {target} MB"), value < target)
    };
    Ok(vec![
        row("after sync", synced),
        row("after restart", restarted),
    ])
}

fn peak_mb(node: &NodeProc) -> anyhow::Result<f64> {
    let (_, peak_kib) = node
        .memory_kib()
        .ok_or_else(|| anyhow::anyhow!("cannot read /proc for the node"))?;
    Ok(peak_kib as f64 * 1024.0 / 1e6)
}
