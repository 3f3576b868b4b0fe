//! Consensus constants and the per-network parameters a node runs with.

/// The default difficulty floor in leading zero bits: about a million hashes per block.
pub const DEFAULT_DIFFICULTY_FLOOR: u32 = 20;
/// The hardest difficulty a header may declare. Far beyond reach; it keeps work sums in a `u128`.
pub const MAX_BITS: u32 = 96;
/// How far ahead of the local clock a block's timestamp may be, in milliseconds.
pub const MAX_FUTURE_MS: u64 = 2 * 60 * 1000;
/// How many ancestors the median-time rule looks at.
pub const MEDIAN_TIME_SPAN: usize = 11;
/// Most records in one block: bounds validation work and the size of a `B` line.
pub const MAX_BLOCK_RECORDS: u32 = 1000;
/// Most bytes of canonical record encodings in one block (a full block's JSON stays under 2 MiB).
pub const MAX_BLOCK_RECORDS_SIZE: u32 = 512 * 1024;
/// Coins a `Join` credits.
pub const JOIN_CREDIT: u64 = 1000;
/// Coins a block credits its miner.
pub const BLOCK_REWARD: u64 = 25;
/// Most characters in a name, poll or choice.
pub const MAX_NAME_CHARS: usize = 32;

/// The parameters a network runs with. Everything else is a constant above.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Params {
    /// The lowest difficulty a block may declare. Tests and demos lower it.
    pub difficulty_floor: u32,
}

impl Default for Params {
    fn default() -> Params {
        Params {
            difficulty_floor: DEFAULT_DIFFICULTY_FLOOR,
        }
    }
}

impl Params {
    /// Parameters with the given floor.
    pub fn with_floor(difficulty_floor: u32) -> Params {
        Params { difficulty_floor }
    }
}

/// Most hashes in a block locator: enough to find a fork point in a chain of 2^54 blocks.
pub const MAX_LOCATOR: usize = 64;
/// Most blocks in one `C` answer, as in Bitcoin's `getblocks`.
pub const MAX_BLOCKS_PER_MESSAGE: usize = 500;
/// Most orphan blocks (parent unknown) kept while their parents are fetched.
pub const MAX_ORPHANS: usize = 256;
/// Most bytes of records held by orphan blocks, so 256 full orphans cannot take 128 MiB.
pub const MAX_ORPHAN_BYTES: usize = 8 * 1024 * 1024;
/// How many hashes of blocks found invalid are remembered, so they are refused without work.
pub const MAX_REMEMBERED_INVALID: usize = 4096;
/// Most minable records the pending pool holds: a flood cannot exhaust a node's memory. When it
/// is full, a new minable record is still admitted: room is made by evicting
/// [`POOL_EVICT_PERCENT`] of the pool (see [`crate::Pool::add`] for which records go).
pub const MAX_POOL_RECORDS: usize = 20_000;
/// Most bytes of minable records the pending pool holds.
pub const MAX_POOL_BYTES: usize = 16 * 1024 * 1024;
/// How far past an account's next sequence number the pool keeps a record waiting for the gap
/// to fill (records relayed along different paths may arrive out of order).
pub const MAX_SEQ_AHEAD: u64 = 64;
/// The share of the pool, in percent, evicted at once when a minable record arrives at a full
/// pool: making room rebuilds the pool's view of the ledger, so it is done for many records at a
/// time rather than for each.
pub const POOL_EVICT_PERCENT: usize = 5;
/// Most records held *waiting* (not minable yet: a sequence number past the account's next one,
/// or an account that has not joined), over all accounts. They are kept apart from the minable
/// records, never take their room, are never relayed nor stored; so fresh keys signing records
/// 1, 2, 3... with no join (free to make, impossible to mine) fill only this small buffer, and
/// the oldest go first (those of accounts that have not joined before the others).
pub const MAX_WAITING_RECORDS: usize = 1024;
/// Most bytes of waiting records (canonical encodings).
pub const MAX_WAITING_BYTES: usize = 256 * 1024;
/// Most waiting records of one account: an honest shop's records arrive out of order by a few
/// at most.
pub const MAX_WAITING_PER_ACCOUNT: usize = 16;
/// How long a record may wait for its account's earlier records, in milliseconds: a gap that
/// relays leave closes within a second; the shop sends a record again every 5 s until it is
/// mined.
pub const MAX_WAITING_MS: u64 = 30_000;
/// Most pending records a node lists to a subscriber (`U` `pool`): the oldest ones, enough to
/// watch a class's records wait and leave, and a line of some 30 KiB at most; the counts cover
/// the rest.
pub const MAX_REPORTED_PENDING: usize = 64;
/// Most peers a node lists to a subscriber (`U` `status`): more than a node dials
/// (`--max-peers`, 8) plus those that dialed it, in a line of a few KiB.
pub const MAX_REPORTED_PEERS: usize = 64;
/// Most bytes that blocks off the best chain (side branches) may hold, counted as
/// [`side_block_cost`]: their records' canonical encodings plus [`SIDE_BLOCK_OVERHEAD`]. A block
/// may carry 512 KiB of records, so a count cap alone let a flood of big side blocks at the floor
/// take gigabytes; 16 MiB still holds 32 full blocks of a heavier branch while it arrives (far
/// more than honest forks leave behind), and in memory, with each block's relay line, well under
/// 64 MiB. Past it, as past [`MAX_SIDE_BLOCKS`], the side-branch tips with the least work go first.
pub const MAX_SIDE_BYTES: usize = 16 * 1024 * 1024;
/// What a block costs beyond its records, for [`MAX_SIDE_BYTES`]: its header, its entry in the
/// block tree and the maps that index it (measured at a few hundred bytes).
pub const SIDE_BLOCK_OVERHEAD: usize = 512;
/// The deepest reorganisation a node accepts: a branch that would disconnect more blocks than
/// this from the best chain is never switched to, so a block forking deeper below the best tip
/// is not kept at all (an attacker's old branch costs it only proof of work at the floor). Tied
/// to [`MAX_UNDO_DEPTH`], so that every reorg a node accepts is reverted with undo; a partition
/// that outlasts 1,000 blocks on both sides stays split (honest forks are a block or two deep).
pub const MAX_REORG_DEPTH: usize = MAX_UNDO_DEPTH;

/// What one side block counts for against [`MAX_SIDE_BYTES`], from its header's
/// `records_size`.
pub fn side_block_cost(records_size: u32) -> usize {
    records_size as usize + SIDE_BLOCK_OVERHEAD
}

/// Most blocks kept off the best chain (side branches, which the visualizer draws). A branch
/// with less work than the best chain costs its sender only the proof of work at the floor, so
/// without a cap a long one would grow a node's memory without end; past it, the side-branch
/// tips with the least work are dropped first. 10,000 blocks is far more than honest forks
/// leave behind, and a few megabytes.
pub const MAX_SIDE_BLOCKS: usize = 10_000;
/// How many blocks below the best tip keep the undo that reverts them. Kept for every block, undo
/// cost about a kilobyte per block (a 100,000-block chain: a hundred megabytes); a reorg deeper
/// than this, which honest forks never reach, replays the ledger from genesis instead (a second or
/// so at 100,000 blocks).
pub const MAX_UNDO_DEPTH: usize = 1_000;
/// Longest advertised address accepted, in bytes (in a tracker `R` and a node's `I`): a
/// host name and a port fit many times over, and every `T` carries every active node's.
pub const MAX_ADDR_LEN: usize = 256;
