//! Deep locators: many connections asking, over and over, for the blocks after genesis. A node
//! keeps only its recent blocks in memory, so each answer is read from its store; the reads
//! must never hold up the thread that admits and mines honest records.

use std::time::Instant;

use protocol::wire::{GetBlocks, Message};

use crate::conn::{RawConn, outcome_of};
use crate::{Outcome, Target};

/// Connections the `D`s are spread over, each waiting for its answer before the next `D` (as
/// many as a node lets one address hold would only get the oldest evicted).
const CONNECTIONS: usize = 8;

/// `target.count` `D`s whose locator names only genesis, over [`CONNECTIONS`] connections.
pub async fn deep_locators(target: &Target) -> anyhow::Result<Outcome> {
    let started = Instant::now();
    let each = target.count.div_ceil(CONNECTIONS);
    let mut askers = Vec::new();
    for _ in 0..CONNECTIONS {
        let target = target.clone();
        askers.push(tokio::spawn(async move { ask_deep(&target, each).await }));
    }
    let (mut sent, mut blocks) = (0, 0);
    for asker in askers {
        let (asked, got) = asker.await??;
        sent += asked;
        blocks += got;
    }
    let mut outcome = outcome_of(sent, RawConn::open(target).await?.probe().await);
    outcome.note = format!(
        "{sent} deep D answered with {blocks} blocks over {CONNECTIONS} connections in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    Ok(outcome)
}

/// `count` deep `D`s on one connection, each answer read before the next; returns how many were
/// answered and the blocks they held.
async fn ask_deep(target: &Target, count: usize) -> anyhow::Result<(usize, usize)> {
    let genesis = protocol::genesis().header.hash();
    let mut conn = RawConn::open(target).await?;
    let (mut answered, mut blocks) = (0, 0);
    for _ in 0..count {
        let d = Message::GetBlocks(GetBlocks::json_after(vec![genesis]));
        if !conn.send(&d).await {
            break;
        }
        // Relays and the node's own `D` may come first: bounded by the timeout per message
        // and a count.
        let mut got = None;
        for _ in 0..1_000 {
            match conn.next().await {
                Some(Message::Blocks(c)) => {
                    got = Some(c.blocks.len());
                    break;
                }
                Some(_) => {}
                None => break,
            }
        }
        let Some(got) = got else { break };
        answered += 1;
        blocks += got;
    }
    Ok((answered, blocks))
}
