//! Integration tests of the protocol crate: the chain, the pool and the codec, through the public
//! API only.

mod chain;
mod codec;
mod fuzz;
mod names;
mod pool;
mod recent;

use protocol::{Block, Keypair, Params, Record};

/// Blocks in these tests declare few bits, so mining one takes microseconds.
pub const FLOOR: u32 = 1;

/// Test network parameters.
pub fn params() -> Params {
    Params::with_floor(FLOOR)
}

/// A deterministic key.
pub fn key(n: u8) -> Keypair {
    Keypair::from_seed([n; 32])
}

/// A solved block on `parent` one second after it.
pub fn mine_on(parent: &Block, records: Vec<Record>, bits: u32) -> Block {
    mine_on_at(parent, records, bits, parent.header.timestamp + 1000)
}

/// A solved block on `parent` at `timestamp`.
pub fn mine_on_at(parent: &Block, records: Vec<Record>, bits: u32, timestamp: u64) -> Block {
    let template = Block::template(&parent.header, records, key(99).account(), bits, timestamp);
    protocol::block::solve(template)
}

/// A chain of `n` empty blocks on `parent` at `bits`.
pub fn mine_chain(parent: &Block, n: usize, bits: u32) -> Vec<Block> {
    let mut out: Vec<Block> = Vec::with_capacity(n);
    for _ in 0..n {
        let block = mine_on(out.last().unwrap_or(parent), Vec::new(), bits);
        out.push(block);
    }
    out
}

/// A signed join.
pub fn join(k: &Keypair, name: &str) -> Record {
    Record::join(k, name)
}

/// A signed purchase.
pub fn buy(k: &Keypair, seq: u64, monkey: &str) -> Record {
    Record::purchase(k, seq, monkey)
}

/// A clock far enough ahead that no test block is "in the future".
pub const NOW: u64 = protocol::block::GENESIS_TIMESTAMP + 1_000_000_000;
