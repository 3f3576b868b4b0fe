//! Every attack of `monkey-attack` against a real two-node network: the attacked node stays up,
//! answers as it should (an error, a closed connection, a ban only for provably invalid data),
//! keeps its best chain, keeps its memory bounded, and goes on serving honest shops and peers.

mod deep_locators;
mod liar;
mod links;
mod side_blocks;
mod soak;
mod support;
mod unminable;

use attack::Attack;
use protocol::wire::ErrorCode;
use support::{Expect, check};

/// Codes the node answers a line it cannot parse with.
const BAD_LINE: Expect = Expect {
    closed: true,
    banned: false,
    served: false,
};
/// Provably invalid data: `E invalid_block`, closed, and the address refused for a while.
const BANNED: Expect = Expect {
    closed: true,
    banned: true,
    served: false,
};
/// Not an offence: the connection is served on and nobody is punished.
const SERVED: Expect = Expect {
    closed: false,
    banned: false,
    served: true,
};

/// One test per attack that `check` runs alone: the test's name, the attack, how many lines or
/// connections it sends, the `E` codes the node may answer, and what must happen to the
/// connection.
macro_rules! attacks {
    ($($name:ident: $attack:ident, $count:expr, [$($code:ident),*], $expect:expr;)*) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() {
            check(Attack::$attack, $count, &[$(ErrorCode::$code),*], $expect).await;
        }
    )*};
}

attacks! {
    random_bytes: Garbage, 1, [NotUtf8], BAD_LINE;
    an_endless_line: EndlessLine, 1, [LineTooLong], BAD_LINE;
    // `check` also holds the node's peak memory to `MAX_PEAK_KIB`: 64 such lines are 512 MiB.
    unfinished_lines_hold_only_their_address_share: UnfinishedLines, 64, [BufferFull], SERVED;
    an_unknown_opcode: UnknownOpcode, 1, [UnknownOpcode], BAD_LINE;
    bad_json: BadJson, 1, [BadPayload], BAD_LINE;
    json_of_the_wrong_shape: WrongShape, 1, [BadPayload], BAD_LINE;
    a_block_whose_hash_lies: BadHash, 1, [BadPayload], BAD_LINE;
    a_block_that_misses_its_difficulty: MissedDifficulty, 1, [InvalidBlock], BANNED;
    a_block_below_the_floor: BelowFloor, 1, [InvalidBlock], BANNED;
    a_block_at_the_wrong_height_for_its_parent: WrongPrev, 1, [InvalidBlock], BANNED;
    a_block_from_the_future_is_refused_but_not_punished: FutureTimestamp, 1, [InvalidBlock], SERVED;
    a_forged_signature: BadSignature, 1, [InvalidBlock], BANNED;
    a_replayed_record: ReplayedSignature, 1, [InvalidBlock], BANNED;
    an_overspending_block: Overspend, 1, [InvalidBlock], BANNED;
    a_long_branch_with_less_work_leaves_the_best_chain_alone: EasierChain, 1200, [], SERVED;
    a_flood_of_orphans_is_capped_and_not_punished: OrphanFlood, 400, [], SERVED;
    // Run by `check` alongside an honest purchase: see support::check.
    hundreds_of_silent_connections_block_nobody: IdleConnections, 300, [], support::IDLE;
    // `check` also times the newcomers: see support::check.
    silent_subscribers_holding_every_slot_keep_no_newcomer_out: HoldSlots, 300, [], SERVED;
    a_fast_stream_of_duplicates: DuplicateFlood, 6000, [], SERVED;
    a_locator_far_too_long: HugeLocator, 1, [BadPayload], BAD_LINE;
    a_locator_that_names_nothing_is_answered_from_genesis: NonsenseLocator, 1, [], SERVED;
}

/// The attack tool's binary runs every attack by name and prints a table.
#[test]
fn the_binary_knows_every_attack() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_monkey-attack"))
        .arg("--help")
        .output()
        .expect("run monkey-attack");
    let help = String::from_utf8_lossy(&out.stdout);
    for attack in Attack::ALL {
        assert!(
            help.contains(attack.name()),
            "--help lacks {}",
            attack.name()
        );
        assert_eq!(Attack::from_name(attack.name()), Some(attack));
    }
}
