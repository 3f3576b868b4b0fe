//! Test helpers every crate's integration tests share: a tracker and nodes started as real
//! processes on loopback (port 0, temporary folders), a client that speaks the node's lines,
//! the whole chain fetched from a node, waits with a deadline, a [`Prover`] that answers the
//! tracker's address checks for simulated nodes, [`InProcess`], a daemon library's `run`
//! serving inside the test, and the plan of the bench's chain of purchases and transfers among
//! [`SHOPPERS`] shoppers ([`shopper_plan`]). With features: `Page` (`page`), a websocket client of the
//! visualizer, and `Terminal` (`terminal`), a program in a pseudo-terminal.
//!
//! The binaries are found next to the test executable and built first with the same cargo and
//! profile (`cargo build -p node --bin monkey-node`), so `cargo test -p shop` works without a
//! prior workspace build. Every process started here is killed when its handle drops, and a
//! node whose test panics prints the end of its log.

mod bin;
mod client;
mod in_process;
#[cfg(feature = "page")]
mod page;
mod proc;
mod prover;
mod shoppers;
#[cfg(feature = "terminal")]
mod terminal;

use std::collections::HashMap;
use std::future::Future;
use std::time::Duration;

use protocol::{Action, Block, BlockHash, Keypair, Record, RecordId};

pub use bin::binary;
pub use client::{Client, fetch_chain, submit_with_retry};
pub use in_process::InProcess;
#[cfg(feature = "page")]
pub use page::Page;
pub use proc::{
    Network, NodeProc, OneNode, Tracker, memory_kib, start_network, start_network_with, start_pair,
};
pub use prover::Prover;
pub use shoppers::{
    SHOPPER_MONKEY, SHOPPERS, shopper_key, shopper_miner, shopper_name, shopper_plan,
    shopper_record,
};
#[cfg(feature = "terminal")]
pub use terminal::Terminal;

/// The difficulty floor nodes in tests run at: a block takes a few hundred hashes.
pub const FLOOR: u32 = 8;
/// How long any condition may take before a test fails. Long, because CI machines are shared.
pub const DEADLINE: Duration = Duration::from_secs(30);

/// Polls `check` every 20 ms until it returns `Some`, failing the test after `limit`.
pub async fn wait_for<T, F, Fut>(what: &str, limit: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let start = tokio::time::Instant::now();
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            start.elapsed() < limit,
            "timed out after {limit:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The tip hash of a fetched chain (genesis for an empty one).
pub fn tip(chain: &[Block]) -> BlockHash {
    chain
        .last()
        .map_or(protocol::genesis().header.hash(), |b| b.header.hash())
}

/// How many times each record id appears in a chain.
pub fn record_counts(chain: &[Block]) -> HashMap<RecordId, usize> {
    let mut counts = HashMap::new();
    for block in chain {
        for r in &block.records {
            *counts.entry(r.id()).or_insert(0) += 1;
        }
    }
    counts
}

/// Waits until every node's chain holds each of `ids` exactly once and all tips agree; returns
/// that chain. Fails at once if any record appears twice.
pub async fn wait_all_agree(nodes: &[&NodeProc], ids: &[RecordId]) -> Vec<Block> {
    wait_for(
        "every node to hold every record once, on one tip",
        DEADLINE,
        || async {
            let mut chains = Vec::with_capacity(nodes.len());
            for node in nodes {
                chains.push(fetch_chain(&node.addr).await?);
            }
            agreed(chains, ids)
        },
    )
    .await
}

/// The chain that all of `chains` agree on: each holds every one of `ids` exactly once, and all
/// end on one tip. Fails the test at once if a chain holds any record twice.
pub fn agreed(chains: Vec<Vec<Block>>, ids: &[RecordId]) -> Option<Vec<Block>> {
    for chain in &chains {
        let counts = record_counts(chain);
        assert!(counts.values().all(|&n| n == 1), "a record applied twice");
        if ids.iter().any(|id| counts.get(id) != Some(&1)) {
            return None;
        }
    }
    let tips: Vec<BlockHash> = chains.iter().map(|c| tip(c)).collect();
    tips.windows(2)
        .all(|w| w[0] == w[1])
        .then(|| chains.into_iter().last())
        .flatten()
}

/// `n` empty blocks on `parent` at `bits`, each stamped `offset` ms after its parent, mined by
/// key 7.
pub fn mine_chain(parent: &Block, n: usize, bits: u32, offset: u64) -> Vec<Block> {
    let mut out: Vec<Block> = Vec::new();
    for _ in 0..n {
        let parent = out.last().unwrap_or(parent);
        out.push(mine_block(parent, Vec::new(), bits, offset));
    }
    out
}

/// One block on `parent` holding `records`, at `bits`, stamped `offset` ms after its parent,
/// mined by key 7.
pub fn mine_block(parent: &Block, records: Vec<Record>, bits: u32, offset: u64) -> Block {
    let template = Block::template(
        &parent.header,
        records,
        key(7).account(),
        bits,
        parent.header.timestamp + offset,
    );
    solve_here(template)
}

/// Solves `block` on this thread with the header's midstate: the same nonce
/// [`protocol::block::solve`] finds, without starting a thread per block, which cost more than
/// the search itself at a test's low floors (a million blocks at 8 bits took 270 s that way).
pub fn solve_here(mut block: Block) -> Block {
    let midstate = protocol::pow::Midstate::new(&block.header);
    let bits = block.header.bits;
    if let Some(nonce) =
        (0..=u64::MAX).find(|nonce| protocol::pow::state_meets(&midstate.state_for(*nonce), bits))
    {
        block.header.nonce = nonce;
    }
    block
}

/// A deterministic key.
pub fn key(n: u8) -> Keypair {
    Keypair::from_seed([n; 32])
}

/// A signed join, the account's first record.
pub fn join(k: &Keypair, name: &str) -> Record {
    Record::join(k, name)
}

/// A signed purchase.
pub fn buy(k: &Keypair, seq: u64, monkey: &str) -> Record {
    Record::purchase(k, seq, monkey)
}

/// Record `seq` of a long test chain's one shopper, `voter`: its join first, then a vote in a
/// poll of its own (`p1`, `p2`, ...), so every block carries a signed record unlike the others.
pub fn voter_record(k: &Keypair, seq: u64) -> Record {
    let action = if seq == 0 {
        Action::Join {
            name: "voter".into(),
        }
    } else {
        Action::Vote {
            poll: format!("p{seq}"),
            choice: "yes".into(),
        }
    };
    Record::sign(k, seq, action)
}
