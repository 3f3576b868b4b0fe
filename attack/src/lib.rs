//! `monkey-attack`: connects to a node and misbehaves on purpose. Each [`Attack`] sends one kind
//! of junk or abuse, then *probes*: it asks for the chain on the same connection and reports
//! what the node answered, whether it closed the connection, and whether a new connection from
//! the same address is refused (a ban). Tests use the library; people use the binary.
//!
//! The attacker binds its own loopback address (127.0.0.2 by default) so that a ban it earns
//! does not cut the node off from honest peers and shops on 127.0.0.1.

mod blocks;
mod conn;
mod deep;
mod floods;
pub mod liar;
mod lines;
pub mod links;
mod side;
mod slots;
mod waiting;

use std::net::IpAddr;
use std::time::Duration;

pub use conn::{Probe, RawConn};

/// Where to attack from and what the network looks like.
#[derive(Debug, Clone)]
pub struct Target {
    /// The node's address, `host:port`.
    pub node: String,
    /// The local address to connect from.
    pub from: IpAddr,
    /// The network's difficulty floor, for blocks that must pass proof of work.
    pub floor: u32,
    /// How many of a flood (blocks, connections, messages, made-up ids).
    pub count: usize,
    /// The tracker's address, `host:port`, for the attacks on links and registrations.
    pub tracker: Option<String>,
}

/// Every attack the tool knows, by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attack {
    /// Random bytes, then a newline.
    Garbage,
    /// A line that never ends, past the protocol's line limit.
    EndlessLine,
    /// Many connections from one address, each holding nearly a whole line of the largest size.
    UnfinishedLines,
    /// A line with an opcode no one knows.
    UnknownOpcode,
    /// An `A` whose payload is not JSON.
    BadJson,
    /// An `A` whose payload is JSON of the wrong shape.
    WrongShape,
    /// A `B` whose `hash` field is not its header's hash.
    BadHash,
    /// A block that declares more leading zero bits than its hash has.
    MissedDifficulty,
    /// A solved block below the network's difficulty floor.
    BelowFloor,
    /// A block that claims a known parent at the wrong height.
    WrongPrev,
    /// A block 10 minutes in the future.
    FutureTimestamp,
    /// A block holding a record whose signature is broken.
    BadSignature,
    /// A block replaying a record already in the chain.
    ReplayedSignature,
    /// A block whose records spend more coins than the account has.
    Overspend,
    /// A long branch of valid blocks at the floor from genesis: less work than the best chain.
    EasierChain,
    /// Valid blocks whose parents nobody has.
    OrphanFlood,
    /// Many connections that say nothing.
    IdleConnections,
    /// The same valid block and record, over and over, fast.
    DuplicateFlood,
    /// A `D` with far more hashes than a locator may have.
    HugeLocator,
    /// A `D` whose hashes name no block.
    NonsenseLocator,
    /// Every connection slot held by silent subscribers from four addresses.
    HoldSlots,
    /// Records that can never be mined: fresh keys signing sequence numbers 1, 2, 3... and
    /// never a join.
    UnminableFlood,
    /// Many siblings of the lowest blocks, at the floor, each carrying 1,000 signed records.
    BigSideBlocks,
    /// Connections that claim other nodes' ids, with a bare `I` or a forged proof.
    Impostor,
    /// Made-up node ids registered with the tracker, advertising ports where nothing listens.
    FakeRegistrations,
    /// `D`s naming only genesis, over and over on several connections: every answer is read
    /// from the store, below the blocks a node keeps in memory.
    DeepLocators,
}

impl Attack {
    /// Every attack, in the order `all` runs them.
    pub const ALL: [Attack; 26] = [
        Attack::Garbage,
        Attack::EndlessLine,
        Attack::UnfinishedLines,
        Attack::UnknownOpcode,
        Attack::BadJson,
        Attack::WrongShape,
        Attack::BadHash,
        Attack::MissedDifficulty,
        Attack::BelowFloor,
        Attack::WrongPrev,
        Attack::FutureTimestamp,
        Attack::BadSignature,
        Attack::ReplayedSignature,
        Attack::Overspend,
        Attack::EasierChain,
        Attack::OrphanFlood,
        Attack::IdleConnections,
        Attack::DuplicateFlood,
        Attack::HugeLocator,
        Attack::NonsenseLocator,
        Attack::HoldSlots,
        Attack::UnminableFlood,
        Attack::BigSideBlocks,
        Attack::Impostor,
        Attack::FakeRegistrations,
        Attack::DeepLocators,
    ];

