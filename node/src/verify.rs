//! Checking blocks from the network (proof of work, commitment, every record's signature) off
//! the chain thread and the async workers, spread over the cores. Only then do they go to the
//! chain actor, which attaches them to the tree: the expensive part of a sync of thousands of
//! blocks runs in parallel, and a peer's junk costs a blocking thread, never the chain thread.

use protocol::record::RecordFormatError;
use protocol::verify::{Recent, check_batch, in_parallel};
use protocol::{Block, BlockError, CheckedBlock, Params, Record};

/// The record ids this node verified, shared by its connections and its chain thread (the set
/// and its bound live in `protocol`, which the visualizer shares).
pub use protocol::verify::Verified;

/// Most block hashes remembered as already in the tree, for [`SeenBlocks`].
pub const MAX_SEEN_BLOCKS: usize = 4096;

/// Hashes of blocks that entered the tree lately. Relay floods every block to every peer, so a
/// node gets each one from most of its links; the copies after the first are recognised here,
/// by the connection itself, without a round trip to the chain thread (which is busy with the
/// first copy). A hash forgotten only costs that round trip again.
pub type SeenBlocks = Recent<MAX_SEEN_BLOCKS>;

/// Verifies a record's signature on the calling connection's task, unless `verified` holds its
/// id already, so that the chain thread only applies records whose signatures are checked: a
/// flood of records costs the flooding connection's task, and an honest record queued behind
/// it waits for the pool's bookkeeping only (a few microseconds each), not for a signature
/// check of every flooded record (about 50 us each, on one thread). The pool adds the ids of
/// the records it admits to `verified`; refused ones are not remembered, so they cannot push
/// useful ids out.
pub fn check_record(record: &Record, verified: &Verified) -> Result<(), RecordFormatError> {
    if verified.contains(&record.id()) {
        return record.check_format();
    }
    record.check()
}

/// A batch of one block with at most this many records is checked on the connection's own task
/// (at worst two signature checks, a tenth of a millisecond): a relayed block is often that, and
/// handing it to another thread and back cost more than the check, on every hop.
pub const INLINE_MAX_RECORDS: usize = 2;

/// Checks `blocks` in order; returns the checked prefix, and the first failure if there is one
/// (the blocks after it are not looked at).
/// Signatures of records in `verified` are not verified again, and the records of the blocks
/// that pass are added to it.
pub async fn check_blocks(
    blocks: Vec<Block>,
    params: Params,
    verified: Verified,
) -> (Vec<CheckedBlock>, Option<BlockError>) {
    if let [block] = blocks.as_slice()
        && block.records.len() <= INLINE_MAX_RECORDS
    {
        return check_batch(blocks, &params, &verified);
    }
    let checked =
        tokio::task::spawn_blocking(move || check_batch(blocks, &params, &verified)).await;
    // The closure does not panic on any input; a join error means the runtime is stopping.
    checked.unwrap_or_else(|_| (Vec::new(), None))
}

/// Checks blocks read back from this node's own store ([`Block::check_own`]: all but the
/// signatures) on every core; yields each in order, `None` for one that did not pass. An
/// iterator, not a second vector: the caller moves each block into the chain as it comes, so
/// a long chain is not held twice at start.
pub fn check_own(
    blocks: Vec<Block>,
    params: &Params,
) -> impl Iterator<Item = Option<CheckedBlock>> + use<> {
    in_parallel(blocks, |chunk| {
        chunk
            .into_iter()
            .map(|block| block.check_own(params).ok())
            .collect::<Vec<_>>()
    })
    .into_iter()
    .flatten()
    .flatten()
}

#[cfg(test)]
mod tests {
    use protocol::Keypair;

    use super::*;

    #[test]
    fn a_record_is_verified_unless_its_id_was_and_a_forgery_is_refused() {
        let key = Keypair::from_seed([2; 32]);
        let record = Record::sign(&key, 0, protocol::Action::Join { name: "al".into() });
        let verified = Verified::default();
        assert_eq!(check_record(&record, &verified), Ok(()));
        let mut forged = record.clone();
        forged.seq = 1;
        assert_eq!(
            check_record(&forged, &verified),
            Err(RecordFormatError::BadSignature)
        );
        // A remembered id is the same signed bytes: only the formats are checked again.
        verified.insert([record.id()]);
        assert_eq!(check_record(&record, &verified), Ok(()));
    }
}
