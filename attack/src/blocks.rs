//! Blocks with one fault each, and a long branch of valid but easier blocks.

use protocol::block::records_root;
use protocol::block::solve;
use protocol::params::MAX_FUTURE_MS;
use protocol::wire::{Blocks, Message};
use protocol::{Action, Block, BlockHash, Keypair, Record, genesis};

use crate::conn::{RawConn, line_of, outcome_of, send_and_probe, tip_of};
use crate::{Attack, Outcome, Target};
use protocol::clock::now_ms;

/// Re-commits to the block's records after they were changed.
fn recommit(block: &mut Block) {
    block.header.records_root = records_root(&block.records);
    block.header.record_count = block.records.len() as u32;
    block.header.records_size = block.records.iter().map(|r| r.encode().len() as u32).sum();
}

/// A block on `parent` with `records` at `bits`, not yet solved.
fn on(parent: &Block, records: Vec<Record>, bits: u32, key: &Keypair) -> Block {
    let timestamp = now_ms().max(parent.header.timestamp + 1);
    Block::template(&parent.header, records, key.account(), bits, timestamp)
}

/// How many times a faulty block is rebuilt when the node's tip moved under it.
const MAX_ATTEMPTS: usize = 3;

/// Sends one block with the fault `attack` names, built on the node's tip.
///
/// A block whose fault only shows against the ledger (an overspend, a replay) is only checked
/// when it would become the best chain. If the node's tip moved between reading the chain and
/// sending the block (another node's block, or the block that ends a tie), the block lands on a
/// side branch unchecked and unanswered; the attack then reads the new tip and tries again.
pub async fn faulty(attack: Attack, target: &Target) -> anyhow::Result<Outcome> {
    let mut outcome = Outcome::default();
    for _ in 0..MAX_ATTEMPTS {
        let chain = RawConn::open(target).await?.chain().await?;
        let tip = tip_of(&chain).header.hash();
        let sent;
        (outcome, sent) = faulty_on(attack, target, &chain).await?;
        if !outcome.errors.is_empty() || outcome.closed {
            break;
        }
        // No answer: unless the tip moved on to another block, that is the node's answer.
        let after = tip_of(&RawConn::open(target).await?.chain().await?)
            .header
            .hash();
        if after == tip || after == sent {
            break;
        }
    }
    Ok(outcome)
}

/// One attempt of [`faulty`] against `chain`, the node's best chain as just read.
/// Returns what the node did and the hash of the block sent.
async fn faulty_on(
    attack: Attack,
    target: &Target,
    chain: &[Block],
) -> anyhow::Result<(Outcome, BlockHash)> {
    let tip = tip_of(chain);
    let key = Keypair::from_seed(rand::random());
    let floor = target.floor;
    let block = match attack {
        Attack::BadHash => {
            // The `hash` field is there for people; one that lies is refused as it is parsed.
            let block = solve(on(tip, Vec::new(), floor, &key));
            let line = String::from_utf8(line_of(&Message::Block(block.clone())))?;
            let lie = line.replacen(&block.header.hash().to_string(), &"0".repeat(64), 1);
            let mut conn = RawConn::open(target).await?;
            let sent = usize::from(conn.write_raw(lie.as_bytes()).await);
            return Ok((outcome_of(sent, conn.probe().await), block.header.hash()));
        }
        Attack::MissedDifficulty => {
            // Declares `floor` bits; the nonce gives fewer.
            let mut block = on(tip, Vec::new(), floor.max(1), &key);
            while block.header.hash().leading_zero_bits() >= block.header.bits {
                block.header.nonce += 1;
            }
            block
        }
        Attack::BelowFloor => solve(on(tip, Vec::new(), floor.saturating_sub(1), &key)),
        Attack::WrongPrev => {
            // A known parent, but the height of a block one further on.
            let parent = &chain[chain.len().saturating_sub(2)];
            let mut block = on(parent, Vec::new(), floor, &key);
            block.header.height += 1;
            solve(block)
        }
        Attack::FutureTimestamp => {
            let mut block = on(tip, Vec::new(), floor, &key);
            block.header.timestamp = now_ms() + MAX_FUTURE_MS + 8 * 60 * 1000;
            solve(block)
        }
        Attack::BadSignature => {
            let mut record = Record::sign(
                &key,
                0,
                Action::Join {
                    name: "forger".into(),
                },
            );
            record.sig.0[0] ^= 0x55;
            let mut block = on(tip, vec![record], floor, &key);
            recommit(&mut block);
            solve(block)
        }
        Attack::ReplayedSignature => {
            // A record the chain already holds, signed by its owner: valid, but used up.
            let replayed = chain.iter().rev().flat_map(|b| b.records.iter()).next();
            let records = match replayed {
                Some(record) => vec![record.clone()],
                None => {
                    let join = Record::sign(
                        &key,
                        0,
                        Action::Join {
                            name: format!("replayer{}", rand::random::<u16>()),
                        },
                    );
                    vec![join.clone(), join]
                }
            };
            solve(on(tip, records, floor, &key))
        }
        Attack::Overspend => {
            let name = format!("spender{}", rand::random::<u32>());
            let buy = |seq| {
                Record::sign(
                    &key,
                    seq,
                    Action::Purchase {
                        monkey: "snub-nosed".into(),
                    },
                )
            };
            // 1000 coins, 1800 spent.
            let records = vec![Record::sign(&key, 0, Action::Join { name }), buy(1), buy(2)];
            solve(on(tip, records, floor, &key))
        }
        other => anyhow::bail!("{} is not a faulty-block attack", other.name()),
    };
    let hash = block.header.hash();
    Ok((
        send_and_probe(target, &[Message::Block(block)]).await?,
        hash,
    ))
}

/// `target.count` valid blocks at the floor, branching off at genesis, sent as sync segments.
/// With less work than the node's best chain, they must not move its tip.
pub async fn easier_chain(target: &Target) -> anyhow::Result<Outcome> {
    let key = Keypair::from_seed(rand::random());
    let mut blocks: Vec<Block> = Vec::with_capacity(target.count);
    let mut parent = genesis();
    for _ in 0..target.count {
        let mut block = on(&parent, Vec::new(), target.floor, &key);
        // Evenly spaced a second apart from genesis: old, but never before the median.
        block.header.timestamp = parent.header.timestamp + 1000;
        let block = solve(block);
        parent = block.clone();
        blocks.push(block);
    }
    let messages: Vec<Message> = blocks
        .chunks(protocol::params::MAX_BLOCKS_PER_MESSAGE)
        .map(|segment| {
            Message::Blocks(Blocks {
                blocks: segment.to_vec(),
                more: false,
                packed: false,
            })
        })
        .collect();
    let mut outcome = send_and_probe(target, &messages).await?;
    outcome.sent = blocks.len();
    Ok(outcome)
}