    /// The attack's name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Attack::Garbage => "garbage",
            Attack::EndlessLine => "endless-line",
            Attack::UnfinishedLines => "unfinished-lines",
            Attack::UnknownOpcode => "unknown-opcode",
            Attack::BadJson => "bad-json",
            Attack::WrongShape => "wrong-shape",
            Attack::BadHash => "bad-hash",
            Attack::MissedDifficulty => "missed-difficulty",
            Attack::BelowFloor => "below-floor",
            Attack::WrongPrev => "wrong-prev",
            Attack::FutureTimestamp => "future-timestamp",
            Attack::BadSignature => "bad-signature",
            Attack::ReplayedSignature => "replayed-signature",
            Attack::Overspend => "overspend",
            Attack::EasierChain => "easier-chain",
            Attack::OrphanFlood => "orphan-flood",
            Attack::IdleConnections => "idle-connections",
            Attack::DuplicateFlood => "duplicate-flood",
            Attack::HugeLocator => "huge-locator",
            Attack::NonsenseLocator => "nonsense-locator",
            Attack::HoldSlots => "hold-slots",
            Attack::UnminableFlood => "unminable-flood",
            Attack::BigSideBlocks => "big-side-blocks",
            Attack::Impostor => "impostor",
            Attack::FakeRegistrations => "fake-registrations",
            Attack::DeepLocators => "deep-locators",
        }
    }

    /// The attack called `name`.
    pub fn from_name(name: &str) -> Option<Attack> {
        Attack::ALL.into_iter().find(|a| a.name() == name)
    }

    /// Whether the node should treat this as provably invalid data: answer `E`, close the
    /// connection and refuse the address for a while.
    pub fn deserves_ban(self) -> bool {
        matches!(
            self,
            Attack::MissedDifficulty
                | Attack::BelowFloor
                | Attack::WrongPrev
                | Attack::BadSignature
                | Attack::ReplayedSignature
                | Attack::Overspend
        )
    }
}

/// What the node did under an attack.
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    /// How many messages, blocks or connections the attack sent.
    pub sent: usize,
    /// The `E` codes the node answered with, in order.
    pub errors: Vec<String>,
    /// Whether the node closed the attacking connection.
    pub closed: bool,
    /// Whether the node answered a `D` on the attacking connection afterwards.
    pub still_served: bool,
    /// Whether a new connection from the same address was refused with `E banned`.
    pub banned: bool,
    /// Anything else worth saying (e.g. how many idle connections the node took).
    pub note: String,
    /// For an attack on the node's slots: the longest a newcomer waited for its answer.
    pub newcomer_wait: Option<Duration>,
}

/// How long the tool waits for any one answer from the node.
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);

/// Runs `attack` against `target`.
pub async fn run(attack: Attack, target: &Target) -> anyhow::Result<Outcome> {
    let mut outcome = match attack {
        Attack::Garbage => lines::garbage(target).await?,
        Attack::EndlessLine => lines::endless_line(target).await?,
        Attack::UnfinishedLines => lines::unfinished_lines(target).await?,
        Attack::UnknownOpcode => lines::send_line(target, b"X {\"monkey\":true}\n").await?,
        Attack::BadJson => lines::send_line(target, b"A {\"account\": nope\n").await?,
        Attack::WrongShape => lines::send_line(target, b"B {\"blocks\": [1, 2, 3]}\n").await?,
        Attack::BadHash
        | Attack::MissedDifficulty
        | Attack::BelowFloor
        | Attack::WrongPrev
        | Attack::FutureTimestamp
        | Attack::BadSignature
        | Attack::ReplayedSignature
        | Attack::Overspend => blocks::faulty(attack, target).await?,
        Attack::EasierChain => blocks::easier_chain(target).await?,
        Attack::OrphanFlood => floods::orphans(target).await?,
        Attack::IdleConnections => floods::idle_connections(target).await?,
        Attack::DuplicateFlood => floods::duplicates(target).await?,
        Attack::HugeLocator => floods::locator(target, true).await?,
        Attack::NonsenseLocator => floods::locator(target, false).await?,
        Attack::HoldSlots => slots::hold_slots(target).await?,
        Attack::UnminableFlood => waiting::unminable(target).await?,
        Attack::BigSideBlocks => side::big_side_blocks(target).await?,
        Attack::Impostor => links::impostor(target).await?,
        Attack::FakeRegistrations => links::fake_registrations(target).await?,
        Attack::DeepLocators => deep::deep_locators(target).await?,
    };
    outcome.banned = conn::is_banned(target).await;
    Ok(outcome)
}
