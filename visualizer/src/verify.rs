//! Checking what a node sends before the hub sees it, on a blocking thread: first the proof of
//! work and the floor of every block in the message (one hash each), then the records and their
//! signatures, skipping records whose signatures were verified already (every node sends
//! the same blocks, so all but the first copy are nearly free). The hub thread, which every
//! browser waits on, never verifies a signature.
//!
//! A message with one invalid block is refused whole, and its node is dropped as misbehaving
//! ([`Offence`] says what it sent and why it was refused). An honest node never sends an invalid
//! block: it checked each one before taking it.

use protocol::params::MAX_REPORTED_PENDING;
use protocol::record::RecordFormatError;
use protocol::verify::{Verified, check_batch};
use protocol::wire::PendingRecord;
use protocol::{Block, BlockError, CheckedBlock, Header, Params};

/// Most characters of an offence's `why` kept and shown: a refusal can quote what the node
/// sent (an unknown monkey's id, a name), which the line limit alone bounds only at megabytes,
/// and the text goes into every node table sent to every browser.
pub const MAX_WHY_CHARS: usize = 200;

/// A node's invalid block, in words, for the network panel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Offence {
    /// What it sent: the block's short hash, height, difficulty and record count.
    pub sent: String,
    /// Why it was refused: the rule it broke.
    pub why: String,
}

impl Offence {
    /// The offence of sending the block with `header`, refused for `error`.
    pub fn new(header: &Header, error: &BlockError) -> Offence {
        let records = header.record_count;
        Offence {
            sent: format!(
                "block {} at height {} declaring {} bits of work, with {} record{}",
                header.hash().short(),
                header.height,
                header.bits,
                records,
                if records == 1 { "" } else { "s" },
            ),
            why: shorten(error.to_string()),
        }
    }
}

impl Offence {
    /// The offence of listing `record` (a record in a node's pool) that fails its own checks.
    pub fn pending(record: &protocol::Record, error: &RecordFormatError) -> Offence {
        Offence {
            sent: format!(
                "pending record {} of account {}",
                record.id().short(),
                record.account.short()
            ),
            why: shorten(error.to_string()),
        }
    }
}

/// `text` cut to [`MAX_WHY_CHARS`] characters, with an ellipsis when it was longer.
fn shorten(text: String) -> String {
    match text.char_indices().nth(MAX_WHY_CHARS) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text,
    }
}

/// Checks blocks from nodes against the network's floor, sharing one set of verified record ids
/// between every follower.
#[derive(Debug, Clone)]
pub struct Checker {
    params: Params,
    verified: Verified,
}

impl Checker {
    /// A checker for a network with `params`.
    pub fn new(params: Params) -> Checker {
        Checker {
            params,
            verified: Verified::default(),
        }
    }

    /// The network's parameters.
    pub fn params(&self) -> &Params {
        &self.params
    }

    /// How many record ids are remembered as verified.
    pub fn verified(&self) -> usize {
        self.verified.len()
    }

    /// Checks a message's blocks, oldest first, on a blocking thread: every header first (a hash
    /// each), then the records. All of them, or the offence of the first that fails.
    pub async fn check(&self, blocks: Vec<Block>) -> Result<Vec<CheckedBlock>, Offence> {
        let (params, verified) = (self.params.clone(), self.verified.clone());
        tokio::task::spawn_blocking(move || {
            // The cheap pass first, over the whole message: a flood without work is refused
            // before one record is encoded or one signature verified.
            check_headers(&blocks, &params)?;
            let headers: Vec<Header> = blocks.iter().map(|b| b.header.clone()).collect();
            match check_batch(blocks, &params, &verified) {
                (checked, None) => Ok(checked),
                (checked, Some(error)) => match headers.get(checked.len()) {
                    Some(header) => Err(Offence::new(header, &error)),
                    None => Err(Offence {
                        sent: "a block".into(),
                        why: shorten(error.to_string()),
                    }),
                },
            }
        })
        .await
        // The closure does not panic on any input; a join error means the runtime is stopping.
        .unwrap_or_else(|_| Ok(Vec::new()))
    }
}

