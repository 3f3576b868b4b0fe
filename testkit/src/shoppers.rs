//! The plan of a long chain of purchases and transfers among a fixed set of shoppers, the bench's
//! chain for a node's memory, restart and sync at a million blocks: which record block `h`
//! carries and who mines it, as a pure function of `h`, so a chain of `n` blocks is a prefix of
//! every longer one and records can be signed on every core in any order.
//!
//! Blocks 1 to [`SHOPPERS`] each carry one shopper's join. After them the chain runs in rounds
//! of `2 * SHOPPERS` blocks: in each round every shopper buys one marmoset (the cheapest monkey,
//! 50 coins) and sends a few coins to the next shopper, who sends as many on, and every shopper
//! mines two blocks (2 × the 25-coin reward = the marmoset). So every balance stays within a
//! hundred coins of its start for ever, the ledger holds [`SHOPPERS`] accounts whose cages have
//! one entry each, and no poll: the state stays the same size however long the chain grows.

use protocol::{AccountId, Action, Keypair, Record};

/// Shoppers in the chain.
pub const SHOPPERS: u64 = 1000;
/// The monkey every purchase buys: the cheapest, whose price the two block rewards a shopper
/// earns per round pay exactly.
pub const SHOPPER_MONKEY: &str = "marmoset";
/// Blocks per round after the joins: each shopper's purchase and transfer.
const ROUND: u64 = 2 * SHOPPERS;
/// The largest transfer: a shopper may send before it receives in a round, so its balance
/// dips by at most this much.
const MAX_TRANSFER: u64 = 40;

/// Shopper `i`'s key (deterministic, so a chain is the same on every machine).
pub fn shopper_key(i: u64) -> Keypair {
    let mut seed = [0x5b; 32];
    seed[..8].copy_from_slice(&i.to_le_bytes());
    Keypair::from_seed(seed)
}

/// Shopper `i`'s name.
pub fn shopper_name(i: u64) -> String {
    format!("shopper{i}")
}

/// What block `height` (from 1) carries: the shopper who signs it, its sequence number and
/// the action, unsigned so that a test can replay the plan without paying for signatures.
pub fn shopper_plan(height: u64, to: impl Fn(u64) -> AccountId) -> (u64, u64, Action) {
    let h = height.max(1);
    if h <= SHOPPERS {
        let who = h - 1;
        let name = shopper_name(who);
        return (who, 0, Action::Join { name });
    }
    let k = h - SHOPPERS - 1;
    let (round, within) = (k / ROUND, k % ROUND);
    let who = within / 2;
    // Seq 0 was the join; each round takes two.
    let seq = 1 + 2 * round + within % 2;
    let action = if within % 2 == 0 {
        Action::Purchase {
            monkey: SHOPPER_MONKEY.into(),
        }
    } else {
        Action::Transfer {
            to: to((who + 1) % SHOPPERS),
            // The same amount for every shopper within a round, so each gets back what it sent.
            amount: 1 + round % MAX_TRANSFER,
        }
    };
    (who, seq, action)
}

/// The shopper who mines block `height`: the joining shopper for the joins, then each shopper
/// twice a round, which pays for its marmoset.
pub fn shopper_miner(height: u64) -> u64 {
    if height <= SHOPPERS {
        height.saturating_sub(1)
    } else {
        (height - SHOPPERS - 1) / 2 % SHOPPERS
    }
}

/// Block `height`'s record, signed; `keys[i]` is [`shopper_key`]`(i)`.
pub fn shopper_record(keys: &[Keypair], height: u64) -> Record {
    let account = |i: u64| keys[i as usize % keys.len()].account();
    let (who, seq, action) = shopper_plan(height, account);
    Record::sign(&keys[who as usize % keys.len()], seq, action)
}

#[cfg(test)]
mod tests {
    use protocol::{Block, Ledger, Signature, genesis};

    use super::*;

    /// The plan replayed through the ledger's rules over the joins and five rounds (the plan
    /// repeats every round, the amounts every 40): every record applies and every balance stays
    /// within 100 coins of its start. Signatures are not the ledger's business, so they are
    /// left blank here.
    #[test]
    fn the_plan_stays_valid_and_its_balances_bounded() {
        let accounts: Vec<AccountId> = (0..SHOPPERS).map(|i| shopper_key(i).account()).collect();
        let mut ledger = Ledger::new();
        let mut parent = genesis();
        let blocks = SHOPPERS + 5 * ROUND;
        for height in 1..=blocks {
            let (who, seq, action) = shopper_plan(height, |i| accounts[i as usize]);
            let record = Record {
                account: accounts[who as usize],
                seq,
                action,
                sig: Signature([0; 64]),
            };
            let miner = accounts[shopper_miner(height) as usize];
            let block = Block::template(&parent.header, vec![record], miner, 0, height);
            ledger
                .apply_block(&block)
                .unwrap_or_else(|e| panic!("block {height}: {e:?}"));
            parent = block;
        }
        for id in &accounts {
            let balance = ledger.balance(id);
            assert!((925..=1125).contains(&balance), "balance {balance}");
        }
        assert_eq!(ledger.accounts().count() as u64, SHOPPERS);
    }
}
