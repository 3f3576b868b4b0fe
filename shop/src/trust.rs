//! What the shop believes, decided without I/O: which chain is best, whether a block a node
//! announced is a lie, and whether a record counts as mined.
//!
//! A node is anyone with a key, so nothing it says is taken on its word. A chain counts only
//! once every block of it passed the checks a node makes ([`crate::chain`]); of the chains read,
//! the one with the most work is believed, never the highest (a height costs nothing to claim,
//! work does). A record is mined when the best chain holds it and, with more than one node
//! about, a node other than the one that took it holds that block too: one node alone could be
//! showing a branch nobody else will build on.

use protocol::{Block, BlockHash, Params, RecordId};

use crate::chain::ChainState;
use crate::network::Status;

/// The chain with the most work among `chains`; on a tie, the first (the node asked first).
pub fn best(chains: &[ChainState]) -> Option<&ChainState> {
    chains
        .iter()
        .reduce(|best, next| if next.work > best.work { next } else { best })
}

/// What is wrong with `block`, which a node announced as holding record `id`, given that node's
/// own chain as read afterwards (`None` if it could not be read): `None` when nothing is.
pub fn announced_lie(
    block: &Block,
    id: &RecordId,
    params: &Params,
    own_chain: Option<&ChainState>,
) -> Option<String> {
    let (height, hash) = (block.header.height, block.header.hash());
    if !block.records.iter().any(|r| r.id() == *id) {
        return Some(format!(
            "it announced block {} at height {height} for the record, which does not hold it",
            hash.short()
        ));
    }
    if let Err(e) = block.clone().check(params) {
        return Some(format!(
            "it announced block {} at height {height} holding the record, which is invalid: {e}",
            hash.short()
        ));
    }
    // An honest node may have moved to a rival block holding the same record (two nodes mined
    // it at once), or to a heavier branch; it cannot have a chain lower than the block it just
    // announced that lacks the record altogether.
    match own_chain {
        Some(chain)
            if !holds(chain, id, &hash)
                && chain.block_of(id).is_none()
                && chain.height < height =>
        {
            Some(format!(
                "it announced block {} at height {height} holding the record, but its own chain \
                 (height {}) does not hold it",
                hash.short(),
                chain.height
            ))
        }
        _ => None,
    }
}

/// Whether `chain` holds record `id` in block `hash`.
pub fn holds(chain: &ChainState, id: &RecordId, hash: &BlockHash) -> bool {
    chain.block_of(id).is_some_and(|b| b.hash == *hash)
}

/// Where record `id`, taken by node `taker`, stands given the checked `chains` read from the
/// nodes (the taker's among them, if it could be read) and the number of active nodes: the
/// taker and the others that answered with a chain that passed. The block that counts is the
/// best chain's, which may be a rival of the one announced.
pub fn confirm(chains: &[ChainState], taker: &str, id: &RecordId, active: usize) -> Status {
    let Some(best) = best(chains) else {
        return Status::Pending;
    };
    let Some(at) = best.block_of(id) else {
        // On a branch with less work, or nowhere: not mined yet, whatever was announced.
        return Status::Pending;
    };
    let elsewhere = chains
        .iter()
        .any(|c| c.source != taker && holds(c, id, &at.hash));
    if elsewhere || active <= 1 {
        Status::Mined
    } else {
        Status::OneNode
    }
}

#[cfg(test)]
mod tests {
    use protocol::{AccountId, Action, Keypair, Record, genesis};

    use super::*;

    const NOW: u64 = protocol::block::GENESIS_TIMESTAMP + 1_000_000_000;

    /// A block of `bits` on `parent` holding `records`, solved.
    fn block_on(parent: &Block, records: Vec<Record>, bits: u32) -> Block {
        let stamp = parent.header.timestamp + 1;
        let mut b = Block::template(&parent.header, records, AccountId::default(), bits, stamp);
        while b.header.hash().leading_zero_bits() < bits {
            b.header.nonce += 1;
        }
        b
    }

    fn state(source: &str, blocks: &[Block]) -> ChainState {
        ChainState::from_blocks(source.into(), blocks.to_vec(), &Params::with_floor(0), NOW)
            .unwrap()
    }

    #[test]
    fn a_record_is_mined_on_the_best_chain_held_by_a_second_node() {
        let key = Keypair::from_seed([1; 32]);
        let join = Record::sign(&key, 0, Action::Join { name: "ann".into() });
        let id = join.id();
        let mined = block_on(&genesis(), vec![join], 2);
        let taker = state("a", std::slice::from_ref(&mined));
        let other = state("b", std::slice::from_ref(&mined));
        let behind = state("b", &[]);
        // A heavier branch without the record: not mined, whoever announced it.
        let heavier = state("c", &[block_on(&genesis(), Vec::new(), 6)]);

        let chains = [taker.clone(), other];
        assert_eq!(confirm(&chains, "a", &id, 2), Status::Mined);
        let alone = [taker.clone(), behind];
        assert_eq!(confirm(&alone, "a", &id, 2), Status::OneNode);
        assert_eq!(confirm(&alone[..1], "a", &id, 1), Status::Mined);
        let outweighed = [taker, heavier.clone()];
        assert_eq!(confirm(&outweighed, "a", &id, 2), Status::Pending);
        assert_eq!(best(&outweighed).map(|c| c.source.as_str()), Some("c"));
    }

    #[test]
    fn announced_blocks_are_checked_against_the_floor_and_the_announcers_chain() {
        let key = Keypair::from_seed([2; 32]);
        let join = Record::sign(&key, 0, Action::Join { name: "bo".into() });
        let id = join.id();
        let params = Params::with_floor(3);
        let zero_work = block_on(&genesis(), vec![join.clone()], 0);
        let lie = announced_lie(&zero_work, &id, &params, None).unwrap();
        assert!(lie.contains("below the floor 3"), "{lie}");

        let good = block_on(&genesis(), vec![join], 3);
        assert_eq!(announced_lie(&good, &id, &params, None), None);
        let own = state("a", std::slice::from_ref(&good));
        assert_eq!(announced_lie(&good, &id, &params, Some(&own)), None);
        // Two nodes mined the record at once and the announcer moved to the rival: no lie.
        let rival = block_on(&genesis(), good.records.clone(), 4);
        let moved = state("a", &[rival]);
        assert_eq!(announced_lie(&good, &id, &params, Some(&moved)), None);
        let contradicting = state("a", &[]);
        let lie = announced_lie(&good, &id, &params, Some(&contradicting)).unwrap();
        assert!(lie.contains("its own chain"), "{lie}");
    }
}