impl Checker {
    /// Checks the records a node lists in its pool (`U pool`'s `added`), on a blocking thread:
    /// formats and signatures, skipping ids verified already; at most [`MAX_REPORTED_PENDING`]
    /// of them (a node lists no more), the rest dropped unread. A page shows a pending record
    /// only once it is known to be signed by its account: a node cannot make one up.
    pub async fn check_pending(
        &self,
        mut added: Vec<PendingRecord>,
    ) -> Result<Vec<PendingRecord>, Offence> {
        added.truncate(MAX_REPORTED_PENDING);
        let verified = self.verified.clone();
        tokio::task::spawn_blocking(move || {
            for pending in &added {
                let record = &pending.record;
                let id = record.id();
                let checked = if verified.contains(&id) {
                    record.check_format()
                } else {
                    record.check()
                };
                checked.map_err(|error| Offence::pending(record, &error))?;
                verified.insert([id]);
            }
            Ok(added)
        })
        .await
        // The closure does not panic on any input; a join error means the runtime is stopping.
        .unwrap_or_else(|_| Ok(Vec::new()))
    }
}

/// The cheap pass: the proof of work, the floor and the record count of every block, before any
/// record is looked at.
pub fn check_headers(blocks: &[Block], params: &Params) -> Result<(), Offence> {
    for block in blocks {
        block
            .check_header(params)
            .map_err(|error| Offence::new(&block.header, &error))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use protocol::{Action, Keypair, Record, genesis};

    use super::*;

    fn block(parent: &Block, bits: u32, records: Vec<Record>) -> Block {
        if bits == 0 {
            let key = Keypair::from_seed([9; 32]).account();
            let at = parent.header.timestamp + 1;
            return Block::template(&parent.header, records, key, 0, at);
        }
        testkit::mine_block(parent, records, bits, 1)
    }

    fn join(seed: u8) -> Record {
        let key = Keypair::from_seed([seed; 32]);
        Record::sign(
            &key,
            0,
            Action::Join {
                name: format!("n{seed}"),
            },
        )
    }

    #[tokio::test]
    async fn work_below_the_floor_is_refused_before_any_record_is_verified() {
        let checker = Checker::new(Params::with_floor(4));
        let good = block(&genesis(), 4, vec![join(1)]);
        let mut tampered = block(&good, 4, vec![join(2)]);
        // A signature that does not verify, behind a header without work.
        tampered.records[0].sig.0[0] ^= 1;
        tampered.header.bits = 0;
        let offence = checker
            .check(vec![good.clone(), tampered])
            .await
            .expect_err("refused");
        assert!(offence.why.contains("below the floor 4"), "{offence:?}");
        assert!(offence.sent.contains("height 2"), "{offence:?}");
        assert_eq!(checker.verified(), 0, "no signature was verified");

        let checked = checker.check(vec![good]).await.expect("a valid block");
        assert_eq!(checked.len(), 1);
        assert_eq!(
            checker.verified(),
            1,
            "its record is remembered as verified"
        );
    }

    #[tokio::test]
    async fn a_record_verified_once_is_not_verified_again() {
        let checker = Checker::new(Params::with_floor(4));
        let mut forged = join(4);
        forged.sig.0[0] ^= 1;
        let block = block(&genesis(), 4, vec![forged.clone()]);
        assert!(checker.check(vec![block.clone()]).await.is_err());
        // Had its id been verified before (by another follower), the checker takes the set's
        // word for it: that is the work the set saves. (A real entry is only ever made by a
        // signature that verified.)
        checker.verified.insert([forged.id()]);
        assert!(checker.check(vec![block]).await.is_ok());
    }

    #[test]
    fn what_a_node_sent_is_quoted_only_so_far() {
        let monkey = "m".repeat(100_000);
        let error = BlockError::BadRecord {
            index: 0,
            error: protocol::record::RecordFormatError::UnknownMonkey(monkey),
        };
        let offence = Offence::new(&genesis().header, &error);
        assert_eq!(offence.why.chars().count(), MAX_WHY_CHARS + 1);
        assert!(offence.why.ends_with('…'));
    }

    #[tokio::test]
    async fn a_bad_signature_is_named() {
        let checker = Checker::new(Params::with_floor(4));
        let mut bad = block(&genesis(), 4, vec![join(3)]);
        bad.records[0].sig.0[0] ^= 1;
        // The commitment covers record ids; re-mine so only the signature is wrong.
        let bad = block(&genesis(), 4, bad.records);
        let offence = checker.check(vec![bad]).await.expect_err("refused");
        assert!(offence.why.starts_with("record 0:"), "{offence:?}");
    }
}
