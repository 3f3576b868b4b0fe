//! Scenario 9: the shop on a long chain, as a user runs it: the `monkey-shop` binary, start to
//! exit, against 3 nodes at a 12-bit floor holding a chain of `n` empty 12-bit blocks (from the
//! bench's disk cache of chains: a million blocks at 12 bits take minutes to mine, once). `show` and `buy`
//! (to mined: on the best chain and held by a second node) with a warm wallet, whose chain
//! cache (`chain.cache`) lets the shop ask only for what is new, each beside the same command
//! with a cold wallet (the cache deleted first: the whole chain read and checked, as every
//! command did before the cache) measured in the same run. Medians of several runs (one cold
//! run of each above [`LONG_CHAIN`] blocks, where a cold command reads the whole chain).

use std::path::Path;
use std::time::Instant;

use crate::chains::{Chains, Kind, seed};
use crate::net::{PATIENCE, network_at};
use crate::report::Row;
use crate::watch::Watch;

/// The floor: the original project's three hex zeros, as in the purchase scenario. At every
/// length: the node refuses a block below its floor, so a cheaper 8-bit prefix under a 12-bit
/// tip would not be taken at 12, and a lower floor for long chains would make their `buy` row
/// incomparable with the 100,000-block one. The cost is mining: a million blocks at 12 bits
/// are 4 × 10⁹ hashes on one core (each block hashes its parent, so no second core helps),
/// about five minutes here, once per machine thanks to the disk cache.
const FLOOR: u32 = 12;
/// Chains longer than this get [`LONG_COLD_RUNS`] of each cold command.
const LONG_CHAIN: usize = 100_000;
/// Nodes in the network: a purchase is mined once a second node holds its block.
const NODES: usize = 3;
/// Runs of each warm command (a shopper's 1000 coins buy 19 marmosets; one is the cold buy).
const WARM_RUNS: usize = 9;
/// Runs of each cold command: each reads and checks the whole chain.
const COLD_RUNS: usize = 3;
/// Runs of each cold command above [`LONG_CHAIN`] blocks: a cold command on a million blocks
/// takes tens of seconds.
const LONG_COLD_RUNS: usize = 1;

/// Runs the scenario with a chain of `n` blocks.
pub async fn run(n: usize, chains: &mut Chains) -> anyhow::Result<Vec<Row>> {
    let cold_runs = if n > LONG_CHAIN {
        LONG_COLD_RUNS
    } else {
        COLD_RUNS
    };
    let chain = chains.kind(Kind::Empty, FLOOR, n);
    let dir = tempfile::tempdir()?;
    let (tracker, nodes) = network_at(dir.path(), NODES, FLOOR).await?;
    // Every node is handed the chain: a node does not relay blocks it took in a sync batch,
    // so nodes linked to the first before it took the chain would wait for the next block.
    futures::future::try_join_all(nodes.iter().map(|node| seed(node, &chain))).await?;
    let addrs: Vec<String> = nodes.iter().map(|n| n.addr.clone()).collect();
    let watch = Watch::start(&addrs).await?;
    let all = n as u64;
    anyhow::ensure!(
        watch
            .until(PATIENCE + std::time::Duration::from_millis(n as u64), |s| s
                .heights
                .iter()
                .all(|h| *h >= all))
            .await,
        "the nodes did not all sync the chain of {n} blocks: at heights {:?}",
        watch.with(|s| s.heights.clone())
    );
    drop(chain);

    let shop = testkit::binary("monkey-shop");
    let wallet = dir.path().join("wallet");
    let cache = wallet.join("chain.cache");
    let floor = FLOOR.to_string();
    let shop_run = |args: &[&str]| -> anyhow::Result<f64> {
        let started = Instant::now();
        let out = std::process::Command::new(&shop)
            .args([
                "--tracker",
                &tracker.addr,
                "--floor",
                &floor,
                "--wallet-dir",
            ])
            .arg(&wallet)
            .args(args)
            .env_remove("RUST_LOG")
            .output()?;
        let took = started.elapsed().as_secs_f64() * 1e3;
        anyhow::ensure!(
            out.status.success(),
            "monkey-shop {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(took)
    };
    let cold = |args: &[&str]| -> anyhow::Result<f64> {
        remove(&cache)?;
        shop_run(args)
    };

    let join = cold(&["join", "bencher"])?;
    println!("  cold join: {join:.0} ms");
    let mut cold_show = Vec::new();
    let mut warm_show = Vec::new();
    for _ in 0..cold_runs {
        cold_show.push(cold(&["show", "bencher"])?);
    }
    for _ in 0..WARM_RUNS {
        warm_show.push(shop_run(&["show", "bencher"])?);
    }
    let mut cold_buy = Vec::new();
    let mut warm_buy = Vec::new();
    for _ in 0..cold_runs {
        cold_buy.push(cold(&["buy", "bencher", "marmoset"])?);
        // The first command after a cold one is warm again.
    }
    shop_run(&["show", "bencher"])?;
    for _ in 0..WARM_RUNS {
        warm_buy.push(shop_run(&["buy", "bencher", "marmoset"])?);
    }
    for (what, samples) in [
        ("cold show", &cold_show),
        ("warm show", &warm_show),
        ("cold buy", &cold_buy),
        ("warm buy", &warm_buy),
    ] {
        let list: Vec<String> = samples.iter().map(|s| format!("{s:.0}")).collect();
        println!("  {what}: {} ms", list.join(", "));
    }
    let rows = vec![
        warm_against_cold(
            format!("`show` with a warm wallet, {n} blocks (median of {WARM_RUNS})"),
            &warm_show,
            &cold_show,
            cold_runs,
        ),
        warm_against_cold(
            format!(
                "`buy` to mined with a warm wallet, {n} blocks, {FLOOR}-bit floor (median of {WARM_RUNS})"
            ),
            &warm_buy,
            &cold_buy,
            cold_runs,
        ),
    ];
    drop(nodes);
    Ok(rows)
}

/// The row of a command timed with a warm wallet (`warm`, its target under 100 ms), beside
/// the same command with a cold one (`cold`).
fn warm_against_cold(figure: String, warm: &[f64], cold: &[f64], cold_runs: usize) -> Row {
    let value = median(warm);
    let reference = format!("cold wallet (median of {cold_runs})");
    Row::new("9 shop", figure, (value, "ms"), (&reference, median(cold)))
        .target("< 100 ms", value < 100.0)
}

/// Deletes `path` if it is there.
fn remove(path: &Path) -> anyhow::Result<()> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// The median of `samples`.
fn median(samples: &[f64]) -> f64 {
    crate::report::percentile(samples, 50.0)
}
