//! Scenario 5: a fresh node joining a network whose chain is long, until it has the tip. The
//! time runs from starting the new node's process to its report to the tracker giving the tip
//! height (it reports every [`REPORT_MS`]; the bench asks the tracker every [`POLL`]). Not a
//! subscription: a subscriber is sent a `U` line for every block, and the JSON of a million
//! blocks is work the node does for a watcher, not for its sync.
//! The reference is the same blocks checked (signatures included) and inserted into a chain in
//! the bench's own process, on one thread: the work a sync cannot avoid. The chain is the
//! shoppers' purchases and transfers ([`crate::chains::Kind::Shoppers`]). Targets: under 1 s
//! at 10,000 blocks; from a million, under 60 s and faster than the reference.
//!
//! A second row, without a target, is the same work on one thread with the signatures checked
//! in batches as a node checks a sync's (one rule, [`protocol::signature`]): what one core
//! needs at best, beside the node's figure.

use std::time::{Duration, Instant};

use protocol::verify::{Verified, check_in_order};
use protocol::{Chain, Params};
use testkit::{NodeProc, Tracker};

use crate::chains::{Chains, FLOOR, seed};
use crate::net::network;
use crate::report::Row;

/// How often the fresh node reports to the tracker, in milliseconds: the figure is late by up
/// to this and [`POLL`], against the node.
const REPORT_MS: &str = "100";

/// How often the bench asks the tracker.
const POLL: Duration = Duration::from_millis(20);

/// Blocks per batch of signatures in the second reference: about what a node's check of a
/// 500-block `C` gives each chunk on 2 cores ([`protocol::verify::check_batch`]).
const BATCH: usize = 32;

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
        let mut fresh_extra = extra.to_vec();
        fresh_extra.extend(["--report-interval-ms", REPORT_MS]);
        let fresh = NodeProc::start_with(&tracker.addr, &dir.path().join("fresh"), &fresh_extra);
        let tip = n as u64;
        let limit = Duration::from_secs(60) + Duration::from_millis(n as u64);
        anyhow::ensure!(
            reported(&tracker, &fresh.addr, tip, limit).await,
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
        let batched = {
            let blocks = chain.to_vec();
            let params = Params::with_floor(FLOOR);
            let verified = Verified::default();
            let started = Instant::now();
            let mut local = Chain::new(params.clone());
            for chunk in blocks.chunks(BATCH) {
                let (checked, error) = check_in_order(chunk.to_vec(), &params, &verified);
                if let Some(error) = error {
                    anyhow::bail!("the bench's own chain failed its check: {error}");
                }
                for block in checked {
                    local.insert_checked(block, u64::MAX / 2)?;
                }
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
        rows.push(Row::new(
            "5 sync",
            format!("{n} blocks in-process, 1 thread, signatures in batches of {BATCH}"),
            (batched, "s"),
            ("the fresh node's sync", took),
        ));
    }
    Ok(rows)
}

/// Waits until the node at `addr` reports a tip at `height` or above to `tracker`, at most
/// `limit`; returns whether it did.
async fn reported(tracker: &Tracker, addr: &str, height: u64, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        let topology = tracker.topology().await;
        let node = topology
            .iter()
            .flat_map(|t| &t.nodes)
            .find(|n| n.addr == addr);
        if node.is_some_and(|n| n.tip_height >= height) {
            return true;
        }
        tokio::time::sleep(POLL).await;
    }
    false
}
